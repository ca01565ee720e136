#!/usr/bin/env python3
"""Train the bundled example's checkpoint on a GPU, inside one fixed wall-clock budget.

Made for a short GPU loan (one call, <= 10 minutes): it
  1. records the environment and runs the CUDA-marked tests,
  2. measures training speed (it/s) for fp32 with and without cuDNN and for bf16 +
     channels-last at the full output-size range, and picks the fastest,
  3. trains the `paper` preset, its schedule compressed (`--iters`) to what fits the rest
     of the budget at the measured speed (stopped by --time-budget regardless),
  4. writes a serving ("slim") checkpoint, split into parts small enough to copy back,
     the final monitor PNG, the log and a JSON summary into OUT_DIR.

Usage (on the GPU machine, from the repo root, no install needed):
    python benchmarks/gpu_train_example.py OUT_DIR --total-seconds 560
Re-assemble the checkpoint:  cat OUT_DIR/ckpt_slim.pt.part* > examples/hubble/ckpt.pt
A CPU dry run (tiny budget) exercises the same path:  ... --device cpu --preset quick --total-seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PART_BYTES = 15 * 1024 * 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_cuda_tests(timeout: float) -> dict:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=REPO, capture_output=True, text=True, timeout=timeout)
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        print("\n".join(tail), flush=True)
        return {"returncode": done.returncode, "summary": tail[-1] if tail else "", "seconds": round(time.monotonic() - started, 1)}
    except subprocess.TimeoutExpired:
        return {"returncode": None, "summary": f"timed out after {timeout:.0f}s", "seconds": timeout}


def probe_speed(image, preset: str, device: str, steps: int) -> list[dict]:
    """it/s at the full output-size range (iteration past the curriculum and inverse start)."""
    import torch

    from ingan.train.config import PRESETS, RunOptions
    from ingan.train.trainer import Trainer

    config = PRESETS[preset]
    variants = [(False, False, True), (False, False, False), (True, True, False)] if device != "cpu" else [(False, False, False)]
    results = []
    for amp, channels_last, cudnn in variants:
        trainer = Trainer(image, config, RunOptions(device=device, amp=amp, channels_last=channels_last, cudnn=cudnn))
        trainer.iteration = int(config.curriculum_iters * 1.2) + 1
        for _ in range(3):
            trainer.step()
        if device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        rate = steps / (time.perf_counter() - t0)
        row = {"amp_bf16": amp, "channels_last": channels_last, "cudnn": cudnn, "it_per_s": round(rate, 2), "steps": steps}
        if device != "cpu":
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        log(f"speed probe: {row}")
        results.append(row)
        del trainer
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--total-seconds", type=float, default=560.0, help="wall-clock budget for everything")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--probe-steps", type=int, default=30)
    parser.add_argument("--image", type=Path, default=REPO / "examples/hubble/hubble_xdf.png")
    parser.add_argument("--reserve-seconds", type=float, default=40.0, help="kept for saving and copying")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    t_start = time.monotonic()
    deadline = t_start + args.total_seconds
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    from ingan.fsutil import split_file
    from ingan.train.speed import environment

    summary["environment"] = env = environment()
    log(f"environment: {json.dumps(env)}")
    if not args.skip_tests:
        summary["cuda_tests"] = run_cuda_tests(timeout=min(120.0, args.total_seconds / 4))
        log(f"cuda tests: {summary['cuda_tests']}")

    from ingan.imageio import load_image

    image = load_image(args.image).pixels
    probe = probe_speed(image, args.preset, args.device, args.probe_steps)
    summary["speed_probe"] = probe
    best = max(probe, key=lambda r: r["it_per_s"])

    train_seconds = deadline - time.monotonic() - args.reserve_seconds
    # 10 s of start-up (imports, cuDNN warm-up) and 6% for checkpoints/monitors.
    iters = max(20, int(best["it_per_s"] * max(train_seconds - 10, 5) * 0.94) // 100 * 100)
    run_dir = Path("/tmp/ingan_example_run") if args.device != "cpu" else args.out_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    every = max(iters // 4, 1)
    cmd = [sys.executable, "-m", "ingan.train", str(args.image), "--preset", args.preset, "--iters", str(iters),
           "--time-budget", f"{max(train_seconds, 5):.0f}", "--device", args.device,
           "--amp" if best["amp_bf16"] else "--no-amp",
           "--channels-last" if best["channels_last"] else "--no-channels-last",
           "--cudnn" if best["cudnn"] else "--no-cudnn",
           "--save-every", str(every), "--monitor-every", str(every), "-o", str(run_dir)]
    summary["train_command"] = " ".join(["ingan-train", *cmd[3:]])
    log(f"training: {summary['train_command']}")
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True, timeout=max(train_seconds + 60, 30))
    print(done.stderr[-4000:], done.stdout, flush=True)
    summary["train"] = {"returncode": done.returncode, "seconds": round(time.monotonic() - t0, 1),
                        "summary": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]}

    from ingan.model.checkpoint import load_checkpoint, save_checkpoint, slim_payload

    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    slim = save_checkpoint(Path("/tmp") / "ckpt_slim.pt" if args.device != "cpu" else args.out_dir / "slim.pt",
                           slim_payload(ckpt.payload))
    summary["checkpoint"] = {"iteration": ckpt.iteration, "iters_planned": iters, "wall_time_s": round(ckpt.payload["wall_time"], 1),
                             "scale_range": ckpt.scale_range, "losses": ckpt.payload.get("losses"),
                             "slim_bytes": slim.stat().st_size, "parts": split_file(slim, args.out_dir, PART_BYTES)}
    monitors = sorted(run_dir.glob("monitor_*.png"))
    for src, name in ((monitors[-1], "monitor_final.png"), (monitors[len(monitors) // 2], "monitor_mid.png")):
        shutil.copy(src, args.out_dir / name)
    summary["monitors"] = [m.name for m in monitors]
    summary["total_seconds"] = round(time.monotonic() - t_start, 1)
    (args.out_dir / "gpu_train_example.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {summary['total_seconds']} s: {json.dumps(summary['checkpoint'])}")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
