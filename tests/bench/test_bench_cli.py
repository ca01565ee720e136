"""ingan-bench on the command line: a real CPU run, compare, and every bad input."""

from __future__ import annotations

import pytest
import json
import shutil
import subprocess
import sys
import textwrap

from click.testing import CliRunner

from ingan.bench import report
from ingan.bench.cli import main

FAST = ["--warmup", "1", "--iterations", "2", "--duration", "0"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, text, code=1):
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.strip().splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and text in errors[0], result.output


def test_help():
    result = run("--help")
    assert result.exit_code == 0
    assert "ingan-bench MODEL [MODEL ...]" in result.output and "compare" in result.output
    result = run("run", "--help")
    assert result.exit_code == 0 and "--cuda-graphs" in result.output and "--peak-tflops" in result.output
    assert run("compare", "--help").exit_code == 0


@pytest.mark.slow
def test_cpu_run_writes_json_markdown_and_plot(tiny_models, tmp_path):
    onnx_path, fp16_path, ckpt = tiny_models
    out = tmp_path / "out"
    result = run(onnx_path, fp16_path, ckpt, "--size", "52x40,64x64", *FAST, "-o", out)
    assert result.exit_code == 0, result.output
    assert "PASSED: 6 cells measured, 0 skipped, 0 failed" in result.output
    assert "| model | backend |" in result.output  # the table is printed too
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    data = report.load_report(out / "bench.json")
    assert data["command"][0] == "ingan-bench"
    assert {c["backend"] for c in data["cells"]} == {"ort-cpu", "torch-fp32"}
    assert (out / "bench.md").read_text().startswith("# ingan-bench report")


@pytest.mark.slow
def test_explicit_run_subcommand_default_out_dir_and_name(tiny_models, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    for path in (tiny_models[0], tiny_models[0].with_name("model.onnx.json")):
        shutil.copy(path, models)
    result = run("run", models / "model.onnx", "--size", "52x40", *FAST, "--name", "cpu", "--no-plot", "-q")
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in models.iterdir() if p.name.startswith("bench-")]  # beside the model
    assert sorted(p.name for p in folder.iterdir()) == ["cpu.json", "cpu.md"]
    assert "| model |" not in result.output  # -q: no table


def test_compare_command(tiny_models, tmp_path):
    a = tmp_path / "a"
    assert run(tiny_models[0], "--size", "52x40", *FAST, "-o", a, "-q", "--no-plot").exit_code == 0
    data = json.loads((a / "bench.json").read_text())
    for cell in data["cells"]:
        for summary in cell["metrics"].values():
            if summary:
                for key in ("min", "mean", "median", "p90", "p95", "p99", "max"):
                    summary[key] *= 3
    (tmp_path / "b.json").write_text(json.dumps(data))
    result = run("compare", a / "bench.json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    assert "| model.onnx | ort-cpu | fp32 | off | 52x40 |" in result.output
    assert result.output.count("|") % 9 == 0  # every table line has 8 cells: keys do not leak their '|'
    assert "| 3 |" in result.output and "geometric mean of B/A: 3" in result.output
    one_line_error(run("compare", a / "bench.json", tmp_path / "missing.json"), "does not exist")
    (tmp_path / "bad.json").write_text("[1, 2]")
    one_line_error(run("compare", a / "bench.json", tmp_path / "bad.json"), "not a valid ingan-bench report")


def test_unknown_backend_and_bad_sizes_are_usage_errors(tiny_models):
    result = run(tiny_models[0], "--backends", "ort-cpu,onnx-gpu")
    assert result.exit_code == 2 and "unknown backend(s) onnx-gpu; choose from tensorrt" in result.output
    for bad in ("640by360", "640x", "0x360", ",", "640x360,abc"):
        result = run(tiny_models[0], "--size", bad)
        assert result.exit_code == 2 and "Invalid value for '--size'" in result.output, bad
    result = run(tiny_models[0], "--warmup", "soon")
    assert result.exit_code == 2 and "not a warm-up" in result.output
    result = run(tiny_models[0], "--duration", "-1")
    assert result.exit_code == 2
    for bad in ("0", "-1", "nan"):
        result = run(tiny_models[0], "--peak-tflops", bad)
        assert result.exit_code == 2 and "Invalid value for '--peak-tflops'" in result.output, bad
    for bad in ("", "../evil", "a/b", ".hidden"):
        result = run(tiny_models[0], "--name", bad)
        assert result.exit_code == 2 and "is not a plain file stem" in result.output, bad


def test_backend_with_no_model_of_its_kind_is_refused(tiny_models, tmp_path):
    out = tmp_path / "o"
    result = run(tiny_models[0], "--backends", "tensorrt", "-o", out, "-q")
    one_line_error(result, "--backends tensorrt runs tensorrt models (.plan/.engine) and none was given")
    assert not out.exists()


def test_same_model_twice_is_measured_once(tiny_models, tmp_path):
    out = tmp_path / "o"
    result = run(tiny_models[0], tiny_models[0], "--backends", "ort-cpu", "--size", "64x64", *FAST,
                 "--time-budget", "60m", "-o", out, "-q", "--no-plot")
    assert result.exit_code == 0, result.output
    assert len(report.load_report(out / "bench.json")["cells"]) == 1
    again = run(tiny_models[0], "--backends", "ort-cpu", "--size", "64x64", *FAST, "-o", out, "-q", "--no-plot")
    assert again.exit_code == 0 and "exists and will be replaced" in again.output


def test_zero_time_budget_starts_no_cell(tiny_models, tmp_path):
    result = run(tiny_models[0], "--backends", "ort-cpu", "--size", "64x64", *FAST, "--time-budget", "0",
                 "-o", tmp_path / "o", "-q", "--no-plot")
    assert result.exit_code == 1 and "0 cells measured, 1 skipped" in result.output
    assert "skipped 1 cell: " in result.output  # -q still says why (the table is not printed)


def test_unreadable_models(tiny_models, tmp_path):
    one_line_error(run(tmp_path / "missing.onnx", "-q"), "does not exist")
    one_line_error(run(tmp_path, "-q"), "is not a file")
    (tmp_path / "weights.bin").write_bytes(b"x")
    one_line_error(run(tmp_path / "weights.bin", "-q"), "cannot tell the model type")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    one_line_error(run(junk, "-q"), "not found; it is written by ingan-export")  # no sidecar
    shutil.copy(str(tiny_models[0]) + ".json", str(junk) + ".json")
    one_line_error(run(junk, "-q"), "does not match its metadata")  # checksum differs
    bad_ckpt = tmp_path / "ckpt.pt"
    bad_ckpt.write_text("hello")
    one_line_error(run(bad_ckpt, "-q"), "ckpt.pt")
    out = tmp_path / "never"
    one_line_error(run(tiny_models[0], tmp_path / "missing.onnx", "-o", out, "-q"), "does not exist")
    assert not out.exists()  # checked before anything ran or was written


def test_a_size_no_model_accepts_is_refused_before_any_work(tiny_models, tmp_path):
    result = run(tiny_models[0], "--size", "1920x1080", *FAST, "-o", tmp_path / "o", "-q", "--no-plot")
    assert result.exit_code == 2, result.output
    assert "--size 1920x1080 is outside the range of every model given (model.onnx: 16x16 .. 120x96" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_size_only_some_models_accept_runs_on_those(tiny_models, tmp_path):
    onnx_path, _, ckpt = tiny_models  # the checkpoint's trained range is narrower than the export's
    result = run(onnx_path, ckpt, "--size", "120x96", "--backends", "ort-cpu,torch-fp32", *FAST,
                 "-o", tmp_path / "o", "-q", "--no-plot")
    assert result.exit_code == 0, result.output
    data = report.load_report(tmp_path / "o" / "bench.json")
    skipped = [c for c in data["cells"] if c["status"] == "skipped"]
    assert skipped and all("outside the model's range" in c["reason"] for c in skipped)
    assert "skipped 1 cell: size 120x96 is outside the model's range" in result.output


def test_sizes_repeat_and_the_old_spelling_still_works(tiny_models, tmp_path):
    result = run(tiny_models[0], "--size", "52x40", "--size", "64x48,52x40", "--backends", "ort-cpu", *FAST,
                 "-o", tmp_path / "a", "-q", "--no-plot")
    assert result.exit_code == 0, result.output
    assert report.load_report(tmp_path / "a" / "bench.json")["settings"]["sizes"] == ["52x40", "64x48"]
    old = run(tiny_models[0], "--sizes", "52x40", "--backends", "ort-cpu", *FAST, "-o", tmp_path / "b", "-q",
              "--no-plot")
    assert old.exit_code == 0 and "--sizes is now spelt --size" in old.output


def test_device_cuda_without_gpu(tiny_models):
    import pytest

    from ingan.runtime.cuda import cuda_device_status

    if cuda_device_status()[0]:
        pytest.skip("this machine has a GPU")
    one_line_error(run(tiny_models[0], "--size", "52x40", "--device", "cuda", "-q"), "--device cuda: no CUDA backend")


@pytest.mark.slow
def test_onnx_only_run_never_imports_torch(tiny_models, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from ingan.bench.cli import main
        try:
            main([{str(tiny_models[0])!r}, "--size", "52x40", "--warmup", "1", "--iterations", "2",
                  "--duration", "0", "-o", {str(tmp_path / 'o')!r}, "-q"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        heavy = [m for m in ("torch", "tensorrt", "tensorrt_lean") if m in sys.modules]
        assert heavy == [], heavy
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr + proc.stdout
    assert (tmp_path / "o" / "bench.png").exists()
