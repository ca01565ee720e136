import math

import numpy as np
import pytest
import torch

from ingan.errors import CheckpointError, ConfigError
from ingan.model.checkpoint import load_checkpoint, save_checkpoint, slim_payload
from ingan.train.config import RunOptions
from ingan.train.trainer import Trainer

CPU = RunOptions(device="cpu")


def test_losses_are_finite_after_a_few_steps(image, tiny_config):
    trainer = Trainer(image, tiny_config, CPU)
    for _ in range(5):  # past inverse_start, so the extra inverse step runs too
        trainer.step()
        losses = trainer.losses()
        assert all(math.isfinite(v) for v in vars(losses).values())
    assert trainer.iteration == 5
    assert losses.g_inverse > 0


def test_homography_augmentation_trains(image, tiny_config):
    trainer = Trainer(image, tiny_config.with_overrides(max_transform=0.3), CPU)
    for _ in range(3):
        trainer.step()
    assert all(math.isfinite(v) for v in vars(trainer.losses()).values())


def test_image_smaller_than_crop_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="smaller than the 48 px training crop; pass --crop-size 40"):
        Trainer(np.zeros((44, 60, 3), np.uint8), tiny_config.with_overrides(crop_size=48), CPU)


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, CPU, image_name="tiny.png")
    trainer.step()
    path = trainer.save(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(path)
    assert ckpt.iteration == 1 and ckpt.has_training_state
    np.testing.assert_array_equal(ckpt.image, image)
    assert ckpt.payload["train_config"] == tiny_config.to_dict()
    g = ckpt.build_generator()
    assert g.colour_calibration is not None  # checked in tests/model/test_calibration.py
    g.set_colour_calibration(None)  # the trained weights themselves round-trip exactly
    trainer.G.eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(g(x, (24, 40)), trainer.G(x, (24, 40)), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp files left


@pytest.mark.slow
def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(tmp_path, image, tiny_config):
    straight = Trainer(image, tiny_config, CPU)
    for _ in range(3):
        straight.step()
    path = straight.save(tmp_path / "ckpt.pt")
    expected = []
    for _ in range(3):  # crosses inverse_start and lr_decay_start
        straight.step()
        expected.append(straight.losses())

    resumed = Trainer.from_checkpoint(load_checkpoint(path), CPU)
    assert resumed.iteration == 3
    got = []
    for _ in range(3):
        resumed.step()
        got.append(resumed.losses())
    assert got == expected
    for (name, a), b in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_slim_checkpoint_cannot_resume(tmp_path, image, tiny_config):
    trainer = Trainer(image, tiny_config, CPU)
    trainer.step()
    path = save_checkpoint(tmp_path / "slim.pt", slim_payload(trainer.state()))
    ckpt = load_checkpoint(path)
    assert not ckpt.has_training_state
    ckpt.build_generator()  # still serves
    with pytest.raises(CheckpointError, match="holds only the generator"):
        Trainer.from_checkpoint(ckpt, CPU)


def test_cuda_request_without_cuda_is_a_clear_error(image, tiny_config, monkeypatch):
    from ingan.errors import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="use --device cpu"):
        Trainer(image, tiny_config, RunOptions(device="cuda"))


@pytest.mark.cuda
def test_cuda_bf16_channels_last_steps_are_finite(image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cuda", amp=True, channels_last=True))
    for _ in range(5):
        trainer.step()
    assert all(math.isfinite(v) for v in vars(trainer.losses()).values())
    assert trainer.retarget(1.0, 1.5).shape == (image.shape[0], round(image.shape[1] * 1.5), 3)


@pytest.mark.cuda
def test_cuda_checkpoint_resumes_on_cuda(tmp_path, image, tiny_config):
    opts = RunOptions(device="cuda", amp=False, channels_last=False)
    trainer = Trainer(image, tiny_config, opts)
    trainer.step()
    ckpt = load_checkpoint(trainer.save(tmp_path / "ckpt.pt"))
    resumed = Trainer.from_checkpoint(ckpt, opts)
    resumed.step()
    assert resumed.iteration == 2


@pytest.mark.slow
def test_bf16_channels_last_code_path_runs_on_cpu(image, tiny_config):
    """The CUDA fast path (bf16 autocast + channels-last), exercised on CPU autocast."""
    trainer = Trainer(image, tiny_config, CPU)
    trainer.amp = True
    trainer.G.to(memory_format=torch.channels_last)
    trainer.D.to(memory_format=torch.channels_last)
    trainer.image = trainer.image.contiguous(memory_format=torch.channels_last)
    for _ in range(5):
        trainer.step()
    assert all(math.isfinite(v) for v in vars(trainer.losses()).values())
    assert trainer.retarget(0.5, 1.0).dtype == np.uint8


def test_image_too_small_for_any_crop(tiny_config):
    with pytest.raises(ConfigError, match="too small to train on; InGAN needs at least 32 px"):
        Trainer(np.zeros((20, 60, 3), np.uint8), tiny_config, CPU)
