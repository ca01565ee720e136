"""Images <-> the generator's tensors: the one home of both conversions.

The generator works on [N, 3, H, W] float in [-1, 1]; images are HxWx3 uint8 RGB. The
uint8 side rounds like the original InGAN (and like the exported graph's Cast): (x + 1) *
127.5, rounded, clamped to [0, 255]. Training, export validation, the PyTorch reference
backend and the bench all use these, so their pixels agree exactly.
"""

from __future__ import annotations

import numpy as np
import torch


def image_to_tensor(pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 -> [1, 3, H, W] float32 in [-1, 1] on `device`."""
    t = torch.from_numpy(np.ascontiguousarray(pixels)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)


def to_uint8(t: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] (any float dtype) -> [N, H, W, 3] uint8, on the same device."""
    return ((t.detach().float() + 1.0) * 127.5).round().clamp(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> (H, W, 3) uint8 numpy array (on the host)."""
    return to_uint8(t)[0].cpu().numpy()
