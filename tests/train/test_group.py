"""The grouped step (ingan/train/group.py): G images' InGANs trained as one.

Tolerances. The group computes each member's maths with other float summation orders
(grouped vs dense convolutions, batched vs single power iterations, per-member vs
whole-tensor loss means): ~1e-7 relative per operation. Training amplifies such
differences: Adam turns a rounding difference in a near-zero gradient into a step of up
to +-lr (2e-4 here), and spectral norm's one-step power iteration is sensitive when the
top singular values are close. Measured on the single-image trainer alone, a 1e-7 relative
weight perturbation grows to ~1e-6 in the losses after 4 steps and ~1e-4 after 6, so
members are compared over 4 steps. Observed there (G=3): losses <= 1e-6, weights <= 4e-6,
power-iteration vectors <= 3.3e-5, norm affines and free biases <= 1.8e-5 (a tenth of
one Adam step), generator outputs <= 3.1e-5. Asserted: losses 1e-5 (a wrong noise, crop
or size changes them by > 1e-2), everything else 1e-4 (half an Adam step). Conv biases
that feed a per-channel norm have an exactly zero true gradient (the norm removes any
per-channel shift), so their values are rounding noise moved by Adam: bounded by lr per
optimiser step, and irrelevant to every output (the outputs are compared too).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from testimages import synthetic_image

from ingan.model.checkpoint import load_checkpoint
from ingan.train.config import RunOptions
from ingan.train.group import GroupTrainer
from ingan.train.trainer import Trainer

CPU = RunOptions(device="cpu")
STEPS = 4
LOSS_ATOL = 1e-5
WEIGHT_ATOL = 1e-4


class InjectedTrainer(Trainer):
    """A single-image trainer whose output sizes (and D scale weights) are given."""

    sizes: list[tuple[tuple[int, int], tuple[float, ...]]] = []

    def plan(self):
        plan = super().plan()
        out_hw, weights = self.sizes[plan.iteration]
        return dataclasses.replace(plan, out_hw=out_hw, weights=weights)


def _norm_fed_biases(model: nn.Module) -> set[str]:
    names = set()
    for prefix, parent in model.named_modules():
        children = list(parent.named_children())
        for (name, first), (_, second) in zip(children, children[1:]):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.GroupNorm):
                names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def _assert_same_model(single: nn.Module, member: nn.Module, noise_bound: float) -> None:
    noisy = _norm_fed_biases(single)
    assert noisy  # the generator and the discriminator both have such biases
    theirs = member.state_dict()
    for key, value in single.state_dict().items():
        atol = noise_bound if key in noisy else WEIGHT_ATOL
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=atol, msg=key)


def _assert_same_outputs(single: Trainer, member: Trainer) -> None:
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    single.G.eval(), member.G.eval()
    with torch.no_grad():
        torch.testing.assert_close(member.G(x, (24, 48)), single.G(x, (24, 48)), rtol=0, atol=WEIGHT_ATOL)
    single.G.train(), member.G.train()


def _config(tiny_config, **changes):
    # The extra inverse step from iteration 2 and the lr decay from 3: all within STEPS.
    return tiny_config.with_overrides(inverse_start=1, lr_decay_start=3, **changes)


@pytest.mark.slow
def test_group_of_one_is_the_single_image_run(image, tiny_config):
    config = _config(tiny_config)
    single = Trainer(image, config, CPU)
    expected = []
    for _ in range(STEPS):
        single.step()
        expected.append(vars(single.losses()))
    group = GroupTrainer.from_images([image], config, CPU)
    for step in range(STEPS):
        group.step()
        got = vars(group.losses()[0])
        assert got == pytest.approx(expected[step], abs=LOSS_ATOL, rel=0), step
    group.sync_members()
    member = group.members[0].trainer
    assert member.iteration == STEPS
    noise_bound = 2 * config.g_lr * STEPS * 2  # two G steps per iteration once the inverse step runs
    _assert_same_model(single.G, member.G, noise_bound)
    _assert_same_model(single.D, member.D, noise_bound)
    _assert_same_outputs(single, member)


@pytest.mark.slow
def test_each_member_of_three_trains_as_its_own_single_run(tiny_config):
    """Different image sizes and seeds, homographies on: each member equals its single
    run given the group's output sizes (the leader's), every other draw its own."""
    config = _config(tiny_config, max_transform=0.3)
    images = [synthetic_image(48, 56, 0), synthetic_image(40, 72, 1), synthetic_image(64, 48, 2)]
    seeds = [0, 5, 7]
    group = GroupTrainer.from_images(images, config, CPU, names=["a", "b", "c"], seeds=seeds)
    group_losses, sizes = [], []
    for _ in range(STEPS):
        group.step()
        group_losses.append(group.losses())
    group.sync_members()
    # The leader's sizes, as the leader's stream draws them.
    leader = Trainer(images[0], dataclasses.replace(config, seed=seeds[0]), CPU)
    for _ in range(STEPS):
        plan = leader.plan()
        sizes.append((plan.out_hw, plan.weights))
        leader.iteration += 1
    assert len({s[0] for s in sizes}) > 1  # the test covers several output sizes

    for index, (pixels, seed) in enumerate(zip(images, seeds)):
        single = InjectedTrainer(pixels, dataclasses.replace(config, seed=seed), CPU)
        single.sizes = sizes
        for step in range(STEPS):
            single.step()
            got = vars(group_losses[step][index])
            assert got == pytest.approx(vars(single.losses()), abs=LOSS_ATOL, rel=0), (index, step)
        member = group.members[index].trainer
        noise_bound = 2 * config.g_lr * STEPS * 2
        _assert_same_model(single.G, member.G, noise_bound)
        _assert_same_model(single.D, member.D, noise_bound)
        _assert_same_outputs(single, member)
        assert torch.equal(single.data_rng.get_state(), member.data_rng.get_state())


def _two_images() -> list[np.ndarray]:
    return [synthetic_image(48, 56, 0), synthetic_image(40, 64, 3)]


def _paths(tmp_path, n: int):
    return [tmp_path / f"m{i}" / "ckpt.pt" for i in range(n)]


@pytest.mark.slow
def test_resumed_group_continues_bit_exactly(tmp_path, tiny_config):
    config = _config(tiny_config, max_transform=0.3)
    straight = GroupTrainer.from_images(_two_images(), config, CPU, names=["a.png", "b.png"], seeds=[0, 1])
    for _ in range(2):
        straight.step()
    for path in _paths(tmp_path, 2):
        path.parent.mkdir()
    paths = straight.save(_paths(tmp_path, 2))
    expected = []
    for _ in range(3):  # crosses the inverse step's start and the lr decay
        straight.step()
        expected.append(straight.losses())

    resumed = GroupTrainer.from_checkpoints([load_checkpoint(p) for p in paths], CPU)
    assert resumed.iteration == 2 and [m.trainer.image_name for m in resumed.members] == ["a.png", "b.png"]
    got = []
    for _ in range(3):
        resumed.step()
        got.append(resumed.losses())
    assert got == expected
    for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.opt_d.state_dict()["state"].values(), resumed.opt_d.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # an ONNX export: ~10 s on 2 cores
def test_member_checkpoint_is_an_ordinary_checkpoint(tmp_path, tiny_config):
    from ingan.export.pipeline import ExportOptions, export_checkpoint
    from ingan.runtime import load

    config = _config(tiny_config)
    group = GroupTrainer.from_images(_two_images(), config, CPU, names=["a.png", "b.png"])
    for _ in range(2):
        group.step()
    group.losses()
    for path in _paths(tmp_path, 2):
        path.parent.mkdir()
    paths = group.save(_paths(tmp_path, 2))
    ckpt = load_checkpoint(paths[1])
    assert ckpt.has_training_state and ckpt.iteration == 2 and ckpt.payload["image_name"] == "b.png"
    np.testing.assert_array_equal(ckpt.image, _two_images()[1])
    assert ckpt.payload["train_config"] == config.to_dict()
    assert ckpt.colour_calibration is not None
    assert set(ckpt.payload["losses"]) == {"g_gan", "g_rec", "g_inverse", "d_real", "d_fake"}
    # Its generator is member 1's share of the stacked weights.
    g = ckpt.build_generator()
    g.set_colour_calibration(None)
    member = group.members[1].trainer
    member.G.eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(g(x, (24, 40)), member.G(x, (24, 40)), rtol=0, atol=0)
    # Retargets through the runtime, and exports, like any other checkpoint.
    runner = load(paths[1], device="cpu")
    assert runner.retarget((48, 80)).shape == (48, 80, 3)
    result = export_checkpoint(paths[1], ExportOptions(out_dir=tmp_path / "export", min_size=(16, 16),
                                                       max_size=(64, 96), engine="skip"))
    onnx = load(tmp_path / "export" / "model.onnx", device="cpu")
    assert np.abs(onnx.retarget((48, 80)).astype(int) - runner.retarget((48, 80)).astype(int)).max() <= 1
    assert result.artifacts


@pytest.mark.slow
def test_a_member_resumes_alone_on_its_own_streams(tmp_path, tiny_config):
    """A member's checkpoint resumed as one image continues the member's own random
    streams: its next draws are the ones the member would draw in the group."""
    config = _config(tiny_config)
    group = GroupTrainer.from_images(_two_images(), config, CPU, seeds=[3, 4])
    group.step()
    for path in _paths(tmp_path, 2):
        path.parent.mkdir()
    path = group.save(_paths(tmp_path, 2))[1]
    member = group.members[1]
    next_plan = group.plan().members[1]  # draws from the member's data stream...
    next_noise = torch.rand(4, generator=member.noise)  # ...and from its noise stream

    alone = Trainer.from_checkpoint(load_checkpoint(path), CPU)
    assert torch.equal(torch.rand(4), next_noise)  # the single run draws noise from the global RNG
    plan = alone.plan()
    assert (plan.top, plan.left, plan.iteration) == (next_plan.top, next_plan.left, next_plan.iteration)
    alone.step()
    assert all(math.isfinite(v) for v in vars(alone.losses()).values())


@pytest.mark.slow
def test_members_must_share_config_and_iteration(tmp_path, tiny_config, image):
    from ingan.errors import ConfigError
    from ingan.train.group import Member

    first = Member.capture(Trainer(image, tiny_config, CPU, image_name="a"))
    other = Member.capture(Trainer(image, tiny_config.with_overrides(crop_size=40), CPU, image_name="b"))
    with pytest.raises(ConfigError, match="'b' was trained with another config than 'a'"):
        GroupTrainer([first, other], CPU)
    later = Trainer(image, tiny_config, CPU, image_name="c")
    later.step()
    with pytest.raises(ConfigError, match="'c' is at iteration 1, 'a' at 0"):
        GroupTrainer([first, Member.capture(later)], CPU)
    with pytest.raises(ConfigError, match="^'image1': image is 64x24: too small to train on"):
        GroupTrainer.from_images([image, np.zeros((24, 64, 3), np.uint8)], tiny_config, CPU)


@pytest.mark.slow
def test_run_group_saves_monitors_and_stops_on_budget_and_signals(tmp_path, tiny_config, monkeypatch):
    import os
    import signal

    from ingan.train.group_run import run_group

    import ingan.train.monitor as monitor_module
    from ingan.model.grouped import member_state_dicts

    config = tiny_config.with_overrides(iters=4)
    options = dataclasses.replace(CPU, save_every=2, monitor_every=1, quiet=True)
    folders = [tmp_path / "a", tmp_path / "b"]
    group = GroupTrainer.from_images(_two_images(), config, options, names=["a.png", "b.png"])
    saves, stale_monitors = [], []
    real_save, real_monitor = group.save, monitor_module.write_monitor
    monkeypatch.setattr(group, "save", lambda paths: saves.append(group.iteration) or real_save(paths))

    def checked_monitor(trainer, out_dir):  # a monitor must show the member's current weights
        index = [m.trainer for m in group.members].index(trainer)
        current = member_state_dicts(group.G, 2)[index]
        if any(not torch.equal(current[k], v) for k, v in trainer.G.state_dict().items()):
            stale_monitors.append(group.iteration)
        return real_monitor(trainer, out_dir)

    monkeypatch.setattr(monitor_module, "write_monitor", checked_monitor)
    report = run_group(group, folders, options)
    assert (report.status, report.exit_code, report.iteration, report.iterations_done) == ("finished", 0, 4, 4)
    assert saves == [2, 4] and report.rate > 0 and len(report.losses) == 2 and not stale_monitors
    for folder in folders:
        assert load_checkpoint(folder / "ckpt.pt").iteration == 4
        assert [p.name for p in sorted(folder.glob("monitor_*.png"))] == [f"monitor_00000{i}.png" for i in (1, 2, 3, 4)]

    # Ctrl-C: the step in progress finishes, every member is saved, exit code 130.
    longer = config.with_overrides(iters=50)
    group = GroupTrainer.from_images(_two_images(), longer, options)
    real_step = group.step

    def step_then_interrupt():
        out = real_step()
        if group.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(group, "step", step_then_interrupt)
    report = run_group(group, [tmp_path / "c", tmp_path / "d"], options)
    assert (report.status, report.exit_code, report.iteration) == ("interrupted", 130, 2)
    assert load_checkpoint(tmp_path / "d" / "ckpt.pt").iteration == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    # The time budget stops after the step that used it up.
    group = GroupTrainer.from_images(_two_images(), longer, options)
    report = run_group(group, [tmp_path / "e", tmp_path / "f"], dataclasses.replace(options, time_budget=0.0))
    assert (report.status, report.exit_code, report.iteration) == ("stopped at the time budget", 0, 1)


# On CUDA, eager steps are not deterministic (bilinear upsampling's backward uses atomics)
# and training amplifies differences ~10x per step: two eager runs of the single-image
# trainer were 8.8e-3 apart by step 4 on an H200 (benchmarks/results/2026-12-04-h200-train-
# group). Runs are compared over their first steps only.
CUDA_STEPS = 5


@pytest.mark.cuda
def test_group_of_one_equals_the_single_image_trainer_on_cuda(image, tiny_config):
    """The member's CUDA noise generator starts where the single run's global CUDA stream is."""
    cuda = RunOptions(device="cuda")
    config = _config(tiny_config)
    Trainer(image, config, cuda)
    expected_noise = torch.rand(4096, device="cuda")
    member = GroupTrainer.from_images([image], config, cuda).members[0]
    assert torch.equal(torch.rand(4096, device="cuda", generator=member.noise), expected_noise)

    single = Trainer(image, config, cuda)
    expected = []
    for _ in range(CUDA_STEPS):
        single.step()
        expected.append(vars(single.losses()))
    group = GroupTrainer.from_images([image], config, cuda)
    for step in range(CUDA_STEPS):
        group.step()
        assert vars(group.losses()[0]) == pytest.approx(expected[step], abs=1e-4, rel=0), step


@pytest.mark.cuda
def test_group_graph_steps_train_like_eager_steps(tiny_config):
    """Noise off so both runs see identical inputs; size_step 16 makes shapes repeat, so
    graphs are captured (with the members' noise generators registered) and replayed."""
    config = tiny_config.with_overrides(noise=0.0, iters=40, size_step=16)
    images = _two_images() + [synthetic_image(56, 40, 5)]
    runs = []
    for graphs in (False, True):
        group = GroupTrainer.from_images(images, config, RunOptions(device="cuda", cudnn=True, cuda_graphs=graphs))
        runs.append([torch.stack(group.step()) for _ in range(14)])
    for e, g in zip(runs[0][:CUDA_STEPS], runs[1][:CUDA_STEPS]):  # 3 eager steps, then graphs
        torch.testing.assert_close(g, e, rtol=0, atol=1e-3)
    assert all(bool(torch.isfinite(g).all()) for g in runs[1])
    stats = group.graph_stats
    assert stats["captures"] >= 1 and stats["replays"] >= 1 and stats["disabled_reason"] is None, stats
