"""A Triton Inference Server model repository from ingan-export's files (`ingan-export --triton-repo DIR`).

    DIR/model/config.pbtxt          platform "onnxruntime_onnx"    (model.onnx)
    DIR/model/1/model.onnx
    DIR/model_trt/config.pbtxt      platform "tensorrt_plan"       (model.plan, where one was built)
    DIR/model_trt/1/model.plan
    DIR/model_fp16/..., DIR/model_fp16_trt/...                    (the --fp16 exports)

The configs follow the graph contract (docs/onnx-contract.md), read from each file's sidecar:
`max_batch_size: 0`, because with batching on Triton would prepend a batch dimension to
the `size` shape tensor's value; dimensions named in the graph (height, width, batch) are
`-1`. A TensorRT plan takes `size` as a shape tensor, which Triton's TensorRT backend loads
only when the config says `is_shape_tensor: true`. Triton's own schema
(tritonclient's `model_config_pb2`) is what the tests parse these files with.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ingan.contract import SIZE_INPUT
from ingan.errors import InganError
from ingan.fsutil import atomic_path, ensure_output_dir
from ingan.metadata import ModelMetadata, TensorSpec, sidecar_path
from ingan.sizes import format_size

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx", ""), "tensorrt": ("tensorrt_plan", "model.plan", "_trt")}
DATA_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16",
              "uint8": "TYPE_UINT8"}
SHAPE_TENSORS = (SIZE_INPUT,)  # the contract's inputs whose values are shapes


@dataclass(frozen=True)
class TritonModel:
    """One model written into the repository."""

    name: str
    platform: str
    config: Path
    model: Path
    notes: tuple[str, ...] = ()


def config_text(name: str, meta: ModelMetadata) -> str:
    """config.pbtxt for one exported model, from its sidecar."""
    platform = PLATFORMS[meta.kind][0]
    lines = [
        f"# Written by ingan-export --triton-repo from {meta.artifact} ({meta.precision}); ingan {meta.ingan_version}.",
        f"# Output sizes {format_size(meta.min_size)} .. {format_size(meta.max_size)} (width x height); the size input is",
        "# [height, width]. docs/serve.md shows a tritonclient request.",
        f'name: "{name}"',
        f'platform: "{platform}"',
        "max_batch_size: 0",
        "input [",
        ",\n".join(_tensor(spec, shape_tensor=meta.kind == "tensorrt" and spec.name in SHAPE_TENSORS)
                   for spec in meta.inputs),
        "]",
        "output [",
        ",\n".join(_tensor(spec) for spec in meta.outputs),
        "]",
    ]
    return "\n".join(lines) + "\n"


def _tensor(spec: TensorSpec, shape_tensor: bool = False) -> str:
    if spec.dtype not in DATA_TYPES:
        raise InganError(f"tensor '{spec.name}' has type {spec.dtype}, which this writer does not map to Triton; "
                         "re-export the model with this ingan")
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.shape)
    fields = [f'    name: "{spec.name}"', f"    data_type: {DATA_TYPES[spec.dtype]}", f"    dims: [ {dims} ]"]
    if shape_tensor:
        fields.append("    is_shape_tensor: true")
    return "  {\n" + "\n".join(fields) + "\n  }"


def write_triton_repo(repo: str | os.PathLike[str], artifacts: Sequence[str | os.PathLike[str]]) -> list[TritonModel]:
    """Add each exported file (`.onnx`, `.plan`, with its sidecar) to the repository `repo`.

    A model's name is its file's stem, plus `_trt` for a plan (the ONNX and plan of one
    export would otherwise collide). Existing files of those models are replaced, each
    atomically; other models in the repository are left alone.
    """
    root = ensure_output_dir(repo)
    written = []
    for artifact in map(Path, artifacts):
        meta = ModelMetadata.read(sidecar_path(artifact))
        platform, file_name, suffix = PLATFORMS[meta.kind]
        name = artifact.stem + suffix
        version_dir = ensure_output_dir(root / name / "1")
        model = version_dir / file_name
        with atomic_path(model) as tmp:
            shutil.copyfile(artifact, tmp)
        config = root / name / "config.pbtxt"
        with atomic_path(config) as tmp:
            tmp.write_text(config_text(name, meta))
        notes = ()
        newer = sorted(p.name for p in (root / name).iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 1)
        if newer:
            notes = (f"{root / name} also has version(s) {', '.join(newer)}; Triton serves the latest by default, "
                     "so the new version 1 is not the one served: remove the others or set a version_policy",)
        written.append(TritonModel(name=name, platform=platform, config=config, model=model, notes=notes))
        log.info("wrote Triton model %s (%s)", name, platform)
    return written
