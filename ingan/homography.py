"""Homographies for non-rectangular retargets (numpy only: the runtime uses them too).

A homography here maps *output* coordinates to *input* coordinates, both normalised to
[-1, 1] with align_corners=True (x right, y down), which is what `grid_sample` consumes.
"""

from __future__ import annotations

import numpy as np


def corner_homography(
    src: "np.ndarray | list[list[float]]", dst: "np.ndarray | list[list[float]]"
) -> np.ndarray:
    """3x3 homography H with H @ [src, 1] ~ [dst, 1] for four point pairs (float64)."""
    src_pts = np.asarray(src, dtype=np.float64).reshape(4, 2)
    dst_pts = np.asarray(dst, dtype=np.float64).reshape(4, 2)
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(src_pts, dst_pts):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.append(v)
    try:
        h = np.linalg.solve(np.array(rows), np.array(rhs))
    except np.linalg.LinAlgError:
        raise ValueError("degenerate corner correspondence: three of the four points are collinear") from None
    return np.append(h, 1.0).reshape(3, 3)


_CORNERS = [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]  # TL, TR, BR, BL


def top_shift_homography(left: float, right: float) -> np.ndarray:
    """The paper's non-rectangular family: the output's top corners sample the input at
    x shifted by `left` and `right` (in normalised units, 2 = full width); the bottom
    corners stay put. (0, 0) is the identity; (-0.5, 0.5) widens the top.
    """
    dst = [[-1.0 + left, -1.0], [1.0 + right, -1.0], [1.0, 1.0], [-1.0, 1.0]]
    return corner_homography(_CORNERS, dst)
