"""PyTorch reference backend for `ckpt.pt`: the generator itself, as trained.

Every other backend is compared with this one. It needs torch (ingan[train]).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import ingan
from ingan.contract import HOMOGRAPHY_INPUT, OUTPUT_NAME, SIZE_INPUT
from ingan.extras import missing
from ingan.metadata import ModelMetadata, TensorSpec
from ingan.runtime.base import Runner
from ingan.runtime.registry import BenchVariant, LoadOptions

if TYPE_CHECKING:
    from ingan.model.checkpoint import Checkpoint


def _torch() -> Any:
    """torch, imported when a checkpoint is opened (this module stays light to import)."""
    try:
        import torch
    except ImportError:
        raise missing("torch", "Running a .pt checkpoint") from None
    return torch


def checkpoint_metadata(ckpt: Checkpoint) -> ModelMetadata:
    """What ingan-export would record, derived from the checkpoint (no file written)."""
    from ingan.model.checkpoint import file_sha256
    from ingan.model.sizes import default_size_range

    h, w = ckpt.image.shape[:2]
    low, high = default_size_range((h, w), ckpt.scale_range, ckpt.generator_config.min_size)
    return ModelMetadata(
        kind="pytorch", artifact=ckpt.path.name, artifact_sha256=file_sha256(ckpt.path), precision="fp32", opset=0,
        inputs=[TensorSpec(SIZE_INPUT, "int64", [2]), TensorSpec(HOMOGRAPHY_INPUT, "float32", [1, 3, 3])],
        outputs=[TensorSpec(OUTPUT_NAME, "uint8", [1, "height", "width", 3])],
        image_input=False, warp=True, output_format="uint8", min_size=list(low), opt_size=[h, w],
        max_size=list(high), training_image_size=[h, w], trained_scale_range=list(ckpt.scale_range),
        source_checkpoint={"file": ckpt.path.name, "iteration": ckpt.iteration}, exporter="none (PyTorch checkpoint)",
        ingan_version=ingan.__version__,
    )


class TorchRunner(Runner):
    """A `ckpt.pt`: the generator as trained, in PyTorch (the reference every backend is compared with)."""

    backend = "pytorch"
    aliases = ("torch", "pt")
    suffixes = (".pt", ".pth")
    extra = "train"
    packages = ("torch",)
    devices = ("cpu", "cuda")
    takes = frozenset({"threads"})
    rank = 30
    bench_variants = (
        BenchVariant("torch-fp32", "auto", "PyTorch eager FP32 through the runner (CUDA events on a GPU, wall-clock "
                     "on the CPU)", graphs=True, probe="pytorch"),
        BenchVariant("torch-fp16", "cuda", "PyTorch FP16 weights and activations, channels-last (CUDA only)",
                     graphs=True, precision="fp16", probe="pytorch"),
        BenchVariant("torch-bf16", "cuda", "PyTorch BF16 weights and activations, channels-last (CUDA only)",
                     graphs=True, precision="bf16", probe="pytorch"),
    )

    @classmethod
    def describe(cls, path: Path) -> ModelMetadata:
        _torch()  # first: a missing torch is one line naming the extra
        from ingan.model.checkpoint import load_checkpoint

        return checkpoint_metadata(load_checkpoint(path))

    @classmethod
    def open(cls, path: Path, options: LoadOptions) -> "TorchRunner":
        return cls(path, options)

    @classmethod
    def why_unavailable(cls, variant: BenchVariant) -> str | None:
        problem = super().why_unavailable(variant)
        if problem is None and variant.device == "cuda" and not _torch().cuda.is_available():
            problem = f"{variant.name} needs a CUDA GPU and a CUDA build of torch"
            if variant.precision is not None:
                problem += ("; half precision never runs on a CPU (~100x slower than FP32 without FP16/BF16 "
                            "matrix units; docs/export.md)")
        return problem

    def __init__(self, path: str | Path, options: LoadOptions = LoadOptions()) -> None:
        torch = _torch()
        from ingan.model.checkpoint import load_checkpoint
        from ingan.model.device import torch_device
        from ingan.model.tensors import image_to_tensor

        if options.threads:
            torch.set_num_threads(options.threads)  # process-wide: torch has no per-module thread pool
        ckpt = load_checkpoint(path)
        super().__init__(path, checkpoint_metadata(ckpt))
        self._device = torch_device(options.device)
        self.generator = ckpt.build_generator(self._device)
        self.image = image_to_tensor(ckpt.image, self._device)

    @property
    def device(self) -> str:
        return str(self._device)

    def _retarget(self, size: tuple[int, int], homography: np.ndarray | None,
                  image: np.ndarray | None) -> np.ndarray:
        torch = _torch()
        from ingan.model.tensors import tensor_to_image

        h = None if homography is None else torch.from_numpy(homography).to(self._device)
        with torch.no_grad():
            return tensor_to_image(self.generator(self.image, size, h))

    def _close(self) -> None:
        self.generator = None
        self.image = None
