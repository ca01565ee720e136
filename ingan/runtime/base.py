"""The one runner contract every backend implements (no torch, no GPU libraries here).

    with ingan.runtime.load("model.onnx") as runner:
        image = runner.retarget((360, 640))        # (height, width) -> HxWx3 uint8

Public methods validate the request against the model's metadata (size range, warp
support) before a backend touches any device; backends implement `_retarget` only.
Runners are thread-safe: calls are serialised by a per-runner lock (TensorRT execution
contexts and CUDA buffers are not re-entrant). For parallel throughput, open one runner
per thread.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ingan.errors import ConfigError, InganError
from ingan.metadata import ModelMetadata
from ingan.runtime.registry import BenchVariant, LoadOptions, register
from ingan.sizes import check_in_range, format_size


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the last request, measured around the backend call."""

    seconds: float


class Runner(abc.ABC):
    """Base class: open(path, options), retarget(size[, homography]) -> (H, W, 3) uint8, close().

    A backend is one subclass in one file that *declares* what it is (the class attributes
    below); defining it registers it (ingan/runtime/registry.py), and `load()`, `ingan-run
    --backend`, the bench and the quality code derive everything from the declarations.
    """

    # ---- declarations (a subclass that sets `backend` is a backend)
    backend: ClassVar[str] = ""  # its name: --backend NAME, load(backend=NAME)
    aliases: ClassVar[tuple[str, ...]] = ()  # other accepted names
    suffixes: ClassVar[tuple[str, ...]] = ()  # model files it opens, chosen by suffix
    model_kind: ClassVar[str] = ""  # the sidecar `kind` it reads ("" = it reads its file itself)
    extra: ClassVar[str] = ""  # the pip extra that installs it (ingan/extras.py)
    packages: ClassVar[tuple[str, ...]] = ()  # the heavy modules it imports when opening a model
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # cpu and/or cuda
    takes: ClassVar[frozenset[str]] = frozenset()  # LoadOptions it accepts beyond device
    bench_variants: ClassVar[tuple[BenchVariant, ...]] = ()  # default: one wall-clock variant
    rank: ClassVar[int] = 100  # order in tables and choices (lower first)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("backend"):
            register(cls)

    @classmethod
    def describe(cls, path: Path) -> ModelMetadata:
        """The model's metadata without loading it into a runtime: its sidecar, checked against
        the file. Backends whose files describe themselves (checkpoints) override this."""
        from ingan.runtime.sidecar import read_sidecar

        return read_sidecar(path, expected_kind=cls.model_kind)

    @classmethod
    def open(cls, path: Path, options: LoadOptions) -> "Runner":
        """Open `path` (already checked to exist): `describe`, then the backend's constructor
        `cls(path, metadata, options)`, the one signature every backend opens through."""
        return cls(path, cls.describe(path), options)  # type: ignore[call-arg]

    @classmethod
    def bench_variant_list(cls) -> tuple[BenchVariant, ...]:
        """How ingan-bench can time this backend: its declared variants, else one wall-clock
        cell named after it on its first device."""
        return cls.bench_variants or (BenchVariant(cls.backend, cls.devices[0], f"{cls.__name__} (wall-clock)"),)

    @classmethod
    def why_unavailable(cls, variant: BenchVariant) -> str | None:
        """None when `variant` can run on this machine, else why not (a skipped bench cell).
        The default: its packages are installed."""
        from ingan.extras import installed

        missing = [name for name in cls.packages if not installed(name)]
        return f"{', '.join(missing)} is not installed" if missing else None

    def __init__(self, path: str | Path, metadata: ModelMetadata) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self._lock = threading.Lock()
        self._closed = False
        self.last_timing: Timing | None = None

    # ---- what every backend provides
    @property
    @abc.abstractmethod
    def device(self) -> str:
        """Where it runs, in words (e.g. 'CPUExecutionProvider', 'cuda:0 (NVIDIA H100)')."""

    @abc.abstractmethod
    def _retarget(self, size: tuple[int, int], homography: np.ndarray | None,
                  image: np.ndarray | None) -> np.ndarray:
        """(height, width) -> uint8 [H, W, 3]; inputs are already validated.

        `homography` is float32 [1, 3, 3] or None (a graph with a warp input then gets the
        identity, see `graph_homography`); `image` is
        float32 [1, 3, H, W] in [0, 1] when the model takes the image as an input.
        """

    def _close(self) -> None:
        """Release device resources (called once)."""

    # ---- the public contract
    @property
    def min_size(self) -> tuple[int, int]:
        return tuple(self.metadata.min_size)  # type: ignore[return-value]

    @property
    def max_size(self) -> tuple[int, int]:
        return tuple(self.metadata.max_size)  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        """The training image's (height, width): scale 1x1."""
        return tuple(self.metadata.training_image_size)  # type: ignore[return-value]

    @property
    def supports_warp(self) -> bool:
        return bool(self.metadata.warp)

    def check_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size check of every request (ingan.sizes.check_in_range); ConfigError naming the fix."""
        hint = {"tensorrt": "rebuild the engine with ingan-export --min-size/--max-size",
                "onnx": "re-export with ingan-export --min-size/--max-size"}.get(
            self.metadata.kind, "train with a wider scale range (a checkpoint's range is the one it was trained on)")
        return check_in_range(size, self.min_size, self.max_size, fix=hint)

    def retarget(
        self, size: tuple[int, int], homography: np.ndarray | None = None, image: np.ndarray | None = None
    ) -> np.ndarray:
        """The training image retargeted to exactly `size` = (height, width), as HxWx3 uint8.

        Args:
            homography: optional 3x3 (output -> input, normalised coordinates) for a
                non-rectangular retarget; the model must have been exported with --warp.
            image: HxWx3 uint8 RGB, only for models exported with --image-input (their
                input is not baked in); other models retarget their training image.
        """
        if self._closed:
            raise InganError("this runner is closed; load the model again")
        hw = self.check_size(size)
        h_matrix = None
        if homography is not None:
            if not self.supports_warp:
                raise ConfigError("this model was exported without --warp; re-export with ingan-export --warp")
            h_matrix = np.asarray(homography, dtype=np.float32).reshape(1, 3, 3)
        pixels = None
        if self.metadata.image_input:
            if image is None:
                raise ConfigError("this model takes the image as an input (exported with ingan-export --image-input); "
                                  "pass image=HxWx3 uint8")
            array = np.asarray(image)
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 8:
                raise ConfigError(f"image must be HxWx3 uint8 with sides >= 8, got {array.shape} {array.dtype}")
            pixels = np.ascontiguousarray(np.transpose(array, (2, 0, 1))[None], dtype=np.float32) / 255.0
        elif image is not None:
            hint = ("a checkpoint always retargets its own training image" if self.metadata.kind == "pytorch"
                    else "export with --image-input for that")
            raise ConfigError(f"this model has its training image baked in; it takes no image ({hint})")
        with self._lock:
            if self._closed:  # closed by another thread (a server evicting it) since the check above
                raise InganError("this runner is closed; load the model again")
            started = time.perf_counter()
            out = self._retarget(hw, h_matrix, pixels)
            self.last_timing = Timing(time.perf_counter() - started)
        if out.shape != (hw[0], hw[1], 3) or out.dtype != np.uint8:
            # Not a bug of ours: the model file computed something else than its contract says.
            raise InganError(
                f"'{self.path.name}' returned a {'x'.join(map(str, out.shape))} {out.dtype} array for a "
                f"{format_size(hw)} request, not the {hw[1]}x{hw[0]} RGB image the ingan graph contract "
                "promises (docs/onnx-contract.md); the model file is not an ingan export: re-export it"
            )
        return out

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} on {self.device}>"


def to_hwc_uint8(output: np.ndarray, output_format: str) -> np.ndarray:
    """A graph's output (uint8 [1,H,W,3] or float [1,3,H,W] in [0,1]) -> [H, W, 3] uint8."""
    if output_format == "uint8":
        return np.ascontiguousarray(output[0])
    return np.ascontiguousarray(
        (np.clip(np.transpose(output[0], (1, 2, 0)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    )


def graph_homography(metadata: ModelMetadata, homography: np.ndarray | None) -> np.ndarray | None:
    """What to feed a graph's `homography` input: the request's, or the identity if none."""
    if not metadata.warp:
        return None
    return homography if homography is not None else np.eye(3, dtype=np.float32)[None]
