"""SWD of each snapshot's retargets, raw and with the colour calibration fitted (run from the repo root).

    python benchmarks/results/2026-11-27-cpu-even-scale-weights/score_snapshots.py [--held-out] SNAPSHOT.pt ...

First line: the bicubic stretch's SWD at the same sizes. Then one JSON line per checkpoint: `raw` scores the generator's tanh output (any stored
calibration removed), `calibrated` the same generator with the calibration that
`ingan-train` now fits at every save (ingan/model/calibration.py), both with the SWD
column of `ingan-eval` (seed 0, 4,096 patches, 3 levels), at 1x, 2x wider, 0.5x narrower,
or with --held-out at the four aspect changes used to pick a snapshot (1.5x wider, 0.75x
narrower, 2x taller, 0.5x shorter), which are not the sizes the README reports.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from ingan.model.checkpoint import load_checkpoint
from ingan.model.generator import fit_colour_calibration
from ingan.quality import metrics as M
from ingan.quality.baselines import bicubic
from ingan.train.trainer import image_to_tensor, tensor_to_image

SIZES = [(320, 384), (320, 768), (320, 192)]  # (H, W)
HELD_OUT = [(320, 576), (320, 288), (640, 384), (160, 384)]


def swd(out: np.ndarray, ref: np.ndarray) -> float:
    return round(M.swd(out, ref), 4)


args = sys.argv[1:]
if args and args[0] == "--held-out":
    SIZES, args = HELD_OUT, args[1:]
reference = load_checkpoint(args[0]).image
print(json.dumps({"bicubic": {f"{w}x{h}": swd(bicubic(reference, (h, w)), reference) for h, w in SIZES}}), flush=True)
for path in args:
    ckpt = load_checkpoint(path)
    generator, x = ckpt.build_generator(), image_to_tensor(ckpt.image, torch.device("cpu"))
    generator.set_colour_calibration(None)
    calibration = fit_colour_calibration(generator, x, ckpt.iteration)
    row: dict = {"it": ckpt.iteration, "gain": [round(g, 3) for g in calibration.gain],
                 "offset_grey_levels": [round(o * 127.5, 1) for o in calibration.offset]}
    for label, cal in (("raw", None), ("calibrated", calibration)):
        generator.set_colour_calibration(cal)
        with torch.no_grad():
            row[label] = {f"{w}x{h}": swd(tensor_to_image(generator(x, (h, w))), ckpt.image) for h, w in SIZES}
    print(json.dumps(row), flush=True)
