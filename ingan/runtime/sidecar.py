"""Reading and checking a model's sidecar metadata before any device work (no torch)."""

from __future__ import annotations

from pathlib import Path

from ingan.metadata import MetadataError, ModelMetadata, sha256_of, sidecar_path


def read_sidecar(model: Path, expected_kind: str) -> ModelMetadata:
    """The model's `<file>.json`, checked to belong to this very file."""
    meta = ModelMetadata.read(sidecar_path(model))
    if meta.kind != expected_kind:
        raise MetadataError(f"'{sidecar_path(model)}' describes a {meta.kind} model, not a {expected_kind} one")
    if model.stat().st_size == 0:
        raise MetadataError(f"model file '{model}' is empty; re-export it")
    matching = meta.for_artifact(sha256_of(model))
    if matching is None:
        raise MetadataError(
            f"'{model.name}' does not match its metadata (checksum differs: the file was changed, "
            f"truncated or replaced); re-export it with ingan-export, or copy the matching .json"
        )
    return matching
