"""Output colour calibration: one gain and offset per channel after the generator's tanh.

Why (a deviation from the paper, docs/model.md): the discriminator normalises every image
per channel (train-mode batch norm at batch 1, i.e. instance norm), so it is nearly blind
to a global colour offset or gain of G's output; only the 0.1-weighted reconstruction loss
pins global colour, and an undertrained generator's colour wanders from snapshot to
snapshot (benchmarks/results/2026-11-27-cpu-colour-drift: channel means off by up to 3
grey levels, contrast 85-116%). The calibration is fitted in closed form on the training
image alone, the only data a per-image model has: the identity retarget G(x, size(x)) is
given the training image's per-channel mean and standard deviation. The same six numbers
then apply to every output size and shape, and travel into the exported ONNX graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ingan.errors import ConfigError

# A fitted gain outside this range means the generator is far from reproducing its
# image (an early or broken snapshot): the gain is clamped rather than amplifying noise.
GAIN_RANGE = (0.5, 2.0)
METHOD = "identity-retarget mean/std match"


@dataclass(frozen=True)
class ColourCalibration:
    """out = clamp(gain * tanh_output + offset, -1, 1) per RGB channel, in [-1, 1] units."""

    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    fitted_at_iteration: int = 0

    def __post_init__(self) -> None:
        values = (*self.gain, *self.offset)
        if len(self.gain) != 3 or len(self.offset) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise ConfigError(f"invalid colour calibration {self}: need three finite gains and three finite offsets")
        lo, hi = GAIN_RANGE
        if not all(lo <= g <= hi for g in self.gain) or not all(abs(o) <= 2.0 for o in self.offset):
            raise ConfigError(
                f"invalid colour calibration {self}: gains must lie in [{lo}, {hi}] and offsets in [-2, 2]"
            )
        if not isinstance(self.fitted_at_iteration, int) or self.fitted_at_iteration < 0:
            raise ConfigError(f"invalid colour calibration {self}: fitted_at_iteration must be an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"gain": [float(g) for g in self.gain], "offset": [float(o) for o in self.offset],
                "fitted_at_iteration": self.fitted_at_iteration, "method": METHOD}

    def describe(self) -> str:
        """For people: the six numbers in grey levels, with what they do."""
        gains = "/".join(f"{g:.3f}" for g in self.gain)
        offsets = "/".join(f"{o * 127.5:+.1f}" for o in self.offset)
        return f"gain {gains}, offset {offsets} grey levels (R/G/B; out = gain x (raw - 127.5) + 127.5 + offset)"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ColourCalibration":
        try:
            gain, offset = data["gain"], data["offset"]
            iteration = data.get("fitted_at_iteration", 0)
            if not isinstance(gain, (list, tuple)) or not isinstance(offset, (list, tuple)):
                raise TypeError("gain and offset must be lists")
            return cls(tuple(gain), tuple(offset), iteration)  # type: ignore[arg-type]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"invalid colour calibration {dict(data) if isinstance(data, Mapping) else data!r} "
                              f"({exc})") from None


def fit_from_moments(
    target_mean: list[float], target_std: list[float], raw_mean: list[float], raw_std: list[float],
    iteration: int = 0,
) -> ColourCalibration:
    """Gain/offset giving the raw channel moments the target's (gain clamped to GAIN_RANGE)."""
    lo, hi = GAIN_RANGE
    gain = tuple(min(max(t / max(r, 1e-6), lo), hi) for t, r in zip(target_std, raw_std))
    offset = tuple(min(max(tm - g * rm, -2.0), 2.0) for tm, g, rm in zip(target_mean, gain, raw_mean))
    return ColourCalibration(gain, offset, iteration)  # type: ignore[arg-type]
