#!/usr/bin/env python3
"""Training speed of grouped steps on this CPU: images x iterations per second for G images.

Times the single-image Trainer and GroupTrainer steps of G = 1, 2, 4, 8 images with
ingan.train.speed.measure_training_speed (warm-up, then timed steps at the preset's full
output-size range; every G trains the same output-size sequence, the leader's), repeated
in interleaved rounds so that load from other processes spreads over all variants; the
median round is reported. Also the aten operator count per image and step (one profiled
step per variant, first round only).

Usage (from the repository root):
    PYTHONPATH=. python benchmarks/train_group_speed.py OUT_DIR [--preset quick] [--groups 1,2,4,8]
        [--steps 6] [--rounds 3] [--threads N]
Writes OUT_DIR/train_group_speed.json and OUT_DIR/train_group_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", default="quick", help="training preset (default: quick, what a CPU fleet runs)")
    parser.add_argument("--crop-size", type=int, help="override the preset's crop")
    parser.add_argument("--groups", default="1,2,4,8", help="group sizes G, comma-separated")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median reported)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-single", action="store_true", help="skip the single-image Trainer baseline")
    args = parser.parse_args()

    import torch

    from ingan.train.speed import SpeedOptions, measure_training_speed

    if args.threads:
        torch.set_num_threads(args.threads)
    groups = [int(g) for g in args.groups.split(",")]
    variants = ([] if args.no_single else [0]) + groups
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows: dict[int, list[dict]] = {g: [] for g in variants}
    for round_index in range(args.rounds):
        for group in variants:
            options = SpeedOptions(preset=args.preset, device="cpu", group=group, crop_size=args.crop_size,
                                   warmup_steps=args.warmup, steps=args.steps, count_ops=round_index == 0)
            load_before = os.getloadavg()[0]
            report = measure_training_speed(options).to_dict()
            report["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            rows[group].append(report)
            keys = ("images", "it_per_s", "images_it_per_s", "images_it_per_cpu_s", "error", "load_average_1min")
            print(json.dumps({k: report[k] for k in keys} | {"group": group, "round": round_index}), flush=True)

    summary = []
    for group in variants:
        rates = [r["images_it_per_s"] for r in rows[group] if not r["error"]]
        cpu_rates = [r["images_it_per_cpu_s"] for r in rows[group] if not r["error"]]
        ops = next((r["ops_per_image_step"] for r in rows[group] if r.get("ops_per_image_step")), None)
        summary.append({"group": group, "images_it_per_s_median": statistics.median(rates) if rates else None,
                        "images_it_per_s_all": rates,
                        "images_it_per_cpu_s_median": statistics.median(cpu_rates) if cpu_rates else None,
                        "ops_per_image_step": ops, "errors": [r["error"] for r in rows[group] if r["error"]]})
    for key in ("images_it_per_s_median", "images_it_per_cpu_s_median"):
        base = next((s[key] for s in summary if s["group"] == 1), None)
        for s in summary:
            s[key.replace("_median", "_vs_group_of_1")] = (s[key] / base) if base and s[key] else None
    result = {
        "command": " ".join(["python", "benchmarks/train_group_speed.py", *sys.argv[1:]]),
        "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": args.preset,
        "crop_size": rows[variants[0]][0]["crop_size"], "start_iteration": rows[variants[0]][0]["start_iteration"],
        "summary": summary, "runs": rows,
    }
    (args.out_dir / "train_group_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Grouped training steps on CPU ({args.preset} preset, crop {result['crop_size']}, "
             f"{result['threads']} threads)", "",
             f"`{result['command']}`, {started}; median of {args.rounds} interleaved rounds of "
             f"{args.steps} timed steps (after {args.warmup} warm-up steps) at iteration "
             f"{result['start_iteration']:,} (full output-size range).", "",
             "| variant | images x it/s (median) | all rounds | vs group of 1 | images x it per CPU second "
             "(median) | vs group of 1 | aten ops per image and step |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        name = "single-image Trainer" if s["group"] == 0 else f"group of {s['group']}"
        rate = f"{s['images_it_per_s_median']:.3f}" if s["images_it_per_s_median"] else "failed"
        gain = f"{s['images_it_per_s_vs_group_of_1']:.2f}x" if s["images_it_per_s_vs_group_of_1"] else "-"
        cpu = f"{s['images_it_per_cpu_s_median']:.3f}" if s["images_it_per_cpu_s_median"] else "-"
        cpu_gain = (f"{s['images_it_per_cpu_s_vs_group_of_1']:.2f}x" if s["images_it_per_cpu_s_vs_group_of_1"]
                    else "-")
        ops = f"{s['ops_per_image_step']:,.0f}" if s["ops_per_image_step"] else "-"
        lines.append(f"| {name} | {rate} | {', '.join(f'{r:.3f}' for r in s['images_it_per_s_all'])} | {gain} | "
                     f"{cpu} | {cpu_gain} | {ops} |")
    (args.out_dir / "train_group_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(not s["errors"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
