"""A real (tiny, CPU) benchmark report shared by the report, compare and CLI tests."""

from __future__ import annotations

import pytest

TINY_SETTINGS = dict(warmup_iterations=1, warmup_seconds=None, iterations=3, duration_s=0.0)


@pytest.fixture(scope="session")
def tiny_models(default_export, tiny_checkpoint):
    out_dir, _ = default_export
    return out_dir / "model.onnx", out_dir / "model_fp16.onnx", tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_report(tiny_models):
    from ingan.bench.suite import BenchOptions, run_benchmark
    from ingan.bench.timing import Settings

    options = BenchOptions(sizes=[(40, 52), (64, 64)], device="cpu", settings=Settings(**TINY_SETTINGS))
    return run_benchmark(list(tiny_models), options, command=["test"])
