#!/usr/bin/env python3
"""Training speed on one GPU, single image vs grouped steps, eager vs CUDA graphs: one call.

Made for one device-tool call of under 7 minutes on one GPU, from the repository root
with nothing installed but torch, numpy, Pillow, click and tqdm (no pytest):

    PYTHONPATH=. python benchmarks/gpu_train_speed.py OUT_DIR

It measures images x iterations per second with ingan.train.speed.measure_training_speed
(paper preset, at its full output-size range, synthetic images of slightly different sizes):
  1. correctness checks of the never-yet-run CUDA paths on a tiny model: CUDA-graph steps
     vs eager steps (single image, and a group of 3), a group of one vs the single-image
     trainer on CUDA;
  2. the single-image Trainer eager (random sizes, cuDNN off: ingan-train's default) with a
     profiled step (kernels per step), and with --cuda-graphs at the CLI's size step (32:
     324 shapes, mostly captures in a short run) and at size step 128 (few shapes: the
     steady replay rate);
  3. the grouped step for G = 1, 4, 16, 32 (--groups) eager (cuDNN on: grouped
     convolutions need it), G = 16 profiled, then G = 4, 16, 32 with CUDA graphs (size
     step 128), and G = 4 with cuDNN off (grouped convolutions then loop over the members).
Variants run most informative first, each timed for at most --variant-seconds (x1.5 with
graphs, whose captures come first); a variant that would start too close to the
--total-seconds cap is skipped (and reported), a failing one records its error and the
run goes on. Writes OUT_DIR/gpu_train_speed.json and OUT_DIR/gpu_train_speed.md.

CPU dry run of the same flow (tiny, CUDA-only variants reported as skipped):
    PYTHONPATH=. python benchmarks/gpu_train_speed.py OUT_DIR --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Variant:
    name: str
    group: int  # 0: the single-image Trainer
    cuda_graphs: bool = False
    size_step: int | None = None
    cudnn: bool | None = None
    count_ops: bool = False
    needs_cuda: bool = False


def variants(groups: list[int]) -> list[Variant]:
    """What to time, most informative first (in case the time cap bites)."""
    profiled = max((g for g in groups if g <= 16), default=groups[0])
    graphs = [g for g in groups if g > 1]
    rows = [Variant("single eager", 0, count_ops=True)]
    rows += [Variant(f"group {g} eager", g, count_ops=g == profiled) for g in groups if g <= profiled]
    rows += [Variant(f"group {g} graphs, size step 128", g, cuda_graphs=True, size_step=128, needs_cuda=True)
             for g in graphs if g == profiled]
    rows += [Variant("single graphs, size step 128", 0, cuda_graphs=True, size_step=128, needs_cuda=True)]
    rows += [Variant(f"group {g} eager", g) for g in groups if g > profiled]
    rows += [Variant("single graphs, size step 32", 0, cuda_graphs=True, size_step=32, needs_cuda=True)]
    rows += [Variant(f"group {g} graphs, size step 128", g, cuda_graphs=True, size_step=128, needs_cuda=True)
             for g in graphs if g != profiled]
    if len(groups) > 1:
        rows.append(Variant(f"group {groups[1]} eager, cuDNN off", groups[1], cudnn=False, needs_cuda=True))
    return rows


def _tiny_config(**changes: Any) -> Any:
    from ingan.model.config import DiscriminatorConfig, GeneratorConfig
    from ingan.train.config import TrainConfig

    return TrainConfig(preset="tiny", iters=40, crop_size=32, curriculum_iters=4, lr_decay_start=20, inverse_start=3,
                       scale_weights_even_at=4, g_lr=2e-4, d_lr=2e-4, size_step=16,
                       generator=GeneratorConfig(base_channels=4, n_blocks=1),
                       discriminator=DiscriminatorConfig(base_channels=4)).with_overrides(**changes)


def _step_gaps(a: list[list[float]], b: list[list[float]]) -> list[float]:
    """Largest loss difference of each step."""
    return [max(abs(x - y) for x, y in zip(row_a, row_b)) for row_a, row_b in zip(a, b)]


def _losses(trainer: Any, steps: int) -> list[list[float]]:
    rows = []
    for _ in range(steps):
        trainer.step()
        got = trainer.losses()
        rows.append([v for m in (got if isinstance(got, list) else [got]) for v in vars(m).values()])
    return rows


# Two runs of one model part slowly even on the same device: CUDA's atomics (bilinear
# upsampling's backward) make eager steps non-deterministic, and training amplifies any
# difference about tenfold per step after a few steps (measured on CPU, tests/train/
# test_group.py). So runs are compared over their first steps, against the run-to-run gap
# of two eager runs.
EARLY_STEPS = 6


def check_graphs_vs_eager(device: str, group: int) -> dict[str, Any]:
    """Noise off, so every run sees the same inputs; 3 eager warm-up steps, then captures
    and replays (size step 16 on a 32 crop: few shapes)."""
    from ingan.train.config import RunOptions
    from ingan.train.group import GroupTrainer
    from ingan.train.speed import synthetic_images
    from ingan.train.trainer import Trainer

    config = _tiny_config(noise=0.0)
    images = synthetic_images(max(group, 1), config.crop_size)
    runs, stats = [], None
    for graphs in (False, False, True):
        options = RunOptions(device=device, cuda_graphs=graphs, cudnn=group > 0, quiet=True)
        trainer = (Trainer(images[0], config, options) if group == 0
                   else GroupTrainer.from_images(images, config, options))
        runs.append(_losses(trainer, 14))
        stats = trainer.graph_stats
    floor = _step_gaps(runs[0], runs[1])
    gaps = _step_gaps(runs[0], runs[2])
    tolerance = 1e-4 + 10 * max(floor[:EARLY_STEPS])
    ok = max(gaps[:EARLY_STEPS]) <= tolerance and stats["replays"] >= 1 and stats["disabled_reason"] is None
    return {"ok": ok, "max_loss_gap": max(gaps[:EARLY_STEPS]), "tolerance": tolerance,
            "gaps_per_step": gaps, "eager_vs_eager_gaps_per_step": floor, "graph_stats": stats}


def check_group_of_one_vs_single(device: str) -> dict[str, Any]:
    """The member's noise generator starts where the single run's global stream does, and
    the first steps' losses agree."""
    import torch

    from ingan.train.config import RunOptions
    from ingan.train.group import GroupTrainer
    from ingan.train.speed import synthetic_images
    from ingan.train.trainer import Trainer

    config = _tiny_config()
    image = synthetic_images(1, config.crop_size)[0]
    options = RunOptions(device=device, quiet=True)
    Trainer(image, config, options)
    expected_noise = torch.rand(4096, device=device)
    member = GroupTrainer.from_images([image], config, options).members[0]
    same_noise = bool(torch.equal(torch.rand(4096, device=device, generator=member.noise), expected_noise))
    single = _losses(Trainer(image, config, options), 8)
    grouped = _losses(GroupTrainer.from_images([image], config, options), 8)
    gaps = _step_gaps(single, grouped)
    tolerance = 1e-4
    return {"ok": same_noise and max(gaps[:EARLY_STEPS]) <= tolerance, "same_noise_stream": same_noise,
            "max_loss_gap": max(gaps[:EARLY_STEPS]), "tolerance": tolerance, "gaps_per_step": gaps}


def run_check(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from ingan.errors import first_line

    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - recorded, the benchmark goes on
        result = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc, 400)}"}
    result["seconds"] = round(time.monotonic() - started, 1)
    log(f"check {name}: {json.dumps(result)}")
    return {"name": name, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny dry run: quick preset, crop 32, one step each, groups 1,2")
    parser.add_argument("--groups", help="group sizes, comma-separated (default 1,4,16,32; 1,2 with --quick)")
    parser.add_argument("--total-seconds", type=float, default=360.0,
                        help="wall-clock cap: no variant starts when less than its reserve is left (default 360)")
    parser.add_argument("--variant-seconds", type=float, default=20.0, help="timed seconds per variant at most")
    parser.add_argument("--reserve-seconds", type=float, default=25.0,
                        help="a variant of G images starts only with this x (1 + G/16) of the cap left")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant at most")
    parser.add_argument("--skip-checks", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    from ingan.train.speed import SpeedOptions, environment, images_rate_gain, measure_training_speed

    cuda = args.device.startswith("cuda")
    result: dict[str, Any] = {"command": " ".join(["python", "benchmarks/gpu_train_speed.py", *sys.argv[1:]]),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": environment(),
                              "checks": [], "variants": []}
    log(f"environment: {json.dumps(result['environment'])}")
    if not args.skip_checks:
        checks = [("group of one equals the single-image trainer", lambda: check_group_of_one_vs_single(args.device))]
        if cuda:
            checks += [("single-image graphs track eager steps", lambda: check_graphs_vs_eager(args.device, 0)),
                       ("group-of-3 graphs track eager steps", lambda: check_graphs_vs_eager(args.device, 3))]
        result["checks"] = [run_check(name, check) for name, check in checks]

    base = SpeedOptions(preset="quick" if args.quick else "paper", device=args.device,
                        crop_size=32 if args.quick else None, warmup_steps=1 if args.quick else 2,
                        steps=1 if args.quick else args.steps, max_seconds=args.variant_seconds)
    reports: dict[str, Any] = {}
    groups = [int(g) for g in (args.groups or ("1,2" if args.quick else "1,4,16,32")).split(",")]
    for variant in variants(groups):
        row: dict[str, Any] = {"name": variant.name, "variant": asdict(variant)}
        left = args.total_seconds - (time.monotonic() - started)
        # Building and warming up G members takes time outside the timed steps.
        reserve = args.reserve_seconds * (1 + variant.group / 16)
        timed = args.variant_seconds * (1.5 if variant.cuda_graphs else 1.0)  # captures come first
        if variant.needs_cuda and not cuda:
            row["status"] = "skipped: needs CUDA"
        elif left < reserve:
            row["status"] = f"skipped: only {left:.0f} s of the {args.total_seconds:.0f} s cap left"
        else:
            options = replace(base, group=variant.group, cuda_graphs=variant.cuda_graphs,
                              size_step=variant.size_step, cudnn=variant.cudnn, count_ops=variant.count_ops,
                              # CudaGraphSteps runs 3 eager steps before its first capture
                              warmup_steps=max(base.warmup_steps, 4) if variant.cuda_graphs else base.warmup_steps,
                              max_seconds=min(timed, max(left - reserve, 5.0)))
            variant_started = time.monotonic()
            report = measure_training_speed(options)
            reports[variant.name] = report
            row["status"] = "error" if report.error else "ok"
            row["report"] = report.to_dict()
            row["seconds"] = round(time.monotonic() - variant_started, 1)
        log(f"{variant.name} (at {time.monotonic() - started:.0f} s): {json.dumps({k: v for k, v in row.get('report', {}).items() if k != 'options'})} "
            f"[{row['status']}]")
        result["variants"].append(row)

    for row in result["variants"]:
        report = reports.get(row["name"])
        if report is None:
            continue
        for label, baseline in (("vs_single_eager", "single eager"), ("vs_group_1_eager", "group 1 eager")):
            if baseline in reports:
                row[label] = images_rate_gain(report, reports[baseline])
    result["total_seconds"] = round(time.monotonic() - started, 1)
    (args.out_dir / "gpu_train_speed.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out_dir / "gpu_train_speed.md").write_text(markdown(result))
    log(f"done in {result['total_seconds']} s; wrote {args.out_dir / 'gpu_train_speed.md'}")
    print(markdown(result), flush=True)
    failed = [c["name"] for c in result["checks"] if not c["ok"]] + [
        r["name"] for r in result["variants"] if r["status"] == "error"]
    return 1 if failed else 0


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# Training speed: {env.get('gpu', 'CPU')}, torch {env['torch']}", "",
             f"`{result['command']}`, {result['started']}, {result['total_seconds']} s.", ""]
    if result["checks"]:
        lines += ["| check | result | detail |", "|---|---|---|"]
        for c in result["checks"]:
            detail = c.get("error") or (f"largest loss gap over the first {EARLY_STEPS} steps {c['max_loss_gap']:.2e} "
                                        f"(tolerance {c['tolerance']:.1e})")
            lines.append(f"| {c['name']} | {'ok' if c['ok'] else 'FAILED'} | {detail} |")
        lines.append("")
    lines += ["| variant | images x it/s | vs single eager | vs group 1 eager | steps (s) | replayed steps "
              "(their it/s) | captures | kernels / image / step | aten ops / image / step | peak GiB | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["variants"]:
        r = row.get("report") or {}
        graphs = r.get("graph_stats") or {}
        replay = f"{r['replay_steps']} ({_fmt(r.get('replay_it_per_s'))})" if r.get("replay_steps") is not None else "-"
        status = row["status"] if row["status"] != "error" else f"error: {r.get('error')}"
        if graphs.get("disabled_reason"):
            status += f"; graphs off: {graphs['disabled_reason']}"
        lines.append(
            f"| {row['name']} | {_fmt(r.get('images_it_per_s'))} | {_fmt(row.get('vs_single_eager'))} | "
            f"{_fmt(row.get('vs_group_1_eager'))} | {r.get('steps', '-')} ({_fmt(r.get('seconds'), '.1f')}) | "
            f"{replay} | {graphs.get('captures', '-')} | {_fmt(r.get('kernels_per_image_step'), ',.0f')} | "
            f"{_fmt(r.get('ops_per_image_step'), ',.0f')} | {_fmt(r.get('peak_memory_gib'), '.1f')} | {status} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
