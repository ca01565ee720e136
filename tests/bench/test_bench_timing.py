"""The measurement loop, cell planning and the CUDA/TensorRT API names the harness calls (no GPU needed)."""

from __future__ import annotations

import pytest

from ingan.bench import timing
from ingan.bench.models import Availability, inspect_model, label_models, parse_backends, plan_cells
from ingan.errors import ConfigError


class FakeClock:
    def __init__(self, step_s: float) -> None:
        self.now = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.now

    def step(self) -> dict[str, float]:
        self.now += self.step_s
        return {"latency": self.step_s * 1e3, "host_latency": self.step_s * 1e3}


def test_iterations_and_duration_are_both_minimums():
    clock = FakeClock(0.1)
    # at least 3 requests AND at least 1 s: 10 requests of 0.1 s
    m = timing.measure(clock.step, timing.Settings(warmup_seconds=0.25, iterations=3, duration_s=1.0), clock=clock)
    assert m.warmup_iterations == 3 and len(m.samples) == 10 and not m.truncated
    assert m.wall_s == pytest.approx(1.0)
    clock = FakeClock(0.1)
    m = timing.measure(clock.step, timing.Settings(warmup_iterations=2, warmup_seconds=None, iterations=20,
                                                   duration_s=0.5), clock=clock)
    assert m.warmup_iterations == 2 and len(m.samples) == 20


def test_max_iterations_and_deadline():
    clock = FakeClock(0.1)
    m = timing.measure(clock.step, timing.Settings(warmup_seconds=0, iterations=2, duration_s=100,
                                                   max_iterations=5), clock=clock)
    assert len(m.samples) == 5
    clock = FakeClock(0.1)
    m = timing.measure(clock.step, timing.Settings(warmup_seconds=0.2, iterations=50, duration_s=0),
                       deadline=0.65, clock=clock)
    assert m.truncated and 1 <= len(m.samples) < 50
    clock = FakeClock(1.0)  # already past the deadline: still one timed request, so the cell has a number
    m = timing.measure(clock.step, timing.Settings(warmup_seconds=5, iterations=10, duration_s=0),
                       deadline=-1, clock=clock)
    assert m.warmup_iterations == 0 and len(m.samples) == 1 and m.truncated


def test_settings_validation():
    with pytest.raises(ConfigError):
        timing.Settings(iterations=0)
    with pytest.raises(ConfigError):
        timing.Settings(duration_s=-1)
    with pytest.raises(ConfigError):
        timing.Settings(iterations=5, max_iterations=2)


@pytest.mark.parametrize("text,expected", [("5", (5, None)), ("0", (0, None)), ("200ms", (None, 0.2)),
                                           ("2s", (None, 2.0)), ("1.5m", (None, 90.0))])
def test_parse_warmup(text, expected):
    assert timing.parse_warmup(text) == expected


@pytest.mark.parametrize("text", ["", "x", "5 iterations", "-1", "2h"])
def test_parse_warmup_rejects(text):
    with pytest.raises(ValueError, match="not a warm-up"):
        timing.parse_warmup(text)


@pytest.mark.parametrize("text,expected", [("3", 3.0), ("0", 0.0), (" 2.5 ", 2.5), ("500ms", 0.5), ("3s", 3.0),
                                           ("2M", 120.0)])
def test_parse_seconds(text, expected):
    assert timing.parse_seconds(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,match", [("", "not a duration"), ("x", "not a duration"), ("1h", "not a duration"),
                                        ("-1s", "not a duration"), ("-1", "must not be negative")])
def test_parse_seconds_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        timing.parse_seconds(text)


def test_parse_backends():
    assert parse_backends("all") is None and parse_backends(None) is None
    assert parse_backends(" ort-cpu, torch-fp32,ort-cpu ") == ["ort-cpu", "torch-fp32"]
    with pytest.raises(ConfigError, match="unknown backend.*ort-gpu.*choose from tensorrt"):
        parse_backends("ort-cpu,ort-gpu")


@pytest.mark.slow
def test_plan_cells_on_this_machine(tiny_models):
    onnx_path, _fp16, ckpt = tiny_models
    models = [inspect_model(onnx_path), inspect_model(ckpt)]
    label_models(models)
    avail = Availability(device="cpu")
    sizes = [(40, 52), (96, 120)]  # the second is outside the checkpoint's trained range
    cells, skipped = plan_cells(models, sizes, None, "both", avail)
    assert [(c.model.label, c.backend, c.size, c.cuda_graphs) for c in cells] == [
        ("model.onnx", "ort-cpu", (40, 52), False), ("model.onnx", "ort-cpu", (96, 120), False),
        ("ckpt.pt", "torch-fp32", (40, 52), False)]
    assert len(skipped) == 1 and "outside the model's range" in skipped[0]["reason"]
    # asked for by name but impossible here: recorded as skipped with the reason
    cells, skipped = plan_cells(models, sizes[:1], ["ort-cuda", "torch-fp16", "ort-cpu"], "both", avail)
    assert [c.backend for c in cells] == ["ort-cpu"]
    reasons = {s["backend"]: s["reason"] for s in skipped}
    assert "needs CUDA" in reasons["ort-cuda"] and "needs CUDA" in reasons["torch-fp16"]


def test_inspect_model_errors(tmp_path, tiny_models):
    with pytest.raises(Exception, match="does not exist"):
        inspect_model(tmp_path / "missing.onnx")
    with pytest.raises(Exception, match="is not a file"):
        inspect_model(tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ConfigError, match="cannot tell the model type"):
        inspect_model(tmp_path / "m.txt")
    info = inspect_model(tiny_models[0])
    assert info.kind == "onnx" and info.config is not None and info.to_dict()["size_range"]["max"] == "120x96"


# Every CUDA runtime call the bench makes itself (the TensorRT probe's events, the memory and
# environment readings), checked against cuda-bindings (imports without a GPU). The session's
# calls, cudaEventRecord included, are checked by tests/export/test_tensorrt_api.py.
CUDART_CALLS = ("cudaEventCreate", "cudaEventElapsedTime", "cudaEventDestroy", "cudaStreamSynchronize",
                "cudaMemGetInfo", "cudaDriverGetVersion", "cudaRuntimeGetVersion")


def test_cuda_runtime_names_exist():
    from ingan.runtime.cuda import import_cudart

    cudart = import_cudart()
    if cudart is None:
        pytest.skip("cuda-bindings not installed")
    missing = [name for name in CUDART_CALLS if not hasattr(cudart, name)]
    assert missing == []


def test_trt_session_has_what_the_probe_uses():
    """TrtProbe drives TrtEngineSession through its public API only; fail here, not on a GPU."""
    import ast
    import importlib
    from pathlib import Path

    from ingan.bench.probes.trt import TrtProbe
    from ingan.runtime.trt_session import TrtEngineSession

    # The session's modules (ingan/runtime/trt_engine.py before issue 18 split it); the rule
    # for every module in the package is tests/test_private_imports.py.
    session_modules = {f"ingan.runtime.{name}" for name in ("cuda", "trt_helpers", "trt_io", "trt_graphs", "trt_session")}
    for name in TrtProbe._NEEDED:
        assert hasattr(TrtEngineSession, name), name
    bench = Path(timing.__file__).parent
    for path in sorted(bench.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in session_modules:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert private == [], f"{path.name} imports {private} from {node.module}"
                module = importlib.import_module(node.module)
                assert all(hasattr(module, a.name) for a in node.names), path.name
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                owner = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                assert owner != "session", f"{path.name}:{node.lineno} uses session.{node.attr}"
