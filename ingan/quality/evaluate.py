"""Score a model's retargets and the non-learned baselines against the training image.

    report = evaluate("ckpt.pt", [(320, 768), (320, 192)], "quality/")   # (height, width)
    report.paths   # quality.json, quality.md, side_by_side.png

Any model `ingan.runtime.load` opens works (.pt, .onnx, .plan). The reference (the image
the model was trained on) is the checkpoint's own image for a .pt; for an exported model it
is read from the source checkpoint named in the sidecar when that file sits next to the
model and its checksum matches, and must otherwise be given (`reference=`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import ingan
from ingan.collage import frame, grid
from ingan.errors import ConfigError
from ingan.fsutil import atomic_path, ensure_output_dir, is_plain_file_name
from ingan.imageio import load_image, save_image
from ingan.quality.baselines import BASELINES
from ingan.model.device import torch_device
from ingan.quality.metrics import DEFAULT_MAX_BYTES, PATCH, QualityScore, score
from ingan.runtime import Runner, load
from ingan.sizes import format_size

__all__ = ["FORMAT", "FORMAT_VERSION", "METHOD_LABELS", "METRICS", "EvalReport", "evaluate", "find_reference"]

FORMAT = "ingan-quality"
FORMAT_VERSION = 1
METRICS = ("swd", "coherence", "completeness", "bds")
METHOD_LABELS = {"ingan": "InGAN", **{name: label for name, (_, label) in BASELINES.items()}}
JSON_NAME, MARKDOWN_NAME, PNG_NAME = "quality.json", "quality.md", "side_by_side.png"


@dataclass
class SizeResult:
    size: tuple[int, int]  # (height, width)
    scores: dict[str, QualityScore]  # method -> score
    images: dict[str, np.ndarray]  # method -> HxWx3 uint8
    seconds: dict[str, dict[str, float]]  # method -> {"make": s, "score": s}

    def best(self, metric: str) -> list[str]:
        """Methods with the lowest value of `metric` (all of them on a tie at 6 decimals)."""
        values = {m: round(getattr(s, metric), 6) for m, s in self.scores.items()}
        low = min(values.values())
        return [m for m, v in values.items() if v == low]


@dataclass
class EvalReport:
    model: dict[str, Any]
    reference: dict[str, Any]
    settings: dict[str, Any]
    self_noise: QualityScore
    results: list[SizeResult]
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        results = []
        for r in self.results:
            methods = {}
            for name, s in r.scores.items():
                methods[name] = {"label": METHOD_LABELS[name], **s.to_dict(), "seconds": r.seconds[name]}
            results.append({
                "size": list(r.size), "size_text": format_size(r.size), "methods": methods,
                "best": {metric: r.best(metric) for metric in METRICS},
            })
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ingan_version": ingan.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": self.model,
            "reference": self.reference,
            "settings": self.settings,
            "metrics": {
                "swd": "sliced Wasserstein distance between output and reference patch distributions",
                "coherence": "mean distance from output patches to their nearest reference patch",
                "completeness": "mean distance from reference patches to their nearest output patch",
                "bds": "coherence + completeness (bidirectional similarity)",
                "units": "RMS per patch element, in units of the reference's per-channel std at each level; "
                         "mean over pyramid levels; lower is better; see docs/quality.md",
            },
            "self_noise": self.self_noise.to_dict(),
            "results": results,
            "seconds": round(self.seconds, 3),
            "files": {key: path.name for key, path in self.paths.items()},
        }

    def table_lines(self) -> list[str]:
        """The Markdown table: one row per size and method, the best per size in bold."""
        lines = ["| size (WxH) | method | SWD | coherence | completeness | BDS |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in self.results:
            best = {metric: r.best(metric) for metric in METRICS}
            for i, (name, sc) in enumerate(r.scores.items()):
                cells = []
                for metric in METRICS:
                    text = f"{getattr(sc, metric):.3f}"
                    cells.append(f"**{text}**" if name in best[metric] else text)
                size = format_size(r.size) if i == 0 else ""
                lines.append(f"| {size} | {METHOD_LABELS[name]} | " + " | ".join(cells) + " |")
        return lines

    def markdown(self) -> str:
        s = self.settings
        lines = [
            f"# Retarget quality: {self.model['file']}",
            "",
            f"- Model: `{self.model['file']}` ({self.model['backend']} on {self.model['device']}).",
            f"- Reference: {self.reference['source']} ({format_size(self.reference['size'])}, width x height).",
            f"- Metrics on {s['device']}: {s['patch']}x{s['patch']} patches, {s['levels']} pyramid levels "
            f"(area /2 per level), <= {s['max_patches']} sampled patches per image and level, SWD with "
            f"{s['projections']} projections x {s['repeats']} repeats, seed {s['seed']}. "
            "Definitions: docs/quality.md.",
            "- Lower is better in every column; **bold** marks the best method at each size.",
            "",
            *self.table_lines(),
        ]
        short = sorted({format_size(r.size) for r in self.results for sc in r.scores.values()
                        if len(sc.levels) < s["levels"]})
        if short:
            lines += ["", f"Fewer than {s['levels']} levels at {', '.join(short)}: a level is used only while "
                      "both images keep a side of at least 16 pixels."]
        n = self.self_noise
        lines += [
            "",
            f"Self-noise floor (the reference scored against itself with the same settings): SWD "
            f"{n.swd:.3f}, coherence {n.coherence:.3f}, completeness {n.completeness:.3f}. SWD "
            "differences of this order are sampling noise.",
            "",
            f"`{PNG_NAME}`: one row per size; columns: input (red frame), "
            + ", ".join(METHOD_LABELS[m] for m in ("ingan", *BASELINES)) + ".",
            "",
            f"Total time: {self.seconds:.1f} s.",
            "",
        ]
        return "\n".join(lines)

    def side_by_side(self, reference: np.ndarray) -> np.ndarray:
        rows = [[frame(reference), *(r.images[m] for m in ("ingan", *BASELINES))] for r in self.results]
        return grid(rows)


def find_reference(runner: Runner, reference: str | os.PathLike[str] | np.ndarray | None) -> tuple[np.ndarray, str]:
    """The training image for `runner` as HxWx3 uint8, and where it came from (in words)."""
    expected = tuple(int(v) for v in runner.image_size)
    if reference is not None:
        if isinstance(reference, np.ndarray):
            pixels, source, name, loaded = reference, "the given array", "reference", None
        else:
            # An image larger than the training image with the same aspect ratio is reduced
            # exactly as ingan-train --max-side reduced it (same loader, same filter).
            loaded = load_image(reference, max_side=max(expected))
            pixels, source, name = loaded.pixels, f"`{os.fsdecode(reference)}`", f"reference '{os.fsdecode(reference)}'"
        if tuple(pixels.shape[:2]) != expected:
            size = format_size(pixels.shape[:2])
            what = (f"is {format_size(loaded.decoded_size)} (reduced to {size} like ingan-train would)"
                    if loaded is not None and loaded.downscaled else f"is {size}")
            raise ConfigError(
                f"{name} {what}, but the model was trained on a {format_size(expected)} image; pass the "
                "training image"
            )
        if pixels.shape[2] == 3 and np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(
                pixels[..., 1], pixels[..., 2]):
            logging.getLogger(__name__).warning(
                "warning: the reference is grayscale; scores are meaningful only against the training "
                "image itself")
        return pixels, source
    from ingan.model.checkpoint import file_sha256, load_checkpoint

    if runner.backend == "pytorch":
        return load_checkpoint(runner.path).image, f"the training image stored in `{runner.path.name}`"
    source = runner.metadata.source_checkpoint or {}
    name = source.get("file")
    candidate = runner.path.parent / name if isinstance(name, str) and name else None
    why = "its sidecar names no source checkpoint"
    if candidate is not None and not is_plain_file_name(name):
        # The sidecar is a user file: only a plain name next to the model is followed.
        why = f"its sidecar names the source checkpoint {name!r}, which is not a plain file name next to it"
        candidate = None
    if candidate is not None:
        why = f"its source checkpoint '{name}' is not next to it"
        if candidate.is_file():
            digest = source.get("sha256")
            if digest and file_sha256(candidate) != digest:
                why = f"'{candidate}' is not the checkpoint it was exported from (checksum differs)"
            else:
                image = load_checkpoint(candidate).image
                if tuple(image.shape[:2]) == expected:
                    return image, f"the training image stored in `{candidate.name}` (source checkpoint)"
                why = f"'{candidate}' holds a {format_size(image.shape[:2])} image, not {format_size(expected)}"
    raise ConfigError(
        f"'{runner.path.name}' does not store its training image and {why}; "
        "pass the training image with --reference IMAGE"
    )


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def evaluate(
    model: str | os.PathLike[str] | Runner,
    sizes: Sequence[tuple[int, int]],
    out_dir: str | os.PathLike[str] | None,
    *,
    reference: str | os.PathLike[str] | np.ndarray | None = None,
    device: str | None = "cpu",
    seed: int = 0,
    levels: int = 3,
    patch: int = PATCH,
    max_patches: int = 4096,
    projections: int = 128,
    repeats: int = 4,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Retarget to each (height, width) in `sizes`, score InGAN and the baselines, write the report.

    `device` runs both the model (except a TensorRT plan, always CUDA) and the metrics.
    With `out_dir=None` nothing is written.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    if not sizes:
        raise ConfigError("no sizes to evaluate; give at least one (ingan-eval --size WxH)")
    metric_device = torch_device(device)
    own = not isinstance(model, Runner)
    runner: Runner
    if own:
        from ingan.runtime import registry

        cls = registry.runner_class(registry.backend_for(model))  # type: ignore[arg-type]
        # A GPU-only backend (a TensorRT plan) picks its own GPU; the others run where the metrics do.
        model_device = None if "cpu" not in cls.devices else str(metric_device)
        runner = load(model, device=model_device)  # type: ignore[arg-type]
    else:
        runner = model  # type: ignore[assignment]
    try:
        checked = [runner.check_size(size) for size in sizes]
        pixels, source = find_reference(runner, reference)
        directory = ensure_output_dir(out_dir) if out_dir is not None else None
        options = dict(levels=levels, patch=patch, max_patches=max_patches, projections=projections,
                       repeats=repeats, seed=seed, device=metric_device, max_bytes=max_bytes)
        say("scoring the reference against itself (noise floor)")
        self_noise = score(pixels, pixels, **options)
        results = []
        for size in checked:
            images: dict[str, np.ndarray] = {}
            seconds: dict[str, dict[str, float]] = {}
            say(f"retargeting to {format_size(size)}")
            t0 = time.perf_counter()
            images["ingan"] = runner.retarget(size, image=pixels if runner.metadata.image_input else None)
            seconds["ingan"] = {"make": time.perf_counter() - t0}
            for name, (make, _) in BASELINES.items():
                t0 = time.perf_counter()
                images[name] = make(pixels, size)
                seconds[name] = {"make": time.perf_counter() - t0}
            scores = {}
            for name, image in images.items():
                say(f"scoring {METHOD_LABELS[name]} at {format_size(size)}")
                t0 = time.perf_counter()
                scores[name] = score(image, pixels, **options)
                seconds[name]["score"] = time.perf_counter() - t0
                seconds[name] = {k: round(v, 4) for k, v in seconds[name].items()}
            results.append(SizeResult(size, scores, images, seconds))
        report = EvalReport(
            model={"file": runner.path.name, "path": str(runner.path), "backend": runner.backend,
                   "device": runner.device, "kind": runner.metadata.kind,
                   "size_range": [list(runner.min_size), list(runner.max_size)]},
            reference={"source": source, "size": list(pixels.shape[:2])},
            settings={**{k: v for k, v in self_noise.settings.items() if k != "levels_used"},
                      "sizes": [list(s) for s in checked]},
            self_noise=self_noise,
            results=results,
        )
    finally:
        if own:
            runner.close()
    if directory is not None:
        report.paths = {"json": directory / JSON_NAME, "markdown": directory / MARKDOWN_NAME,
                        "side_by_side": directory / PNG_NAME}
        save_image(report.side_by_side(pixels), report.paths["side_by_side"])
    report.seconds = time.perf_counter() - started
    if directory is not None:
        _write_text(report.paths["json"], json.dumps(report.to_dict(), indent=2) + "\n")
        _write_text(report.paths["markdown"], report.markdown())
    return report
