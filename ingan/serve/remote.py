"""`ingan-run http://HOST:PORT/MODEL ...`: the local command's outputs, made by an ingan-serve.

The same flags as for a local model where they make sense (--size, --scale, -o, --warp,
--image, --repeat, -q); the ones about running a model here (--backend, --device, ...)
or needing many requests (--collage, --sweep) are refused with a usage error. Every size is
checked against the served model's range before any request, as locally; files are written
as the server sent them (-o's suffix picks the format), atomically.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from ingan.cli.common import notice
from ingan.errors import ConfigError
from ingan.serve.client import SUFFIX_FORMATS, ServeClient, ServerError, split_model_url
from ingan.sizes import check_in_range, format_size, parse_size

# ingan-run options that only mean something for a model file run in this process.
LOCAL_ONLY = {"collage": "--collage", "sweep": "--sweep", "sweep_steps": "--sweep-steps", "fps": "--fps",
              "backend": "--backend", "device": "--device", "providers": "--provider",
              "allow_host_code": "--allow-host-code", "cuda_graphs": "--cuda-graphs", "threads": "--threads"}


def run_from_cli(ctx: click.Context, url: str, options: dict[str, Any]) -> None:
    """ingan-run's dispatch for a URL: refuse local-only flags, then `run_remote`."""
    given = [flag for name, flag in LOCAL_ONLY.items()
             if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"]
    if given:
        raise click.UsageError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to a model file run "
                               f"here, not to a served model ({url}); run ingan-run on the model file for that")
    run_remote(url, sizes=options["sizes"], scales=options["scales"], out=options["out"], warp=options["warp"],
               image=options["image"], repeat=options["repeat"], quiet=options["quiet"])


def run_remote(url: str, sizes: tuple[tuple[int, int], ...] = (), scales: tuple[tuple[float, float], ...] = (),
               out: Path | None = None, warp: tuple[float, float] | None = None, image: Path | None = None,
               repeat: int = 1, quiet: bool = False) -> None:
    from ingan.fsutil import ensure_output_dir
    from ingan.runtime import render
    from ingan.runtime.cli import plan_output

    base, model_id = split_model_url(url)
    with ServeClient(base) as client:
        info = client.model(model_id)
        if info.get("status") != "available":
            raise ServerError(503, f"model '{model_id}' on {base} is unavailable: {info.get('error')}")
        image_hw = parse_size(info["image_size"])
        body = None
        if image is not None:
            from ingan.imageio import load_image

            if not info.get("image_input"):
                raise ConfigError(f"model '{model_id}' has its training image baked in and takes no --image; "
                                  "re-export with ingan-export --image-input to retarget other images")
            loaded = load_image(image)
            for message in loaded.notices:
                notice(f"{image}: {message}")
            image_hw = loaded.pixels.shape[:2]
            body = Path(image).read_bytes()
        elif info.get("image_input"):
            raise ConfigError(f"model '{model_id}' was exported with ingan-export --image-input: pass the image to "
                              "retarget with --image IMG")
        if warp is not None and not info.get("warp"):
            raise ConfigError("this model was exported without --warp; re-export with ingan-export --warp")

        # Every requested size is checked before anything runs or is written, as for a local model.
        low, high = parse_size(info["min_size"]), parse_size(info["max_size"])
        requests = [_in_range(size, low, high, f"--size {format_size(size)}") for size in sizes]
        for sy, sx in scales:
            requests.append(_in_range(render.scale_to_size(image_hw, sy, sx), low, high, f"--scale {sy:g}x{sx:g}"))
        if not requests:
            size = render.clip_size(SimpleNamespace(min_size=low, max_size=high), image_hw)  # type: ignore[arg-type]
            notice(f"no --size or --scale given: writing the 1x1 output, {format_size(size)}")
            requests.append(size)
        requests = list(dict.fromkeys(requests))
        if not quiet:
            click.echo(f"{base} model {model_id} ({info['backend']} {info['precision']}, version {info['version']}, "
                       f"sizes {info['min_size']} .. {info['max_size']}, 1x1 = {format_size(image_hw)})")

        target_file, folder = plan_output(out, len(requests))
        ensure_output_dir(folder if folder is not None else (target_file.parent if str(target_file.parent) else "."))
        image_format = SUFFIX_FORMATS.get(target_file.suffix.lower(), "png") if target_file else "png"
        for size in requests:
            times = []
            for _ in range(repeat):
                served = client.retarget(model_id, size, image_format=image_format, warp=warp, image=body)
                times.append(served.round_trip_ms)
            path = served.save(target_file or folder / f"retarget_{format_size(size)}.png")
            if not quiet:
                if repeat == 1:
                    cold = f", cold load {served.timings['load']:.0f} ms" if served.cold else ""
                    latency = f"{times[0]:7.1f} ms (server {served.latency_ms:.1f} ms{cold})"
                else:
                    latency = (f"{min(times):7.1f} ms min  {statistics.median(times):.1f} ms median round trip "
                               f"({repeat} runs)")
                click.echo(f"{format_size(size):>9}  {latency}  -> {path}")


def _in_range(size: tuple[int, int], low: tuple[int, int], high: tuple[int, int], what: str) -> tuple[int, int]:
    try:
        return check_in_range(size, low, high)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
