#!/usr/bin/env python3
"""Why is one training iteration slow on a GPU? Times variants of the paper preset.

Each variant runs `--steps` iterations at the full output-size range after a warm-up:
  random      - the real workload: a new random output size every iteration
  fixed       - the same size every iteration (shapes repeat: per-shape set-up amortised)
  no_cudnn    - random sizes with cuDNN disabled (native kernels, no plan building)
  *_bf16cl    - the same with bf16 autocast + channels-last
and a torch.profiler table of a few random-size steps, sorted by self CPU time.
Usage: python benchmarks/gpu_train_speed.py OUT_DIR
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
from ingan.train import trainer as trainer_mod  # noqa: E402
from ingan.train.config import PRESETS, RunOptions  # noqa: E402
from ingan.train.trainer import Trainer  # noqa: E402


def timed(name: str, image, steps: int, amp: bool, cl: bool, fixed: bool, cudnn: bool) -> dict:
    torch.backends.cudnn.enabled = cudnn
    original = trainer_mod.sample_output_size
    if fixed:
        trainer_mod.sample_output_size = lambda it, crop, cfg, g: (448, 448)
    try:
        t = Trainer(image, PRESETS["paper"], RunOptions(device="cuda", amp=amp, channels_last=cl))
        t.iteration = 12_001
        for _ in range(3):
            t.step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = 0
        while done < steps and time.perf_counter() - t0 < 20.0:  # cap slow variants at ~20 s
            t.step()
            done += 1
        torch.cuda.synchronize()
        rate = done / (time.perf_counter() - t0)
        steps = done
    finally:
        trainer_mod.sample_output_size = original
        torch.backends.cudnn.enabled = True
    row = {"variant": name, "it_per_s": round(rate, 2), "steps": steps}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    image = load_image(REPO / "examples/hubble/hubble_xdf.png").pixels
    rows = [
        timed("random", image, steps, False, False, False, True),
        timed("fixed", image, steps, False, False, True, True),
        timed("no_cudnn", image, steps, False, False, False, False),
        timed("random_bf16cl", image, steps, True, True, False, True),
        timed("fixed_bf16cl", image, steps, True, True, True, True),
    ]
    t = Trainer(image, PRESETS["paper"], RunOptions(device="cuda", amp=False, channels_last=False))
    t.iteration = 12_001
    t.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(4):
            t.step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=50)
    print(table, flush=True)
    try:
        gpu_table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=50)
    except (AttributeError, KeyError, ValueError):
        gpu_table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50)
    print(gpu_table, flush=True)
    (out / "gpu_train_speed.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, indent=2))
    (out / "profile.txt").write_text(table + "\n\n" + gpu_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
