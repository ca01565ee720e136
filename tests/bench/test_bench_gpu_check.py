"""benchmarks/gpu_check.py: its CPU-safe flow (--cpu-smoke) on the tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ingan.bench import report

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("_ingan_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_smoke_flow(gpu_check, tiny_models, tmp_path):
    onnx_path, fp16_path, ckpt = tiny_models
    out = tmp_path / "check"
    rc = gpu_check.main([str(out), "--cpu-smoke", "--no-tests", "--model", str(onnx_path), "--model",
                         str(fp16_path), "--model", str(ckpt), "--size", "52x40,64x64", "--time-cap", "120"])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "bench.md", "bench.png", "gpu_check.log"]
    assert len(files) <= 8 and not any(p.is_dir() for p in out.iterdir())
    data = report.load_report(out / "bench.json")
    assert sum(c["status"] == "ok" for c in data["cells"]) == 6
    log = (out / "gpu_check.log").read_text()
    assert "CPU smoke run" in log and "PASSED: 6 cells measured" in log


def test_refuses_without_a_gpu(gpu_check, tmp_path, capsys):
    if gpu_check.cuda_status()[0]:
        pytest.skip("this machine has a GPU")
    assert gpu_check.main([str(tmp_path / "x")]) == 2
    assert "--cpu-smoke" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pytest_step_selects_the_gpu_markers(gpu_check):
    command = gpu_check.pytest_command()
    assert command[1:5] == ["-m", "pytest", "-m", "cuda or gpu or tensorrt"]
    assert command[-1].endswith("tests")


@pytest.mark.slow
def test_merge_keeps_both_passes(gpu_check, tiny_report):
    first = dict(tiny_report, cells=tiny_report["cells"][:2])
    second = dict(tiny_report, cells=tiny_report["cells"][1:4])
    merged = gpu_check.merge(first, second)
    assert [c["key"] for c in merged["cells"]] == [c["key"] for c in tiny_report["cells"][:4]]
    assert report.validate_report(merged) == []
