"""The `ckpt.pt` format: one self-contained file per trained image.

Loading never runs code from the file (`torch.load(weights_only=True)`) and every field
is checked against the schema below before use, so a hostile or foreign file is refused
with a one-line reason.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ingan.errors import CheckpointError, ConfigError, OutputPathError, first_line
from ingan.fsutil import atomic_path, existing_file
from ingan.metadata import sha256_of
from ingan.model.calibration import ColourCalibration
from ingan.model.config import GeneratorConfig
from ingan.model.generator import Generator

FORMAT = "ingan-checkpoint"
FORMAT_VERSION = 1
MAX_SCALE = 16.0  # upper bound of a stored scale range (the paper trains up to 2.25)

# key -> (type, required)
_SCHEMA: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "format": (str, True),
    "format_version": (int, True),
    "ingan_version": (str, True),
    "generator": (dict, True),
    "generator_config": (dict, True),
    "train_config": (dict, True),
    "image": (torch.Tensor, True),
    "image_name": (str, True),
    "iteration": (int, True),
    "scale_range": (list, True),
    "wall_time": (float, True),
    "run_options": (dict, False),
    "losses": (dict, False),
    "discriminator": (dict, False),
    "optimizer_g": (dict, False),
    "optimizer_d": (dict, False),
    "rng": (dict, False),
    # Earlier runs this generator was warm-started from (--init-from), oldest first.
    "lineage": (list, False),
    # Per-channel output gain/offset fitted on the training image (ingan/model/calibration.py).
    "colour_calibration": (dict, False),
}
TRAINING_STATE_KEYS = ("discriminator", "optimizer_g", "optimizer_d", "rng")


@dataclass
class Checkpoint:
    """A validated checkpoint. `payload` holds the raw dict for resume."""

    path: Path
    payload: dict[str, Any]
    generator_config: GeneratorConfig = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.generator_config = GeneratorConfig.from_dict(self.payload["generator_config"])
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"'{self.path}' has an invalid generator config ({exc})") from None

    @property
    def iteration(self) -> int:
        return int(self.payload["iteration"])

    @property
    def image(self) -> np.ndarray:
        """The training image, (H, W, 3) uint8."""
        return self.payload["image"].numpy()

    @property
    def scale_range(self) -> tuple[float, float]:
        lo, hi = self.payload["scale_range"]
        return float(lo), float(hi)

    @property
    def colour_calibration(self) -> ColourCalibration | None:
        data = self.payload.get("colour_calibration")
        return None if data is None else ColourCalibration.from_dict(data)  # validated on load

    @property
    def has_training_state(self) -> bool:
        return all(k in self.payload for k in TRAINING_STATE_KEYS)

    def build_generator(self, device: str | torch.device = "cpu") -> Generator:
        """The trained generator in eval mode (no power iteration, deterministic)."""
        generator = Generator(self.generator_config)
        try:
            generator.load_state_dict(self.payload["generator"], strict=True)
        except (RuntimeError, KeyError, TypeError) as exc:
            first = first_line(exc, None)
            raise CheckpointError(
                f"'{self.path}': generator weights do not match its architecture config ({first})"
            ) from None
        generator.set_colour_calibration(self.colour_calibration)
        return generator.to(device).eval()


file_sha256 = sha256_of  # one implementation, in ingan.metadata


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write atomically: an interrupted save leaves the previous checkpoint intact."""
    data = dict(payload)
    data.setdefault("format", FORMAT)
    data.setdefault("format_version", FORMAT_VERSION)
    _validate(Path(path), data)
    try:
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        detail = getattr(exc, "strerror", None) or first_line(exc)
        raise OutputPathError(
            f"cannot write '{path}' ({detail}); free disk space or pass a writable --out "
            "(the previous checkpoint, if any, is intact)"
        ) from None
    return Path(path)


def slim_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without discriminator/optimiser/RNG state: ~4x smaller, serve-only."""
    return {k: v for k, v in payload.items() if k not in TRAINING_STATE_KEYS}


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    drop_colour_calibration: bool = False) -> Checkpoint:
    """Load and validate; every failure is a CheckpointError with the reason and fix.

    `drop_colour_calibration` discards the stored calibration before validating it (for
    refitting a damaged one)."""
    p = existing_file(path, "checkpoint", "the path of a ckpt.pt", CheckpointError)
    if p.stat().st_size == 0:
        raise CheckpointError(f"'{p}' is empty; it is not an ingan checkpoint")
    kind = _image_kind(p)
    if kind:
        raise CheckpointError(f"'{p}' is a {kind} image, not a checkpoint; pass the ckpt.pt that ingan-train wrote")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from the weights-only unpickler
            data = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything beyond plain tensors/containers: code never runs.
        match = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        reason = first_line(ValueError(match.group(1)), 160) if match else "unsupported content"
        raise CheckpointError(
            f"refusing to load '{p}': not an ingan checkpoint; it is corrupt or holds objects other "
            f"than plain tensors, which could run code when loaded ({reason})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        reason = first_line(exc)
        raise CheckpointError(
            f"cannot read '{p}': the file is truncated, corrupt or not a PyTorch checkpoint ({reason})"
        ) from None
    if drop_colour_calibration and isinstance(data, dict):
        data.pop("colour_calibration", None)
    _validate(p, data)
    return Checkpoint(path=p, payload=data)


@functools.lru_cache(maxsize=16)
def expected_generator_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a generator of `config` stores, built on the meta device
    (no memory is allocated, whatever the config asks for). Cached per config: a run saves
    the same architecture again and again. Treat the result as read-only."""
    with torch.device("meta"):
        generator = Generator(config)
    return {name: tuple(tensor.shape) for name, tensor in generator.state_dict().items()}


def _check_generator_shapes(path: Path, weights: dict[str, Any], config_data: Any) -> None:
    """Refuse weights that do not fit their config *before* anything is built at full size:
    a forged config (say base_channels=1024, n_blocks=64) beside small weights would
    otherwise allocate hundreds of GB when the generator is built."""
    try:
        config = GeneratorConfig.from_dict(config_data)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"'{path}' has an invalid generator config ({exc})") from None
    expected = expected_generator_shapes(config)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        detail = ", ".join(f"{len(names)} {what}, e.g. '{names[0]}'"
                           for what, names in (("missing", missing), ("unexpected", unexpected)) if names)
        raise CheckpointError(
            f"'{path}': generator weights do not match its architecture config ({detail}); the file is damaged "
            "or was edited"
        )
    for name, shape in expected.items():
        got = tuple(weights[name].shape)
        if got != shape:
            raise CheckpointError(
                f"'{path}': generator weight '{name}' has shape {list(got)}, its config needs {list(shape)}; "
                "the file is damaged or was edited"
            )


_IMAGE_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
                b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _image_kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC.items() if head.startswith(magic)), None)


def _validate(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not an ingan checkpoint (no '{FORMAT}' marker)")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"'{path}' has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' uses checkpoint format {version}, newer than this ingan supports "
            f"({FORMAT_VERSION}); upgrade ingan (pip install -U ingan)"
        )
    for key, (kind, required) in _SCHEMA.items():
        if key not in data:
            if required:
                raise CheckpointError(f"'{path}' is missing '{key}'; the checkpoint is incomplete or damaged")
            continue
        value = data[key]
        if kind is float and isinstance(value, int):
            continue
        if not isinstance(value, kind):
            raise CheckpointError(
                f"'{path}': field '{key}' has type {type(value).__name__}, expected {getattr(kind, '__name__', kind)}"
            )
    image = data["image"]
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise CheckpointError(f"'{path}': stored image must be HxWx3 uint8, got {tuple(image.shape)} {image.dtype}")
    for name, tensor in data["generator"].items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"'{path}': generator weights must map names to tensors")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"'{path}': generator weight '{name}' holds NaN or infinite values (training diverged?); "
                "use an earlier checkpoint"
            )
    _check_generator_shapes(path, data["generator"], data["generator_config"])
    if "colour_calibration" in data:
        try:
            ColourCalibration.from_dict(data["colour_calibration"])
        except ConfigError as exc:
            raise CheckpointError(
                f"'{path}': {exc}; refit it with python -m ingan.train.calibrate CKPT, or drop it with "
                "python -m ingan.train.calibrate CKPT --remove"
            ) from None
    scale_range = data["scale_range"]
    if len(scale_range) != 2 or not all(isinstance(v, (int, float)) for v in scale_range) or not (
        0 < scale_range[0] <= scale_range[1] <= MAX_SCALE
    ):
        raise CheckpointError(f"'{path}': invalid scale range {scale_range!r}")
    if data["iteration"] < 0:
        raise CheckpointError(f"'{path}': negative iteration count")
