"""Patch metrics on synthetic images whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ingan.errors import ConfigError
from ingan.quality import metrics
from ingan.quality.metrics import nn_distances, score, sliced_wasserstein


def texture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Bright discs of random colours on a noisy dark background: a stationary texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3))
    img[:] = (30, 40, 60)
    img += rng.normal(0, 6, (h, w, 3))
    for _ in range(h * w // 60):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 4)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(100, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tex() -> np.ndarray:
    return texture()


# -- sliced Wasserstein: exact answers in one dimension, where every direction is +-1


def test_swd_one_dimension_is_the_wasserstein_distance():
    a = torch.arange(10, dtype=torch.float32)[:, None]
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a + 0.5) == pytest.approx(0.5, abs=1e-6)
    assert sliced_wasserstein(a, a.flip(0)) == 0.0  # a distribution, not a sequence


def test_swd_compares_sets_of_different_sizes_by_quantiles():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.uniform(0, 1, (4000, 1))).float()
    b = torch.from_numpy(rng.uniform(0, 1, (700, 1))).float()
    assert sliced_wasserstein(a, b) < 0.02
    assert sliced_wasserstein(a, b + 0.3) == pytest.approx(0.3, abs=0.02)
    assert sliced_wasserstein(a, b) == pytest.approx(sliced_wasserstein(b, a), abs=1e-6)


def test_swd_is_seeded():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(300, 20))).float()
    b = torch.from_numpy(rng.normal(size=(300, 20)) * 1.5).float()
    assert sliced_wasserstein(a, b, seed=3) == sliced_wasserstein(a, b, seed=3)
    assert sliced_wasserstein(a, b, seed=3) != sliced_wasserstein(a, b, seed=4)


# -- nearest neighbours: exact, and independent of the tiling


def brute_force(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    d2 = ((queries[:, None, :].double() - keys[None, :, :].double()) ** 2).mean(dim=2)
    return d2.min(dim=1).values.sqrt().float()


def test_nn_distances_are_exact_rms_distances():
    rng = np.random.default_rng(2)
    keys = torch.from_numpy(rng.normal(size=(500, 27))).float()
    queries = torch.cat([keys[:50], torch.from_numpy(rng.normal(size=(70, 27))).float()])
    got = nn_distances(queries, keys)
    assert torch.equal(got[:50], torch.zeros(50))  # a query that is a key: exactly 0
    torch.testing.assert_close(got, brute_force(queries, keys), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tile", [(1, 1), (7, 13), (25, 3), (1000, 1000)])
def test_nn_tiling_does_not_change_the_answer(tile):
    rng = np.random.default_rng(3)
    keys = torch.from_numpy(rng.normal(size=(60, 12))).float()
    queries = torch.from_numpy(rng.normal(size=(25, 12))).float()
    one_tile = nn_distances(queries, keys)
    assert torch.equal(nn_distances(queries, keys, tile=tile), one_tile)
    assert torch.equal(nn_distances(queries, keys, max_bytes=64), one_tile)  # 16 distances a tile


def test_memory_bound_respected_by_tiling(monkeypatch, tex):
    """A tiny max_bytes forces many key bands and distance tiles, each within the bound,
    and gives exactly the one-tile result."""
    calls = []
    real_addmm = torch.addmm

    def counting_addmm(*args, **kwargs):
        out = real_addmm(*args, **kwargs)
        calls.append(out.numel() * out.element_size())
        return out

    out = np.concatenate([tex, tex[:, :20]], axis=1)
    big = score(out, tex, max_patches=300)
    monkeypatch.setattr(metrics.torch, "addmm", counting_addmm)
    small = score(out, tex, max_patches=300, max_bytes=1 << 19)  # 512 KiB: key bands of ~2 rows
    assert len(calls) > 20 and max(calls) <= 1 << 19
    assert small.to_dict() == big.to_dict()


# -- scores on images


def test_identical_image_scores_zero(tex):
    exact = score(tex, tex)  # every patch is used (<= max_patches): no sampling noise at all
    assert exact.swd == 0.0 and exact.coherence == 0.0 and exact.completeness == 0.0
    assert len(exact.levels) == 2  # 48x64 -> 24x32 -> (12x16 has a side < 16)
    sampled = score(tex, tex, max_patches=512)  # independent samples: the self-noise floor
    stretched = score(np.asarray(Image.fromarray(tex).resize((128, 48), Image.Resampling.BICUBIC)), tex,
                      max_patches=512)
    assert sampled.coherence == 0.0 and sampled.completeness == 0.0
    assert 0.0 < sampled.swd < 0.05 and sampled.swd < stretched.swd / 2


@pytest.mark.slow
def test_tiled_texture_beats_a_stretched_one(tex):
    tiled = np.concatenate([tex, tex], axis=1)
    stretched = np.asarray(Image.fromarray(tex).resize((128, 48), Image.Resampling.BICUBIC))
    for max_patches in (4096, 512):
        t, s = score(tiled, tex, max_patches=max_patches), score(stretched, tex, max_patches=max_patches)
        assert t.swd < s.swd and t.coherence < s.coherence / 4 and t.completeness < s.completeness
        assert t.completeness == 0.0  # the whole input is inside the tiled copy
        assert 0.0 < t.coherence  # only the seam has patches the input lacks


def test_a_crop_is_coherent_but_incomplete(tex):
    crop = score(tex[:, :32], tex)
    assert crop.coherence == 0.0  # every output patch exists in the input
    assert crop.completeness > 0.2  # half of the input is missing


def test_foreign_content_is_incoherent_but_complete(tex):
    block = np.zeros((48, 16, 3), np.uint8)
    block[..., 1] = 255
    block[::4] = 255
    added = score(np.concatenate([tex, block], axis=1), tex)
    assert added.completeness == 0.0  # the whole input is still there
    assert added.coherence > 0.2  # but the green stripes exist nowhere in it
    assert added.bds == pytest.approx(added.coherence + added.completeness)


def test_scores_are_deterministic_for_a_seed(tex):
    out = np.asarray(Image.fromarray(tex).resize((80, 40), Image.Resampling.BICUBIC))
    a, b = score(out, tex, max_patches=200, seed=5), score(out, tex, max_patches=200, seed=5)
    assert a.to_dict() == b.to_dict()
    c = score(out, tex, max_patches=200, seed=6)
    assert c.swd != a.swd


def test_levels_and_their_sizes(tex):
    big = np.concatenate([tex, tex], axis=0)  # 96x64
    s = score(big, big, levels=5)
    assert [lv.output_size for lv in s.levels] == [(96, 64), (48, 32), (24, 16)]
    assert s.settings["levels_used"] == 3
    assert len(score(big, big, levels=1).levels) == 1
    d = s.to_dict()
    assert d["levels_used"] == 3 and set(d["levels"][0]) >= {"swd", "coherence", "completeness", "bds"}


def test_bad_arguments(tex):
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        score(tex.astype(np.float32), tex)
    with pytest.raises(ConfigError, match="smaller than one 7x7 patch"):
        score(tex[:5], tex)
    with pytest.raises(ConfigError, match="levels"):
        score(tex, tex, levels=0)
    with pytest.raises(ValueError):
        nn_distances(torch.zeros(3, 4), torch.zeros(3, 5))


def test_swd_alone_equals_the_swd_column_of_score(tex):
    stretched = np.asarray(Image.fromarray(tex).resize((128, 48), Image.BICUBIC))
    for output, kwargs in ((stretched, {}), (tex[:30], {"seed": 3, "levels": 2, "max_patches": 500})):
        assert metrics.swd(output, tex, **kwargs) == score(output, tex, **kwargs).swd
    with pytest.raises(ConfigError, match="smaller than one 7x7 patch"):
        metrics.swd(tex[:5], tex)
    with pytest.raises(ConfigError, match="levels"):
        metrics.swd(tex, tex, levels=0)


@pytest.mark.cuda
def test_cuda_agrees_with_cpu(tex):
    out = np.concatenate([tex, tex[:, :24]], axis=1)
    cpu, gpu = score(out, tex, max_patches=300), score(out, tex, max_patches=300, device="cuda")
    for name in ("swd", "coherence", "completeness"):
        assert getattr(gpu, name) == pytest.approx(getattr(cpu, name), rel=1e-3, abs=1e-4)
