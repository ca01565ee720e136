"""What every probe is, and the small helpers the backends' probes share."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from ingan.errors import InganError
from ingan.metadata import ModelMetadata

log = logging.getLogger(__name__)


class Probe:
    """One loaded model variant at one size. `step()` serves one request and times it (ms)."""

    timer = "wall-clock"
    math_mode = "fp32"

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.device = "cpu"

    def step(self) -> dict[str, float]:
        raise NotImplementedError

    def memory(self) -> dict[str, Any]:
        return {"device_peak_mib": None, "device_method": None}

    def close(self) -> None:
        pass


class CaptureError(InganError):
    """A CUDA graph could not be captured for this model (the cell is skipped, not failed)."""


def request_inputs(meta: ModelMetadata) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(image HxWx3 uint8 or None, homography 3x3 or None) a request to this model carries."""
    image = None
    if meta.image_input:
        h, w = meta.training_image_size
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    homography = np.eye(3, dtype=np.float32) if meta.warp else None
    return image, homography


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def close_quietly(probe: Probe) -> None:
    try:
        probe.close()
    except Exception:  # noqa: BLE001 - a teardown error must not hide the measurement
        log.debug("closing the probe failed", exc_info=True)
