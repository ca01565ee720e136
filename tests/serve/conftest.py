"""Models for the serving tests: three distinct tiny generators and a broken one, made from the
session's tiny export (one export; the variants differ in their colour offset)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ingan.metadata import ModelMetadata, sha256_of, sidecar_path


def colour_variant(source: Path, target: Path, offset: float) -> Path:
    """A copy of an exported graph whose colour offset is shifted: another model, same contract."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(source)
    changed = False
    for tensor in model.graph.initializer:
        if tensor.name.endswith("_colour_offset"):
            shifted = numpy_helper.to_array(tensor).astype(np.float32) + np.float32(offset)
            tensor.CopyFrom(numpy_helper.from_array(shifted, tensor.name))
            changed = True
    assert changed, "the export has no colour offset to shift"
    onnx.save(model, target)
    meta = ModelMetadata.read(sidecar_path(source))
    meta.artifact = target.name
    meta.artifact_sha256 = sha256_of(target)
    meta.write(sidecar_path(target))
    return target


def copy_model(source: Path, target: Path) -> Path:
    shutil.copy(source, target)
    meta = ModelMetadata.read(sidecar_path(source))
    meta.artifact = target.name
    meta.write(sidecar_path(target))
    return target


@pytest.fixture(scope="session")
def served_models(default_export, tmp_path_factory) -> Path:
    """models/alpha.onnx, models/beta.onnx, models/gamma/model.onnx (a folder id) and
    models/broken.onnx (truncated: its sidecar is fine, loading fails)."""
    out, _ = default_export
    folder = tmp_path_factory.mktemp("served") / "models"
    (folder / "gamma").mkdir(parents=True)
    copy_model(out / "model.onnx", folder / "alpha.onnx")
    colour_variant(out / "model.onnx", folder / "beta.onnx", 0.15)
    colour_variant(out / "model.onnx", folder / "gamma" / "model.onnx", -0.15)
    broken = copy_model(out / "model.onnx", folder / "broken.onnx")
    broken.write_bytes(broken.read_bytes()[:1000])
    return folder
