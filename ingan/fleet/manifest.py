"""The fleet manifest, `OUT/fleet.json`: every image of the fleet, where it stands, and why
it failed. Only the command that runs the fleet writes it (atomically, `ingan.fsutil.
atomic_path`), at the start, as groups start and end, and at the end.

It also says which fleet owns OUT: its `settings` are everything that defines the
training maths (the training config and --max-side). A command with other settings is
refused before any work, so a re-run never mixes checkpoints of two schedules; the image
set may grow (a folder that gained images trains the new ones).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import ingan
from ingan.errors import ConfigError, first_line
from ingan.fleet.inputs import MANIFEST_NAME, FleetImage
from ingan.fsutil import atomic_path

FORMAT = "ingan-fleet-manifest"
FORMAT_VERSION = 1
# pending: not trained yet (or its group was never started); running: its group is training;
# partial: stopped before its last iteration (time budget, Ctrl-C, a lost task): a re-run resumes it;
# finished: all iterations done; failed: `error` says why (a re-run tries it again).
STATUSES = ("pending", "running", "partial", "finished", "failed")


@dataclass
class ImageRecord:
    """One image's line in the manifest (mutable: the running command keeps it current)."""

    source: str
    status: str = "pending"
    iteration: int = 0
    iters: int = 0
    losses: dict[str, float] | None = None
    train_seconds: float = 0.0  # step time over all runs of its checkpoint (its wall_time)
    error: str | None = None
    started_at: int | None = None  # the iteration this command's last run of it began at (None: not run)
    attempts: int = 0  # runs of it started by this command (a retried task counts again)
    size: str | None = None  # WIDTHxHEIGHT trained on (after --max-side)
    exported: list[str] = field(default_factory=list)  # files written by --export, beside ckpt.pt

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ImageRecord":
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        if record.status not in STATUSES:
            raise ValueError(f"unknown status {record.status!r}")
        return record


@dataclass
class Manifest:
    path: Path
    settings: dict[str, Any]
    images: dict[str, ImageRecord] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Manifest | None":
        """The manifest at `path`, None when there is none; a one-line error for a file that is not one."""
        if not path.exists():
            return None
        fix = "pass another -o, or --force to start a new fleet there"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"'{path}' is not an ingan fleet manifest ({first_line(exc)}); {fix}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"'{path}' is not an ingan fleet manifest; {fix}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"'{path}' is a fleet manifest of format version {data.get('format_version')}, "
                              f"this ingan reads version {FORMAT_VERSION}; {fix}")
        try:
            images = {str(stem): ImageRecord.from_dict(entry) for stem, entry in data["images"].items()}
            settings = dict(data["settings"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"'{path}': damaged fleet manifest ({first_line(exc)}); {fix}") from None
        return cls(path, settings, images)

    def check_same_fleet(self, settings: Mapping[str, Any], images: Sequence[FleetImage]) -> None:
        """Refuse a command whose settings or images belong to another fleet (one line)."""
        difference = _first_difference(self.settings, settings)
        if difference is not None:
            key, theirs, ours = difference
            raise ConfigError(
                f"'{self.path}' belongs to another fleet: its {key} is {theirs}, this command's is {ours}; re-run "
                "with that fleet's settings to continue it, pass another -o, or --force to start over there"
            )
        for image in images:
            record = self.images.get(image.stem)
            if record is not None and Path(record.source) != image.path:
                raise ConfigError(
                    f"'{self.path.parent / image.stem}' holds another fleet's image ('{record.source}', not "
                    f"'{image.path}'); rename one of them, pass another -o, or --force to start over there"
                )

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for record in self.images.values():
            counts[record.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ingan_version": ingan.__version__,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": self.settings,
            "counts": self.counts(),
            "images": {stem: asdict(record) for stem, record in sorted(self.images.items())},
        }

    def write(self) -> Path:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        with atomic_path(self.path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return self.path


def fleet_settings(train_config: Mapping[str, Any], max_side: int) -> dict[str, Any]:
    """What defines a fleet's training maths: two commands with equal settings are one fleet
    (as JSON stores them, so a setting read back compares equal to the one written)."""
    return json.loads(json.dumps({"train_config": dict(train_config), "max_side": max_side}))


def manifest_path(out_dir: Path) -> Path:
    return out_dir / MANIFEST_NAME


def _first_difference(theirs: Mapping[str, Any], ours: Mapping[str, Any],
                      prefix: str = "") -> tuple[str, Any, Any] | None:
    for key in [*ours, *(k for k in theirs if k not in ours)]:  # the config's own order: preset, iters, ...
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, Mapping) or isinstance(b, Mapping):  # name the setting, not the whole table
            nested = _first_difference(a if isinstance(a, Mapping) else {}, b if isinstance(b, Mapping) else {},
                                       f"{prefix}{key}.")
            if nested is not None:
                return nested
        elif a != b:
            return f"{prefix}{key}".removeprefix("train_config."), a, b
    return None
