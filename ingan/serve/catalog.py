"""MODELS, scanned once at start: which model ids exist, which file serves each, its sizes.

A server never reads a path from a request: requests name a model id, and this catalog,
built once from the command line, maps ids to files. Rules (docs/serve.md, "Model ids"):

* a model file (`.onnx`, `.plan`, `.engine`, each with its `.json` sidecar) is served
  under its stem: `photos/beach.onnx` -> `beach`;
* a folder serves the model files directly inside it by stem, and each subfolder that
  holds model files under the subfolder's name (`ingan-export -o models/beach` writes
  `models/beach/model.onnx` -> `beach`); hidden entries are skipped, nothing deeper is read;
* where one id has several files (`model.onnx` and `model.plan`, FP32 and FP16), a GPU
  server picks the TensorRT plan and FP16, a CPU server the ONNX graph and FP32 (FP16
  convolutions are far slower than FP32 on CPUs);
* the same id from two different files is refused at start: ids must be unique.

Only the sidecars are read here (cheap); checksums and the models themselves are checked
when a replica loads them, so a broken model answers 503 while the others serve.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ingan.errors import ConfigError, InganError, first_line
from ingan.metadata import ModelMetadata, sidecar_path
from ingan.sizes import format_size

MODEL_SUFFIXES = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}
_SIDECAR_KIND = {"onnxruntime": "onnx", "tensorrt": "tensorrt"}
# Ids travel in URL paths and Ray's multiplexing header: keep them plain.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_DIGITS = 12


@dataclass(frozen=True)
class ModelEntry:
    """One servable model id. `problem` is set when it cannot be served (it then answers 503)."""

    id: str
    path: str  # absolute path of the file a replica loads
    backend: str  # "onnxruntime" | "tensorrt"
    precision: str | None = None
    version: str | None = None  # the first 12 hex digits of the file's SHA-256 (from its sidecar)
    min_size: tuple[int, int] | None = None  # (height, width)
    max_size: tuple[int, int] | None = None
    image_size: tuple[int, int] | None = None  # the training image: scale 1x1
    warp: bool = False
    image_input: bool = False
    problem: str | None = None

    @property
    def available(self) -> bool:
        return self.problem is None

    def describe(self) -> dict[str, Any]:
        """The model as the HTTP listing shows it (sizes as WIDTHxHEIGHT, like --size)."""
        info: dict[str, Any] = {"id": self.id, "status": "available" if self.available else "unavailable",
                                "backend": self.backend, "precision": self.precision, "version": self.version}
        if self.min_size is not None and self.max_size is not None and self.image_size is not None:
            info.update(min_size=format_size(self.min_size), max_size=format_size(self.max_size),
                        image_size=format_size(self.image_size), warp=self.warp, image_input=self.image_input)
        if self.problem is not None:
            info["error"] = self.problem
        return info

    def summary(self) -> str:
        """One line for the server's start-up listing."""
        if not self.available:
            return f"{self.id}: UNAVAILABLE: {self.problem}"
        extras = "".join(f", {flag}" for flag, on in (("warp", self.warp), ("image input", self.image_input)) if on)
        return (f"{self.id}: {Path(self.path).name}, {self.backend} {self.precision}, sizes "
                f"{format_size(self.min_size)} .. {format_size(self.max_size)}{extras}, version {self.version}")


@dataclass(frozen=True)
class Catalog:
    """Every model id the server knows, in a stable order, plus start-up notes for the user."""

    entries: tuple[ModelEntry, ...]
    notes: tuple[str, ...] = ()

    def get(self, model_id: str) -> ModelEntry | None:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        return None

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]

    @property
    def available(self) -> list[ModelEntry]:
        return [entry for entry in self.entries if entry.available]


def scan(models: Sequence[str | os.PathLike[str]], gpu: bool = False) -> Catalog:
    """The catalog of MODELS (files or folders); `gpu`: replicas have a GPU (prefer plans).

    Raises ConfigError for what no request could fix: a missing path, a folder without
    models, an id that is not URL-safe, the same id from two files.
    """
    if not models:
        raise ConfigError("no MODELS given; pass exported model files (.onnx, .plan) or folders of them")
    groups: dict[str, tuple[str, list[Path]]] = {}  # id -> (where it came from, files)
    skipped_checkpoints: list[Path] = []
    for given in models:
        for model_id, origin, files in _groups_in(Path(given), skipped_checkpoints):
            if not _ID.match(model_id):
                raise ConfigError(
                    f"model id '{model_id}' (from {origin}) is not usable in a URL; rename it to letters, digits, "
                    "'.', '-' and '_' (at most 128, starting with a letter or digit)"
                )
            if model_id in groups:
                earlier_origin, earlier_files = groups[model_id]
                if {f.resolve() for f in earlier_files} == {f.resolve() for f in files}:
                    continue  # the same model named twice (a folder and a file in it)
                raise ConfigError(
                    f"model id '{model_id}' is given twice: by {earlier_origin} and by {origin}; ids are file "
                    "stems or folder names and must be unique: rename one of them"
                )
            groups[model_id] = (origin, files)
    notes: list[str] = []
    if skipped_checkpoints:
        notes.append(f"skipped {len(skipped_checkpoints)} checkpoint(s) ({skipped_checkpoints[0]}"
                     f"{', ...' if len(skipped_checkpoints) > 1 else ''}): a server runs exported models; "
                     "export them with ingan-export first")
    entries = []
    for model_id, (_origin, files) in groups.items():
        entry = _entry(model_id, files, gpu)
        if entry.available and entry.backend == "onnxruntime" and entry.precision == "fp16" and not gpu:
            notes.append(f"model '{model_id}' is an FP16 ONNX graph: ONNX Runtime runs FP16 convolutions on a CPU "
                         "far slower than FP32; serve the FP32 export (ingan-export writes NAME.onnx) instead")
        if not entry.available:
            notes.append(f"model '{model_id}' is unavailable (it answers 503): {entry.problem}")
        entries.append(entry)
    return Catalog(entries=tuple(entries), notes=tuple(notes))


def _groups_in(given: Path, skipped_checkpoints: list[Path]) -> Iterable[tuple[str, str, list[Path]]]:
    """(id, origin text, model files) for one MODELS argument."""
    if not given.exists():
        raise ConfigError(f"'{given}' does not exist; pass exported model files (.onnx, .plan) or folders of them")
    if given.is_file():
        if given.suffix.lower() not in MODEL_SUFFIXES:
            hint = ("export it first with ingan-export" if given.suffix.lower() in (".pt", ".pth")
                    else "pass an exported model (.onnx, .plan, .engine) or a folder of them")
            raise ConfigError(f"'{given}' is not an exported model; {hint}")
        yield given.stem, f"'{given}'", [given]
        return
    by_stem: dict[str, list[Path]] = {}
    subfolders: list[tuple[str, list[Path]]] = []
    for child in _listing(given):
        if child.is_file():
            suffix = child.suffix.lower()
            if suffix in MODEL_SUFFIXES:
                by_stem.setdefault(child.stem, []).append(child)
            elif suffix in (".pt", ".pth"):
                skipped_checkpoints.append(child)
        elif child.is_dir():
            files = [f for f in _listing(child) if f.is_file() and f.suffix.lower() in MODEL_SUFFIXES]
            if files:
                subfolders.append((child.name, files))
    if not by_stem and not subfolders:
        raise ConfigError(
            f"no exported models in '{given}' (looked for .onnx, .plan and .engine files in it and in its "
            "subfolders); export some with ingan-export -o, or pass the model files"
        )
    for stem, files in by_stem.items():
        yield stem, f"'{given / stem}.*'", files
    for name, files in subfolders:
        yield name, f"folder '{given / name}'", files


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if not child.name.startswith("."))
    except OSError as exc:
        raise ConfigError(f"cannot list '{folder}': {exc.strerror or exc}; check its permissions") from None


def _entry(model_id: str, files: list[Path], gpu: bool) -> ModelEntry:
    """The entry for one id: the best file for this kind of replica, or the reason there is none."""
    readable: list[tuple[Path, str, ModelMetadata]] = []
    problems: list[str] = []
    for file in files:
        backend = MODEL_SUFFIXES[file.suffix.lower()]
        try:
            meta = ModelMetadata.read(sidecar_path(file))
            if meta.kind != _SIDECAR_KIND[backend]:
                raise InganError(f"'{sidecar_path(file).name}' describes a {meta.kind} model, not this "
                                 f"{file.suffix} file; re-export it")
        except InganError as exc:
            problems.append(first_line(exc))
            continue
        readable.append((file, backend, meta))
    usable = [c for c in readable if gpu or c[1] != "tensorrt"]
    if not usable:
        file = files[0]
        backend = MODEL_SUFFIXES[file.suffix.lower()]
        if readable:  # only TensorRT plans, on a server without GPUs
            file, backend, _meta = readable[0]
            problem = (f"'{file.name}' is a TensorRT plan, which runs only on a CUDA GPU, and this server has "
                       "no GPU per replica; serve it on a Ray cluster with GPUs with --gpus-per-replica (e.g. 0.5), "
                       "or put the .onnx that ingan-export wrote beside it to serve it on CPUs")
        else:
            problem = problems[0]
        return ModelEntry(id=model_id, path=str(file.resolve()), backend=backend, problem=problem)
    # GPU: TensorRT plans first, FP16 first; CPU: ONNX (the only choice) and FP32 first.
    precision_rank = {"fp16": 0, "fp32": 1} if gpu else {"fp32": 0, "fp16": 1}
    file, backend, meta = min(usable, key=lambda c: (c[1] != "tensorrt", precision_rank.get(c[2].precision, 2)))
    return ModelEntry(
        id=model_id, path=str(file.resolve()), backend=backend, precision=meta.precision,
        version=meta.artifact_sha256[:VERSION_DIGITS], min_size=_pair(meta.min_size), max_size=_pair(meta.max_size),
        image_size=_pair(meta.training_image_size), warp=bool(meta.warp), image_input=bool(meta.image_input),
    )


def _pair(values: Sequence[int]) -> tuple[int, int]:
    return int(values[0]), int(values[1])
