import pytest
import torch

from ingan.model.config import DiscriminatorConfig
from ingan.model.discriminator import MultiScaleDiscriminator, count_scales, scale_weights


@pytest.mark.slow
def test_paper_crop_gives_nine_scales_of_224k_parameters():
    d = MultiScaleDiscriminator(256)
    assert len(d.nets) == 9
    assert sum(p.numel() for p in d.nets[0].parameters()) == 224_001


def test_scale_weights_schedule():
    cfg = DiscriminatorConfig()
    early = scale_weights(0, 256, cfg)
    even = scale_weights(25_000, 256, cfg)
    late = scale_weights(75_000, 256, cfg)
    assert sum(early) == pytest.approx(1.0) and sum(late) == pytest.approx(1.0)
    assert early[-1] > early[0]  # coarse-heavy at the start
    assert even == pytest.approx([1 / len(even)] * len(even))
    assert late[0] > late[-1]  # fine-heavy at the end


def test_scale_count_follows_short_side():
    assert count_scales(40, 13, 1.4, 99) == 4
    assert count_scales(10, 13, 1.4, 99) == 1


@pytest.mark.parametrize("hw", [(32, 32), (16, 48), (72, 40)])
def test_output_map_is_finite_probability(hw):
    d = MultiScaleDiscriminator(32, DiscriminatorConfig(base_channels=4))
    w = scale_weights(0, min(hw), d.config)
    out = d(torch.rand(1, 3, *hw) * 2 - 1, w)
    assert out.ndim == 4 and torch.isfinite(out).all()
    assert (out >= 0).all() and (out <= 1).all()
