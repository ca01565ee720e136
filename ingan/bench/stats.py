"""Summary statistics computed exactly the way trtexec computes them (no numpy needed).

trtexec (TensorRT `samples/common/sampleReporting.cpp`, unchanged from 8.x to 11.x):

- sort ascending;
- percentile p: `exclude = int((1 - p / 100) * N)` evaluated in *float32* (p is a
  `float`, so the whole expression is single precision), value = `sorted[max(N - 1 -
  exclude, 0)]`: no interpolation. Float32 rounding matters: with N = 100, p99 gives
  exclude 0, i.e. the maximum, and p90 gives index 89 (float64 arithmetic would give 90);
- median: the middle value, or the mean of the two middle values for even N;
- coefficient of variation: population standard deviation (divide by N) over the mean,
  in percent (`findCoeffOfVariance`).

trtexec accumulates its mean and variance in float32; we use float64 for those (the
difference is far below a timer's resolution). The *selection* of percentile elements
is emulated bit for bit, since that is where float32 changes which sample is reported.
"""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

PERCENTILES = (90.0, 95.0, 99.0)


def _f32(value: float) -> float:
    """Round a Python float to the nearest float32 (what a C++ `float` holds)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def trtexec_exclude(percentile: float, count: int) -> int:
    """`static_cast<int32_t>((1 - percentile / 100) * all)` with float32 arithmetic."""
    p = _f32(percentile)
    fraction = _f32(1.0 - _f32(p / 100.0))
    return int(_f32(fraction * _f32(float(count))))  # int() truncates toward zero like static_cast


def trtexec_percentile(sorted_values: Sequence[float], percentile: float) -> float:
    """trtexec's `findPercentile` on an ascending sequence; inf for an empty one (as trtexec)."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile {percentile} is not in [0, 100]")
    count = len(sorted_values)
    if count == 0:
        return math.inf
    return float(sorted_values[max(count - 1 - trtexec_exclude(percentile, count), 0)])


def trtexec_median(sorted_values: Sequence[float]) -> float:
    """trtexec's `findMedian` on an ascending sequence."""
    count = len(sorted_values)
    if count == 0:
        return math.inf
    middle = count // 2
    if count % 2:
        return float(sorted_values[middle])
    return (float(sorted_values[middle - 1]) + float(sorted_values[middle])) / 2


@dataclass(frozen=True)
class Summary:
    """One metric over the timed iterations (milliseconds for times)."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float  # population standard deviation (divide by N), as trtexec's coefficient of variation
    cv_percent: float  # std / mean * 100 (trtexec warns above 1 % for GPU Compute Time)

    @classmethod
    def of(cls, values: Iterable[float]) -> "Summary":
        data = sorted(float(v) for v in values)
        if not data:
            raise ValueError("cannot summarise an empty series")
        if any(not math.isfinite(v) for v in data):
            raise ValueError("timings must be finite numbers")
        n = len(data)
        mean = math.fsum(data) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / n)
        cv = std / mean * 100.0 if mean != 0 else math.inf
        p90, p95, p99 = (trtexec_percentile(data, p) for p in PERCENTILES)
        return cls(count=n, min=data[0], mean=mean, median=trtexec_median(data), p90=p90, p95=p95, p99=p99,
                   max=data[-1], std=std, cv_percent=cv)

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = value if isinstance(value, int) or not math.isfinite(value) else round(value, digits)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Summary":
        return cls(**{key: data[key] for key in SUMMARY_FIELDS})


SUMMARY_FIELDS = ("count", "min", "mean", "median", "p90", "p95", "p99", "max", "std", "cv_percent")


def summarize(values: Iterable[float] | None) -> Summary | None:
    """Summary of a series, or None for a metric this backend does not measure."""
    if values is None:
        return None
    data = list(values)
    return Summary.of(data) if data else None
