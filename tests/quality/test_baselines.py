"""The non-learned retargets InGAN is compared with."""

from __future__ import annotations

import numpy as np
import pytest

from ingan.errors import ConfigError
from ingan.quality.baselines import BASELINES, bicubic, centre_crop


@pytest.fixture
def img() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(10, 12), (5, 7), (23, 30), (4, 30), (31, 3)])
def test_every_baseline_gives_exactly_the_size(img, size):
    for make, _ in BASELINES.values():
        out = make(img, size)
        assert out.shape == (*size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_same_size_is_the_image(img):
    assert np.array_equal(bicubic(img, (10, 12)), img)
    assert np.array_equal(centre_crop(img, (10, 12)), img)


def test_centre_crop_takes_the_centre(img):
    assert np.array_equal(centre_crop(img, (4, 6)), img[3:7, 3:9])
    assert np.array_equal(centre_crop(img, (5, 7)), img[2:7, 2:9])  # odd remainder: one more after


def test_larger_sizes_are_mirror_padded(img):
    out = centre_crop(img, (10, 30))  # 18 more columns: 9 each side
    assert np.array_equal(out[:, 9:21], img)
    assert np.array_equal(out[:, 8], img[:, 0]) and np.array_equal(out[:, 0], img[:, 8])  # edge repeated
    assert np.array_equal(out[:, 21], img[:, 11])
    wide = centre_crop(img, (10, 50))  # more than the image on each side: reflection repeats
    assert np.array_equal(wide[:, 19:31], img)
    assert np.array_equal(wide[:, 19 - 12 : 19], img[:, ::-1])
    mixed = centre_crop(img, (4, 30))  # crop one axis, pad the other
    assert np.array_equal(mixed[:, 9:21], img[3:7])


def test_bicubic_stretches(img):
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(bicubic(flat, (8, 20)), np.full((8, 20, 3), 77, np.uint8))


def test_bad_input(img):
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        bicubic(img[..., 0], (4, 4))
    with pytest.raises(ConfigError, match="positive"):
        centre_crop(img, (0, 4))
