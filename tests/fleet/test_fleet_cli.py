"""`ingan-train` with a folder, a glob or several images: the fleet command and its errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from clitest import one_line_error, usage_error
from testimages import synthetic_image
from ingan.fleet.manifest import fleet_settings
from ingan.model.checkpoint import load_checkpoint
from ingan.train.config import PRESETS
from ingan.train.cli import main

TINY = ["--preset", "quick", "--crop-size", "32", "--base-channels", "4", "--device", "cpu", "--iters", "1"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, name in enumerate(("beach", "city")):
        Image.fromarray(synthetic_image(40, 48, seed=seed)).save(folder / f"{name}.png")
    return folder


@pytest.mark.slow
def test_one_image_is_still_one_run(tmp_path, image_file):
    result = run(image_file, *TINY, "-o", tmp_path / "one", "-q")
    assert result.exit_code == 0 and "finished: iteration 1/1" in result.output
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["ckpt.pt", "monitor_000001.png"]


@pytest.mark.slow
def test_a_quoted_glob_trains_a_fleet_and_a_bad_image_fails_alone(tmp_path, photos):
    (photos / "broken.png").write_bytes(b"")
    out = tmp_path / "out"
    result = run(photos / "*.png", *TINY, "-o", out, "-q")
    one_line_error(result, "1 of 3 images failed (first: 'broken': cannot read")
    assert "fleet finished: 2/3 images finished (0 already were), 0 partial, 0 not started, 1 failed" in result.output
    for stem in ("beach", "city"):
        assert load_checkpoint(out / stem / "ckpt.pt").iteration == 1
    records = json.loads((out / "fleet.json").read_text())["images"]
    assert records["broken"]["status"] == "failed" and "empty" in records["broken"]["error"]

    (photos / "broken.png").unlink()
    again = run(photos, *TINY, "-o", out, "-q")  # the folder: the same fleet, finished images skipped
    assert again.exit_code == 0, again.output
    assert "fleet finished: 2/2 images finished (2 already were)" in again.output


def test_fleet_errors_come_before_any_work(tmp_path, photos):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run(empty, *TINY, "-o", out), "holds no image files")
    twin = tmp_path / "elsewhere" / "beach.jpg"
    twin.parent.mkdir()
    Image.fromarray(synthetic_image()).save(twin)
    one_line_error(run(photos, twin, *TINY, "-o", out), "would both train into 'beach/'")
    assert not out.exists()

    out.mkdir()
    same_config = PRESETS["quick"].rescaled(1).with_overrides(crop_size=32, base_channels=4).to_dict()
    (out / "fleet.json").write_text(json.dumps({"format": "ingan-fleet-manifest", "format_version": 1,
                                                "settings": fleet_settings(same_config, 99), "images": {}}))
    one_line_error(run(photos, *TINY, "-o", out), "belongs to another fleet: its max_side is 99")
    assert sorted(p.name for p in out.iterdir()) == ["fleet.json"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(run(photos, *TINY, "-o", a_file), "exists and is not a folder")


@pytest.mark.parametrize("args, message", [
    (["--resume", "x/ckpt.pt"], "a fleet continues by re-running its command"),
    (["--init-from", "x/ckpt.pt"], "it does not apply to a fleet"),
    (["--gpus-per-task", "1"], "--gpus-per-task only apply with --ray"),
    (["--ray", "not an address"], "is not a Ray address"),
    (["--group", "0"], "--group"),
    (["--ray", "--gpus-per-task", "-1"], "--gpus-per-task"),
])
def test_fleet_usage_errors(photos, args, message):
    usage_error(run(photos, *TINY, *args), message)


def test_ray_without_ray_names_the_extra(tmp_path, photos, monkeypatch):
    import ingan.extras

    real = ingan.extras.installed
    monkeypatch.setattr(ingan.extras, "installed", lambda module: module != "ray" and real(module))
    out = tmp_path / "out"
    one_line_error(run(photos, *TINY, "-o", out, "--ray"), "pip install 'ingan[fleet]'")
    assert not out.exists()


def test_ray_addresses():
    from ingan.errors import OptionError
    from ingan.fleet.ray_runner import parse_address

    for text, address in (("", "local"), ("local", "local"), ("auto", "auto"), ("10.0.0.5:6379", "10.0.0.5:6379"),
                          ("ray://head.example:10001", "ray://head.example:10001")):
        assert parse_address(text) == address
    for bad in ("photos/", "head", "http://x:8265/jobs extra"):
        with pytest.raises(OptionError, match="is not a Ray address"):
            parse_address(bad)
