import pytest
import torch

from ingan.errors import CheckpointError, ConfigError
from ingan.model.calibration import GAIN_RANGE, ColourCalibration, fit_from_moments
from ingan.model.checkpoint import load_checkpoint, save_checkpoint
from ingan.model.generator import Generator, fit_colour_calibration
from ingan.train.config import RunOptions
from ingan.train.trainer import Trainer, image_to_tensor


def _moments(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3), unbiased=False)


def _spread_generator(config) -> Generator:
    """A freshly built generator whose raw output has a usable spread (the init is ~0)."""
    torch.manual_seed(0)
    g = Generator(config).eval()
    with torch.no_grad():
        g.final[1].weight.mul_(60.0)
        g.final[1].bias.copy_(torch.tensor([-0.5, 0.0, 0.0]))  # keeps red off tanh's ceiling
    return g


def test_fit_from_moments_known_answer():
    cal = fit_from_moments([0.1, -0.5, 0.0], [0.4, 0.2, 0.3], [0.0, -0.4, 0.2], [0.2, 0.2, 0.6], iteration=7)
    assert cal.gain == pytest.approx((2.0, 1.0, 0.5))
    assert cal.offset == pytest.approx((0.1, -0.1, -0.1))
    assert cal.fitted_at_iteration == 7
    # Gains outside the range are clamped and the offset follows the clamped gain.
    clamped = fit_from_moments([0.0] * 3, [1.0] * 3, [0.5] * 3, [0.01] * 3)
    assert clamped.gain == (GAIN_RANGE[1],) * 3
    assert clamped.offset == pytest.approx((-1.0,) * 3)


@pytest.mark.parametrize("gain, offset, message", [
    ((1.0, 1.0), (0.0, 0.0, 0.0), "three finite"),
    ((1.0, float("nan"), 1.0), (0.0, 0.0, 0.0), "three finite"),
    ((1.0, 5.0, 1.0), (0.0, 0.0, 0.0), "gains must lie"),
    ((1.0, 1.0, 1.0), (0.0, 3.0, 0.0), "offsets in"),
    ((1.0, True, 1.0), (0.0, 0.0, 0.0), "three finite"),
])
def test_invalid_calibrations_are_refused(gain, offset, message):
    with pytest.raises(ConfigError, match=message):
        ColourCalibration(gain, offset)


def test_dict_round_trip_and_bad_dicts():
    cal = ColourCalibration((1.1, 0.9, 1.0), (0.01, -0.02, 0.0), 12)
    assert ColourCalibration.from_dict(cal.to_dict()) == cal
    assert cal.describe().startswith("gain 1.100/0.900/1.000, offset +1.3/-2.6/+0.0 grey levels (R/G/B;")
    for bad in ({}, {"gain": "abc", "offset": [0, 0, 0]}, {"gain": [1, 1, 1], "offset": [0, 0, 0],
                                                         "fitted_at_iteration": -1}):
        with pytest.raises(ConfigError):
            ColourCalibration.from_dict(bad)


def test_fit_gives_the_identity_retarget_the_image_colour_moments(image, tiny_config):
    g = _spread_generator(tiny_config.generator)
    x = image_to_tensor(image, torch.device("cpu"))
    with torch.no_grad():
        raw = g(x, tuple(x.shape[2:]))
    cal = fit_colour_calibration(g, x)
    assert all(GAIN_RANGE[0] < v < GAIN_RANGE[1] for v in cal.gain)  # a real fit, not a clamp
    g.set_colour_calibration(cal)
    with torch.no_grad():
        out = g(x, tuple(x.shape[2:]))
        wide = g(x, (x.shape[2], 2 * x.shape[3]))
    target_mean, target_std = _moments(x)
    raw_mean, raw_std = _moments(raw)
    out_mean, out_std = _moments(out)
    assert (raw_mean - target_mean).abs().max() > 0.05  # the test has something to correct
    # Exact despite the clamp (the fit corrects for values pushed past -1/+1).
    assert (out_mean - target_mean).abs().max() < 1e-3
    assert (out_std - target_std).abs().max() < 1e-3
    # The same six numbers act at every size, and the result stays in [-1, 1].
    with torch.no_grad():
        g.set_colour_calibration(None)
        wide_raw = g(x, (x.shape[2], 2 * x.shape[3]))
    gain, offset = torch.tensor(cal.gain).view(1, 3, 1, 1), torch.tensor(cal.offset).view(1, 3, 1, 1)
    torch.testing.assert_close(wide, (wide_raw * gain + offset).clamp(-1, 1))


def test_fit_leaves_a_training_generator_untouched(image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu"))
    trainer.step()
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    rng = torch.get_rng_state()
    fit_colour_calibration(trainer.G, trainer.image)
    assert trainer.G.training and trainer.G.colour_calibration is None
    assert torch.equal(rng, torch.get_rng_state())
    for key, value in trainer.G.state_dict().items():
        assert torch.equal(value, before[key]), key  # no power iteration ran


@pytest.mark.slow
def test_checkpoints_carry_the_calibration_and_serving_applies_it(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu"))
    trainer.step()
    path = trainer.save(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(path)
    cal = ckpt.colour_calibration
    assert cal is not None and cal.fitted_at_iteration == 1
    assert "_colour_gain" not in ckpt.payload["generator"]  # not a trained weight
    served = ckpt.build_generator()
    assert served.colour_calibration == cal
    raw = Generator(tiny_config.generator)
    raw.load_state_dict(ckpt.payload["generator"])
    raw.eval()
    x = image_to_tensor(image, torch.device("cpu"))
    with torch.no_grad():
        expected = (raw(x, (24, 80)) * torch.tensor(cal.gain).view(1, 3, 1, 1)
                    + torch.tensor(cal.offset).view(1, 3, 1, 1)).clamp(-1, 1)
        torch.testing.assert_close(served(x, (24, 80)), expected)


@pytest.mark.slow
def test_no_calibration_option_and_old_checkpoints(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu", colour_calibration=False))
    path = trainer.save(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(path)  # also what a checkpoint from before the field looks like
    assert "colour_calibration" not in ckpt.payload
    assert ckpt.colour_calibration is None and ckpt.build_generator().colour_calibration is None


@pytest.mark.slow
def test_a_damaged_calibration_is_a_one_line_checkpoint_error(tmp_path, image, tiny_config):
    payload = Trainer(image, tiny_config, RunOptions(device="cpu")).state()
    payload.update(format="ingan-checkpoint", format_version=1)
    payload["colour_calibration"] = {"gain": [1.0, 1.0, 50.0], "offset": [0.0, 0.0, 0.0]}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"gains must lie.*refit it with python -m ingan.train.calibrate") as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "bad2.pt", payload)
    assert not (tmp_path / "bad2.pt").exists()
    # The suggested fix works on exactly such a file.
    from ingan.train.calibrate import calibrate_checkpoint

    assert calibrate_checkpoint(tmp_path / "bad.pt")["gain"] != [1.0, 1.0, 50.0]
    assert load_checkpoint(tmp_path / "bad.pt").colour_calibration is not None



def test_a_diverged_generator_is_reported_as_such_not_as_a_calibration_problem(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu"))
    with torch.no_grad():
        trainer.G.final[1].bias.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN or infinite values"):
        trainer.save(tmp_path / "ckpt.pt")


@pytest.mark.slow
def test_one_fit_per_iteration_serves_the_save_and_every_monitor_tile(tmp_path, image, tiny_config, monkeypatch):
    import ingan.train.trainer as trainer_module
    from ingan.train.monitor import MONITOR_SCALES, write_monitor

    calls = []
    real_fit = trainer_module.fit_colour_calibration
    monkeypatch.setattr(trainer_module, "fit_colour_calibration", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu"))
    trainer.step()
    trainer.save(tmp_path / "ckpt.pt")
    write_monitor(trainer, tmp_path)  # len(MONITOR_SCALES) retargets
    assert len(MONITOR_SCALES) > 1 and len(calls) == 1
    trainer.step()  # G changed: refitted
    trainer.save(tmp_path / "ckpt.pt")
    assert len(calls) == 2
    assert load_checkpoint(tmp_path / "ckpt.pt").colour_calibration == trainer.colour_calibration()
