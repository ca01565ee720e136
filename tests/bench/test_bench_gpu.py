"""GPU-only checks of the bench (markers: cuda / gpu / tensorrt; skipped elsewhere).

benchmarks/gpu_check.py runs these with `pytest -m "cuda or gpu or tensorrt"`. No speed is
asserted: only that the CUDA paths produce complete, consistent numbers.
"""

from __future__ import annotations

import pytest


def _options(**kw):
    from ingan.bench.suite import BenchOptions
    from ingan.bench.timing import Settings

    settings = Settings(warmup_iterations=2, warmup_seconds=None, iterations=5, duration_s=0.0)
    return BenchOptions(sizes=[(40, 52), (64, 64)], settings=settings, **kw)


def _check_gpu_cell(cell):
    m = cell["metrics"]
    assert cell["status"] == "ok", cell.get("reason")
    assert cell["timer"] == "cuda-events" and cell["primary_metric"] == "gpu_compute_ms"
    for name in ("gpu_compute_ms", "d2h_ms", "latency_ms", "enqueue_ms", "host_latency_ms"):
        s = m[name]
        assert s["count"] == 5 and 0 <= s["min"] <= s["median"] <= s["p99"] <= s["max"], name
    assert m["gpu_compute_ms"]["min"] > 0
    assert m["latency_ms"]["median"] >= m["gpu_compute_ms"]["median"]
    # the host waits for the copy back: its wall-clock covers compute + D2H (0.1 ms slack for timer skew)
    assert m["host_latency_ms"]["median"] + 0.1 >= m["latency_ms"]["median"]
    assert cell["memory"]["device_peak_mib"] is not None and cell["memory"]["device_peak_mib"] > 0
    assert cell["cost"]["achieved_tflops"] > 0


@pytest.mark.cuda
def test_torch_cuda_cells(tiny_checkpoint):
    from ingan.bench.report import validate_report
    from ingan.bench.suite import run_benchmark

    rep = run_benchmark([tiny_checkpoint], _options(device="cuda", any_size=True,
                                                    backends=["torch-fp32", "torch-fp16", "torch-bf16"]))
    assert validate_report(rep) == []
    cells = rep["cells"]
    assert len(cells) == 3 * 2 * 2  # backends x graphs on/off x sizes
    for cell in cells:
        _check_gpu_cell(cell)
        assert cell["math"] in ("tf32", "fp32", "fp16", "bf16")
        if cell["cuda_graphs"]:
            assert cell["cold_start"]["graph_capture_s"] > 0
    assert rep["environment"]["gpu"]["name"]


@pytest.mark.gpu
def test_environment_reads_the_gpu():
    from ingan.bench.env import environment

    env = environment()
    assert env["gpu"] and env["gpu"]["name"]
    assert env["cuda"] and env["cuda"].get("cuda_runtime")


@pytest.mark.gpu
def test_onnxruntime_cuda_cells(default_export):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    from ingan.bench.suite import run_benchmark

    out_dir, _ = default_export
    rep = run_benchmark([out_dir / "model.onnx"], _options(device="cuda", backends=["ort-cuda"]))
    for cell in rep["cells"]:
        assert cell["status"] == "ok", cell.get("reason")
        assert cell["timer"] == "wall-clock" and cell["metrics"]["gpu_compute_ms"] is None


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_cells_on_a_real_engine(tiny_checkpoint, tmp_path):
    from ingan.bench.suite import run_benchmark
    from ingan.export.pipeline import ExportOptions, export_checkpoint

    result = export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=tmp_path, fp16=True, min_size=(16, 16),
                                                              max_size=(96, 120), engine="require"))
    plans = [p for p in result.artifacts if p.suffix == ".plan"]
    assert len(plans) == 2
    rep = run_benchmark(plans, _options(device="cuda", backends=["tensorrt"]))
    cells = rep["cells"]
    assert len(cells) == 2 * 2 * 2  # plans x graphs x sizes
    for cell in cells:
        _check_gpu_cell(cell)
        assert cell["cost"]["gflop"] > 0  # config read from the sibling .onnx
