"""Device names (ingan/devices.py) resolved for PyTorch: the one home for every torch user
(training, the reference backend, export checks, metrics)."""

from __future__ import annotations

import torch

from ingan.devices import check_device_name
from ingan.errors import DeviceError


def torch_device(name: str | torch.device | None = "auto") -> torch.device:
    """auto -> cuda when torch sees a GPU, else cpu; an explicit CUDA request must be satisfiable."""
    if isinstance(name, torch.device):
        name = str(name)
    text = check_device_name(name or "auto")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {text}: CUDA is not available to torch here (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}); use --device cpu"
        )
    device = torch.device(text)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) present "
                          f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device
