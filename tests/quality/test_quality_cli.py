"""`ingan-eval` end to end on the tiny fixtures, the evaluate() API, and every bad input."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ingan.runtime
from ingan.errors import ConfigError
from ingan.quality.cli import main
from ingan.quality.evaluate import FORMAT, FORMAT_VERSION, evaluate, find_reference
from clitest import one_line_error

METHODS = ["ingan", "bicubic", "centre_crop"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def sizes(tiny_checkpoint):
    """A wider and a narrower size inside the checkpoint's range, as (height, width)."""
    with ingan.runtime.load(tiny_checkpoint) as runner:
        (h, w), (_, min_w), (_, max_w) = runner.image_size, runner.min_size, runner.max_size
    return [(h, min(2 * w, max_w)), (h, max(w // 2, min_w))]


def size_arg(sizes):
    return ",".join(f"{w}x{h}" for h, w in sizes)


@pytest.fixture(scope="module")
def training_png(tiny_checkpoint, tmp_path_factory):
    from ingan.model.checkpoint import load_checkpoint

    path = tmp_path_factory.mktemp("ref") / "tiny.png"
    Image.fromarray(load_checkpoint(tiny_checkpoint).image).save(path)
    return path


def test_help():
    result = run("--help")
    assert result.exit_code == 0 and "--size WxH" in result.output and "--reference" in result.output
    assert "--sizes" not in result.output  # the old spelling works but is not advertised


@pytest.mark.slow
def test_checkpoint_end_to_end(tiny_checkpoint, sizes, tmp_path):
    result = run(tiny_checkpoint, "--size", size_arg(sizes), "-o", tmp_path, "--max-patches", "500")
    assert result.exit_code == 0, result.output
    assert "| InGAN |" in result.output and "self-noise floor" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.json", "quality.md", "side_by_side.png"]
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["format"] == FORMAT and report["format_version"] == FORMAT_VERSION
    assert report["model"]["backend"] == "pytorch" and report["reference"]["size"] == [40, 52]
    assert "ckpt.pt" in report["reference"]["source"]
    assert report["settings"]["max_patches"] == 500 and report["settings"]["sizes"] == [list(s) for s in sizes]
    assert report["self_noise"]["coherence"] == 0.0 and report["self_noise"]["completeness"] == 0.0
    assert [r["size"] for r in report["results"]] == [list(s) for s in sizes]
    for r in report["results"]:
        assert list(r["methods"]) == METHODS
        for m in r["methods"].values():
            assert all(np.isfinite(m[k]) and m[k] >= 0 for k in ("swd", "coherence", "completeness", "bds"))
            assert m["bds"] == pytest.approx(m["coherence"] + m["completeness"])
            assert m["levels_used"] == len(m["levels"]) >= 1
        assert set(r["best"]) == {"swd", "coherence", "completeness", "bds"}
        # A centre crop of a narrower size is made of input patches only.
        if r["size"][1] < 52:
            assert r["methods"]["centre_crop"]["coherence"] == 0.0
    md = (tmp_path / "quality.md").read_text()
    assert md.count("| InGAN |") == 2 and "**" in md and "Self-noise floor" in md
    png = np.asarray(Image.open(tmp_path / "side_by_side.png"))
    margin = 6
    assert png.shape[0] == 2 * 40 + 3 * margin  # one row per size
    assert png.shape[1] == 52 + 3 * sizes[0][1] + 5 * margin  # input + 3 methods at the widest size


@pytest.mark.slow
def test_default_output_folder_and_quiet(tiny_checkpoint, sizes, tmp_path):
    ckpt = shutil.copy(tiny_checkpoint, tmp_path / "ckpt.pt")
    result = run(ckpt, "--size", size_arg(sizes[:1]), "--size", size_arg(sizes[1:]), "-q", "--levels", "1")
    assert result.exit_code == 0, result.output
    assert "| InGAN |" not in result.output and "wrote" in result.output
    report = json.loads((tmp_path / "quality" / "quality.json").read_text())
    assert len(report["results"]) == 2
    assert all(m["levels_used"] == 1 for r in report["results"] for m in r["methods"].values())


@pytest.mark.slow
def test_same_seed_same_numbers(tiny_checkpoint, sizes, tmp_path):
    runs = []
    for name in ("a", "b"):
        assert run(tiny_checkpoint, "--size", size_arg(sizes[:1]), "-o", tmp_path / name, "-q",
                   "--seed", "7", "--max-patches", "200").exit_code == 0
        results = json.loads((tmp_path / name / "quality.json").read_text())["results"]
        for r in results:
            for m in r["methods"].values():
                del m["seconds"]  # wall-clock times differ, nothing else may
        runs.append(results)
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_evaluate_api_with_an_open_runner(tiny_checkpoint, sizes, tmp_path):
    with ingan.runtime.load(tiny_checkpoint) as runner:
        report = evaluate(runner, sizes[:1], None, max_patches=200, levels=1)
        assert runner.retarget(sizes[0]).shape == (*sizes[0], 3)  # still open: the caller owns it
    assert report.paths == {} and list(tmp_path.iterdir()) == []
    assert report.results[0].images["ingan"].shape == (*sizes[0], 3)
    assert report.results[0].scores["centre_crop"].completeness == 0.0  # a mirror-padded copy holds it all


# -- exported models: the reference comes from --reference or the source checkpoint


@pytest.fixture(scope="module")
def onnx_model(default_export):
    out, _ = default_export
    return out / "model.onnx"


def test_onnx_needs_a_reference(onnx_model, sizes, tmp_path):
    result = run(onnx_model, "--size", size_arg(sizes), "-o", tmp_path / "q")
    one_line_error(result, "pass the training image with --reference IMAGE")
    assert not (tmp_path / "q").exists()  # nothing written


def test_onnx_with_reference(onnx_model, sizes, training_png, tmp_path):
    result = run(onnx_model, "--size", size_arg(sizes[:1]), "--reference", training_png, "-o", tmp_path,
                 "--max-patches", "200", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["model"]["backend"] == "onnxruntime" and "tiny.png" in report["reference"]["source"]


def test_onnx_finds_its_source_checkpoint(onnx_model, tiny_checkpoint, sizes, tmp_path):
    for path in (onnx_model, onnx_model.with_name("model.onnx.json"), tiny_checkpoint):
        shutil.copy(path, tmp_path)
    with ingan.runtime.load(tmp_path / "model.onnx") as runner:
        pixels, source = find_reference(runner, None)
        assert pixels.shape == (40, 52, 3) and "source checkpoint" in source
        # A different checkpoint of the same name is refused by its checksum.
        (tmp_path / "ckpt.pt").write_bytes((tmp_path / "ckpt.pt").read_bytes() + b"\0")
        with pytest.raises(ConfigError, match="checksum differs"):
            find_reference(runner, None)


@pytest.mark.parametrize("name", ["../ckpt.pt", "/tmp/ckpt.pt", "..", "sub/ckpt.pt"])
def test_a_source_checkpoint_outside_the_models_folder_is_never_followed(onnx_model, tiny_checkpoint, tmp_path,
                                                                         name):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(onnx_model, models)
    shutil.copy(tiny_checkpoint, tmp_path / "ckpt.pt")  # a real checkpoint one folder up
    sidecar = models / "model.onnx.json"
    data = json.loads(onnx_model.with_name("model.onnx.json").read_text())
    sidecar.write_text(json.dumps({**data, "source_checkpoint": {**data["source_checkpoint"], "file": name}}))
    with ingan.runtime.load(models / "model.onnx") as runner:
        with pytest.raises(ConfigError, match=f"names the source checkpoint '{re.escape(name)}', which is not a "
                                              "plain file name next to it; pass the training image with --reference"):
            find_reference(runner, None)


def test_reference_must_be_the_training_image(onnx_model, sizes, tmp_path):
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(wrong)
    one_line_error(run(onnx_model, "--size", size_arg(sizes), "--reference", wrong, "-o", tmp_path / "q"),
                   "but the model was trained on a 52x40 image")
    other = tmp_path / "other.png"  # larger, other aspect: reduced first, and the message says so
    Image.fromarray(np.zeros((60, 100, 3), np.uint8)).save(other)
    one_line_error(run(onnx_model, "--size", size_arg(sizes), "--reference", other, "-o", tmp_path / "q"),
                   "is 100x60 (reduced to 52x31 like ingan-train would), but the model was trained on a 52x40")


def test_grayscale_reference_is_warned_about(tiny_checkpoint, training_png, tmp_path, caplog):
    gray = tmp_path / "gray.png"
    Image.open(training_png).convert("L").save(gray)
    with ingan.runtime.load(tiny_checkpoint) as runner, caplog.at_level("WARNING"):
        pixels, _ = find_reference(runner, gray)
    assert pixels.shape == (40, 52, 3) and "the reference is grayscale" in caplog.text


def test_larger_reference_is_reduced_like_training(tiny_checkpoint, training_png, tmp_path):
    big = tmp_path / "big.png"
    Image.open(training_png).resize((104, 80), Image.Resampling.NEAREST).save(big)
    with ingan.runtime.load(tiny_checkpoint) as runner:
        pixels, _ = find_reference(runner, big)
    assert pixels.shape == (40, 52, 3)


# -- bad input


@pytest.mark.parametrize("text, message", [("640", "is not a size"), ("64x0", "at least 1x1"),
                                           (",", "give at least one size"), ("64x40,abc", "'abc' is not a size")])
def test_malformed_sizes_are_usage_errors(tiny_checkpoint, tmp_path, text, message):
    result = run(tiny_checkpoint, "--size", text, "-o", tmp_path)
    assert result.exit_code == 2 and message in result.output, result.output


def test_sizes_are_required(tiny_checkpoint):
    result = run(tiny_checkpoint)
    assert result.exit_code == 2 and "give at least one --size WxH" in result.output


def test_missing_model(tmp_path):
    one_line_error(run(tmp_path / "nope.pt", "--size", "64x40", "-o", tmp_path / "q"), "does not exist")
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_size_outside_the_range(tiny_checkpoint, tmp_path):
    one_line_error(run(tiny_checkpoint, "--size", "5000x40", "-o", tmp_path / "q"),
                   "outside this model's range")
    result = run(tiny_checkpoint, "--size", "5000x40", "-o", tmp_path / "q")
    assert "train with a wider scale range" in result.output and "re-export" not in result.output
    assert not (tmp_path / "q").exists()


def test_unknown_device(tiny_checkpoint, tmp_path):
    result = run(tiny_checkpoint, "--size", "64x40", "--device", "tpu", "-o", tmp_path)
    assert result.exit_code == 2 and "unknown device 'tpu'; use auto, cpu, cuda or cuda:N" in result.output


@pytest.mark.slow
def test_output_folder_is_a_file(tiny_checkpoint, sizes, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run(tiny_checkpoint, "--size", size_arg(sizes[:1]), "-o", blocker, "--levels", "1"),
                   "is not a folder")


def test_a_folder_or_unknown_suffix_gets_the_same_words_as_ingan_run(tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    one_line_error(run(folder, "--size", "64x40", "-o", tmp_path / "q"), "model '")
    result = run(folder, "--size", "64x40", "-o", tmp_path / "q")
    assert "is not a file (a folder); pass a .plan, .onnx or .pt model file" in result.output
    odd = tmp_path / "model.xyz"
    odd.write_bytes(b"x")
    result = run(odd, "--size", "64x40", "-o", tmp_path / "q")
    assert result.exit_code == 1 and "cannot tell the model type" in result.output
    assert "--backend" not in result.output.replace("ingan-run --backend", "")  # eval has no --backend
