"""Half precision on the CPU: the guard catches it, the emulation reproduces FP16 numerics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ingan.model.precision import HalfEmulation, HalfOnCpuGuard, round_parameters_, round_through


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_guard_raises_on_a_half_convolution_on_the_cpu(dtype):
    x, w = torch.randn(1, 4, 8, 8, dtype=dtype), torch.randn(4, 4, 3, 3, dtype=dtype)
    with pytest.raises(RuntimeError, match="half-precision"):
        with HalfOnCpuGuard() as guard:
            F.conv2d(x, w)
    assert guard.seen and str(dtype) in guard.seen[0]


def test_guard_lets_float32_and_half_elementwise_through():
    with HalfOnCpuGuard() as guard:
        F.conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3))
        (torch.randn(8, dtype=torch.float16) * 2).sum()
    assert guard.seen == []


def test_emulation_matches_rounding_each_step_by_hand():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3)
    x = torch.randn(1, 3, 9, 9)
    emulated_conv = round_parameters_(torch.nn.Conv2d(3, 5, 3))
    emulated_conv.load_state_dict(conv.state_dict())
    round_parameters_(emulated_conv)
    with torch.no_grad(), HalfEmulation():
        got = F.leaky_relu(emulated_conv(round_through(x)), 0.2) + 1.0
    w16, b16 = round_through(conv.weight.detach()), round_through(conv.bias.detach())
    by_hand = round_through(F.conv2d(round_through(x), w16, b16))
    by_hand = round_through(round_through(F.leaky_relu(by_hand, 0.2)) + 1.0)
    assert torch.equal(got, by_hand)
    assert torch.equal(got, round_through(got))  # every value is an FP16 value


def test_emulation_is_close_to_real_fp16_where_it_can_run_here():
    # Real FP16 convolution on a tiny tensor is cheap even where it is slow; compare once.
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    real = conv.half()(x.half()).float()
    emulated_conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    emulated_conv.load_state_dict({k: v.float() for k, v in conv.state_dict().items()})
    with torch.no_grad(), HalfEmulation():
        emulated = emulated_conv(round_through(x))
    # Both are FP16 results of the same FP16 inputs; only the accumulation order/precision
    # inside the kernel differs: within a couple of FP16 ulps.
    assert torch.allclose(real.detach(), emulated, rtol=2e-3, atol=2e-3)


def test_in_place_ops_are_rounded_in_place():
    x = torch.full((4,), 1.0 + 2**-15)
    with HalfEmulation():
        y = x.mul_(1.0)
    assert y is x and torch.equal(x, torch.ones(4))
