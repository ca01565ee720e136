"""Size strings and ranges for the CLIs, and the one check of a size against a range (no torch)."""

from __future__ import annotations

import re
from typing import Any

from ingan.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' (width x height, like every image tool) -> (height, width)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size; write WIDTHxHEIGHT, e.g. 640x360")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        raise ValueError(f"size '{text}' must be at least 1x1")
    return height, width


def format_size(hw: tuple[int, int] | list[int]) -> str:
    """(height, width) -> 'WxH'."""
    return f"{int(hw[1])}x{int(hw[0])}"


def format_range(low: tuple[int, int] | list[int], high: tuple[int, int] | list[int]) -> str:
    """(height, width) bounds -> 'WxH .. WxH (width x height)', the one wording of a size range."""
    return f"{format_size(low)} .. {format_size(high)} (width x height)"


def clip_to_range(size: tuple[int, int], low: tuple[int, int] | list[int],
                  high: tuple[int, int] | list[int]) -> tuple[int, int]:
    """(height, width) clipped, side by side, into [low, high]."""
    return (min(max(int(size[0]), int(low[0])), int(high[0])), min(max(int(size[1]), int(low[1])), int(high[1])))


def in_range(size: tuple[int, int], low: tuple[int, int] | list[int], high: tuple[int, int] | list[int]) -> bool:
    """Whether (height, width) lies in [low, high], side by side."""
    return int(low[0]) <= int(size[0]) <= int(high[0]) and int(low[1]) <= int(size[1]) <= int(high[1])


def check_in_range(size: Any, low: tuple[int, int] | list[int], high: tuple[int, int] | list[int], *,
                   whose: str = "this model's", fix: str = "") -> tuple[int, int]:
    """The one check of a requested (height, width) against a size range: (height, width) as
    ints, or a ConfigError in the one wording, WIDTHxHEIGHT, ending with `fix` when given."""
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (height, width) integers, got {size!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"size {width}x{height} must be positive")
    if not in_range((height, width), low, high):
        raise ConfigError(f"size {format_size((height, width))} is outside {whose} range {format_range(low, high)}; "
                          f"pick a size inside it{' or ' + fix if fix else ''}")
    return height, width
