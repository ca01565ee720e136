import numpy as np
import pytest
import torch

from ingan.model.warp import corner_homography, homography_grid, top_shift_homography, warp


def _apply(h, x, y):
    p = h @ np.array([x, y, 1.0])
    return p[:2] / p[2]


def test_top_shift_moves_only_top_corners():
    h = top_shift_homography(-0.3, 0.5)
    np.testing.assert_allclose(_apply(h, -1, -1), [-1.3, -1], atol=1e-12)
    np.testing.assert_allclose(_apply(h, 1, -1), [1.5, -1], atol=1e-12)
    np.testing.assert_allclose(_apply(h, 1, 1), [1, 1], atol=1e-12)
    np.testing.assert_allclose(_apply(h, -1, 1), [-1, 1], atol=1e-12)


def test_grid_of_identity_is_align_corners_grid():
    grid = homography_grid(torch.eye(3)[None], 4, 5)
    assert grid.shape == (1, 4, 5, 2)
    torch.testing.assert_close(grid[0, 0, 0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(grid[0, -1, -1], torch.tensor([1.0, 1.0]))


def test_identity_warp_is_lossless():
    x = torch.rand(1, 2, 6, 7)
    y = warp(x, torch.eye(3)[None], 6, 7)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_degenerate_corners_raise():
    with pytest.raises(ValueError, match="collinear"):
        corner_homography([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 0], [1, 1], [0, 1]])
