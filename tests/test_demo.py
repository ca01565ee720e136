"""ingan-demo end to end on the tiny checkpoint (the bundled one is exercised by the README)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ingan.demo import main


@pytest.mark.slow
def test_demo_writes_an_index_linking_everything(tiny_checkpoint, tmp_path, no_half_cpu_convolutions):
    # The guard fixture fails this test if any step (the FP16 export check, the benchmark's
    # PyTorch cells, ...) runs a half-precision convolution on the CPU.
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["--checkpoint", str(tiny_checkpoint), "-o", str(out),
                                       "--sweep-steps", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "demo finished" in result.output
    index = (out / "index.md").read_text()
    for link in ("input.png", "collage.png", "sweep.gif", "quality/side_by_side.png", "retarget_wide_104x40.png",
                 "retarget_narrow_26x40.png"):
        assert f"({link})" in index and (out / link).exists(), link
    assert (out / "model" / "model.onnx").exists() and (out / "model" / "model_fp16.onnx").exists()
    assert "| 104x40 | InGAN |" in index  # the quality table is inlined
    assert "Output colour calibration (docs/model.md): gain " in index
    assert "\n# " not in index.split("\n", 1)[1]  # sub-report headings are demoted


def test_demo_options_conflict(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["--checkpoint", str(tiny_checkpoint), "--train", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.output


def test_demo_missing_checkpoint(tmp_path):
    result = CliRunner().invoke(main, ["--checkpoint", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not found" in result.output
    assert not (tmp_path / "o").exists()


def test_demo_corrupt_checkpoint_creates_nothing(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["--checkpoint", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not an ingan checkpoint" in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_demo_into_a_foreign_folder_says_so(tiny_checkpoint, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["--checkpoint", str(tiny_checkpoint), "-o", str(out), "--no-bench",
                                       "--sweep-steps", "1"], catch_exceptions=False)
    assert result.exit_code == 0 and "already holds files that are not an earlier demo" in result.output
    assert (out / "notes.txt").read_text() == "keep me"
