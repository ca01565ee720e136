"""Model files with valid sidecars, for tests of what reads sidecars only (scanning MODELS)."""

from __future__ import annotations

from pathlib import Path

from ingan.metadata import ModelMetadata, TensorSpec, sha256_of, sidecar_path


def exported(path: Path, precision: str = "fp32", min_size=(16, 16), max_size=(96, 120)) -> Path:
    """A model file with a valid sidecar: scanning reads sidecars only (loading is a replica's job)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"graph bytes of " + path.name.encode())
    kind = "tensorrt" if path.suffix in (".plan", ".engine") else "onnx"
    ModelMetadata(
        kind=kind, artifact=path.name, artifact_sha256=sha256_of(path), precision=precision, opset=18,
        inputs=[TensorSpec("size", "int64", [2])], outputs=[TensorSpec("output", "uint8", [1, "height", "width", 3])],
        image_input=False, warp=False, output_format="uint8", min_size=list(min_size), opt_size=list(min_size),
        max_size=list(max_size), training_image_size=[40, 52], trained_scale_range=[0.5, 2.0], source_checkpoint={},
        exporter="test",
    ).write(sidecar_path(path))
    return path
