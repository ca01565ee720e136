"""What `ingan-run` makes from a runner: scaled sizes, a collage, a retarget sweep (no torch).

These follow the original InGAN test script (see docs: "Test outputs"):

* `collage`: a grid of retargets over the scales {2.0, 1.25, 1.0, 0.66, 0.33} in each
  direction, with the 1x1 tile framed in red;
* `sweep_frames` + `write_animation`: a video whose output size walks between the
  scale bounds, each frame pasted top-left on a fixed black canvas.

Everything here works through the `Runner` contract only, so it serves `.plan`, `.onnx`
and `ckpt.pt` alike and never imports torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ingan.collage import frame, grid
from ingan.errors import ConfigError, InganError, OutputPathError, first_line
from ingan.fsutil import atomic_path
from ingan.homography import top_shift_homography
from ingan.runtime.base import Runner
from ingan.sizes import clip_to_range, format_range, format_size

__all__ = [
    "ANIMATION_SUFFIXES",
    "COLLAGE_SCALES",
    "base_size",
    "check_animation_path",
    "clip_size",
    "collage",
    "scale_to_size",
    "sweep_frames",
    "sweep_sizes",
    "top_shift_homography_np",
    "write_animation",
]

COLLAGE_SCALES: tuple[float, ...] = (2.0, 1.25, 1.0, 0.66, 0.33)
ANIMATION_SUFFIXES: tuple[str, ...] = (".gif", ".webp", ".mp4")
MP4_INSTALL = "pip install imageio-ffmpeg"


# ---------------------------------------------------------------------------- sizes
def base_size(runner: Runner, image: np.ndarray | None = None) -> tuple[int, int]:
    """The (height, width) that scale 1x1 means: the image given to an --image-input
    model, else the training image."""
    if image is not None:
        return int(image.shape[0]), int(image.shape[1])
    return runner.image_size


def scale_to_size(runner_or_image_size: Runner | Sequence[int], sy: float, sx: float) -> tuple[int, int]:
    """(height, width) of scale (sy, sx) of the training image (or of a given (h, w)),
    rounded to the nearest pixel and at least 1."""
    if hasattr(runner_or_image_size, "image_size"):
        h, w = runner_or_image_size.image_size  # type: ignore[union-attr]
    else:
        h, w = runner_or_image_size  # type: ignore[misc]
    return max(1, int(round(h * sy))), max(1, int(round(w * sx)))


def clip_size(runner: Runner, size: Sequence[int]) -> tuple[int, int]:
    """`size` = (h, w) clipped, side by side, into the runner's [min_size, max_size]."""
    return clip_to_range((int(size[0]), int(size[1])), runner.min_size, runner.max_size)


def _range_text(runner: Runner) -> str:
    return format_range(runner.min_size, runner.max_size)


# ---------------------------------------------------------------------------- collage
def collage(
    runner: Runner,
    scales: Sequence[float] = COLLAGE_SCALES,
    frame_input: bool = True,
    *,
    image: np.ndarray | None = None,
    homography: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """A grid of retargets: row i has height scale scales[i], column j width scale scales[j].

    The 1.0 x 1.0 tile is framed in red, as the original marked the input among the
    retargets. Exported models (.onnx/.plan) do not carry the raw training image, so for
    them (and for a checkpoint, for uniformity) that tile is the model's own 1x1 output,
    not the training image itself; for an --image-input model, where the input is at
    hand, the tile is the given `image`.

    Sizes outside the runner's [min_size, max_size] are clipped into it (the tile is then
    smaller or larger than its scale says); the returned notes say which scales were.

    Returns:
        (collage HxWx3 uint8, notes: human-readable lines, empty when nothing was clipped)
    """
    scales = [float(s) for s in scales]
    if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
        raise ConfigError(f"collage scales must be positive numbers, got {scales}")
    base = base_size(runner, image)
    (lo_h, lo_w), (hi_h, hi_w) = runner.min_size, runner.max_size
    clipped: list[str] = []
    heights: list[int] = []
    for sy in scales:
        want = scale_to_size(base, sy, 1.0)[0]
        heights.append(min(max(want, lo_h), hi_h))
        if heights[-1] != want:
            clipped.append(f"height x{sy:g} ({want} px -> {heights[-1]})")
    widths: list[int] = []
    for sx in scales:
        want = scale_to_size(base, 1.0, sx)[1]
        widths.append(min(max(want, lo_w), hi_w))
        if widths[-1] != want:
            clipped.append(f"width x{sx:g} ({want} px -> {widths[-1]})")

    from tqdm import tqdm

    rows: list[list[np.ndarray]] = []
    with tqdm(total=len(scales) ** 2, desc="collage", unit="tile", disable=not progress, file=sys.stderr,
              leave=False) as bar:
        for sy, h in zip(scales, heights):
            row = []
            for sx, w in zip(scales, widths):
                if frame_input and sy == 1.0 and sx == 1.0:
                    tile = image if image is not None else runner.retarget((h, w), homography)
                    row.append(frame(tile))
                else:
                    row.append(runner.retarget((h, w), homography, image))
                bar.update(1)
            rows.append(row)
    notes = []
    if clipped:
        notes.append(f"collage: scales outside the model's range {_range_text(runner)} were clipped "
                     f"into it: {', '.join(clipped)}")
    return grid(rows), notes


# ---------------------------------------------------------------------------- sweep
def _default_bounds(runner: Runner, base: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The runner's whole size range, as (sy, sx) scales of `base`."""
    (lo_h, lo_w), (hi_h, hi_w) = runner.min_size, runner.max_size
    return (lo_h / base[0], lo_w / base[1]), (hi_h / base[0], hi_w / base[1])


def sweep_sizes(
    runner: Runner,
    low: tuple[float, float] | None = None,
    high: tuple[float, float] | None = None,
    steps_per_segment: int = 12,
    *,
    image: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """The (h, w) of every frame `sweep_frames` makes, in order (see there for the path)."""
    if steps_per_segment < 1:
        raise ConfigError(f"steps per segment must be at least 1, got {steps_per_segment}")
    base = base_size(runner, image)
    default_low, default_high = _default_bounds(runner, base)
    lo_y, lo_x = low if low is not None else default_low
    hi_y, hi_x = high if high is not None else default_high
    for value in (lo_y, lo_x, hi_y, hi_x):
        if not np.isfinite(value) or value <= 0:
            raise ConfigError(f"sweep scale bounds must be positive, got low={low} high={high}")
    waypoints = [(1.0, 1.0), (1.0, hi_x), (1.0, lo_x), (1.0, 1.0), (hi_y, 1.0), (lo_y, 1.0), (1.0, 1.0),
                 (hi_y, hi_x), (lo_y, lo_x), (1.0, 1.0)]
    scales = [waypoints[0]]
    for (y0, x0), (y1, x1) in zip(waypoints, waypoints[1:]):
        for k in range(1, steps_per_segment + 1):
            t = k / steps_per_segment
            scales.append((y0 + (y1 - y0) * t, x0 + (x1 - x0) * t))
    return [clip_size(runner, scale_to_size(base, sy, sx)) for sy, sx in scales]


def sweep_frames(
    runner: Runner,
    low: tuple[float, float] | None = None,
    high: tuple[float, float] | None = None,
    steps_per_segment: int = 12,
    *,
    image: np.ndarray | None = None,
    homography: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Frames of a retarget sweep, like the original test video.

    The scale (sy, sx) walks linearly, `steps_per_segment` frames a segment, along

        (1,1) -> (1,hi_x) -> (1,lo_x) -> (1,1)                  width only
              -> (hi_y,1) -> (lo_y,1) -> (1,1)                  height only
              -> (hi_y,hi_x) -> (lo_y,lo_x) -> (1,1)            both together

    that is 1 + 9 * steps_per_segment frames. `low`/`high` are (sy, sx) scale bounds
    (default: the runner's whole size range); every size is clipped into the runner's
    range. Each output is pasted at the top-left of a black canvas the size of the
    largest frame, so all frames share one size (as a video needs). Frames are made
    lazily: one retarget per frame consumed.
    """
    sizes = sweep_sizes(runner, low, high, steps_per_segment, image=image)
    canvas_h = max(h for h, _ in sizes)
    canvas_w = max(w for _, w in sizes)
    for size in sizes:
        out = runner.retarget(size, homography, image)
        canvas = np.zeros((canvas_h, canvas_w, 3), dtype=np.uint8)
        canvas[: out.shape[0], : out.shape[1]] = out
        yield canvas


# ---------------------------------------------------------------------------- animation files
def _import_imageio_ffmpeg(path: Path) -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InganError(
            f"cannot write '{path}': MP4 needs the Python package 'imageio-ffmpeg' (it bundles ffmpeg), "
            f"which is not installed; install it with: {MP4_INSTALL}, or write .gif or .webp instead"
        ) from None
    return imageio_ffmpeg


def check_animation_path(path: str | os.PathLike[str]) -> Path:
    """Fail early (before any retarget) on an animation path that cannot be written."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise OutputPathError(
            f"cannot write '{target}': unsupported animation type '{target.suffix or '(no suffix)'}'; "
            f"use one of {', '.join(ANIMATION_SUFFIXES)}"
        )
    if suffix == ".webp":
        from PIL import features

        if not features.check("webp"):
            raise OutputPathError(f"cannot write '{target}': this Pillow build has no WebP support; use .gif")
    if suffix == ".mp4":
        _import_imageio_ffmpeg(target)
    if target.is_dir():
        raise OutputPathError(f"cannot write '{target}': a folder of that name exists")
    return target


def write_animation(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float = 20,
    progress: bool = True,
    total: int | None = None,
) -> Path:
    """Write equally sized HxWx3 uint8 frames as an animation, atomically.

    `.gif` and `.webp` (looping) are written with Pillow; `.mp4` (H.264) needs the
    `imageio-ffmpeg` package. The frames may be a lazy iterator (e.g. `sweep_frames`);
    a tqdm bar on stderr counts them unless `progress` is False (`total` sizes the bar
    when `frames` has no len()). A failure leaves no file behind.
    """
    from tqdm import tqdm

    target = check_animation_path(path)
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    suffix = target.suffix.lower()
    bar = tqdm(total=total, unit="frame", desc=target.name, disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    shape: list[tuple[int, ...]] = []

    def checked() -> Iterator[np.ndarray]:
        for array in frames:
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                raise ValueError(f"frames must be HxWx3 uint8 arrays, got {getattr(array, 'shape', type(array))}")
            if not shape:
                shape.append(array.shape)
            elif array.shape != shape[0]:
                raise ValueError(f"all frames must have one size; got {array.shape} after {shape[0]}")
            yield array
            bar.update(1)

    try:
        with atomic_path(target) as tmp:
            if suffix == ".mp4":
                _write_mp4(checked(), tmp, fps)
            else:
                _write_pillow(checked(), tmp, fps, "GIF" if suffix == ".gif" else "WEBP")
    except OSError as exc:
        raise OutputPathError(
            f"cannot write '{target}': {exc.strerror or exc}; check free space and permissions"
        ) from None
    finally:
        bar.close()
    return target


def _write_pillow(frames: Iterator[np.ndarray], tmp: Path, fps: float, fmt: str) -> None:
    from PIL import Image

    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    images: Iterable[Image.Image] = (Image.fromarray(f) for f in frames)
    if fmt == "WEBP":
        images = list(images)  # Pillow's WebP writer needs a list; GIF streams
    duration = max(1, int(round(1000.0 / fps)))
    options: dict[str, Any] = {"lossless": False, "quality": 90} if fmt == "WEBP" else {}
    Image.fromarray(first).save(tmp, format=fmt, save_all=True, append_images=images, duration=duration,
                                loop=0, **options)


def _write_mp4(frames: Iterator[np.ndarray], tmp: Path, fps: float) -> None:
    imageio_ffmpeg = _import_imageio_ffmpeg(tmp)
    writer = None
    try:
        for array in frames:
            h, w = array.shape[:2]
            # H.264 in yuv420p needs even sides: pad with black instead of rescaling.
            ph, pw = h + h % 2, w + w % 2
            if writer is None:
                writer = imageio_ffmpeg.write_frames(
                    os.fspath(tmp), (pw, ph), fps=fps, codec="libx264", macro_block_size=1,
                    output_params=["-f", "mp4"], ffmpeg_log_level="error",
                )
                writer.send(None)
            if (ph, pw) != (h, w):
                padded = np.zeros((ph, pw, 3), dtype=np.uint8)
                padded[:h, :w] = array
                array = padded
            writer.send(np.ascontiguousarray(array))
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
        writer = None
    except (RuntimeError, BrokenPipeError) as exc:
        raise InganError(f"ffmpeg could not write the MP4: {first_line(exc)}") from None
    finally:
        if writer is not None:
            writer.close()


# ---------------------------------------------------------------------------- homography


def top_shift_homography_np(left: float, right: float) -> np.ndarray:
    """3x3 float32 homography (output -> input, normalised [-1, 1] coordinates).

    The paper's non-rectangular family (`ingan.homography.top_shift_homography`, with the
    CLI's input checks): the output's top
    corners sample the input at x shifted by `left` and `right` (normalised units, 2 =
    full width); the bottom corners stay put. (0, 0) is the identity; (-0.5, 0.5) widens
    the top.
    """
    if not (np.isfinite(left) and np.isfinite(right)):
        raise ConfigError(f"--warp shifts must be finite numbers, got {left},{right}")
    if 1.0 + right <= -1.0 + left:
        raise ConfigError(f"--warp {left:g},{right:g} folds the image (the top corners meet or cross); "
                          "keep RIGHT - LEFT above -2, e.g. -0.5,0.5")
    try:
        matrix = top_shift_homography(left, right)
    except ValueError:
        raise ConfigError(f"--warp {left:g},{right:g} is degenerate (the top corners meet); "
                          "use smaller shifts, e.g. -0.5,0.5") from None
    if not np.isfinite(matrix).all():
        raise ConfigError(f"--warp {left:g},{right:g} is degenerate; use smaller shifts, e.g. -0.5,0.5")
    return matrix.astype(np.float32)
