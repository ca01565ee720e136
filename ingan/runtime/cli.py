"""`ingan-run`: retarget with an exported model (.plan, .onnx) or a checkpoint (ckpt.pt).

Never imports torch for .plan/.onnx models: nothing here (or in what it imports) comes
from ingan.model, ingan.train or ingan.export; backends load their own packages lazily.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from ingan.cli.common import collect_sizes, device_option, notice, setup_logging, size_options, user_errors
from ingan.errors import ConfigError, OutputPathError
from ingan.fsutil import MODEL_FILES, existing_file
from ingan.runtime.registry import backend_choice
from ingan.sizes import format_size

SIZE_HELP = ("Output size WIDTHxHEIGHT in pixels, e.g. 640x360; repeat the option or give a comma list. Every "
             "size must lie in the model's range (printed first, and in its .json as min_size/max_size); all "
             "are checked before any runs.")
SCALE_HELP = ("Output size as a scale of the training image, SYxSX = HEIGHT-scale x WIDTH-scale "
              "(note: the reverse of --size's WxH order, as in the InGAN paper): 1x2 keeps the height "
              "and doubles the width; a single number scales both (1.5 = 1.5x1.5). Repeatable. For "
              "--image-input models the scale is of the --image.")
EPILOG = ("Scales follow the paper: 1x1 is the training image's size. Models exported with "
          "--image-input need --image; models exported with --warp accept --warp.")

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SCALE = re.compile(rf"^\s*({_NUMBER})\s*(?:[xX×]\s*({_NUMBER}))?\s*$")
_FLOAT = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_WARP = re.compile(rf"^\s*({_FLOAT})\s*,\s*({_FLOAT})\s*$")


class ScaleParam(click.ParamType):
    name = "SYxSX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        match = _SCALE.match(str(value))
        if not match:
            self.fail(f"'{value}' is not a scale; write HEIGHTxWIDTH scales, e.g. 1x2 or 0.5x1.5 "
                      "(or one number for both)", param, ctx)
        sy = float(match.group(1))
        sx = float(match.group(2)) if match.group(2) is not None else sy
        if sy <= 0 or sx <= 0 or not (math.isfinite(sy) and math.isfinite(sx)):
            self.fail(f"scale '{value}' must be positive", param, ctx)
        return sy, sx


class WarpParam(click.ParamType):
    name = "LEFT,RIGHT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        match = _WARP.match(str(value))
        if not match:
            self.fail(f"'{value}' is not a warp; write two shifts LEFT,RIGHT, e.g. -0.5,0.5", param, ctx)
        left, right = float(match.group(1)), float(match.group(2))
        if 1.0 + right <= -1.0 + left:
            self.fail(f"'{value}' folds the image (the top corners meet or cross); keep RIGHT - LEFT "
                      "above -2", param, ctx)
        return left, right


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.argument("model")
@size_options(SIZE_HELP)
@click.option("--scale", "scales", type=ScaleParam(), multiple=True, metavar="SYxSX", help=SCALE_HELP)
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Where to write: an image file (.png, .jpg, .jpeg, .webp) when exactly one image is "
                   "made, else a folder (created) that receives retarget_<W>x<H>.png and collage.png. "
                   "[default: the current folder]")
@click.option("--collage", is_flag=True,
              help="Also write collage.png: a 5x5 grid over the scales 2, 1.25, 1, 0.66, 0.33 (rows: "
                   "height, columns: width), the 1x1 tile framed in red. Scales outside the model's "
                   "range are clipped into it (with a notice).")
@click.option("--sweep", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write an animation (.gif, .webp; .mp4 needs imageio-ffmpeg) whose size sweeps "
                   "the model's whole range: width, then height, then both, back to 1x1 each time.")
@click.option("--sweep-steps", type=click.IntRange(min=1), default=12, show_default=True,
              help="Frames per sweep segment (a sweep has 9 segments).")
@click.option("--fps", type=click.IntRange(min=1, max=100), default=20, show_default=True,
              help="Frame rate of the --sweep animation.")
@click.option("--warp", type=WarpParam(),
              help="Non-rectangular retarget: the output's top corners sample the input shifted by LEFT and "
                   "RIGHT (normalised units, 2 = the full width), the bottom stays; e.g. -0.5,0.5 widens the "
                   "top. Needs a model exported with ingan-export --warp; applies to every output.")
@click.option("--image", type=click.Path(path_type=Path), metavar="IMG",
              help="The image to retarget, for models exported with --image-input only.")
@click.option("--backend", type=backend_choice(),
              help="[default: from the file's suffix: .plan/.engine TensorRT, .onnx ONNX Runtime, .pt PyTorch, or "
                   "another registered backend's]")
@device_option("Where ONNX Runtime and PyTorch models run (a .plan always runs on its GPU).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="CPU threads per request (ONNX Runtime intra-op threads; PyTorch's, process-wide). 0: the "
                   "library's default, one per physical core. Lower it when other work or other replicas "
                   "share the machine.")
@click.option("--provider", "providers", multiple=True, metavar="NAME",
              help="ONNX Runtime execution provider, in priority order (repeatable): tensorrt, cuda, cpu "
                   "or a full name such as CUDAExecutionProvider.")
@click.option("--allow-host-code", is_flag=True,
              help="Allow loading a version-compatible TensorRT plan (it embeds host code: only for plans "
                   "you trust).")
@click.option("--cuda-graphs", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="TensorRT only: cache CUDA graphs for up to N recently used sizes (repeated sizes "
                   "then cost one graph launch instead of many kernel launches).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run each --size/--scale N times and print the min and median latency (the image "
                   "written is the last run's).")
@click.option("-q", "--quiet", is_flag=True, help="No per-output lines and no progress bar; errors and notices only.")
def main(model: str, **opt: Any) -> None:
    """Retarget with MODEL (.plan, .onnx, ckpt.pt, or an ingan-serve URL http://HOST:PORT/ID); write the images.

    One model serves every output size in its range; for each request a line gives the
    size, the latency (measured around the model call) and the file written. With no
    --size, --scale, --collage or --sweep it writes the 1x1 output (the training image's
    size).

    \b
    Examples:
      ingan-run model.onnx --size 640x360 -o wide.png
      ingan-run model.plan --size 640x360 --size 256x256 -o out/
      ingan-run model.onnx --scale 1x2 --scale 0.5x1 --collage -o out/
      ingan-run model.onnx --sweep sweep.gif --sweep-steps 8
      ingan-run model.plan --size 1280x720 --repeat 50 -o bench.png   # latency min/median
      ingan-run runs/photo/ckpt.pt --size 640x360                     # PyTorch reference
      ingan-run warp.onnx --warp -0.5,0.5 --size 256x256 -o warped.png
      ingan-run http://127.0.0.1:8000/beach --size 640x360 -o wide.png   # served by ingan-serve
    """
    setup_logging(opt["quiet"])
    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in ("sweep_steps", "fps")
             if (source := ctx.get_parameter_source(n)) is not None and source.name == "COMMANDLINE"]
    if given and opt["sweep"] is None:
        verb = "apply" if len(given) > 1 else "applies"
        raise click.UsageError(f"{' and '.join(given)} only {verb} to an animation; add --sweep FILE")
    opt["sizes"] = tuple(collect_sizes(opt.pop("sizes"), opt.pop("old_sizes")))
    if model.lower().startswith(("http://", "https://")):
        from ingan.serve.remote import run_from_cli

        with user_errors():
            run_from_cli(ctx, model, opt)
        return
    with user_errors():
        _run(Path(model), RunOptions(**opt))


@dataclass(frozen=True)
class RunOptions:
    """What `ingan-run` was asked for (one value per option)."""

    sizes: tuple[tuple[int, int], ...] = ()
    scales: tuple[tuple[float, float], ...] = ()
    out: Path | None = None
    collage: bool = False
    sweep: Path | None = None
    sweep_steps: int = 12
    fps: int = 20
    warp: tuple[float, float] | None = None
    image: Path | None = None
    backend: str | None = None
    device: str = "auto"
    threads: int = 0
    providers: tuple[str, ...] = ()
    allow_host_code: bool = False
    cuda_graphs: int = 0
    repeat: int = 1
    quiet: bool = False


def _run(model: Path, options: RunOptions) -> None:
    import ingan.runtime
    from ingan.runtime import render

    sizes, scales, out, collage, sweep = options.sizes, options.scales, options.out, options.collage, options.sweep
    sweep_steps, fps, warp, image, repeat, quiet = (options.sweep_steps, options.fps, options.warp, options.image,
                                                    options.repeat, options.quiet)
    providers = options.providers
    existing_file(model, "model", MODEL_FILES)

    if sweep is not None:
        render.check_animation_path(sweep)  # suffix and packages, before loading anything
    homography = render.top_shift_homography_np(*warp) if warp is not None else None
    pixels = None
    if image is not None:
        from ingan.imageio import load_image

        loaded = load_image(image)
        for message in loaded.notices:
            notice(f"{image}: {message}")
        pixels = loaded.pixels

    runner = ingan.runtime.load(model, options.backend, device=options.device, providers=list(providers) or None,
                                allow_host_code=options.allow_host_code, cuda_graphs=options.cuda_graphs,
                                threads=options.threads)
    with runner:
        meta = runner.metadata
        if meta.image_input and pixels is None:
            raise ConfigError(f"'{model.name}' was exported with ingan-export --image-input: pass the image to "
                              "retarget with --image IMG")
        if pixels is not None and not meta.image_input:
            raise ConfigError(f"'{model.name}' has its training image baked in and takes no --image; "
                              "re-export with ingan-export --image-input to retarget other images")
        if homography is not None and not runner.supports_warp:
            raise ConfigError("this model was exported without --warp; re-export with ingan-export --warp")
        base = render.base_size(runner, pixels)
        if not quiet:
            click.echo(f"{runner.backend} on {runner.device}  ({model.name}, {meta.precision}, sizes "
                       f"{format_size(runner.min_size)} .. {format_size(runner.max_size)}, "
                       f"1x1 = {format_size(base)})")

        # Every requested size is checked before anything runs or is written.
        requests: list[tuple[int, int]] = []
        for size in sizes:
            requests.append(runner.check_size(size))
        for sy, sx in scales:
            size = render.scale_to_size(base, sy, sx)
            try:
                requests.append(runner.check_size(size))
            except ConfigError as exc:
                raise ConfigError(f"--scale {sy:g}x{sx:g}: {exc}") from None
        if not (sizes or scales or collage or sweep):
            size = render.clip_size(runner, base)
            what = "the training image's size" if pixels is None else "the --image's size"
            if size != base:
                what += f" {format_size(base)} clipped into the model's range"
            notice(f"no --size, --scale, --collage or --sweep given: writing the 1x1 output, "
                   f"{format_size(size)} ({what})")
            requests.append(size)
        requests = list(dict.fromkeys(requests))  # a size asked for twice is made once

        count = len(requests) + int(collage)
        target_file, folder = plan_output(out, count)

        # Everything is computed before anything is written: a request that fails at run time
        # (say, out of memory at a large size) leaves no partial results and no empty folder.
        results: list[tuple[Path, np.ndarray, str]] = []
        for size in requests:
            times = []
            for _ in range(repeat):
                result = runner.retarget(size, homography, pixels)
                times.append(runner.last_timing.seconds * 1000.0)
            if repeat == 1:
                latency = f"{times[0]:7.1f} ms"
            else:
                latency = f"{min(times):7.1f} ms min  {statistics.median(times):.1f} ms median ({repeat} runs)"
            path = target_file or folder / f"retarget_{format_size(size)}.png"
            results.append((path, result, f"{format_size(size):>9}  {latency}"))

        if collage:
            started = time.perf_counter()
            picture, notes = render.collage(runner, image=pixels, homography=homography, progress=not quiet)
            elapsed = time.perf_counter() - started
            for note in notes:
                notice(note)
            n = len(render.COLLAGE_SCALES)
            results.append((target_file or folder / "collage.png", picture,
                            f"{'collage':>9}  {n}x{n} tiles in {elapsed * 1000.0:.1f} ms"))

        # The sweep is written (atomically, to its own file) before the images, so a failing
        # sweep leaves none of them either.
        if sweep is not None:
            frame_sizes = render.sweep_sizes(runner, steps_per_segment=sweep_steps, image=pixels)
            started = time.perf_counter()
            render.write_animation(
                render.sweep_frames(runner, steps_per_segment=sweep_steps, image=pixels, homography=homography),
                sweep, fps=fps, progress=not quiet, total=len(frame_sizes),
            )
            elapsed = time.perf_counter() - started
            if not quiet:
                canvas = (max(h for h, _ in frame_sizes), max(w for _, w in frame_sizes))
                click.echo(f"{'sweep':>9}  {len(frame_sizes)} frames on a {format_size(canvas)} canvas in "
                           f"{elapsed:.1f} s  -> {sweep}")

        if results:
            from ingan.fsutil import ensure_output_dir
            from ingan.imageio import save_image

            ensure_output_dir(folder if folder is not None else (target_file.parent if str(target_file.parent)
                                                                 else Path(".")))
            for path, picture, line in results:
                save_image(picture, path)
                if not quiet:
                    click.echo(f"{line}  -> {path}")


def plan_output(out: Path | None, count: int) -> tuple[Path | None, Path | None]:
    """(file, None) when the single image goes to a file, else (None, folder)."""
    from ingan.imageio import SUPPORTED_SAVE_SUFFIXES

    if out is None:
        return None, Path(".")
    if count == 0:
        notice(f"-o {out} is not used: only --sweep was requested (it writes to its own FILE)")
        return None, None
    if out.is_dir():
        return None, out
    suffix = out.suffix.lower()
    if suffix in SUPPORTED_SAVE_SUFFIXES:
        if count > 1:
            raise OutputPathError(
                f"-o {out} names one image file, but {count} images are requested; pass a folder instead "
                "(it receives retarget_<W>x<H>.png and collage.png)"
            )
        return out, None
    if out.suffix and count == 1:
        raise OutputPathError(
            f"cannot write '{out}': unsupported image type '{out.suffix}'; use one of "
            f"{', '.join(SUPPORTED_SAVE_SUFFIXES)}, or a folder name without a suffix"
        )
    return None, out
