"""Sidecar metadata (`<artifact>.json`) for exported models and engines.

Written next to every `.onnx` / `.plan`, never inside the engine bytes. Runtimes read it
to validate a request (size range, inputs) before touching a GPU. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ingan.contract import INPUT_NAMES, OPTIONAL_INPUTS, SIZE_INPUT
from ingan.errors import InganError
from ingan.fsutil import atomic_path
from ingan.sizes import in_range

FORMAT = "ingan-model"
# 2: sizes are labelled objects {"width": W, "height": H}; 1 (still read): [height, width] lists.
FORMAT_VERSION = 2
SIZE_FIELDS = ("min_size", "opt_size", "max_size", "training_image_size")


def labelled_size(hw: Iterable[int]) -> dict[str, int]:
    """[height, width] -> {"width": W, "height": H}, as sidecars and model properties store a size."""
    h, w = list(hw)
    return {"width": int(w), "height": int(h)}


def size_from_label(value: Any) -> Any:
    """{"width": W, "height": H} -> [height, width]; anything else is returned for `problem()` to name."""
    if isinstance(value, dict) and set(value) == {"width", "height"}:
        return [value["height"], value["width"]]
    return value


# The validated size range is also written into the ONNX file itself (a model property), which
# the sidecar's checksum covers: a sidecar edited to claim a wider range is caught at load.
SIZE_RANGE_PROPERTY = "ingan.size_range"


def size_range_property(min_size: Iterable[int], max_size: Iterable[int]) -> dict[str, str]:
    """The model property recording the (height, width) bounds, as written into an ONNX file."""
    return {SIZE_RANGE_PROPERTY: json.dumps({"min_size": labelled_size(min_size),
                                             "max_size": labelled_size(max_size)})}


def size_range_from_properties(properties: dict[str, str]) -> tuple[list[int], list[int]] | None:
    """(min_size, max_size) from a model's properties; None for models exported before them."""
    text = properties.get(SIZE_RANGE_PROPERTY)
    if text is None:
        return None
    try:
        data = json.loads(text)
        return ([int(v) for v in size_from_label(data["min_size"])],
                [int(v) for v in size_from_label(data["max_size"])])
    except (ValueError, KeyError, TypeError):
        raise MetadataError(f"the model's '{SIZE_RANGE_PROPERTY}' property is damaged; re-export it") from None


class MetadataError(InganError):
    """A sidecar file is missing, corrupt or from a newer ingan."""


def sidecar_path(artifact: str | os.PathLike[str]) -> Path:
    """`model.onnx` -> `model.onnx.json` (unambiguous when .onnx and .plan share a stem)."""
    path = Path(artifact)
    return path.with_name(path.name + ".json")


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: list[int | str]


@dataclass
class ModelMetadata:
    kind: str  # "onnx" | "tensorrt"
    artifact: str  # file name of the model next to this sidecar
    artifact_sha256: str
    precision: str  # "fp32" | "fp16"
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    image_input: bool
    warp: bool
    output_format: str  # "uint8" | "float"
    # Sizes are [height, width] in memory (the project's (h, w) order); the JSON file labels
    # them {"width": W, "height": H} (format 2).
    min_size: list[int]
    opt_size: list[int]
    max_size: list[int]
    training_image_size: list[int]
    trained_scale_range: list[float]
    source_checkpoint: dict[str, Any]
    exporter: str
    validation: dict[str, Any] = field(default_factory=dict)
    tensorrt: dict[str, Any] | None = None
    ingan_version: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    # The sidecar this one replaced (its own `previous` dropped). An export renames the new
    # sidecar into place before the new model: if it is killed between the two renames, the
    # old model is still described here and keeps loading (`for_artifact`).
    previous: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION  # written in the current format, whatever was read
        for name in SIZE_FIELDS:
            data[name] = labelled_size(data[name])
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return Path(path)

    def size_in_range(self, size: tuple[int, int]) -> bool:
        return in_range(size, self.min_size, self.max_size)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "ModelMetadata":
        p = Path(path)
        if not p.exists():
            raise MetadataError(
                f"metadata '{p}' not found; it is written by ingan-export next to the model; re-export, "
                "or keep the .json beside the model when copying it"
            )
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"metadata '{p}' is unreadable or not JSON ({exc}); re-export the model") from None
        return cls.from_dict(data, str(p))

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "ModelMetadata":
        """Validate a parsed sidecar (`source` names it in errors)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MetadataError(f"'{source}' is not ingan model metadata")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MetadataError(
                f"'{source}' has metadata format {version!r}, newer than this ingan supports ({FORMAT_VERSION}); "
                "upgrade ingan"
            )
        data = dict(data)
        if version >= 2:
            for name in SIZE_FIELDS:
                if name in data:
                    value = data[name]
                    if not (isinstance(value, dict) and set(value) == {"width", "height"}):
                        raise MetadataError(f"'{source}' is damaged ({name} must be {{\"width\": W, \"height\": H}}, "
                                            f"got {value!r}); re-export the model")
                    data[name] = size_from_label(value)
        try:
            data["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
            data["outputs"] = [TensorSpec(**t) for t in data["outputs"]]
            meta = cls(**data)
        except (KeyError, TypeError) as exc:
            raise MetadataError(f"'{source}' is incomplete or damaged ({exc}); re-export the model") from None
        problem = meta.problem()
        if problem:
            raise MetadataError(f"'{source}' is damaged ({problem}); re-export the model")
        return meta

    def for_artifact(self, sha256: str) -> "ModelMetadata | None":
        """This metadata if it describes the file with `sha256`, else the replaced one that
        does (an export interrupted between its two renames), else None."""
        if self.artifact_sha256 == sha256:
            return self
        if isinstance(self.previous, dict) and self.previous.get("artifact_sha256") == sha256:
            try:
                return ModelMetadata.from_dict({**self.previous, "previous": None}, "the replaced metadata")
            except MetadataError:
                return None
        return None

    def replacing(self, existing_sidecar: str | os.PathLike[str]) -> "ModelMetadata":
        """Self, remembering the sidecar at `existing_sidecar` (if it is a readable one) as
        `previous`, so a reader can still use the old model until the new one is in place."""
        try:
            old = json.loads(Path(existing_sidecar).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return self
        if isinstance(old, dict) and old.get("format") == FORMAT:
            old.pop("previous", None)
            self.previous = old
        return self

    def problem(self) -> str | None:
        """The first field with an impossible value, or None: sidecars are user files too."""
        def side_pair(value: Any) -> bool:
            return (isinstance(value, list) and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))

        for name in SIZE_FIELDS:
            if not side_pair(getattr(self, name)):
                return (f"{name} must be {{\"width\": W, \"height\": H}} with positive integers, got "
                        f"{getattr(self, name)!r}")
        if not all(lo <= hi for lo, hi in zip(self.min_size, self.max_size)):
            return f"min_size {self.min_size} exceeds max_size {self.max_size}"
        for name in ("image_input", "warp"):
            if not isinstance(getattr(self, name), bool):
                return f"{name} must be true or false"
        if self.output_format not in ("uint8", "float"):
            return f"output_format must be uint8 or float, got {self.output_format!r}"
        if self.precision not in ("fp32", "fp16"):
            return f"precision must be fp32 or fp16, got {self.precision!r}"
        return None

    def input_problems(self, input_names: Iterable[str]) -> list[str]:
        """Where a loaded graph's or engine's inputs disagree with this sidecar."""
        names = set(input_names)
        problems = [] if SIZE_INPUT in names else [f"no '{SIZE_INPUT}' input"]
        unknown = names - set(INPUT_NAMES)
        if unknown:
            problems.append(f"unknown inputs {sorted(unknown)}")
        for name, flag in OPTIONAL_INPUTS.items():
            if (name in names) != bool(getattr(self, flag)):
                problems.append(f"{flag.removesuffix('_input')} input: model {name in names}, "
                                f"metadata {bool(getattr(self, flag))}")
        return problems
