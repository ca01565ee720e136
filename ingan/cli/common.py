"""Shared CLI pieces: user-error handling, parameter types, logging setup."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from typing import Callable, Iterator, TypeVar

import click

from ingan.errors import InganError, OptionError

F = TypeVar("F", bound=Callable[..., object])


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an InganError into click's one-line 'Error: ...' and exit status 1 (an OptionError
    into click's usage error, exit status 2).

    SIGTERM (timeout, docker stop, schedulers) becomes a normal exit with status 143, so
    every temporary file of an unfinished atomic write is removed on the way out.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None
    except InganError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def notice(message: str) -> None:
    click.echo(f"notice: {message}", err=True)


_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '1h30m' -> seconds (> 0)."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if not value or not match or not any(match.groupdict().values()):
            raise ValueError(f"'{text}' is not a duration; use e.g. 90s, 15m, 2h or 1h30m") from None
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    if not seconds > 0 or seconds == float("inf"):  # also refuses nan and inf
        raise ValueError(f"duration '{text}' must be a positive, finite time")
    return seconds


class Duration(click.ParamType):
    """A duration in seconds, parsed by `parse` (here `parse_duration`); numbers pass through.

    Subclasses with another grammar override only `parse`, which raises ValueError with the
    message the user sees.
    """

    name = "DURATION"

    def parse(self, text: str) -> float:
        return parse_duration(text)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return self.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def setup_logging(quiet: bool) -> None:
    """Our own messages at INFO; third-party libraries (onnxscript, torch) only at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ingan").setLevel(logging.WARNING if quiet else logging.INFO)


class SizeParam(click.ParamType):
    """'640x360' (WIDTHxHEIGHT, like every image tool) -> (height, width)."""

    name = "WxH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        from ingan.sizes import parse_size

        if isinstance(value, tuple):
            return value  # type: ignore[return-value]
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SizeListParam(click.ParamType):
    """'256x256,640x360' (comma-separated WIDTHxHEIGHT) -> [(height, width), ...]."""

    name = "WxH[,WxH...]"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list[tuple[int, int]]:
        if isinstance(value, list):
            return value
        items = [item for item in str(value).split(",") if item.strip()]
        if not items:
            self.fail("give at least one size, e.g. 640x360", param, ctx)
        one = SizeParam()
        return [one.convert(item, param, ctx) for item in items]


class DeviceParam(click.ParamType):
    """auto, cpu, cuda or cuda:N: the one device grammar (ingan/devices.py), checked at parse time."""

    name = "DEVICE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from ingan.devices import check_device_name
        from ingan.errors import OptionError

        try:
            return check_device_name(str(value))
        except OptionError as exc:
            self.fail(str(exc), param, ctx)


def device_option(help_text: str) -> Callable[[F], F]:
    """`--device` with the same grammar and default (auto) on every command."""
    from ingan.devices import DEVICE_HELP

    return click.option("--device", type=DeviceParam(), default="auto", show_default=True,
                        help=f"{help_text} {DEVICE_HELP[0].upper()}{DEVICE_HELP[1:]}.")


SIZE_OPTION_HELP = ("Output size WIDTHxHEIGHT, e.g. 640x360; repeat the option or give a comma list "
                    "(--size 640x360,256x256).")


def size_options(help_text: str = SIZE_OPTION_HELP, required: bool = False) -> Callable[[F], F]:
    """`--size WxH` (repeatable, comma lists allowed) plus the old `--sizes` spelling, hidden,
    kept for one release; `collect_sizes` merges them (with a notice for the old one)."""

    def decorate(fn: F) -> F:
        fn = click.option("--sizes", "old_sizes", type=SizeListParam(), multiple=True, hidden=True)(fn)
        return click.option("--size", "sizes", type=SizeListParam(), multiple=True, metavar="WxH",
                            help=help_text + (" Required." if required else ""))(fn)

    return decorate


def collect_sizes(sizes: tuple[list[tuple[int, int]], ...], old_sizes: tuple[list[tuple[int, int]], ...],
                  required: bool = False) -> list[tuple[int, int]]:
    """The sizes of `--size` (and `--sizes`), in order, each once; a usage error if required and none."""
    if old_sizes:
        notice("--sizes is now spelt --size (it takes the same comma list, and may repeat); --sizes will be "
               "removed in the next release")
    merged = [size for group in (*sizes, *old_sizes) for size in group]
    if required and not merged:
        raise click.UsageError("give at least one --size WxH (e.g. --size 640x360)")
    return list(dict.fromkeys(merged))


def check_plain_stem(ctx: click.Context, param: click.Parameter, name: str) -> str:
    """Click callback for options naming output files (--name): a plain file stem, no folders."""
    from ingan.fsutil import is_plain_stem

    if not is_plain_stem(name):
        raise click.BadParameter(f"'{name}' is not a plain file stem; use e.g. 'bench'", ctx, param)
    return name
