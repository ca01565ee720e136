"""PyTorch reference backend for `ckpt.pt`: the generator itself, as trained.

Every other backend is compared with this one. It needs torch (ingan[train]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ingan
from ingan.extras import missing
from ingan.metadata import ModelMetadata, TensorSpec
from ingan.runtime.base import Runner

try:
    import torch
except ImportError:  # pragma: no cover - exercised only without torch
    raise missing("torch", "Running a .pt checkpoint") from None

from ingan.model.checkpoint import Checkpoint, file_sha256, load_checkpoint  # noqa: E402
from ingan.model.device import torch_device  # noqa: E402
from ingan.model.sizes import default_size_range  # noqa: E402


def checkpoint_metadata(ckpt: Checkpoint) -> ModelMetadata:
    """What ingan-export would record, derived from the checkpoint (no file written)."""
    h, w = ckpt.image.shape[:2]
    low, high = default_size_range((h, w), ckpt.scale_range, ckpt.generator_config.min_size)
    return ModelMetadata(
        kind="pytorch", artifact=ckpt.path.name, artifact_sha256=file_sha256(ckpt.path), precision="fp32", opset=0,
        inputs=[TensorSpec("size", "int64", [2]), TensorSpec("homography", "float32", [1, 3, 3])],
        outputs=[TensorSpec("output", "uint8", [1, "height", "width", 3])],
        image_input=False, warp=True, output_format="uint8", min_size=list(low), opt_size=[h, w],
        max_size=list(high), training_image_size=[h, w], trained_scale_range=list(ckpt.scale_range),
        source_checkpoint={"file": ckpt.path.name, "iteration": ckpt.iteration}, exporter="none (PyTorch checkpoint)",
        ingan_version=ingan.__version__,
    )


class TorchRunner(Runner):
    backend = "pytorch"

    def __init__(self, path: str | Path, device: str | None = None, threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-module thread pool
        ckpt = load_checkpoint(path)
        super().__init__(path, checkpoint_metadata(ckpt))
        self._device = torch_device(device)
        self.generator = ckpt.build_generator(self._device)
        pixels = torch.from_numpy(np.ascontiguousarray(ckpt.image)).to(self._device)
        self.image = pixels.permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)

    @property
    def device(self) -> str:
        return str(self._device)

    def _retarget(self, size: tuple[int, int], homography: np.ndarray | None,
                  image: np.ndarray | None) -> np.ndarray:
        h = None if homography is None else torch.from_numpy(homography).to(self._device)
        with torch.no_grad():
            y = self.generator(self.image, size, h)
            y = ((y.float() + 1.0) * 0.5 * 255.0).round().clamp(0, 255).to(torch.uint8)
        return y[0].permute(1, 2, 0).cpu().numpy()

    def _close(self) -> None:
        self.generator = None
        self.image = None
