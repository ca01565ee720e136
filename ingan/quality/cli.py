"""`ingan-eval`: score a model's retargets and two baselines against the training image."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ingan.cli.common import collect_sizes, device_option, setup_logging, size_options, user_errors
from ingan.extras import require
from ingan.fsutil import IMAGE_FILES, MODEL_FILES, existing_file


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(path_type=Path))
@size_options(required=True)
@click.option("--reference", type=click.Path(path_type=Path),
              help="The training image. [default: from the .pt checkpoint, or the source checkpoint "
                   "next to an exported model]")
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Output folder. [default: 'quality' beside the model]")
@device_option("Runs the model (a .plan always uses its GPU) and the metrics.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of patch sampling and projections.")
@click.option("--max-patches", type=click.IntRange(min=2), default=4096, show_default=True,
              help="Patches sampled per image and pyramid level.")
@click.option("--levels", type=click.IntRange(min=1), default=3, show_default=True,
              help="Pyramid levels (area /2 each; only while both images keep a side >= 16).")
@click.option("-q", "--quiet", is_flag=True, help="Errors and the output file names only.")
def main(model: Path, sizes: tuple[list[tuple[int, int]], ...], old_sizes: tuple[list[tuple[int, int]], ...],
         reference: Path | None, out: Path | None, device: str, seed: int, max_patches: int, levels: int,
         quiet: bool) -> None:
    """Score MODEL's retargets against its training image with weight-free patch metrics.

    MODEL is a ckpt.pt, .onnx or .plan. At each size the InGAN output, a bicubic resize and a
    centre crop (mirror-padded where the size is larger) are compared with the training
    image: sliced Wasserstein distance of patch distributions (SWD), coherence (each output
    patch has a close training patch) and completeness (each training patch appears in the
    output), over a pyramid. Lower is better. Writes quality.json, quality.md and
    side_by_side.png.

    \b
    Examples:
      ingan-eval runs/photo/ckpt.pt --size 768x320,192x320
      ingan-eval model.onnx --size 1280x360 --reference photo.png -o eval/
    """
    setup_logging(quiet)
    started = time.monotonic()
    wanted = collect_sizes(sizes, old_sizes, required=True)
    with user_errors():
        # Arguments first (instant), then the heavy imports.
        existing_file(model, "model", MODEL_FILES)
        if reference is not None:
            existing_file(reference, "reference image", IMAGE_FILES)
        require("Scoring retargets (ingan-eval)", ("torch",))
        from ingan.quality.evaluate import evaluate

        say = (lambda msg: None) if quiet else (lambda msg: click.echo(f"{msg} ...", err=True))
        report = evaluate(model, wanted, out if out is not None else model.parent / "quality",
                          reference=reference, device=device, seed=seed, max_patches=max_patches,
                          levels=levels, progress=say)
    if not quiet:
        click.echo("\n".join(report.table_lines()))
        noise = report.self_noise
        click.echo(f"self-noise floor: SWD {noise.swd:.3f}, coherence {noise.coherence:.3f}, "
                   f"completeness {noise.completeness:.3f}")
    for path in report.paths.values():
        click.echo(f"wrote {path}")
    click.echo(f"done in {time.monotonic() - started:.1f}s")
    sys.exit(0)
