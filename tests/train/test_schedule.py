import pytest
import torch

from ingan.train.config import PRESETS, TrainConfig
from ingan.train.schedule import lr_factor, sample_output_size, scale_range


def test_paper_preset_matches_the_original():
    cfg = PRESETS["paper"]
    assert (cfg.iters, cfg.crop_size, cfg.g_lr, cfg.d_lr, cfg.beta1) == (75_000, 256, 5e-5, 5e-5, 0.5)
    assert (cfg.min_scale, cfg.max_scale, cfg.curriculum_iters) == (0.15, 2.25, 10_000)
    assert (cfg.rec_weight, cfg.inverse_start, cfg.lr_decay_start, cfg.max_transform) == (0.1, 10_000, 20_000, 0.0)


def test_lr_is_constant_then_linear_to_zero():
    cfg = PRESETS["paper"]
    assert lr_factor(0, cfg) == lr_factor(20_000, cfg) == 1.0
    assert lr_factor(47_500, cfg) == pytest.approx(0.5)
    assert lr_factor(75_000, cfg) == pytest.approx(0.0)


def test_curriculum_widens_then_holds():
    cfg = PRESETS["paper"]
    assert scale_range(0, cfg) == (1.0, 1.0)
    lo, hi = scale_range(5_000, cfg)
    assert lo == pytest.approx(0.575) and hi == pytest.approx(1.625)
    assert scale_range(10_000, cfg) == pytest.approx((0.15, 2.25))
    assert scale_range(60_000, cfg) == pytest.approx((0.15, 2.25))


def test_sampled_sizes_are_multiples_within_range():
    cfg = PRESETS["paper"]
    rng = torch.Generator().manual_seed(0)
    for _ in range(200):
        h, w = sample_output_size(20_000, (256, 256), cfg, rng)
        assert h % 8 == 0 and w % 8 == 0
        assert 0.15 * 256 <= h <= 2.25 * 256 + 8 and 0.15 * 256 <= w <= 2.25 * 256 + 8
    assert sample_output_size(0, (256, 256), cfg, rng) == (256, 256)


def test_config_round_trips_and_rejects_unknown_fields():
    cfg = PRESETS["quick"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    from ingan.errors import ConfigError

    with pytest.raises(ConfigError, match="newer ingan"):
        TrainConfig.from_dict({**cfg.to_dict(), "from_the_future": 1})
    with pytest.raises(ConfigError, match="crop size"):
        cfg.with_overrides(crop_size=100)


def test_rescaled_schedule_keeps_milestone_fractions():
    cfg = PRESETS["paper"].rescaled(7_500)
    assert (cfg.iters, cfg.curriculum_iters, cfg.inverse_start, cfg.lr_decay_start) == (7_500, 1_000, 1_000, 2_000)
    assert cfg.scale_weights_even_at == 2_500
    assert lr_factor(7_500, cfg) == pytest.approx(0.0)
    assert PRESETS["paper"].rescaled(20).iters == 20


def test_size_step_snaps_sizes_and_keeps_the_range():
    cfg = PRESETS["paper"].with_overrides(size_step=32)
    rng = torch.Generator().manual_seed(0)
    sizes = [sample_output_size(20_000, (256, 256), cfg, rng) for _ in range(2000)]
    sides = {s for hw in sizes for s in hw}
    assert all(s % 32 == 0 for s in sides)
    # Nearest-multiple snapping keeps both ends of [0.15, 2.25] x 256 = [38, 576] reachable.
    assert min(sides) == 32 and max(sides) == 576
    assert len(set(sizes)) <= 18 * 18
    # Unbiased: the mean side stays that of the unsnapped distribution (~ 1.2 x 256).
    unsnapped = PRESETS["paper"]
    rng = torch.Generator().manual_seed(0)
    plain = [s for _ in range(2000) for s in sample_output_size(20_000, (256, 256), unsnapped, rng)]
    assert abs(sum(s for hw in sizes for s in hw) / 4000 - sum(plain) / 4000) < 2


def test_size_step_must_be_a_multiple_of_the_architecture():
    from ingan.errors import ConfigError

    with pytest.raises(ConfigError, match=r"size step \(--size-step\) must be 0 or a multiple of 8"):
        PRESETS["paper"].with_overrides(size_step=12)
    assert PRESETS["paper"].size_step == 0  # the paper's sampling by default


def test_extended_run_holds_the_scale_weights_at_the_original_end():
    """--resume --iters: the lr decay re-opens to the new end; D's scale weights stop at the
    schedule's final state instead of drifting to the finest scale alone."""
    from ingan.model.config import DiscriminatorConfig
    from ingan.model.discriminator import scale_weights

    cfg = PRESETS["paper"].rescaled(3_600)
    assert cfg.scale_weights_hold_at == 0 and cfg.scale_weight_iteration(3_599) == 3_599
    longer = cfg.extended(8_800)
    assert (longer.iters, longer.scale_weights_hold_at, longer.lr_decay_start) == (8_800, 3_600, 960)
    assert longer.scale_weight_iteration(8_000) == 3_600 and longer.scale_weight_iteration(100) == 100
    assert lr_factor(3_600, longer) == pytest.approx(1 - 2_640 / 7_840) and lr_factor(8_800, longer) == 0
    d = DiscriminatorConfig()
    final = scale_weights(longer.scale_weight_iteration(8_000), 256, d, longer.scale_weights_even_at)
    assert final == scale_weights(3_600, 256, d, cfg.scale_weights_even_at)
    assert final[1] / final[0] == pytest.approx(1.4 ** -2)  # the paper's end: w_k ~ 1.4**(-2k)
    # A second extension keeps the first hold; shortening a run holds nothing.
    assert longer.extended(12_000).scale_weights_hold_at == 3_600
    assert cfg.extended(3_000).scale_weights_hold_at == 0
    assert TrainConfig.from_dict(longer.to_dict()) == longer


def test_even_scale_weights_hold_once_even():
    from ingan.model.config import DiscriminatorConfig
    from ingan.model.discriminator import scale_weights

    cfg = PRESETS["paper"].rescaled(3_600).extended(10_200).holding_even_scale_weights()
    assert cfg.scale_weights_hold_at == cfg.scale_weights_even_at == 1_200
    assert cfg.scale_weight_iteration(600) == 600  # still coarse-heavy before the even point
    weights = scale_weights(cfg.scale_weight_iteration(9_000), 128, DiscriminatorConfig(), cfg.scale_weights_even_at)
    assert len(weights) > 3 and weights == pytest.approx([1 / len(weights)] * len(weights))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg

