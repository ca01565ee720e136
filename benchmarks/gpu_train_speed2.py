#!/usr/bin/env python3
"""Follow-up speed probe: eager after the launch-count fixes, and torch.compile(dynamic).

Usage: python benchmarks/gpu_train_speed2.py VARIANT STEPS   (VARIANT: eager, eager_bf16cl, compile, compile_bf16cl)
Prints one JSON line: it/s at the full random output-size range.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ingan.imageio import load_image  # noqa: E402
from ingan.train.config import PRESETS, RunOptions  # noqa: E402
from ingan.train.trainer import Trainer  # noqa: E402

variant, steps = sys.argv[1], int(sys.argv[2])
amp = variant.endswith("bf16cl")
image = load_image(REPO / "examples/hubble/hubble_xdf.png").pixels
t = Trainer(image, PRESETS["paper"], RunOptions(device="cuda", amp=amp, channels_last=amp))
t.iteration = 12_001
t0 = time.perf_counter()
if variant.startswith("compile"):
    t.G.synthesize = torch.compile(t.G.synthesize, dynamic=True)
    for net in t.D.nets:
        net.body = torch.compile(net.body, dynamic=True)
for _ in range(4):
    t.step()
torch.cuda.synchronize()
warm = time.perf_counter() - t0
t0 = time.perf_counter()
done = 0
while done < steps and time.perf_counter() - t0 < 25:
    t.step()
    done += 1
torch.cuda.synchronize()
print(json.dumps({"variant": variant, "it_per_s": round(done / (time.perf_counter() - t0), 2), "steps": done,
                  "warmup_s": round(warm, 1)}), flush=True)
