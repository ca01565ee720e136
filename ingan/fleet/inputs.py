"""Which images a fleet trains, and which of them train together.

Discovery: each IMAGE argument of `ingan-train` is a file (taken as given), a folder (the
image files directly inside it, by suffix; hidden files skipped, no recursion) or a glob
pattern that the shell did not expand (quoted: `'photos/**/*.jpg'`, expanded here with
`**` recursive, matches filtered by suffix like a folder's). Every image trains into the
folder named after its file stem (`ingan.fsutil.safe_folder_name`); two images with one
stem are refused before any work.

Grouping rule (`plan_groups`): a grouped step shares the crop size and each step's output
size, both independent of the image's size (the step only sees `crop_size` crops), so images
of any size may share a group. Images are grouped only with images at the same iteration (a
group steps its members together), and within one iteration sorted by pixel count (largest
first), then by stem, and cut into groups of up to G: members of a group are alike in size,
so no group waits on one huge image's saves and monitors (they work on the whole image), and
the same inputs always give the same groups.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ingan.errors import ConfigError, ImageError
from ingan.fsutil import IMAGE_FILES, existing_file, safe_folder_name

# Suffixes a folder or a glob contributes (case-insensitive); a file named on the command
# line is taken whatever its suffix, and Pillow decides whether it is an image.
IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".bmp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".avif",
})
GLOB_CHARACTERS = "*?["
MANIFEST_NAME = "fleet.json"  # beside the image folders: no image may train into a folder of this name


@dataclass(frozen=True)
class FleetImage:
    """One image of a fleet: its absolute path and the name of its output folder."""

    stem: str
    path: Path


def is_glob(argument: str) -> bool:
    return any(c in argument for c in GLOB_CHARACTERS)


def wants_many(arguments: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether IMAGE arguments name a fleet (several, a folder or a pattern) rather than one image."""
    if len(arguments) != 1:
        return len(arguments) > 1
    only = Path(arguments[0])
    return only.is_dir() or (not only.exists() and is_glob(os.fspath(arguments[0])))


def discover(arguments: Sequence[str | os.PathLike[str]]) -> list[FleetImage]:
    """The images of IMAGE arguments, in argument order (a folder's and a pattern's sorted by
    name); the same file named twice counts once. One-line errors for a path that does not
    exist, a folder without images, a pattern without matches and duplicate stems."""
    if not arguments:
        raise ImageError("no images given; pass image files, a folder or a quoted glob such as 'photos/*.jpg'")
    paths: list[Path] = []
    for argument in arguments:
        text = os.fspath(argument)
        given = Path(text)
        if given.is_dir():
            found = _images_in(sorted(given.iterdir()))
            if not found:
                raise ImageError(f"folder '{given}' holds no image files ({_suffix_list()}); "
                                 "pass a folder of images")
            paths.extend(found)
        elif given.exists() or not is_glob(text):
            paths.append(existing_file(given, "image", IMAGE_FILES, ImageError))
        else:
            found = _images_in(Path(p) for p in sorted(glob.glob(text, recursive=True)))
            if not found:
                raise ImageError(f"'{text}' matches no image files ({_suffix_list()}); check the pattern")
            paths.extend(found)
    images = _unique_files(paths)
    _check_stems(images)
    return images


def _images_in(candidates: Iterable[Path]) -> list[Path]:
    return [p for p in candidates
            if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _suffix_list() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))


def _unique_files(paths: Iterable[Path]) -> list[FleetImage]:
    seen: set[Path] = set()
    images = []
    for path in paths:
        absolute = path.resolve()
        if absolute not in seen:
            seen.add(absolute)
            images.append(FleetImage(safe_folder_name(path.stem), absolute))
    return images


def _check_stems(images: Sequence[FleetImage]) -> None:
    # Case-insensitive: 'Beach.png' and 'beach.jpg' share one folder on macOS and Windows.
    first: dict[str, FleetImage] = {}
    for image in images:
        key = image.stem.casefold()
        if key == MANIFEST_NAME.casefold():
            raise ConfigError(f"image '{image.path}' would train into '{image.stem}/', the name of the fleet's "
                              "manifest; rename the image")
        if key in first:
            other = first[key]
            raise ConfigError(f"images '{other.path}' and '{image.path}' would both train into '{image.stem}/' "
                              "(one folder per file stem); rename one, or train them in separate fleets (-o)")
        first[key] = image


@dataclass(frozen=True)
class GroupCandidate:
    """An image waiting to train: where it stands (iteration) and how large it is (pixels)."""

    image: FleetImage
    iteration: int = 0
    pixels: int = 0


def plan_groups(candidates: Sequence[GroupCandidate], group_size: int) -> list[tuple[FleetImage, ...]]:
    """Groups of up to `group_size` images by the rule in the module docstring; the furthest
    along train first (resumed images finish before new ones start)."""
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    by_iteration: dict[int, list[GroupCandidate]] = defaultdict(list)
    for candidate in candidates:
        by_iteration[candidate.iteration].append(candidate)
    groups = []
    for iteration in sorted(by_iteration, reverse=True):
        ordered = sorted(by_iteration[iteration], key=lambda c: (-c.pixels, c.image.stem))
        for start in range(0, len(ordered), group_size):
            groups.append(tuple(c.image for c in ordered[start:start + group_size]))
    return groups
