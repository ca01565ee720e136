"""The measurement harness: the settings, one loop for every backend, and a cell's record.

A cell is one model x backend x precision x CUDA-graphs setting x output size (`models`). For
each cell the harness, in this process:

1. loads the model and serves the first request, timing both (the cold start; `probes`);
2. warms up (a number of requests or a duration, like trtexec's `--warmUp`);
3. times requests until it has at least `iterations` of them AND at least `duration_s`
   has passed (trtexec's `--iterations` / `--duration` rule), or a deadline passes;
4. summarises every metric with trtexec's statistics (`ingan.bench.stats`).

How each backend is timed: `ingan.bench.probes`. No unit test asserts a speed; only the
structure of what is measured is tested.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ingan.bench import cost as cost_mod
from ingan.bench.memory import host_peak_mib, reset_host_peak
from ingan.bench.models import CellSpec, base_record, skip_record
from ingan.bench.probes import open_probe
from ingan.bench.probes.base import CaptureError, close_quietly
from ingan.bench.stats import summarize
from ingan.errors import ConfigError, InganError
from ingan.sizes import format_size

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """How long to warm up and to measure each cell (trtexec's defaults: 200 ms, >= 10 runs, >= 3 s)."""

    warmup_iterations: int | None = None  # a count, or
    warmup_seconds: float | None = 0.2  # a duration (trtexec --warmUp=200)
    iterations: int = 10  # at least this many timed requests (trtexec --iterations)
    duration_s: float = 3.0  # and at least this long (trtexec --duration)
    max_iterations: int | None = None  # never more than this (keeps slow CPU cells bounded)

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError("--iterations must be at least 1")
        if self.duration_s < 0:
            raise ConfigError("--duration must not be negative")
        if self.warmup_iterations is not None and self.warmup_iterations < 0:
            raise ConfigError("--warmup must not be negative")
        if self.warmup_seconds is not None and self.warmup_seconds < 0:
            raise ConfigError("--warmup must not be negative")
        if self.max_iterations is not None and self.max_iterations < self.iterations:
            raise ConfigError("--max-iterations must be at least --iterations")

    def to_dict(self) -> dict[str, Any]:
        return {"warmup_iterations": self.warmup_iterations, "warmup_seconds": self.warmup_seconds,
                "min_iterations": self.iterations, "min_duration_s": self.duration_s,
                "max_iterations": self.max_iterations}


def parse_warmup(text: str) -> tuple[int | None, float | None]:
    """'5' -> 5 requests; '200ms', '0.5s', '1m' -> a duration in seconds."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+", value):
        return int(value), None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m)", value)
    if not match:
        raise ValueError(f"'{text}' is not a warm-up; give a request count (e.g. 5) or a duration (200ms, 2s)")
    number, unit = float(match.group(1)), match.group(2)
    return None, number * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def parse_seconds(text: str) -> float:
    """'3', '3s', '500ms', '2m' -> seconds (>= 0); the grammar of --duration and --time-budget."""
    value = str(text).strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        try:
            _, unit_seconds = parse_warmup(value)  # a bare count never gets here: float() took it
        except ValueError:
            raise ValueError(f"'{text}' is not a duration; use e.g. 3, 3s, 500ms or 2m") from None
        seconds = float(unit_seconds or 0.0)
    if seconds < 0:
        raise ValueError(f"'{text}' must not be negative")
    return seconds


# --------------------------------------------------------------------------- the loop


@dataclass
class Measurement:
    samples: list[dict[str, float]]
    warmup_iterations: int
    warmup_s: float
    wall_s: float
    truncated: bool


def measure(step: Callable[[], dict[str, float]], settings: Settings, deadline: float | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm up, then time requests until both minimums are met (or the deadline passes)."""
    started = clock()
    warmups = 0
    while True:
        if settings.warmup_iterations is not None:
            if warmups >= settings.warmup_iterations:
                break
        elif settings.warmup_seconds is None or clock() - started >= settings.warmup_seconds:
            break
        if deadline is not None and clock() >= deadline:
            break
        step()
        warmups += 1
    warm_s = clock() - started
    samples: list[dict[str, float]] = []
    truncated = False
    begin = clock()
    while True:
        elapsed = clock() - begin
        if len(samples) >= settings.iterations and elapsed >= settings.duration_s:
            break
        if settings.max_iterations is not None and len(samples) >= settings.max_iterations:
            break
        if deadline is not None and samples and clock() >= deadline:
            truncated = True
            break
        samples.append(step())
    return Measurement(samples, warmups, warm_s, clock() - begin, truncated)


METRICS = ("gpu_compute", "h2d", "d2h", "latency", "host_latency", "enqueue")


def run_cell(spec: CellSpec, settings: Settings, *, deadline: float | None = None, gpu_name: str | None = None,
             peak_override: float | None = None, allow_host_code: bool = False) -> dict[str, Any]:
    """Measure one cell; never raises for a backend problem (the record says what failed)."""
    record = base_record(spec.model, spec.backend, spec.size, spec.cuda_graphs, spec.device)
    reset_ok = reset_host_peak()
    try:
        opened = open_probe(spec, allow_host_code=allow_host_code)
    except CaptureError as exc:
        record.update({"status": "skipped", "reason": str(exc)})
        return record
    except InganError as exc:
        record.update({"status": "failed", "reason": str(exc)})
        return record
    except Exception as exc:  # noqa: BLE001 - one broken backend must not end the whole run
        log.debug("cell %s failed", record["key"], exc_info=True)
        record.update({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        return record
    probe = opened.probe
    try:
        result = measure(probe.step, settings, deadline)
        memory = probe.memory()
    except Exception as exc:  # noqa: BLE001
        log.debug("cell %s failed while timing", record["key"], exc_info=True)
        record.update({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        close_quietly(probe)
        return record
    close_quietly(probe)
    host_mib, host_method = host_peak_mib(reset_ok)
    metrics: dict[str, Any] = {}
    for name in METRICS:
        series = [s[name] for s in result.samples if name in s]
        summary = summarize(series if len(series) == len(result.samples) else None)
        metrics[f"{name}_ms"] = summary.to_dict() if summary else None
    primary = "gpu_compute_ms" if metrics["gpu_compute_ms"] else "latency_ms"
    n = len(result.samples)
    images_per_s = n / result.wall_s if result.wall_s > 0 else None
    megapixels = record["output_megapixels"]
    median_s = metrics[primary]["median"] / 1e3
    model = spec.model
    forward = None
    notes = list(probe.notes)
    if model.config is not None:
        entry = model.entry_executed
        if entry and model.kind != "pytorch" and not model.metadata.image_input:
            # The entry conv of a baked-image graph has only constant inputs: ONNX Runtime folds it when
            # it creates the session, the TensorRT builder when it builds (docs/export.md; measured for
            # ONNX Runtime: docs/bench.md, "Cost").
            entry = False
            notes.append("entry conv not counted: constant-folded by the runtime (the training image is baked in)")
        forward = cost_mod.forward_cost(model.config, spec.size, tuple(model.metadata.training_image_size),
                                        entry_executed=entry)
    if spec.outside_range:
        notes.append("size outside the checkpoint's trained range (--any-size)")
    if result.truncated:
        notes.append("stopped early: the time budget ran out (fewer iterations / shorter than asked)")
    record.update({
        "status": "ok",
        "device": probe.device,
        "timer": probe.timer,
        "math": probe.math_mode,
        "primary_metric": primary,
        "iterations": n,
        "warmup": {"iterations": result.warmup_iterations, "seconds": round(result.warmup_s, 6)},
        "total_host_walltime_s": round(result.wall_s, 6),
        "metrics": metrics,
        "throughput": {
            "images_per_s": round(images_per_s, 6) if images_per_s else None,
            "megapixels_per_s": round(images_per_s * megapixels, 6) if images_per_s else None,
        },
        "cold_start": opened.cold_start,
        "memory": {**memory, "host_peak_rss_mib": host_mib, "host_method": host_method},
        "cost": cost_mod.cost_block(forward, median_s, gpu_name if spec.device == "cuda" else None, probe.math_mode,
                                    cpu=spec.device == "cpu", override=peak_override),
        "notes": notes,
    })
    return record


def run_cells(cells: Iterable[CellSpec], settings: Settings, *, deadline: float | None = None,
              gpu_name: str | None = None, peak_override: float | None = None, allow_host_code: bool = False,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every cell in order; cells that would start after `deadline` are recorded as skipped."""
    records = []
    cells = list(cells)
    for index, spec in enumerate(cells, 1):
        if deadline is not None and time.perf_counter() >= deadline:
            records.append(skip_record(spec.model, spec.backend, spec.size, spec.cuda_graphs, spec.device,
                                       "time budget spent before this cell started"))
            continue
        if progress:
            progress(f"[{index}/{len(cells)}] {spec.model.label} {spec.backend} "
                     f"{'graphs ' if spec.cuda_graphs else ''}{format_size(spec.size)}")
        record = run_cell(spec, settings, deadline=deadline, gpu_name=gpu_name, peak_override=peak_override,
                          allow_host_code=allow_host_code)
        if progress and record["status"] != "ok":
            progress(f"  {record['status']}: {record['reason']}")
        records.append(record)
    return records
