"""Graph-safe training steps.

On CPU: the static-buffer, in-place step that CUDA graphs capture computes exactly what
the ordinary eager step computes. On CUDA (marked): captured graphs train like eager steps.
"""

import math

import pytest
import torch

from ingan.errors import DeviceError
from ingan.model.layers import SpectralNorm, set_in_place_power_iteration
from ingan.model.checkpoint import load_checkpoint, save_checkpoint
from ingan.train.config import RunOptions
from ingan.train.cuda_graphs import StaticStepInputs
from ingan.train.trainer import Trainer

CPU = RunOptions(device="cpu")


def _static_step(trainer: Trainer, inputs: StaticStepInputs) -> tuple[torch.Tensor, ...]:
    trainer._set_lr()
    plan = trainer.plan()
    inputs.fill(plan)
    losses = inputs.compute(plan)
    trainer.iteration += 1
    return tuple(losses.unbind())


@pytest.mark.slow
@pytest.mark.parametrize("max_transform", [0.0, 0.3])
def test_static_buffer_step_equals_the_eager_step(image, tiny_config, max_transform):
    config = tiny_config.with_overrides(max_transform=max_transform)
    # One after the other: both draw their input noise from the global RNG that
    # Trainer() seeds.
    eager = Trainer(image, config, CPU)
    expected = [torch.stack(eager.step()) for _ in range(6)]  # crosses curriculum, inverse start, lr decay
    static = Trainer(image, config, CPU)
    inputs = StaticStepInputs(static)
    got = [torch.stack(_static_step(static, inputs)) for _ in range(6)]
    assert all(torch.equal(e, g) for e, g in zip(expected, got)), (expected, got)
    for (name, p), q in zip(eager.G.state_dict().items(), static.G.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(eager.D.state_dict().values(), static.D.state_dict().values()):
        assert torch.equal(p, q)


def test_in_place_power_iteration_keeps_buffers_and_values():
    torch.manual_seed(0)
    weight = torch.randn(8, 4, 3, 3)
    a, b = SpectralNorm(weight), SpectralNorm(weight)
    b.load_state_dict(a.state_dict())
    holder = torch.nn.Module()
    holder.sn = b
    assert set_in_place_power_iteration(holder, True) == 1
    u_address = b._u.data_ptr()
    for _ in range(4):
        torch.testing.assert_close(a(weight), b(weight), rtol=0, atol=0)
    assert b._u.data_ptr() == u_address
    torch.testing.assert_close(a._u, b._u, rtol=0, atol=0)


def test_cuda_graphs_refuse_a_cpu_run(image, tiny_config):
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device.*drop --cuda-graphs"):
        Trainer(image, tiny_config, RunOptions(device="cpu", cuda_graphs=True))


@pytest.mark.slow
def test_checkpoint_optimizer_state_is_portable(tmp_path, image, tiny_config):
    """A graph run keeps lr in device tensors and capturable Adam; its checkpoint must
    still resume in an eager run (simulated here by the same group settings on CPU)."""
    trainer = Trainer(image, tiny_config, CPU)
    trainer.step()
    for group in trainer.opt_g.param_groups:
        group["lr"] = torch.tensor(group["lr"])
        group["capturable"] = True
    ckpt = load_checkpoint(trainer.save(tmp_path / "ckpt.pt"))
    groups = ckpt.payload["optimizer_g"]["param_groups"]
    assert all(isinstance(g["lr"], float) and g["capturable"] is False for g in groups)
    resumed = Trainer.from_checkpoint(ckpt, CPU)
    resumed.step()
    assert all(math.isfinite(v) for v in vars(resumed.losses()).values())


@pytest.mark.slow
def test_resume_uses_this_runs_fused_setting_not_the_saved_one(tmp_path, image, tiny_config):
    """torch's load_state_dict restores the saved `fused` flag; a CUDA-written state
    (fused) resumed on CPU, or a CPU-written one on CUDA, must follow the new device."""
    trainer = Trainer(image, tiny_config, CPU)
    trainer.step()
    payload = trainer.state()
    for key in ("optimizer_g", "optimizer_d"):
        payload[key]["param_groups"] = [{**g, "fused": True} for g in payload[key]["param_groups"]]
        for per_param in payload[key]["state"].values():
            per_param["step"] = per_param["step"].to(torch.float64)
    resumed = Trainer.from_checkpoint(load_checkpoint(save_checkpoint(tmp_path / "ckpt.pt", payload)), CPU)
    for opt in (resumed.opt_g, resumed.opt_d):
        assert all(g["fused"] is None for g in opt.param_groups)
        # fused on load: counters were placed as float32 on the parameter's device
        assert all(s["step"].dtype == torch.float32 for s in opt.state.values())
    resumed.step()
    assert all(math.isfinite(v) for v in vars(resumed.losses()).values())


@pytest.mark.cuda
def test_cpu_written_checkpoint_resumes_with_graphs(tmp_path, image, tiny_config):
    """A CPU run keeps Adam's step counters on the CPU; capturable Adam needs them on the GPU."""
    config = tiny_config.with_overrides(iters=20, size_step=16)
    cpu = Trainer(image, config, CPU)
    for _ in range(3):
        cpu.step()
    ckpt = load_checkpoint(cpu.save(tmp_path / "ckpt.pt"))
    resumed = Trainer.from_checkpoint(ckpt, RunOptions(device="cuda", cuda_graphs=True))
    assert all(g["fused"] for g in resumed.opt_g.param_groups)
    for _ in range(8):
        resumed.step()
    assert all(math.isfinite(v) for v in vars(resumed.losses()).values())
    stats = resumed.graph_stats
    assert stats["captures"] >= 1 and stats["disabled_reason"] is None, stats


@pytest.mark.cuda
def test_graph_steps_train_like_eager_steps(image, tiny_config):
    """Noise off so both runs see identical inputs; graphs replay after 3 warm-up steps.

    size_step 16 leaves ~25 output shapes, so shapes repeat within the run and both
    captures and replays happen.
    """
    config = tiny_config.with_overrides(noise=0.0, iters=40, size_step=16)
    eager = Trainer(image, config, RunOptions(device="cuda"))
    expected = [torch.stack(eager.step()) for _ in range(14)]
    graphed = Trainer(image, config, RunOptions(device="cuda", cuda_graphs=True))
    got = [torch.stack(graphed.step()) for _ in range(14)]
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)
    stats = graphed.graph_stats
    assert stats["captures"] >= 1 and stats["replays"] >= 1 and stats["disabled_reason"] is None, stats
    for p, q in zip(eager.G.parameters(), graphed.G.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
def test_graph_run_checkpoint_resumes_eagerly(tmp_path, image, tiny_config):
    config = tiny_config.with_overrides(iters=20, size_step=16)
    graphed = Trainer(image, config, RunOptions(device="cuda", cuda_graphs=True))
    for _ in range(8):
        graphed.step()
    ckpt = load_checkpoint(graphed.save(tmp_path / "ckpt.pt"))
    for options in (RunOptions(device="cuda"), CPU, RunOptions(device="cuda", cuda_graphs=True)):
        resumed = Trainer.from_checkpoint(ckpt, options)
        for _ in range(3):
            resumed.step()
        assert all(math.isfinite(v) for v in vars(resumed.losses()).values())
