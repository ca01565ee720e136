"""ingan-export on the command line, and every bad input the issue lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ingan.export.cli import main
from ingan.metadata import ModelMetadata, sidecar_path
from ingan.model.checkpoint import FORMAT_VERSION, load_checkpoint
from clitest import one_line_error, usage_error


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help():
    result = run("--help")
    assert result.exit_code == 0 and "--fp16" in result.output and "--engine / --no-engine" in result.output


@pytest.mark.slow
def test_cli_export_explains_missing_tensorrt(tiny_checkpoint, tmp_path):
    result = run(tiny_checkpoint, "-o", tmp_path, "--min-size", "16x16", "--max-size", "80x64")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "model.onnx" in result.output and "PASSED" in result.output
    assert "no TensorRT engine built" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.slow
def test_fp16_export_never_runs_half_convolutions_on_the_cpu(tiny_checkpoint, tmp_path, no_half_cpu_convolutions):
    result = run(tiny_checkpoint, "-o", tmp_path, "--fp16", "--min-size", "16x16", "--max-size", "80x64")
    assert result.exit_code == 0, result.output
    # Progress names each size and check; the FP16 arithmetic check ran, emulated.
    assert "checking the fp16 graph in ONNX Runtime against PyTorch at" in result.output
    assert "checking fp16 arithmetic in PyTorch (emulated) at" in result.output
    meta = ModelMetadata.read(sidecar_path(tmp_path / "model_fp16.onnx"))
    assert meta.validation["fp16_arithmetic"].startswith("emulated")
    assert len(meta.validation["fp16_emulation"]) == len(meta.validation["checks"]) == 3
    assert all(c["passed"] and c["psnr_db"] >= 40 for c in meta.validation["fp16_emulation"])


@pytest.mark.slow
def test_engine_flag_requires_tensorrt(tiny_checkpoint, tmp_path):
    result = run(tiny_checkpoint, "-o", tmp_path, "--engine", "-q")
    one_line_error(result, "--engine: cannot build a TensorRT engine: the 'tensorrt' package is not installed")
    assert list(tmp_path.iterdir()) == []  # checked before exporting anything


def _no_files(folder):
    return [p.name for p in folder.iterdir()] if folder.exists() else []


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    one_line_error(run(junk, "-o", tmp_path / "o"), "not a PyTorch checkpoint")
    assert _no_files(tmp_path / "o") == []


def test_missing_checkpoint(tmp_path):
    one_line_error(run(tmp_path / "nope.pt"), "does not exist")


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    one_line_error(run(broken, "-o", tmp_path / "o"), "truncated, corrupt")


@pytest.mark.slow
def test_newer_checkpoint_format(tiny_checkpoint, tmp_path):
    payload = load_checkpoint(tiny_checkpoint).payload
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    one_line_error(run(tmp_path / "new.pt", "-o", tmp_path / "o"), "upgrade ingan")


def test_min_larger_than_max(tiny_checkpoint, tmp_path):
    usage_error(run(tiny_checkpoint, "-o", tmp_path, "--min-size", "90x90", "--max-size", "40x40"),
                "min <= opt <= max")
    assert _no_files(tmp_path) == []


def test_size_below_architecture_minimum(tiny_checkpoint, tmp_path):
    usage_error(run(tiny_checkpoint, "-o", tmp_path, "--min-size", "8x8"), "minimum side 16")


def test_output_folder_is_a_file(tiny_checkpoint, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    one_line_error(run(tiny_checkpoint, "-o", target), "is not a folder")


@pytest.mark.parametrize("args", [["--frobnicate"], ["--max-size", "big"], ["--max-size", "0x10"], ["--opset", "20"],
                                  ["--output", "png"], ["--workspace", "lots"]])
def test_usage_errors(tiny_checkpoint, args):
    assert run(tiny_checkpoint, *args).exit_code == 2


@pytest.mark.slow
def test_exporter_failure_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated exporter failure")

    monkeypatch.setattr(torch.onnx, "export", boom)
    one_line_error(run(tiny_checkpoint, "-o", tmp_path), "could not export the generator")
    assert _no_files(tmp_path) == []


@pytest.mark.slow
def test_validation_failure_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import ingan.export.pipeline as pipeline

    real = pipeline.torch_reference

    def off_by_a_lot(*args, **kwargs):
        out = real(*args, **kwargs)
        return (out.astype(np.int32) + 40).clip(0, 255).astype(np.uint8)

    monkeypatch.setattr(pipeline, "torch_reference", off_by_a_lot)
    one_line_error(run(tiny_checkpoint, "-o", tmp_path, "--no-engine"), "does not match PyTorch")
    assert _no_files(tmp_path) == []


@pytest.mark.slow
def test_opset_17_and_giant_sizes_are_refused(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(main, [str(tiny_checkpoint), "--no-engine", "--opset", "17", "-o", str(tmp_path / "a")])
    assert result.exit_code == 2 and "Invalid value for '--opset'" in result.output
    result = CliRunner().invoke(main, [str(tiny_checkpoint), "--no-engine", "--max-size", "100000x100000",
                                       "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "exceeds 8192 px per side" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["", "a/b", "a\\b", ".hidden"])
def test_name_must_be_a_plain_file_stem(tiny_checkpoint, tmp_path, name):
    usage_error(run(tiny_checkpoint, "-o", tmp_path / "o", "--name", name), "use a plain file stem")
    assert not (tmp_path / "o").exists()  # refused before anything is written
