"""The one device grammar of every command: auto, cpu, cuda or cuda:N (no torch here).

`auto` (every command's default) means the first CUDA GPU where one is usable, else the CPU.
Resolving a name against what this machine has is the backends' job (ingan/model/device.py
for PyTorch, the runtime backends for ONNX Runtime and TensorRT).
"""

from __future__ import annotations

import re

from ingan.errors import OptionError

DEVICE_HELP = "auto, cpu, cuda or cuda:N (auto: the GPU where one is usable, else the CPU)"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """`name`, normalised (lower case, trimmed), if it is a device this project understands."""
    text = str(name).strip().lower()
    if not _DEVICE.match(text):
        raise OptionError(f"unknown device '{name}'; use {DEVICE_HELP}")
    return text


def cuda_index(name: str | None) -> int | None:
    """'cuda:2' -> 2; 'cuda', 'auto', 'cpu' or None -> None."""
    if name is None:
        return None
    text = check_device_name(name)
    return int(text.split(":")[1]) if text.startswith("cuda:") else None


def wants_cuda(name: str | None) -> bool:
    return name is not None and check_device_name(name).startswith("cuda")
