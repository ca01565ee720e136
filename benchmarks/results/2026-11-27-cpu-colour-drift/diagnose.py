"""The exact scoring behind this folder's tables (run from the repo root, ingan installed).

    python diagnose.py snapshots CKPT [CKPT ...]   # one JSON line per checkpoint
    python diagnose.py grid CKPT                    # InGAN vs bicubic over ten aspect changes

SWD is the SWD column of `ingan-eval` (same seeds and settings; the nearest-neighbour
metrics are skipped to keep it cheap). "matched" rescales each output channel to the
reference's mean and std, with the gain and offset fitted once on the 1x output, to show
how much of the score is global colour/contrast drift rather than patch structure.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from ingan.model.checkpoint import load_checkpoint
from ingan.quality import metrics as M
from ingan.quality.baselines import bicubic

SIZES = [(320, 384), (320, 768), (320, 192)]  # (H, W): 1x, 2x wider, 0.5x narrower
GRID = [(2, 1), (1.5, 1), (0.75, 1), (0.5, 1), (1, 2), (1, 1.5), (1, 0.75), (1, 0.5), (2, 0.5), (0.5, 2)]


def retarget(generator, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = generator(x, size)
    return ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy().astype(np.float64)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).round().astype(np.uint8)


def snapshots(paths: list[str]) -> None:
    for path in paths:
        ckpt = load_checkpoint(path)
        generator, ref = ckpt.build_generator(), ckpt.image.astype(np.float64)
        row: dict = {"it": ckpt.iteration}
        stats = None
        for h, w in SIZES:
            g = retarget(generator, ckpt.image, (h, w))
            if stats is None:  # fitted on the 1x output
                stats = [(g[..., c].mean(), g[..., c].std()) for c in range(3)]
                row["dmean"] = [round(stats[c][0] - ref[..., c].mean(), 2) for c in range(3)]
                row["std_ratio"] = [round(stats[c][1] / ref[..., c].std(), 3) for c in range(3)]
            matched = np.stack([(g[..., c] - stats[c][0]) / stats[c][1] * ref[..., c].std() + ref[..., c].mean()
                                for c in range(3)], -1)
            row[f"{w}x{h}"] = [round(M.swd(to_uint8(g), ckpt.image), 4), round(M.swd(to_uint8(matched), ckpt.image), 4)]
        print(json.dumps(row), flush=True)


def grid(path: str) -> None:
    ckpt = load_checkpoint(path)
    generator, image = ckpt.build_generator(), ckpt.image
    height, width = image.shape[:2]
    print("| size | width x | height x | InGAN | bicubic |\n|---|---:|---:|---:|---:|")
    for fw, fh in GRID:
        h, w = int(round(height * fh / 8) * 8), int(round(width * fw / 8) * 8)
        a = M.swd(to_uint8(retarget(generator, image, (h, w))), image)
        b = M.swd(bicubic(image, (h, w)), image)
        print(f"| {w}x{h} | {fw} | {fh} | {'**%.3f**' % a if a < b else '%.3f' % a} | {b:.3f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"snapshots": lambda: snapshots(sys.argv[2:]), "grid": lambda: grid(sys.argv[2])}[sys.argv[1]]()
