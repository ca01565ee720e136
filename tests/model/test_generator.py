import pytest
import torch

from ingan.model.config import GeneratorConfig
from ingan.model.generator import Generator
from ingan.model.layers import baked_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_default_config_has_paper_parameter_count():
    assert sum(p.numel() for p in Generator().parameters()) == 4_804_611


@pytest.mark.parametrize(
    "size",
    [(16, 16), (32, 48), (48, 32), (37, 101), (99, 23), (17, 17), (64, 200), (200, 24), (31, 33), (120, 72)],
)
def test_output_has_exactly_the_requested_size(size):
    g = Generator(GeneratorConfig(base_channels=4, n_blocks=1)).eval()
    x = torch.rand(1, 3, 40, 52) * 2 - 1
    with torch.no_grad():
        y = g(x, size)
    assert y.shape == (1, 3, *size)
    assert y.abs().max() <= 1.0


def test_non_multiple_size_is_a_centre_crop_of_the_multiple():
    g = Generator(GeneratorConfig(base_channels=4, n_blocks=1)).eval()
    x = torch.rand(1, 3, 40, 52) * 2 - 1
    with torch.no_grad():
        full = g(x, (40, 56))
        cropped = g(x, (37, 51))
    assert torch.equal(cropped, full[:, :, 1:38, 2:53])


def test_below_minimum_size_is_refused():
    g = Generator(GeneratorConfig(base_channels=4, n_blocks=1))
    with pytest.raises(ValueError, match="minimum side 16"):
        g(torch.zeros(1, 3, 32, 32), (8, 32))


def test_other_downsampling_depths_keep_sizes():
    cfg = GeneratorConfig(base_channels=4, n_blocks=2, n_downsampling=2)
    g = Generator(cfg).eval()
    assert cfg.min_size == 8 and cfg.size_multiple == 4
    with torch.no_grad():
        assert g(torch.zeros(1, 3, 20, 20), (9, 30)).shape == (1, 3, 9, 30)


def test_baked_spectral_norm_matches_eval_forward():
    from dataclasses import replace

    cfg = GeneratorConfig(base_channels=4, n_blocks=1)
    g = Generator(cfg)
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    for _ in range(3):  # a few training forwards move the power-iteration vectors
        g(x, (32, 48))
    plain = Generator(replace(cfg, spectral_norm=False))
    plain.load_state_dict(baked_state_dict(g))
    assert g.training  # the source model's mode is left alone
    g.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x, (40, 32)), g(x, (40, 32)), rtol=0, atol=1e-6)
    assert not any("parametrizations" in k for k in plain.state_dict())


def test_homography_identity_equals_plain_resize_at_same_size():
    from ingan.model.warp import top_shift_homography

    g = Generator(GeneratorConfig(base_channels=4, n_blocks=1)).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    identity = torch.tensor(top_shift_homography(0.0, 0.0), dtype=torch.float32)[None]
    with torch.no_grad():
        plain = g(x, (32, 32))
        warped = g(x, (32, 32), identity)
    torch.testing.assert_close(warped, plain, rtol=0, atol=1e-5)


def test_spectral_norm_normalises_largest_singular_value():
    from ingan.model.layers import conv

    layer = conv(8, 16, 3)
    for _ in range(30):
        w = layer.weight  # each training access runs one power iteration
    sigma = torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)
    assert sigma == pytest.approx(1.0, rel=1e-3)


def test_spectral_norm_is_fp32_under_bf16_autocast():
    g = Generator(GeneratorConfig(base_channels=4, n_blocks=1))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = g(x, (32, 48))
    y.float().mean().backward()
    assert g.entry[1].parametrizations.weight[0]._u.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in g.parameters() if p.grad is not None)


def test_norm_is_exactly_instance_norm_with_affine():
    from torch import nn

    from ingan.model.layers import norm

    layer = norm(6)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2)
        layer.bias.uniform_(-1, 1)
    reference = nn.InstanceNorm2d(6, affine=True)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 6, 9, 13) * 3 + 1
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)
    # and equal to train-mode BatchNorm at batch 1, which is what the original runs
    bn = nn.BatchNorm2d(6).train()
    bn.load_state_dict(layer.state_dict(), strict=False)
    torch.testing.assert_close(layer(x[:1]), bn(x[:1]), rtol=1e-5, atol=1e-5)
