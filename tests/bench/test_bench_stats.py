"""trtexec's statistics, checked against its formula on known inputs (sampleReporting.cpp)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ingan.bench.stats import Summary, summarize, trtexec_exclude, trtexec_median, trtexec_percentile


def reference_percentile(values, p):
    """trtexec's findPercentile written independently with numpy float32 scalars."""
    data = sorted(values)
    n = len(data)
    exclude = int((np.float32(1) - np.float32(p) / np.float32(100)) * np.float32(n))
    return data[max(n - 1 - exclude, 0)]


def test_hundred_samples_float32_picks():
    values = [float(v) for v in range(1, 101)]
    # float32: p90 excludes 10 -> sorted[89]; float64 arithmetic would exclude 9 -> 91
    assert trtexec_percentile(values, 90) == 90.0
    assert trtexec_percentile(values, 95) == 95.0
    # float32: (1 - 0.99f) * 100 = 0.999999 -> exclude 0: p99 is the max (float64 gives 1.0000000000000009)
    assert trtexec_exclude(99, 100) == 0
    assert trtexec_percentile(values, 99) == 100.0
    assert trtexec_median(values) == 50.5


def test_ten_samples_differ_from_float64():
    values = [float(v) for v in range(10, 0, -1)]  # unsorted input to Summary, sorted inside
    s = Summary.of(values)
    # float32: 1 - 0.9f = 0.100000024 -> x10 = 1.0000002 -> exclude 1 -> sorted[8] = 9
    # (float64 gives 0.9999999999999998 -> exclude 0 -> the max, 10)
    assert s.p90 == 9.0
    assert s.p95 == 10.0 and s.p99 == 10.0
    assert s.median == 5.5 and s.min == 1.0 and s.max == 10.0 and s.count == 10
    assert s.mean == 5.5
    assert s.std == pytest.approx(math.sqrt(8.25))  # population std (divide by N), as trtexec
    assert s.cv_percent == pytest.approx(math.sqrt(8.25) / 5.5 * 100)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 19, 20, 99, 100, 101, 1000, 1234])
@pytest.mark.parametrize("p", [0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0])
def test_matches_independent_float32_reference(n, p):
    rng = np.random.default_rng(n)
    values = list(rng.random(n))
    assert trtexec_percentile(sorted(values), p) == reference_percentile(values, p)


def test_odd_median_and_single_value():
    assert trtexec_median([1.0, 2.0, 7.0]) == 2.0
    s = Summary.of([4.2])
    assert (s.min, s.median, s.p90, s.p99, s.max, s.std) == (4.2, 4.2, 4.2, 4.2, 4.2, 0.0)


def test_edge_cases():
    assert trtexec_percentile([], 90) == math.inf and trtexec_median([]) == math.inf  # as trtexec
    with pytest.raises(ValueError):
        trtexec_percentile([1.0], 101)
    with pytest.raises(ValueError):
        Summary.of([])
    with pytest.raises(ValueError):
        Summary.of([1.0, float("nan")])
    assert summarize(None) is None and summarize([]) is None


def test_summary_round_trip():
    s = Summary.of([3.0, 1.0, 2.0, 5.0])
    d = s.to_dict()
    assert list(d) == ["count", "min", "mean", "median", "p90", "p95", "p99", "max", "std", "cv_percent"]
    assert Summary.from_dict(d) == Summary.from_dict(s.to_dict())
    assert d["min"] <= d["median"] <= d["p90"] <= d["p95"] <= d["p99"] <= d["max"]
