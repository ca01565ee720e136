"""End-to-end `ingan-train` runs on tiny configs, and every bad input the issue lists."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ingan.model.checkpoint import FORMAT_VERSION, load_checkpoint
from clitest import one_line_error, usage_error
from ingan.train.cli import main

TINY = ["--preset", "quick", "--crop-size", "32", "--base-channels", "4", "--device", "cpu"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_explains_quick_preset():
    result = run("--help")
    assert result.exit_code == 0
    assert "smoke test" in result.output and "--time-budget" in result.output and "--resume" in result.output


@pytest.mark.slow
def test_short_run_writes_checkpoint_and_monitors(tmp_path, image_file):
    out = tmp_path / "run"
    result = run(image_file, *TINY, "--iters", "4", "--monitor-every", "2", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert "finished: iteration 4/4" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ckpt.pt", "monitor_000002.png", "monitor_000004.png"]
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt.iteration == 4 and ckpt.payload["image_name"] == "tiny.png"
    monitor = np.asarray(Image.open(out / "monitor_000004.png"))
    assert monitor.ndim == 3 and monitor.shape[1] > 3 * 56  # several tiles side by side


@pytest.mark.slow
def test_time_budget_stop_then_resume_equals_uninterrupted(tmp_path, image_file):
    straight = tmp_path / "straight"
    assert run(image_file, *TINY, "--iters", "5", "-o", straight, "-q").exit_code == 0

    split = tmp_path / "split"
    first = run(image_file, *TINY, "--iters", "5", "-o", split, "--time-budget", "0.001", "-q")
    assert first.exit_code == 0, first.output
    assert "stopped at the time budget: iteration 1/5" in first.output
    assert "continue with: ingan-train --resume" in first.output
    second = run("--resume", split / "ckpt.pt", "--device", "cpu", "-q")
    assert second.exit_code == 0, second.output
    assert "finished: iteration 5/5" in second.output

    a = load_checkpoint(straight / "ckpt.pt").payload["generator"]
    b = load_checkpoint(split / "ckpt.pt").payload["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_can_extend_iterations(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "2", "-o", out, "-q")
    result = run("--resume", out / "ckpt.pt", "--iters", "3", "--device", "cpu", "-q")
    assert result.exit_code == 0 and load_checkpoint(out / "ckpt.pt").iteration == 3
    config = load_checkpoint(out / "ckpt.pt").payload["train_config"]
    assert (config["iters"], config["scale_weights_hold_at"]) == (3, 2)
    again = run("--resume", out / "ckpt.pt", "--device", "cpu", "-q")
    assert again.exit_code == 1 and "already finished its 3 iterations" in again.output
    fixed = run("--resume", out / "ckpt.pt", "--crop-size", "64")
    assert fixed.exit_code == 2 and "--crop-size cannot change on --resume" in fixed.output


@pytest.mark.slow
def test_even_scale_weights_on_resume_and_on_new_runs(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "2", "-o", out, "-q")
    result = run("--resume", out / "ckpt.pt", "--iters", "3", "--even-scale-weights", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    config = load_checkpoint(out / "ckpt.pt").payload["train_config"]
    assert config["scale_weights_hold_at"] == config["scale_weights_even_at"]
    fresh = tmp_path / "n"
    assert run(image_file, *TINY, "--iters", "2", "-o", fresh, "--even-scale-weights", "-q").exit_code == 0
    config = load_checkpoint(fresh / "ckpt.pt").payload["train_config"]
    assert config["scale_weights_hold_at"] == config["scale_weights_even_at"]


@pytest.mark.slow
def test_resume_keeps_the_runs_save_and_monitor_intervals(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "2", "--save-every", "3", "-o", out, "-q")
    assert run("--resume", out / "ckpt.pt", "--iters", "3", "--device", "cpu", "-q").exit_code == 0
    options = load_checkpoint(out / "ckpt.pt").payload["run_options"]
    assert (options["save_every"], options["monitor_every"]) == (3, 100)  # its own, then quick's
    assert run("--resume", out / "ckpt.pt", "--iters", "4", "--save-every", "5", "--device", "cpu", "-q").exit_code == 0
    assert load_checkpoint(out / "ckpt.pt").payload["run_options"]["save_every"] == 5


@pytest.mark.slow
def test_resume_into_another_runs_folder_needs_force(tmp_path, image_file):
    first, other = tmp_path / "a", tmp_path / "b"
    run(image_file, *TINY, "--iters", "1", "-o", first, "-q")
    run(image_file, *TINY, "--iters", "1", "--seed", "5", "-o", other, "-q")
    before = (other / "ckpt.pt").read_bytes()
    result = run("--resume", first / "ckpt.pt", "--iters", "2", "-o", other, "--device", "cpu")
    assert result.exit_code == 1 and "already exists and is another checkpoint" in result.output
    assert (other / "ckpt.pt").read_bytes() == before
    assert run("--resume", first / "ckpt.pt", "--iters", "2", "-o", other, "--force", "-q").exit_code == 0


@pytest.mark.slow
def test_damaged_training_state_is_a_one_line_error(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "1", "-o", out, "-q")
    payload = load_checkpoint(out / "ckpt.pt").payload
    torch.save({**payload, "rng": {}}, tmp_path / "norng.pt")
    one_line_error(run("--resume", tmp_path / "norng.pt", "--iters", "2"), "its training state is damaged")


@pytest.mark.slow
def test_disk_full_on_save_is_a_one_line_error(tmp_path, image_file, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 13840000 vs 13839892")

    monkeypatch.setattr(torch, "save", full)
    one_line_error(run(image_file, *TINY, "--iters", "1", "-o", tmp_path / "o"), "free disk space")
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "Invalid value for '--lr'"),
    (["--seed", "99999999999999999999999"], "Invalid value for '--seed'"),
    (["--base-channels", "100000"], "Invalid value for '--base-channels'"),
    (["--time-budget", "nan"], "Invalid value for '--time-budget'"),
])
def test_absurd_option_values_are_usage_errors(tmp_path, image_file, args, message):
    result = run(image_file, *TINY, *args, "-o", tmp_path / "o")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cuda_only_switches_on_cpu_are_noticed(tmp_path, image_file):
    result = run(image_file, *TINY, "--iters", "1", "--amp", "--cudnn", "-o", tmp_path / "o", "-q")
    assert result.exit_code == 0 and "--amp, --cudnn only act on CUDA; ignored on cpu" in result.output


def test_size_step_above_the_crop_is_refused(tmp_path, image_file):
    usage_error(run(image_file, *TINY, "--size-step", "1024", "-o", tmp_path / "o"),
                "must be at most the crop size (32)")
    assert not (tmp_path / "o").exists()


def test_crop_size_not_a_multiple_is_a_usage_error(tmp_path, image_file):
    usage_error(run(image_file, *TINY[:2], "--crop-size", "60", "--device", "cpu", "-o", tmp_path / "o"),
                "crop size (--crop-size) must be a multiple of 8")


@pytest.mark.slow
def test_refused_resume_creates_no_output_folder(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "1", "-o", out, "-q")
    result = run("--resume", out / "ckpt.pt", "-o", tmp_path / "new", "--device", "cpu")
    assert result.exit_code == 1 and "already finished" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_lr_sets_g_and_d_rates_and_is_fixed_on_resume(tmp_path, image_file):
    out = tmp_path / "lr"
    result = run(image_file, *TINY, "--iters", "2", "--lr", "1e-3", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(out / "ckpt.pt").payload
    assert (payload["train_config"]["g_lr"], payload["train_config"]["d_lr"]) == (1e-3, 1e-3)
    fixed = run("--resume", out / "ckpt.pt", "--lr", "1e-4")
    assert fixed.exit_code == 2 and "--lr cannot change on --resume" in fixed.output
    for bad in ("0", "-1e-4", "2"):
        assert run(image_file, *TINY, "--lr", bad, "-o", tmp_path / "bad").exit_code == 2


@pytest.mark.slow
def test_existing_checkpoint_is_not_overwritten_without_force(tmp_path, image_file):
    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "1", "-o", out, "-q")
    before = (out / "ckpt.pt").read_bytes()
    result = run(image_file, *TINY, "--iters", "1", "-o", out, "-q")
    assert result.exit_code == 1 and "already exists" in result.output and "--force" in result.output
    assert (out / "ckpt.pt").read_bytes() == before
    assert run(image_file, *TINY, "--iters", "1", "-o", out, "-q", "--force").exit_code == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "does not exist; check the path"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not an image"),
        (lambda p: (p / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30) and p / "bad.png", "cannot read"),
    ],
)
def test_bad_images_give_one_line_errors(tmp_path, make, message):
    path = make(tmp_path)
    result = run(path, *TINY, "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_image_smaller_than_crop(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((44, 60, 3), np.uint8)).save(path)
    result = run(path, *TINY, "--crop-size", "48", "-o", tmp_path / "o")
    assert result.exit_code == 1 and "smaller than the 48 px training crop; pass --crop-size 40" in result.output
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    result = run(path, *TINY, "-o", tmp_path / "o")
    assert result.exit_code == 1 and "too small to train on" in result.output
    assert not (tmp_path / "o").exists()  # a refused run leaves no empty output folder


def test_a_strip_made_too_small_by_max_side_names_max_side(tmp_path):
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((40, 2000, 3), np.uint8)).save(path)
    result = run(path, *TINY, "-o", tmp_path / "o")
    assert result.exit_code == 1 and "too small" in result.output and "a larger --max-side" in result.output


@pytest.mark.slow
def test_rgba_and_grayscale_inputs_train_with_notices(tmp_path, image):
    rgba = np.dstack([image, np.full(image.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    result = CliRunner().invoke(main, [str(tmp_path / "a.png"), *TINY, "--iters", "1", "-o", str(tmp_path / "o1"), "-q"])
    assert result.exit_code == 0 and "alpha channel dropped" in result.output
    Image.fromarray(image[..., 0], "L").save(tmp_path / "g.png")
    assert run(tmp_path / "g.png", *TINY, "--iters", "1", "-o", tmp_path / "o2", "-q").exit_code == 0


@pytest.mark.slow
def test_huge_image_is_downscaled_with_notice(tmp_path, image):
    big = np.asarray(Image.fromarray(image).resize((560, 480)))
    Image.fromarray(big).save(tmp_path / "big.png")
    result = run(tmp_path / "big.png", *TINY, "--iters", "1", "--max-side", "64", "-o", tmp_path / "o", "-q")
    assert result.exit_code == 0 and "downscaled to 64x55" in result.output
    assert load_checkpoint(tmp_path / "o" / "ckpt.pt").image.shape == (55, 64, 3)


def test_output_folder_that_is_a_file(tmp_path, image_file):
    target = tmp_path / "file"
    target.write_text("x")
    result = run(image_file, *TINY, "-o", target)
    assert result.exit_code == 1 and "is not a folder" in result.output


@pytest.mark.slow
def test_resume_bad_checkpoints(tmp_path, image_file):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    result = run("--resume", junk)
    assert result.exit_code == 1 and "not an ingan checkpoint; it is corrupt" in result.output

    out = tmp_path / "r"
    run(image_file, *TINY, "--iters", "1", "-o", out, "-q")
    payload = load_checkpoint(out / "ckpt.pt").payload
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, tmp_path / "future.pt")
    result = run("--resume", tmp_path / "future.pt")
    assert result.exit_code == 1 and "newer than this ingan supports" in result.output


def test_usage_errors(tmp_path, image_file):
    assert run().exit_code == 2
    both = run(image_file, "--resume", tmp_path / "x.pt")
    assert both.exit_code == 2 and "not both" in both.output
    assert run(image_file, "--time-budget", "soon").exit_code == 2
    assert run(image_file, "--preset", "fast").exit_code == 2


def test_cuda_device_without_cuda(tmp_path, image_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run(image_file, "--preset", "quick", "--crop-size", "32", "--device", "cuda", "-o", tmp_path / "o")
    assert result.exit_code == 1 and "CUDA is not available" in result.output


def test_console_script_help_runs_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "ingan.train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Train InGAN on IMAGE" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_or_sigterm_saves_and_exits(tmp_path, image_file, signum, code):
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingan.train", str(image_file), *TINY, "--iters", "100000",
         "--save-every", "1", "-o", str(out), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "ckpt.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "ckpt.pt").exists(), "no checkpoint was written"
    proc.send_signal(getattr(signal, signum))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted: iteration" in stdout and "continue with: ingan-train --resume" in stderr
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt.iteration >= 1 and ckpt.has_training_state
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_init_from_a_serving_checkpoint(tmp_path, image_file):
    from ingan.model.checkpoint import save_checkpoint, slim_payload

    first = tmp_path / "first"
    assert run(image_file, *TINY, "--iters", "2", "-o", first, "-q").exit_code == 0
    serving = save_checkpoint(tmp_path / "serving.pt", slim_payload(load_checkpoint(first / "ckpt.pt").payload))
    second = tmp_path / "second"
    result = run(image_file, *TINY, "--iters", "1", "--init-from", serving, "-o", second)
    assert result.exit_code == 0 and "starting from the generator of" in result.output
    warm = load_checkpoint(second / "ckpt.pt")
    assert warm.iteration == 1
    # Provenance: the warm start is recorded, survives slimming and chains.
    from ingan.metadata import sha256_of

    (record,) = warm.payload["lineage"]
    assert record["iteration"] == 2 and record["sha256"] == sha256_of(serving) and record["crop_size"] == 32
    third_serving = save_checkpoint(tmp_path / "serving2.pt", slim_payload(warm.payload))
    assert run(image_file, *TINY, "--iters", "1", "--init-from", third_serving, "-o", tmp_path / "chain",
               "-q").exit_code == 0
    chain = load_checkpoint(tmp_path / "chain" / "ckpt.pt").payload["lineage"]
    assert [r["iteration"] for r in chain] == [2, 1]

    mismatch = run(image_file, *TINY[:-4], "--base-channels", "8", "--device", "cpu", "--iters", "1",
                   "--init-from", serving, "-o", tmp_path / "third")
    assert mismatch.exit_code == 1 and "pass matching --preset/--base-channels" in mismatch.output


def test_cuda_graphs_need_cuda(tmp_path, image_file):
    result = run(image_file, *TINY, "--cuda-graphs", "-o", tmp_path / "o")
    one_line_error(result, "CUDA graphs need a CUDA device, this run is on cpu; drop --cuda-graphs")
    assert not (tmp_path / "o" / "ckpt.pt").exists()


@pytest.mark.slow
def test_size_step_is_validated_and_fixed_on_resume(tmp_path, image_file):
    usage_error(run(image_file, *TINY, "--size-step", "12", "-o", tmp_path / "a"),
                "size step (--size-step) must be 0 or a multiple of 8")
    out = tmp_path / "b"
    assert run(image_file, *TINY, "--size-step", "16", "--iters", "2", "-o", out, "-q").exit_code == 0
    assert load_checkpoint(out / "ckpt.pt").payload["train_config"]["size_step"] == 16
    result = run("--resume", out / "ckpt.pt", "--size-step", "8", "--iters", "3")
    assert result.exit_code == 2 and "--size-step cannot change on --resume" in result.output


@pytest.mark.parametrize("name, folder", [("....png", "image"), ("..png", "image"), (". .png", "image"),
                                          ("photo.png", "photo")])
@pytest.mark.slow
def test_the_default_output_folder_stays_under_runs(tmp_path, image, monkeypatch, name, folder):
    from PIL import Image as PILImage

    monkeypatch.chdir(tmp_path)
    PILImage.fromarray(image).save(tmp_path / name, format="PNG")
    result = run(tmp_path / name, *TINY, "--iters", "1", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / folder / "ckpt.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "runs"])


def test_safe_folder_name():
    from ingan.fsutil import safe_folder_name

    assert safe_folder_name("..") == "image" and safe_folder_name("") == "image"
    assert safe_folder_name("a/b\\c\x01") == "a_b_c_" and safe_folder_name(".hidden") == ".hidden"
