"""`ingan-demo`: the whole path on the bundled example, into one folder with an index.md.

checkpoint (committed, or `--train` with the quick preset) -> ONNX export (FP32 + FP16,
validated) -> retargets, collage and sweep animation through ONNX Runtime -> patch-metric
quality against bicubic and centre-crop baselines -> latency benchmark -> index.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from ingan.cli.common import format_duration, notice, setup_logging, user_errors
from ingan.errors import InganError
from ingan.extras import require
from ingan.sizes import clip_to_range, format_size

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGE = REPO / "examples" / "hubble" / "hubble_xdf.png"
EXAMPLE_CHECKPOINT = REPO / "examples" / "hubble" / "ckpt.pt"
STEPS = 6


def _step(number: int, text: str) -> float:
    click.echo(f"[{number}/{STEPS}] {text}", err=True)
    return time.monotonic()


def _done(started: float) -> None:
    click.echo(f"      done in {format_duration(time.monotonic() - started)}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for everything the demo makes (index.md links it all).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Use this ckpt.pt instead of the bundled example's. [default: examples/hubble/ckpt.pt]")
@click.option("--train", is_flag=True,
              help="First train the 'quick' preset on the example image (~4-5 min on 2 CPU cores; a smoke "
                   "test that does not beat bicubic) and use that checkpoint.")
@click.option("--no-bench", is_flag=True, help="Skip the latency benchmark step.")
@click.option("--sweep-steps", type=click.IntRange(1, 30), default=3, show_default=True,
              help="Frames per segment of the sweep animation (9 segments).")
def main(out: Path, checkpoint: Path | None, train: bool, no_bench: bool, sweep_steps: int) -> None:
    """Run the whole ingan pipeline on the bundled example and write OUT/index.md.

    Steps: checkpoint (the committed one, or --train), ONNX export with validation,
    retargets + collage + sweep animation, quality scores against bicubic and centre crop,
    a latency benchmark of every backend here, and an index.md linking the pictures and
    tables. About 2.5 minutes on 2 CPU cores (add ~4-5 with --train).
    """
    setup_logging(quiet=False)
    with user_errors():
        _demo(out, checkpoint, train, no_bench, sweep_steps)


def _demo(out: Path, checkpoint: Path | None, train: bool, no_bench: bool, sweep_steps: int) -> None:
    from ingan.fsutil import ensure_output_dir

    if checkpoint is not None and train:
        raise click.UsageError("pass either --checkpoint or --train, not both")
    if train and not EXAMPLE_IMAGE.exists():
        raise InganError(f"the example image {EXAMPLE_IMAGE} is missing; run the demo from a clone of the repository")
    ckpt_path = checkpoint or EXAMPLE_CHECKPOINT
    if not train and not ckpt_path.exists():  # before the heavy imports: reported at once
        raise InganError(
            f"checkpoint {ckpt_path} not found; run the demo from a clone of the repository, pass "
            "--checkpoint, or use --train"
        )
    require("The demo (ingan-demo)", ("torch", "onnx", "onnxscript", "onnxruntime"), extra="demo")
    from ingan.model.checkpoint import load_checkpoint

    if not train:  # read (and so validated) before anything is created
        ckpt = load_checkpoint(ckpt_path)
    if out.is_dir() and any(out.iterdir()) and not (out / "index.md").is_file():
        notice(f"'{out}' already holds files that are not an earlier demo; the demo's files are added "
               "beside them (same names replaced)")
    out = ensure_output_dir(out)
    began = time.monotonic()
    facts: dict[str, Any] = {}

    # 1. checkpoint
    if train:
        t = _step(1, "training the quick preset on the example image (a smoke test, ~4-5 min)")
        train_dir = out / "train"
        argv = [sys.executable, "-m", "ingan.train", str(EXAMPLE_IMAGE), "--preset", "quick", "-o", str(train_dir),
                "--force"]
        if subprocess.run(argv).returncode != 0:
            raise InganError("training failed (see the messages above)")
        ckpt_path = train_dir / "ckpt.pt"
        ckpt = load_checkpoint(ckpt_path)
        _done(t)
    else:
        _step(1, f"using the checkpoint {ckpt_path}")

    h, w = ckpt.image.shape[:2]
    facts["checkpoint"] = {"path": str(ckpt_path), "iteration": ckpt.iteration,
                           "preset": ckpt.payload["train_config"].get("preset"),
                           "train_wall_time_s": round(float(ckpt.payload["wall_time"]), 1),
                           "image": ckpt.payload["image_name"], "image_size": format_size((h, w)),
                           "scale_range": [round(v, 3) for v in ckpt.scale_range],
                           "lineage": list(ckpt.payload.get("lineage", [])),
                           "colour_calibration": ckpt.payload.get("colour_calibration")}

    # 2. export
    from ingan.export.pipeline import ExportOptions, export_checkpoint

    t = _step(2, "exporting ONNX (FP32 + FP16) and validating it against PyTorch")
    model_dir = out / "model"
    result = export_checkpoint(ckpt_path, ExportOptions(out_dir=model_dir, fp16=True),
                               progress=lambda m: click.echo(f"      {m}", err=True))
    if result.engine_note:
        notice(result.engine_note)
    facts["export"] = {name: report.summary() for name, report in result.reports.items()}
    _done(t)

    # 3. retargets, collage, sweep
    import ingan.runtime
    from ingan.imageio import save_image
    from ingan.runtime import render

    t = _step(3, "retargeting with ONNX Runtime: 2x wider, 0.5x narrower, collage, sweep animation")
    wide, narrow = (h, 2 * w), (h, w // 2)
    with ingan.runtime.load(model_dir / "model.onnx") as runner:
        facts["runtime"] = f"{runner.backend} on {runner.device}"
        for name, size in (("wide", wide), ("narrow", narrow)):
            save_image(runner.retarget(size), out / f"retarget_{name}_{format_size(size)}.png")
        save_image(ckpt.image, out / "input.png")
        picture, notes = render.collage(runner, progress=True)
        for note in notes:
            notice(note)
        save_image(picture, out / "collage.png")
        low, high = (0.5, 0.5), (1.5, 2.0)
        frames = render.sweep_frames(runner, low, high, sweep_steps)
        render.write_animation(frames, out / "sweep.gif", fps=8, total=1 + 9 * sweep_steps)
    _done(t)

    # 4. quality
    from ingan.quality.evaluate import evaluate

    t = _step(4, "scoring patch-distribution quality against bicubic and centre crop")
    quality = evaluate(ckpt_path, [wide, narrow], out / "quality",
                       progress=lambda m: click.echo(f"      {m}", err=True))
    facts["quality"] = quality.to_dict()
    _done(t)

    # 5. benchmark
    if no_bench:
        _step(5, "latency benchmark skipped (--no-bench)")
    else:
        from ingan.bench.suite import BenchOptions, run_benchmark, write_outputs
        from ingan.bench.timing import Settings

        t = _step(5, "benchmarking latency of every backend here (small iteration counts)")
        settings = Settings(warmup_iterations=1, warmup_seconds=None, iterations=3, duration_s=0.0, max_iterations=3)
        models = [model_dir / "model.onnx", model_dir / "model_fp16.onnx", ckpt_path]
        from ingan.metadata import ModelMetadata, sidecar_path

        meta = ModelMetadata.read(sidecar_path(model_dir / "model.onnx"))
        sizes = list(dict.fromkeys(clip_to_range(s, meta.min_size, meta.max_size) for s in ((h, w), wide)))
        report = run_benchmark(models, BenchOptions(sizes=sizes, settings=settings),
                               progress=lambda m: click.echo(f"      {m}", err=True))
        write_outputs(report, out / "bench")
        _done(t)

    # 6. index
    t = _step(6, "writing index.md")
    _write_index(out, facts, wide, narrow, no_bench)
    from ingan.fsutil import atomic_path

    with atomic_path(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(facts, indent=2, default=str) + "\n")
    click.echo(f"demo finished in {format_duration(time.monotonic() - began)}: open {out / 'index.md'}")


def _read(path: Path) -> str:
    """A sub-report's Markdown, its headings demoted to sit under this page's sections."""
    if not path.exists():
        return "(missing)"
    lines = path.read_text().strip().splitlines()
    return "\n".join("###" + line.lstrip("#") if line.startswith("#") else line for line in lines)


def _write_index(out: Path, facts: dict[str, Any], wide: tuple[int, int], narrow: tuple[int, int],
                 no_bench: bool) -> None:
    from ingan.fsutil import atomic_path
    from ingan.model.calibration import ColourCalibration

    ck = facts["checkpoint"]
    lines = [
        "# ingan demo",
        "",
        f"Checkpoint `{ck['path']}`: preset `{ck['preset']}`, {ck['iteration']:,} iterations, "
        f"{format_duration(ck['train_wall_time_s'])} of training, image `{ck['image']}` ({ck['image_size']}), "
        f"trained output scales {ck['scale_range'][0]:g}-{ck['scale_range'][1]:g}."
        + "".join(f" Warm-started from `{r.get('path')}` ({r.get('iteration', 0):,} iterations, preset "
                  f"`{r.get('preset')}`, crop {r.get('crop_size')})." for r in reversed(ck["lineage"]))
        + (f" {ck['iteration'] + sum(int(r.get('iteration') or 0) for r in ck['lineage']):,} iterations in all."
           if ck["lineage"] else "")
        + (" Output colour calibration (docs/model.md): "
           f"{ColourCalibration.from_dict(ck['colour_calibration']).describe()}."
           if ck.get("colour_calibration") else ""),
        "",
        "## Retargets (ONNX Runtime, " + facts.get("runtime", "?") + ")",
        "",
        "| input | 2x wider | 0.5x narrower |",
        "|---|---|---|",
        f"| ![input](input.png) | ![wide](retarget_wide_{format_size(wide)}.png) | "
        f"![narrow](retarget_narrow_{format_size(narrow)}.png) |",
        "",
        "Collage over scales {2, 1.25, 1, 0.66, 0.33}² (rows: height, columns: width; the 1x1 tile framed red):",
        "",
        "![collage](collage.png)",
        "",
        "Sweep (height 0.5-1.5x, width 0.5-2x, each frame generated at its own size):",
        "",
        "![sweep](sweep.gif)",
        "",
        "## Export",
        "",
        *[f"- `{name}`: {summary}" for name, summary in facts["export"].items()],
        "",
        "## Quality (lower is better; see docs/quality.md)",
        "",
        _read(out / "quality" / "quality.md"),
        "",
        "![side by side](quality/side_by_side.png)",
        "",
    ]
    if not no_bench:
        lines += ["## Latency (this machine)", "", _read(out / "bench" / "bench.md"), "",
                  "![latency](bench/bench.png)", ""]
    with atomic_path(out / "index.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
