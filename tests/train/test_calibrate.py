import pytest
import torch
from click.testing import CliRunner

from ingan.model.checkpoint import load_checkpoint
from ingan.train.calibrate import calibrate_checkpoint, main
from ingan.train.config import RunOptions
from ingan.train.trainer import Trainer


def _uncalibrated(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu", colour_calibration=False))
    trainer.step()
    return trainer, trainer.save(tmp_path / "ckpt.pt")


@pytest.mark.slow
def test_calibrating_an_old_checkpoint_matches_what_training_would_have_stored(tmp_path, image, tiny_config):
    trainer, path = _uncalibrated(tmp_path, image, tiny_config)
    result = CliRunner().invoke(main, [str(path), "-o", str(tmp_path / "cal.pt")])
    assert result.exit_code == 0, result.output
    assert "gain" in result.output and "offset" in result.output
    assert "colour_calibration" not in load_checkpoint(path).payload  # source untouched with -o
    calibrated = load_checkpoint(tmp_path / "cal.pt")
    trainer.options = RunOptions(device="cpu")
    assert calibrated.payload["colour_calibration"] == trainer.state()["colour_calibration"]
    for key, value in load_checkpoint(path).payload["generator"].items():
        assert torch.equal(value, calibrated.payload["generator"][key])  # weights unchanged


@pytest.mark.slow
def test_in_place_is_idempotent_and_remove_drops_it(tmp_path, image, tiny_config):
    _, path = _uncalibrated(tmp_path, image, tiny_config)
    first = calibrate_checkpoint(path)
    second = calibrate_checkpoint(path)  # refits from the raw generator, not on top of the first fit
    assert first == second == load_checkpoint(path).payload["colour_calibration"]
    assert CliRunner().invoke(main, [str(path), "--remove"]).exit_code == 0
    assert load_checkpoint(path).colour_calibration is None
    assert load_checkpoint(path).has_training_state  # a full checkpoint stays resumable


def test_bad_inputs_are_one_line_errors(tmp_path, image, tiny_config):
    runner = CliRunner()
    result = runner.invoke(main, [str(tmp_path / "missing.pt")])
    assert result.exit_code == 1 and "does not exist" in result.output
    _, path = _uncalibrated(tmp_path, image, tiny_config)
    result = runner.invoke(main, [str(path), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # nothing half-written
