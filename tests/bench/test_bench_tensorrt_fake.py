"""The TensorRT bench path on a CPU: the real TrtRunner / TrtEngineSession / TrtProbe driven by
the CUDA and TensorRT fakes of tests/runtime/test_trt_backend.py, plus CUDA events.

What only a GPU can confirm (real event times, real graph replays) is in the GPU-marked
tests and benchmarks/gpu_check.py.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

FAKES = Path(__file__).resolve().parents[1] / "runtime" / "test_trt_backend.py"


def _load_fakes():
    pytest.importorskip("cuda.bindings", reason="the fakes use cuda-python's handle types")
    if not FAKES.is_file():
        pytest.skip("tests/runtime/test_trt_backend.py (the TensorRT fakes) is not there")
    spec = importlib.util.spec_from_file_location("_ingan_trt_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("FakeCudart", "FakeTrt", "Err", "write_model", "expected_output"):
        if not hasattr(module, name):
            pytest.skip(f"the TensorRT fakes changed (no {name})")
    return module


@pytest.fixture
def fakes(monkeypatch):
    fk = _load_fakes()

    class EventCudart(fk.FakeCudart):
        """The fakes run work synchronously at enqueue, so an event's time is the host time it was recorded."""

        def __init__(self) -> None:
            super().__init__()
            self.event_ms: dict[int, float] = {}

        def cudaEventCreate(self):  # noqa: N802 - CUDA's names
            handle = self._id()
            self.event_ms[handle] = 0.0
            return fk.Err.cudaSuccess, handle

        def cudaEventRecord(self, event, stream):  # noqa: N802
            assert self.capturing is None
            self.event_ms[event] = time.perf_counter() * 1e3
            return (fk.Err.cudaSuccess,)

        def cudaEventElapsedTime(self, start, end):  # noqa: N802
            return fk.Err.cudaSuccess, self.event_ms[end] - self.event_ms[start]

        def cudaEventDestroy(self, event):  # noqa: N802
            del self.event_ms[event]
            return (fk.Err.cudaSuccess,)

    import ingan.runtime.backends.trt as backend
    import ingan.runtime.cuda as cuda_mod
    import ingan.runtime.trt_session as session_mod

    cudart = EventCudart()
    trt = fk.FakeTrt(cudart)
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: cudart)  # cuda_device_info
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    monkeypatch.setattr(session_mod, "import_tensorrt", lambda lean: trt)
    monkeypatch.setattr(session_mod, "cuda_device_status", lambda: (True, ""))
    monkeypatch.setattr(backend, "import_cudart", lambda: cudart)
    monkeypatch.setattr(backend, "cuda_device_status", lambda: (True, ""))
    monkeypatch.setattr(backend, "_module_available", lambda name: True)
    monkeypatch.setattr(backend, "_load_module", lambda name: trt)
    return fk, trt, cudart


def _options(**kw):
    from ingan.bench.suite import BenchOptions
    from ingan.bench.timing import Settings

    return BenchOptions(sizes=[(16, 16), (20, 30)], settings=Settings(warmup_iterations=1, warmup_seconds=None,
                                                                      iterations=3, duration_s=0.0), **kw)


def test_tensorrt_cells_with_and_without_graphs(fakes, tmp_path):
    from ingan.bench import report
    from ingan.bench.suite import run_benchmark

    fk, trt, cudart = fakes
    trt.warp = True
    plan, _meta = fk.write_model(tmp_path, warp=True)
    rep = run_benchmark([plan], _options(backends=["tensorrt"]))
    assert report.validate_report(rep) == []
    cells = [c for c in rep["cells"] if c["status"] == "ok"]
    assert sorted((c["size"]["width"], c["cuda_graphs"]) for c in cells) == [(16, False), (16, True), (30, False),
                                                                           (30, True)]
    for cell in cells:
        assert cell["timer"] == "cuda-events" and cell["primary_metric"] == "gpu_compute_ms"
        m = cell["metrics"]
        for name in ("gpu_compute_ms", "h2d_ms", "d2h_ms", "latency_ms", "enqueue_ms", "host_latency_ms"):
            assert m[name]["count"] == 3 and 0 <= m[name]["min"] <= m[name]["median"] <= m[name]["max"], name
        # trtexec's Latency is H2D + GPU compute + D2H of each request
        assert m["latency_ms"]["mean"] == pytest.approx(
            m["h2d_ms"]["mean"] + m["gpu_compute_ms"]["mean"] + m["d2h_ms"]["mean"], abs=5e-6)
        assert cell["device"].startswith("cuda:0 (Fake GPU 9000") and cell["math"] == "tf32"  # INFO flags: TF32
        assert cell["cost"]["gflop"] is None  # the sibling .onnx is a placeholder: no analytic cost
    graph_cells = [c for c in cells if c["cuda_graphs"]]
    assert all("runner's own cache" in " ".join(c["notes"]) for c in graph_cells)
    assert cudart.device == {} and cudart.host == {} and cudart.graphs == {} and cudart.event_ms == {}


def test_probe_returns_the_engine_output(fakes, tmp_path):
    from ingan.bench.models import CellSpec, inspect_model
    from ingan.bench.probes import open_probe

    fk, trt, cudart = fakes
    plan, _meta = fk.write_model(tmp_path)
    model = inspect_model(plan)
    for graphs in (False, True):
        opened = open_probe(CellSpec(model, "tensorrt", (20, 30), graphs, "cuda"))
        try:
            np.testing.assert_array_equal(opened.probe.request(), fk.expected_output((20, 30))[0])
            sample = opened.probe.step()
            assert "h2d" not in sample  # no device inputs: nothing to copy in
            assert sample["latency"] == pytest.approx(sample["gpu_compute"] + sample["d2h"])
        finally:
            opened.probe.close()
        assert opened.cold_start["load_s"] > 0 and opened.cold_start["first_request_s"] > 0
    launches = [c for c in cudart.calls if c == "cudaGraphLaunch"]
    assert len(launches) == 2  # graphs on: the request and the step replayed the runner's graph


def test_uncapturable_engine_skips_the_graph_cell(fakes, tmp_path):
    from ingan.bench.suite import run_benchmark

    fk, trt, cudart = fakes
    trt.capturable = False
    plan, _meta = fk.write_model(tmp_path)
    rep = run_benchmark([plan], _options(backends=["tensorrt"]))
    by_graphs = {(c["size"]["width"], c["cuda_graphs"]): c for c in rep["cells"]}
    assert by_graphs[(16, False)]["status"] == "ok"
    assert by_graphs[(16, True)]["status"] == "skipped"
    assert "could not capture" in by_graphs[(16, True)]["reason"]
