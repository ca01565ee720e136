"""`ingan-train`: train an InGAN generator on one image and write ckpt.pt."""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingan.cli.common import Duration, device_option, format_duration, notice, setup_logging, user_errors
from ingan.errors import CheckpointError, ConfigError, ImageError, OptionError, first_line
from ingan.extras import require
from ingan.fleet.cli import FLEET_HELP, FLEET_OPTIONS, fleet_options, train_fleet_command, wants_fleet
from ingan.fsutil import IMAGE_FILES, existing_file, safe_folder_name

if TYPE_CHECKING:
    from ingan.train.config import RunOptions, TrainConfig

QUICK_NOTE = (
    "The 'quick' preset is a smoke test: 500 iterations, about 4-5 minutes on 2 CPU cores, and its "
    "results do NOT beat a plain bicubic stretch (measured; see docs/training.md). Real retargeting "
    "needs the 'paper' preset, ~10^4+ iterations: about an hour on a GPU, many hours on a CPU "
    "(days at the paper's 256 px crops). Sizes: an exported model accepts the output scales the "
    "run reached (the paper widens them from 1x to 0.15-2.25x over its first 10,000 iterations, "
    "quick over 200), so a run stopped early serves only sizes near 1x unless exported with "
    "ingan-export --min-size/--max-size."
)

FIXED_ON_RESUME = ("preset", "crop_size", "base_channels", "lr", "max_transform", "size_step", "seed",
                   "max_side", "init_from")
GRAPH_SIZE_STEP = 32  # --size-step default with --cuda-graphs (docs/training.md, "GPU speed")
CHECKPOINT_NAME = "ckpt.pt"


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=f"{QUICK_NOTE}\n\n{FLEET_HELP}",
)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path), metavar="[IMAGE]...")
@click.option("--preset", type=click.Choice(["paper", "quick"]), default="paper", show_default=True,
              help="paper: the original InGAN schedule (75k iterations). quick: tiny smoke test.")
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Output folder for ckpt.pt and monitor PNGs. [default: runs/<image name>, or the "
                   "checkpoint's folder with --resume]")
@click.option("--iters", type=click.IntRange(min=1),
              help="Total iterations. A new run compresses/stretches the preset's whole schedule "
                   "(curriculum, inverse step, lr decay) to fit; with --resume it extends the run: "
                   "the lr decay re-opens to the new end, D's scale weights hold at the old end.")
@click.option("--time-budget", type=Duration(), metavar="DURATION",
              help="Wall-clock limit for the whole command, e.g. 90s, 30m, 2h: training stops early enough "
                   "that the final save and monitor end inside it (at least one iteration runs). Continue "
                   "later with --resume.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="CKPT",
              help="Continue a run from its ckpt.pt: same iteration, schedules and random streams.")
@click.option("--crop-size", type=click.IntRange(min=32), help="Training crop side (multiple of 8).")
@click.option("--base-channels", type=click.IntRange(min=1, max=1024), help="Generator base channels (paper: 64).")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True, max=1.0),
              callback=_finite,
              help="Adam learning rate of G and D (paper: 5e-5, quick: 2e-4). The paper's rate is "
                   "tuned for 75k iterations; a run compressed with --iters may learn faster with a "
                   "larger one (measured with --init-from: 1e-4 helped, 2e-4 diverged; "
                   "docs/training.md).")
@click.option("--max-transform", type=click.FloatRange(0.0, 1.0, max_open=True),
              callback=_finite,
              help="Homography augmentation magnitude for non-rectangular outputs (paper: 0 = off).")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1),
              help="Random seed (default 0): same seed, same run on CPU.")
@click.option("--max-side", type=click.IntRange(min=32), default=1024, show_default=True,
              help="Larger images are downscaled so their longer side is this.")
@device_option("Where training runs.")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="bf16 autocast (CUDA only; measured slower for InGAN's batch-1 steps on an H100).")
@click.option("--channels-last/--no-channels-last", default=False, show_default=True,
              help="channels-last memory format (CUDA only; measured slower on an H100).")
@click.option("--cudnn/--no-cudnn", default=False, show_default=True,
              help="Use cuDNN convolutions (CUDA only). Off by default: every iteration has a new "
                   "output size and cuDNN's per-shape set-up outweighs its faster kernels.")
@click.option("--cuda-graphs/--no-cuda-graphs", default=False, show_default=True,
              help="Replay each training step as a CUDA graph (CUDA only): one launch instead of "
                   "~7,700 per step, which is what bounds InGAN's batch-1 steps. A graph is captured "
                   "per output size, so a new run defaults to --size-step 32 with it.")
@click.option("--size-step", type=click.IntRange(min=0), metavar="N",
              help="Snap sampled output sides to the nearest multiple of N (a multiple of 8; 0 = "
                   "the paper's rounding to multiples of 8). [default: 0, or 32 with --cuda-graphs]")
@click.option("--save-every", type=click.IntRange(min=1),
              help="Save ckpt.pt every N iterations. [default: 1000 paper, 100 quick; on --resume "
                   "the run's own]")
@click.option("--monitor-every", type=click.IntRange(min=1),
              help="Write monitor_<iter>.png every N iterations. [default: 1000 paper, 100 quick; "
                   "on --resume the run's own]")
@click.option("--init-from", type=click.Path(path_type=Path), metavar="CKPT",
              help="Start a new run with the generator weights of CKPT (any ingan checkpoint, serving "
                   "ones included; same architecture). Discriminator and optimisers start fresh and the "
                   "schedule starts at iteration 0. For continuing a run exactly, use --resume.")
@click.option("--even-scale-weights", is_flag=True,
              help="Hold the discriminator's per-scale weights once they are even instead of letting "
                   "them move on to the fine scales (not the paper's schedule; recommended when "
                   "extending a compressed run with --resume --iters; docs/training.md).")
@click.option("--colour-calibration/--no-colour-calibration", default=True, show_default=True,
              help="Store in every checkpoint a per-channel output gain/offset, fitted so the "
                   "1x retarget has the image's colour mean and spread (corrects the global colour "
                   "drift of undertrained generators; not in the paper; docs/model.md).")
@click.option("--force", is_flag=True, help="Overwrite an existing ckpt.pt in the output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; errors and the summary only.")
@fleet_options
@click.pass_context
def main(ctx: click.Context, images: tuple[Path, ...], **kwargs: Any) -> None:
    """Train InGAN on IMAGE and write <out>/ckpt.pt (default out: runs/<image name>).

    The checkpoint holds the generator, the training image and everything needed to
    resume. Ctrl-C (or --time-budget) saves before exiting; continue with
    `ingan-train --resume <out>/ckpt.pt`.

    \b
    Examples:
      ingan-train examples/hubble/hubble_xdf.png --preset quick
      ingan-train photo.jpg --time-budget 2h          # paper preset, resumable
      ingan-train --resume runs/photo/ckpt.pt          # continue
      ingan-train photos/ -o fleet --ray --export      # a fleet (docs/training.md, "Fleets")
    """
    began = time.monotonic()  # --time-budget counts from here: the whole command keeps it
    setup_logging(kwargs["quiet"])
    with user_errors():
        if wants_fleet(ctx, images):
            sys.exit(train_fleet_command(ctx, images, began=began, **kwargs))
        for name in FLEET_OPTIONS:
            kwargs.pop(name)
        sys.exit(_train(ctx, image=images[0] if images else None, began=began, **kwargs))


def _explicit(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _train(ctx: click.Context, image: Path | None, resume: Path | None, began: float, **opt: Any) -> int:
    if image is not None and resume is not None:
        raise click.UsageError("pass either IMAGE (new run) or --resume CKPT (continue), not both")
    if image is None and resume is None:
        raise click.UsageError("missing IMAGE (or --resume CKPT to continue a run)")
    # Every path is checked before the heavy imports (seconds), so a typo is reported at once.
    if image is not None:
        existing_file(image, "image", IMAGE_FILES, ImageError)
    for path, what in ((resume, "checkpoint"), (opt["init_from"], "checkpoint (--init-from)")):
        if path is not None:
            existing_file(path, what, "the path of a ckpt.pt", CheckpointError)
    require("Training (ingan-train)", ("torch",))
    from ingan.fsutil import ensure_output_dir
    from ingan.imageio import load_image
    from ingan.model.checkpoint import load_checkpoint
    from ingan.train.trainer import Trainer

    # The output folder is created only once every check has passed, so a refused run
    # leaves nothing behind.
    if resume is not None:
        fixed = [f"--{n.replace('_', '-')}" for n in FIXED_ON_RESUME if _explicit(ctx, n)]
        if fixed:
            raise click.UsageError(f"{', '.join(fixed)} cannot change on --resume; the checkpoint fixes them")
        ckpt = load_checkpoint(resume)
        if opt["iters"] is not None and opt["iters"] <= ckpt.iteration:
            raise ConfigError(
                f"--iters {opt['iters']} is not beyond the checkpoint's {ckpt.iteration} iterations; "
                "pass a larger --iters to continue"
            )
        options = run_options(opt, _resume_defaults(ckpt.payload))
        try:
            trainer = Trainer.from_checkpoint(ckpt, options, iters=opt["iters"],
                                              even_scale_weights=opt["even_scale_weights"])
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            detail = first_line(exc)
            raise CheckpointError(
                f"'{resume}': its training state is damaged ({detail}); resume from another checkpoint, "
                "or start a new run from its generator with --init-from"
            ) from None
        if trainer.iteration >= trainer.config.iters:
            raise ConfigError(
                f"'{resume}' already finished its {trainer.config.iters} iterations; "
                "pass a larger --iters to train further"
            )
        target = Path(opt["out"] or resume.parent) / CHECKPOINT_NAME
        if target.exists() and not _same_file(target, resume) and not opt["force"]:
            raise ConfigError(
                f"'{target}' already exists and is another checkpoint; pick another --out, or pass "
                "--force to overwrite it"
            )
        out_dir = ensure_output_dir(target.parent)
        action = f"resuming at iteration {trainer.iteration:,}"
    else:
        assert image is not None
        loaded = load_image(image, max_side=opt["max_side"])
        for message in loaded.notices:
            notice(message)
        config = new_run_config(opt)
        out = Path(opt["out"] or Path("runs") / safe_folder_name(image.stem))
        if (out / CHECKPOINT_NAME).exists() and not opt["force"]:
            raise ConfigError(
                f"'{out / CHECKPOINT_NAME}' already exists; continue it with --resume "
                f"{shlex.quote(str(out / CHECKPOINT_NAME))}, pick another --out, or pass --force to overwrite"
            )
        options = run_options(opt, preset_intervals(opt["preset"]))
        try:
            trainer = Trainer(loaded.pixels, config, options, image_name=image.name)
        except ConfigError as exc:
            if loaded.downscaled and "too small" in str(exc):
                raise ConfigError(
                    f"{exc}; it was downscaled to fit --max-side {opt['max_side']}, so a larger --max-side "
                    "keeps more of its shorter side"
                ) from None
            raise
        action = "starting"
        if opt["init_from"] is not None:
            trainer.init_generator_from(load_checkpoint(opt["init_from"]))
            action = f"starting from the generator of {opt['init_from']}"
        out_dir = ensure_output_dir(out)
    cuda_only = [f"--{n.replace('_', '-')}" for n in ("amp", "channels_last", "cudnn") if opt[n]]
    if cuda_only and not trainer.use_cuda:
        notice(f"{', '.join(cuda_only)} only act on CUDA; ignored on {trainer.device}")
    return _run(trainer, out_dir, options, action, began)


def new_run_config(opt: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a new run from this command's options (a fleet's too)."""
    from ingan.train.config import PRESETS

    config = PRESETS[opt["preset"]]
    if opt["iters"] is not None:
        config = config.rescaled(opt["iters"])
    size_step = opt["size_step"]
    if size_step is None and opt["cuda_graphs"]:
        size_step = GRAPH_SIZE_STEP
    try:
        config = config.with_overrides(
            size_step=size_step,
            crop_size=opt["crop_size"],
            base_channels=opt["base_channels"],
            g_lr=opt["lr"],
            d_lr=opt["lr"],
            max_transform=opt["max_transform"],
            seed=opt["seed"],
        )
    except ConfigError as exc:  # values of this command's options: a usage error
        raise OptionError(str(exc)) from None
    if opt["even_scale_weights"]:
        config = config.holding_even_scale_weights()
    return config


def run_options(opt: dict[str, Any], defaults: dict[str, int]) -> RunOptions:
    """The RunOptions of this command (`defaults`: the save and monitor intervals)."""
    from ingan.train.config import RunOptions

    return RunOptions(
        device=opt["device"],
        amp=opt["amp"],
        channels_last=opt["channels_last"],
        cudnn=opt["cudnn"],
        cuda_graphs=opt["cuda_graphs"],
        save_every=opt["save_every"] or defaults["save_every"],
        monitor_every=opt["monitor_every"] or defaults["monitor_every"],
        time_budget=opt["time_budget"],
        quiet=opt["quiet"],
        colour_calibration=opt["colour_calibration"],
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def preset_intervals(preset: str | None) -> dict[str, int]:
    every = 100 if preset == "quick" else 1000
    return {"save_every": every, "monitor_every": every}


def _resume_defaults(payload: dict[str, Any]) -> dict[str, int]:
    """Save/monitor intervals of a resumed run: the run's own, else its preset's defaults."""
    stored = payload.get("run_options") or {}
    return {
        key: value if isinstance(value := stored.get(key), int) and not isinstance(value, bool) and value >= 1
        else default
        for key, default in preset_intervals(payload.get("train_config", {}).get("preset")).items()
    }


def _run(trainer: Any, out_dir: Path, options: Any, action: str, began: float) -> int:
    from ingan.train.monitor import write_monitor
    from ingan.train.budget import finish_cost
    from ingan.train.run_control import RunTimer, loss_sync_every, progress_bar
    from ingan.train.trainer import run_loop

    cfg = trainer.config
    ckpt_path = out_dir / CHECKPOINT_NAME
    h, w = trainer.image_pixels.shape[:2]
    g_params = sum(p.numel() for p in trainer.G.parameters())
    precision = "bf16 autocast" if trainer.amp else "fp32"
    if trainer.use_cuda:
        precision += f", cuDNN {'on' if options.cudnn else 'off'}"
    if options.cuda_graphs:
        step = cfg.size_step or cfg.generator.size_multiple
        precision += f", CUDA graphs (sizes in steps of {step} px)"
    if not options.quiet:
        click.echo(
            f"{action}: preset {cfg.preset} | image {w}x{h} | crop {cfg.crop_size} | "
            f"G {g_params / 1e6:.2f}M params | D {len(trainer.D.nets)} scales | "
            f"{cfg.iters:,} iterations | {trainer.device} {precision} | out {out_dir}",
            err=True,
        )
        if cfg.preset == "quick":
            notice("quick preset: a smoke test, not a quality mode (it does not beat a bicubic stretch)")
        if options.cuda_graphs and cfg.size_step in (0, cfg.generator.size_multiple):
            notice(f"this run samples output sizes in steps of {cfg.generator.size_multiple} px (thousands of "
                   "shapes), so CUDA graphs will rarely be reused; start new runs with --size-step 32")

    timer = RunTimer(options.time_budget, began, lambda: finish_cost([trainer]))
    stop, clock = timer.stop, timer.clock
    start_iter = trainer.iteration

    sync_every = loss_sync_every(trainer.device)
    bar = progress_bar(cfg.iters, start_iter, options.quiet)

    def on_step(t: Any) -> None:
        bar.update(1)
        timer.step_done()
        it = t.iteration
        if it % sync_every == 0 or it == cfg.iters:
            losses = t.losses()
            bar.set_postfix_str(
                f"G {losses.g_gan:.3f} rec {losses.g_rec:.3f} D {losses.d_real:.3f}/{losses.d_fake:.3f}",
                refresh=False,
            )
        with timer.between_steps(it % options.save_every == 0 and it % options.monitor_every == 0):
            if it % options.save_every == 0 and it < cfg.iters:
                t.save(ckpt_path)
            if it % options.monitor_every == 0 and it < cfg.iters:
                write_monitor(t, out_dir)

    # SIGTERM (timeout, docker stop, job schedulers) saves like the first Ctrl-C.
    try:
        with stop:
            run_loop(trainer, on_step, stop.should_stop)
    finally:
        bar.close()

    trainer.losses()
    trainer.save(ckpt_path)
    monitor = write_monitor(trainer, out_dir)
    done = trainer.iteration - start_iter
    elapsed = time.monotonic() - clock.started
    rate = clock.rate(done)
    lo, hi = trainer.trained_scale_range()
    remaining = cfg.iters - trainer.iteration
    eta = f"; the remaining {remaining:,} take ~{format_duration(remaining / rate)} at this rate" if rate and remaining else ""
    status = stop.status
    click.echo(
        f"{status}: iteration {trainer.iteration:,}/{cfg.iters:,} ({done:,} this run in "
        f"{format_duration(elapsed)}, {rate:.2f} it/s{eta}); trained scales "
        f"{lo:.2f}-{hi:.2f}; checkpoint {ckpt_path}; monitor {monitor}",
        err=False,
    )
    graphs = trainer.graph_stats
    if graphs is not None:
        click.echo(
            f"CUDA graphs: {graphs['captures']} captured in {graphs['capture_seconds']:.1f}s, "
            f"{graphs['replays']:,} replayed steps, {graphs['eager_steps']:,} eager steps"
            + (f"; {graphs['disabled_reason']}" if graphs["disabled_reason"] else ""),
            err=True,
        )
    if stop.reason is not None and trainer.iteration < cfg.iters:
        click.echo(f"continue with: ingan-train --resume {shlex.quote(str(ckpt_path))}", err=True)
    return stop.exit_code  # 130 Ctrl-C, 143 SIGTERM
