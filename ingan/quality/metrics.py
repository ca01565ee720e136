"""Patch-distribution metrics between a retargeted image and its training image (torch, CPU or CUDA).

    result = score(output, reference)       # HxWx3 uint8 numpy arrays, any two sizes
    result.swd            # sliced Wasserstein distance of 7x7 patch distributions, level mean
    result.coherence      # every output patch has a close reference patch (low = no artefacts)
    result.completeness   # every reference patch appears in the output (low = nothing lost)
    result.bds            # coherence + completeness (bidirectional similarity, Simakov et al. 2008)

All numbers are distances (lower is better, 0 for identical patch sets) in units of the
reference's per-channel standard deviation at each level. Definitions and citations are
in docs/quality.md. Nothing here uses network weights.

Everything random (patch subsampling, projection directions) comes from numpy generators
seeded by (seed, level, role), so a score is a pure function of its inputs and `seed` on
any device; CPU and CUDA agree up to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ingan.errors import ConfigError
from ingan.model.device import torch_device

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LevelScore",
    "QualityScore",
    "coherence",
    "completeness",
    "extract_patches",
    "nn_distances",
    "pyramid",
    "sample_patches",
    "score",
    "sliced_wasserstein",
]

PATCH = 7
MIN_SIDE = 16  # a pyramid level is used only while both images keep min(H, W) >= this
DEFAULT_MAX_BYTES = 256 * 2**20  # working memory of one nearest-neighbour search
STD_FLOOR = 1e-2  # per-channel std floor (in [0,1] units) so a flat reference cannot blow up


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LevelScore:
    """The three distances at one pyramid level (level 0 = full resolution)."""

    level: int
    output_size: tuple[int, int]  # (height, width) at this level
    reference_size: tuple[int, int]
    swd: float
    coherence: float
    completeness: float
    output_patches: int  # patches sampled from the output (all of them when <= max_patches)
    reference_patches: int

    @property
    def bds(self) -> float:
        return self.coherence + self.completeness


@dataclass(frozen=True)
class QualityScore:
    """Per-level scores and their unweighted means over the levels."""

    levels: tuple[LevelScore, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def swd(self) -> float:
        return _mean(lv.swd for lv in self.levels)

    @property
    def coherence(self) -> float:
        return _mean(lv.coherence for lv in self.levels)

    @property
    def completeness(self) -> float:
        return _mean(lv.completeness for lv in self.levels)

    @property
    def bds(self) -> float:
        return self.coherence + self.completeness

    def to_dict(self) -> dict[str, Any]:
        levels = []
        for lv in self.levels:
            entry = asdict(lv)
            entry["output_size"], entry["reference_size"] = list(lv.output_size), list(lv.reference_size)
            entry["bds"] = lv.bds
            levels.append(entry)
        return {"swd": self.swd, "coherence": self.coherence, "completeness": self.completeness,
                "bds": self.bds, "levels_used": len(self.levels), "levels": levels}


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return float(sum(items) / len(items)) if items else float("nan")


# --------------------------------------------------------------------------- images and patches


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu", name: str = "image") -> torch.Tensor:
    """HxWx3 uint8 -> float32 [1, 3, H, W] in [0, 1] on `device`."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"{name} must be an HxWx3 uint8 RGB array, got {array.shape} {array.dtype}")
    x = torch.from_numpy(np.array(array, dtype=np.uint8, order="C")).to(device)  # a copy: may be read-only
    return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def downscale(x: torch.Tensor) -> torch.Tensor:
    """One pyramid step: area (box) average to floor(H/2) x floor(W/2)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h // 2, w // 2), mode="area")


def pyramid(x: torch.Tensor, levels: int, min_side: int = MIN_SIDE) -> list[torch.Tensor]:
    """[x, x/2, x/4, ...]: at most `levels` images, each (after the first) with min side >= min_side."""
    out = [x]
    while len(out) < levels:
        h, w = out[-1].shape[-2:]
        if min(h // 2, w // 2) < min_side:
            break
        out.append(downscale(out[-1]))
    return out


def usable_levels(size_a: Sequence[int], size_b: Sequence[int], levels: int, patch: int = PATCH,
                  min_side: int = MIN_SIDE) -> int:
    """How many pyramid levels both images support (level 0 always, if it fits one patch)."""
    n = 1
    a, b = (int(size_a[0]), int(size_a[1])), (int(size_b[0]), int(size_b[1]))
    while n < levels:
        a, b = (a[0] // 2, a[1] // 2), (b[0] // 2, b[1] // 2)
        if min(*a, *b) < max(min_side, patch):
            break
        n += 1
    return n


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of [1, C, H, W] (std floored at STD_FLOOR)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(STD_FLOOR)
    return mean, std


def patch_grid(size: Sequence[int], patch: int) -> tuple[int, int]:
    """Number of patch positions (rows, cols) at stride 1."""
    return int(size[0]) - patch + 1, int(size[1]) - patch + 1


def extract_patches(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """Every patch x patch neighbourhood (stride 1) of [1, C, H, W] as rows [N, C*patch*patch].

    Descriptor layout is (channel, dy, dx), the same as `sample_patches`.
    """
    return F.unfold(x, patch).squeeze(0).T


def sample_positions(size: Sequence[int], patch: int, max_patches: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners of at most `max_patches` patches, without replacement, in raster order.

    All positions when there are no more than `max_patches` of them (no randomness then).
    """
    rows, cols = patch_grid(size, patch)
    total = rows * cols
    if total <= max_patches:
        index = np.arange(total)
    else:
        index = np.sort(rng.choice(total, size=max_patches, replace=False))
    return index // cols, index % cols


def sample_patches(x: torch.Tensor, patch: int, max_patches: int, rng: np.random.Generator) -> torch.Tensor:
    """A seeded random subset of the patches of [1, C, H, W], as rows [N, C*patch*patch]."""
    ys, xs = sample_positions(x.shape[-2:], patch, max_patches, rng)
    offsets = torch.arange(patch, device=x.device)
    rows = torch.from_numpy(ys).to(x.device)[:, None] + offsets  # [N, p]
    cols = torch.from_numpy(xs).to(x.device)[:, None] + offsets
    picked = x[0][:, rows[:, :, None], cols[:, None, :]]  # [C, N, p, p]
    return picked.permute(1, 0, 2, 3).reshape(len(ys), -1)


def _row_bands(x: torch.Tensor, patch: int, max_bytes: int) -> Iterator[torch.Tensor]:
    """All patches of [1, C, H, W], as [D, n] column blocks of whole patch rows within max_bytes."""
    c, h, w = x.shape[1:]
    rows, cols = patch_grid((h, w), patch)
    bytes_per_row = cols * c * patch * patch * x.element_size()
    band = max(1, min(rows, max_bytes // max(1, bytes_per_row)))
    for top in range(0, rows, band):
        n = min(band, rows - top)
        yield F.unfold(x[:, :, top : top + n + patch - 1], patch).squeeze(0)


# --------------------------------------------------------------------------- distances


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(list(seed) if isinstance(seed, Sequence) else int(seed))


def _sort_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending. On CPU through numpy: torch's CPU sort is ~20x slower here."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.detach().numpy(), axis=1))
    return torch.sort(x, dim=1).values


def _resample_sorted(values: torch.Tensor, n: int) -> torch.Tensor:
    """Rows of sorted samples [P, m] -> [P, n] at the quantiles (i + 0.5) / n, linearly interpolated."""
    m = values.shape[1]
    if m == n:
        return values
    pos = ((torch.arange(n, device=values.device, dtype=values.dtype) + 0.5) * (m / n) - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(m - 1)
    weight = pos - lo.to(values.dtype)
    return values[:, lo] * (1 - weight) + values[:, hi] * weight


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 128, repeats: int = 4,
                       seed: int | Sequence[int] = 0) -> float:
    """Sliced Wasserstein-1 distance between two sets of descriptors [Na, D] and [Nb, D].

    For each of `repeats` rounds, `projections` random unit directions are drawn; both sets
    are projected onto each, sorted, and the mean |difference| of the sorted projections is
    taken (the 1-D Wasserstein-1 distance). Sets of different sizes are compared at the
    same max(Na, Nb) quantiles. Returns the mean over directions and rounds.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor sets must be [N, D] with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError("descriptor sets must not be empty")
    if projections < 1 or repeats < 1:
        raise ValueError("projections and repeats must be at least 1")
    rng = _rng(seed)
    n = max(a.shape[0], b.shape[0])
    total = 0.0
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], projections))
        dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
        d = torch.from_numpy(dirs.T.copy()).to(device=a.device, dtype=a.dtype)  # [P, D]
        # [P, N] so each projection sorts a contiguous row.
        pa = _resample_sorted(_sort_rows(d @ a.T), n)
        pb = _resample_sorted(_sort_rows(d @ b.to(a.dtype).T), n)
        total += float((pa - pb).abs().mean())
    return total / repeats


def _nn_search(queries: torch.Tensor, key_blocks: Iterable[torch.Tensor], max_bytes: int,
               tile: tuple[int, int] | None) -> torch.Tensor:
    """Per-query RMS distance to the nearest key; keys arrive as [D, n] column blocks.

    Candidates are ranked by |k|^2 - 2 q.k in tiles of at most max_bytes of distances; the
    winner's distance is then recomputed exactly from the difference, so an identical
    patch gives exactly 0 whatever the rounding of the matrix product.
    """
    nq, dim = queries.shape
    best = torch.full((nq,), math.inf, device=queries.device, dtype=queries.dtype)
    best_key = torch.zeros_like(queries)
    elements = max(1, max_bytes // queries.element_size())  # one tile of distances
    seen = 0
    for keys in key_blocks:
        if keys.shape[0] != dim:
            raise ValueError(f"keys have {keys.shape[0]} dimensions, queries {dim}")
        nk = keys.shape[1]
        seen += nk
        if tile is not None:
            q_tile, k_tile = max(1, int(tile[0])), max(1, int(tile[1]))
        else:
            q_tile = min(nq, elements)
            k_tile = max(1, min(nk, elements // q_tile))
        k_sq = (keys * keys).sum(dim=0)
        for k0 in range(0, nk, k_tile):
            block, block_sq = keys[:, k0 : k0 + k_tile], k_sq[k0 : k0 + k_tile]
            for q0 in range(0, nq, q_tile):
                q = queries[q0 : q0 + q_tile]
                partial = torch.addmm(block_sq[None, :], q, block, alpha=-2.0)  # |k|^2 - 2 q.k
                value, index = partial.min(dim=1)
                better = value < best[q0 : q0 + q_tile]
                best[q0 : q0 + q_tile] = torch.where(better, value, best[q0 : q0 + q_tile])
                best_key[q0 : q0 + q_tile] = torch.where(better[:, None], block[:, index].T,
                                                         best_key[q0 : q0 + q_tile])
    if seen == 0:
        raise ValueError("no keys to search")
    return (queries - best_key).pow(2).mean(dim=1).sqrt()


def nn_distances(queries: torch.Tensor, keys: torch.Tensor, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 tile: tuple[int, int] | None = None) -> torch.Tensor:
    """Exact nearest neighbour: for each row of `queries` [Nq, D], the RMS distance
    sqrt(mean_d (q_d - k_d)^2) to its nearest row of `keys` [Nk, D].

    The distance matrix is never built whole: it is computed in (query, key) tiles of at
    most `max_bytes`, or of the explicit `tile` = (queries, keys) per tile; memory beyond
    the inputs is one tile plus O(Nq * D). Any tiling gives the same answer.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries and keys must be [N, D] with the same D, got {tuple(queries.shape)} "
                         f"and {tuple(keys.shape)}")
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    return _nn_search(queries, [keys.to(queries.dtype).T], max_bytes, tile)


def _nn_to_image(queries: torch.Tensor, image: torch.Tensor, patch: int, max_bytes: int) -> torch.Tensor:
    """nn_distances against every patch of `image`, extracting the keys band by band.

    A quarter of max_bytes holds one band of key descriptors and the rest one tile of
    distances, so memory stays bounded however large the image.
    """
    band = max(1, max_bytes // 4)
    return _nn_search(queries, _row_bands(image, patch, band), max(1, max_bytes - band), None)


def coherence(output: np.ndarray, reference: np.ndarray, **kwargs: Any) -> float:
    """Mean over (sampled) output patches of the distance to the nearest reference patch,
    averaged over the pyramid levels. Keyword arguments as for `score`."""
    return score(output, reference, **kwargs).coherence


def completeness(output: np.ndarray, reference: np.ndarray, **kwargs: Any) -> float:
    """Mean over (sampled) reference patches of the distance to the nearest output patch,
    averaged over the pyramid levels. Keyword arguments as for `score`."""
    return score(output, reference, **kwargs).completeness


# --------------------------------------------------------------------------- the score


def score(
    output: np.ndarray,
    reference: np.ndarray,
    *,
    levels: int = 3,
    patch: int = PATCH,
    max_patches: int = 4096,
    projections: int = 128,
    repeats: int = 4,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QualityScore:
    """Score `output` against `reference` (both HxWx3 uint8; sizes may differ).

    At each level of a pyramid (area downscale by 2; a level is used only while both images
    keep min side >= 16) both images are normalised by the reference's per-channel mean and
    std at that level; up to `max_patches` patch x patch patches are sampled from each
    (seeded); then
      swd          = sliced_wasserstein(output sample, reference sample),
      coherence    = mean NN distance of the output sample to ALL reference patches,
      completeness = mean NN distance of the reference sample to ALL output patches.
    """
    if max_bytes < 1:
        raise ConfigError(f"max_bytes must be positive, got {max_bytes}")
    dev = torch_device(device)
    results = []
    with torch.no_grad():
        for level, o, r, po, pr in _level_samples(output, reference, levels, patch, max_patches, seed, dev):
            distance = sliced_wasserstein(po, pr, projections, repeats, seed=[seed, level, 2])
            coh = float(_nn_to_image(po, r, patch, max_bytes).mean())
            comp = float(_nn_to_image(pr, o, patch, max_bytes).mean())
            results.append(LevelScore(level, tuple(o.shape[-2:]), tuple(r.shape[-2:]), distance, coh, comp,
                                      po.shape[0], pr.shape[0]))
    settings = {"levels": levels, "levels_used": len(results), "patch": patch, "max_patches": max_patches,
                "projections": projections, "repeats": repeats, "seed": seed, "device": str(dev),
                "max_bytes": max_bytes}
    return QualityScore(tuple(results), settings)


def swd(
    output: np.ndarray,
    reference: np.ndarray,
    *,
    levels: int = 3,
    patch: int = PATCH,
    max_patches: int = 4096,
    projections: int = 128,
    repeats: int = 4,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
) -> float:
    """`score(...).swd` alone, without the nearest-neighbour searches (most of score's time):
    the same levels, samples and projections, so the same number."""
    values = []
    with torch.no_grad():
        for level, _, _, po, pr in _level_samples(output, reference, levels, patch, max_patches, seed,
                                                   torch_device(device)):
            values.append(sliced_wasserstein(po, pr, projections, repeats, seed=[seed, level, 2]))
    return _mean(values)


def _level_samples(
    output: np.ndarray, reference: np.ndarray, levels: int, patch: int, max_patches: int, seed: int,
    dev: torch.device,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per usable pyramid level: both images normalised by the reference's channel statistics,
    and their seeded patch samples (what every metric compares). Checks the arguments."""
    if levels < 1:
        raise ConfigError(f"levels must be at least 1, got {levels}")
    if patch < 1:
        raise ConfigError(f"patch must be at least 1, got {patch}")
    if max_patches < 2:
        raise ConfigError(f"max_patches must be at least 2, got {max_patches}")
    out = to_tensor(output, dev, "output")
    ref = to_tensor(reference, dev, "reference")
    for name, x in (("output", out), ("reference", ref)):
        if min(x.shape[-2:]) < patch:
            raise ConfigError(f"{name} is {x.shape[-1]}x{x.shape[-2]}, smaller than one {patch}x{patch} patch")
    for level in range(usable_levels(out.shape[-2:], ref.shape[-2:], levels, patch)):
        if level:
            out, ref = downscale(out), downscale(ref)
        mean, std = channel_stats(ref)
        o, r = (out - mean) / std, (ref - mean) / std
        yield (level, o, r, sample_patches(o, patch, max_patches, _rng([seed, level, 0])),
               sample_patches(r, patch, max_patches, _rng([seed, level, 1])))
