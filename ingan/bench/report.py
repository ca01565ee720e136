"""Reports: the JSON document (schema `ingan-bench` v1), its validator, Markdown, the PNG plot,
and the cell-by-cell comparison of two reports.

Every time is in milliseconds unless its name ends in `_s`. Field meanings and their
trtexec counterparts: docs/bench.md. matplotlib is imported only to draw the plot.
(Longer than the house's ~450-line guide on purpose: one module owns the report format, so
its schema, validator and every rendering of it change together.)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ingan.bench import SCHEMA, SCHEMA_VERSION
from ingan.bench.stats import PERCENTILES, SUMMARY_FIELDS
from ingan.errors import InganError
from ingan.fsutil import atomic_path

METRIC_NAMES = ("gpu_compute_ms", "h2d_ms", "d2h_ms", "latency_ms", "host_latency_ms", "enqueue_ms")
CELL_STATUSES = ("ok", "skipped", "failed")
# The sections of an ok cell whose fields are all numbers, or null where a backend cannot measure them.
NULLABLE_SECTIONS = {
    "throughput": ("images_per_s", "megapixels_per_s"),
    "cold_start": ("load_s", "first_request_s", "total_s"),
    "memory": ("device_peak_mib", "host_peak_rss_mib"),
    "cost": ("gflop",),
}


class ReportError(InganError):
    """A report file is unreadable, not an ingan-bench report, or fails the schema."""


def build_report(*, settings: Mapping[str, Any], environment: Mapping[str, Any], models: Iterable[Mapping[str, Any]],
                 cells: Iterable[Mapping[str, Any]], command: list[str] | None, created: str,
                 elapsed_s: float | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "command": list(command) if command is not None else None,
        "elapsed_s": round(elapsed_s, 3) if elapsed_s is not None else None,
        "settings": {**dict(settings), "percentiles": list(PERCENTILES), "time_unit": "ms",
                     "percentile_method": "trtexec"},
        "environment": dict(environment),
        "models": [dict(m) for m in models],
        "cells": [dict(c) for c in cells],
    }


# --------------------------------------------------------------------------- validation


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_measure(value: Any) -> bool:
    """A time, rate, size or count: a finite number >= 0 (what every measured field is)."""
    return _is_num(value) and math.isfinite(value) and value >= 0


def validate_report(data: Any) -> list[str]:
    """Every schema problem in a report, as 'path: what'; empty when it is valid (v1)."""
    problems: list[str] = []

    def need(obj: Any, key: str, kinds: tuple[type, ...] | type, where: str, nullable: bool = False) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            problems.append(f"{where}.{key}: missing")
            return None
        value = obj[key]
        if value is None and nullable:
            return None
        kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
        if float in kinds_t and _is_num(value):
            return value
        if isinstance(value, bool) and bool not in kinds_t:
            problems.append(f"{where}.{key}: expected {'/'.join(k.__name__ for k in kinds_t)}, got bool")
            return None
        if not isinstance(value, kinds_t):
            problems.append(f"{where}.{key}: expected {'/'.join(k.__name__ for k in kinds_t)}, "
                            f"got {type(value).__name__}")
            return None
        return value

    if not isinstance(data, dict):
        return ["report: not a JSON object"]
    if data.get("schema") != SCHEMA:
        return [f"schema: expected '{SCHEMA}', got {data.get('schema')!r}"]
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        return ["schema_version: missing or not an integer"]
    if version < 1:
        return [f"schema_version: {version} is not a valid version (versions start at 1)"]
    if version > SCHEMA_VERSION:
        return [f"schema_version: {version} is newer than this ingan reads ({SCHEMA_VERSION}); upgrade ingan"]
    need(data, "created", str, "report")
    need(data, "command", list, "report", nullable=True)
    settings = need(data, "settings", dict, "report")
    if settings is not None:
        for key in ("min_iterations", "percentiles", "time_unit"):
            need(settings, key, (int, list, str), "settings")
    env = need(data, "environment", dict, "report")
    if env is not None:
        for key in ("python", "cpu", "packages", "git"):
            need(env, key, (str, dict), "environment")
        need(env, "gpu", dict, "environment", nullable=True)
    models = need(data, "models", list, "report")
    for i, model in enumerate(models or []):
        for key in ("label", "path", "kind", "precision"):
            need(model, key, str, f"models[{i}]")
    def measure(obj: Any, key: str, where: str, nullable: bool = False) -> None:
        value = need(obj, key, float, where, nullable=nullable)
        if value is not None and not _is_measure(value):
            problems.append(f"{where}.{key}: must be a finite number >= 0, got {value!r}")

    cells = need(data, "cells", list, "report")
    seen_keys: set[str] = set()
    for i, cell in enumerate(cells or []):
        where = f"cells[{i}]"
        for key in ("key", "model", "backend", "runtime", "precision", "device_kind"):
            need(cell, key, str, where)
        key_value = cell.get("key") if isinstance(cell, dict) else None
        if isinstance(key_value, str):
            if key_value in seen_keys:
                problems.append(f"{where}.key: '{key_value}' appears twice (one cell per key)")
            seen_keys.add(key_value)
        need(cell, "cuda_graphs", bool, where)
        status = need(cell, "status", str, where)
        size = need(cell, "size", dict, where)
        if size is not None:
            need(size, "width", int, f"{where}.size")
            need(size, "height", int, f"{where}.size")
        need(cell, "output_megapixels", float, where)
        if status not in CELL_STATUSES:
            problems.append(f"{where}.status: expected one of {', '.join(CELL_STATUSES)}, got {status!r}")
            continue
        if status != "ok":
            need(cell, "reason", str, where)
            continue
        for key in ("device", "timer", "math", "primary_metric"):
            need(cell, key, str, where)
        need(cell, "iterations", int, where)
        need(cell, "total_host_walltime_s", float, where)
        metrics = need(cell, "metrics", dict, where)
        if metrics is not None:
            for name in METRIC_NAMES:
                summary = need(metrics, name, dict, f"{where}.metrics", nullable=True)
                if summary is None:
                    continue
                for field in SUMMARY_FIELDS:
                    measure(summary, field, f"{where}.metrics.{name}")
            for name in ("latency_ms", "host_latency_ms"):
                if metrics.get(name) is None:
                    problems.append(f"{where}.metrics.{name}: required for an ok cell")
            primary = cell.get("primary_metric")
            if isinstance(primary, str) and metrics.get(primary) is None:
                problems.append(f"{where}.primary_metric: '{primary}' has no summary")
        for section, fields in NULLABLE_SECTIONS.items():
            block = need(cell, section, dict, where)
            if block is not None:
                for key in fields:
                    measure(block, key, f"{where}.{section}", nullable=True)
        need(cell, "notes", list, where)
    return problems


def check_report(data: Any, source: str = "report") -> dict[str, Any]:
    problems = validate_report(data)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ReportError(f"'{source}' is not a valid ingan-bench report: {'; '.join(problems[:3])}{more}")
    return data


def write_json(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    check_report(report, str(path))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return Path(path)


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        hint = f"; pass '{p / 'bench.json'}'" if (p / "bench.json").is_file() else ""
        raise ReportError(f"report '{p}' is a folder, not a report{hint or '; pass the bench.json an ingan-bench run wrote'}")
    if not p.is_file():
        raise ReportError(f"report '{p}' does not exist; pass the bench.json an ingan-bench run wrote")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReportError(f"'{p}' is not a JSON report; pass the bench.json an ingan-bench run wrote") from None
    except OSError as exc:
        raise ReportError(f"cannot read report '{p}': {exc.strerror or exc}") from None
    return check_report(data, str(p))


# --------------------------------------------------------------------------- Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}g}"
    return str(value)


def _median(cell: Mapping[str, Any], metric: str) -> float | None:
    summary = (cell.get("metrics") or {}).get(metric)
    return summary.get("median") if summary else None


def _p99(cell: Mapping[str, Any], metric: str) -> float | None:
    summary = (cell.get("metrics") or {}).get(metric)
    return summary.get("p99") if summary else None


def _size_text(cell: Mapping[str, Any]) -> str:
    return f"{cell['size']['width']}x{cell['size']['height']}"


def environment_lines(env: Mapping[str, Any]) -> list[str]:
    packages = env.get("packages") or {}
    gpu = env.get("gpu") or {}
    cuda = env.get("cuda") or {}
    git = env.get("git") or {}
    lines = []
    if gpu:
        clocks = ""
        if gpu.get("sm_clock_mhz") is not None:
            clocks = f", SM clock {gpu.get('sm_clock_mhz')}/{gpu.get('sm_clock_max_mhz')} MHz"
        lines.append(f"- GPU: {gpu.get('name')} (driver {gpu.get('driver') or '?'}, CUDA runtime "
                     f"{cuda.get('cuda_runtime') or '?'}{clocks})")
    else:
        lines.append("- GPU: none (CPU-only run: wall-clock times)")
    cpu = env.get("cpu") or {}
    lines.append(f"- CPU: {cpu.get('model')} ({cpu.get('logical_cores')} logical cores)")
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v and k in (
        "ingan", "torch", "onnxruntime", "tensorrt", "tensorrt_lean", "cuda_bindings", "numpy"))
    lines.append(f"- Packages: {versions}")
    sha = git.get("sha")
    lines.append(f"- git: {sha[:12] if sha else 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}; "
                 f"Python {env.get('python')}")
    return lines


def _series_label(cell: Mapping[str, Any]) -> str:
    label = f"{cell['model']} {cell['backend']}"
    if not cell["backend"].startswith("torch-"):  # torch backends carry the precision in their name
        label += f" {cell['precision']}"
    return label + (" graphs" if cell["cuda_graphs"] else "")


# (header, value) per column; a column whose every value is missing is left out of the table.
_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("model", lambda c: c["model"]),
    ("backend", lambda c: c["backend"]),
    ("prec", lambda c: c["precision"]),
    ("graphs", lambda c: "on" if c["cuda_graphs"] else "off"),
    ("size", _size_text),
    ("GPU compute med (p99) ms", lambda c: "-" if _median(c, "gpu_compute_ms") is None else
     f"{_fmt(_median(c, 'gpu_compute_ms'))} ({_fmt(_p99(c, 'gpu_compute_ms'))})"),
    ("latency med (p99) ms", lambda c: f"{_fmt(_median(c, 'latency_ms'))} ({_fmt(_p99(c, 'latency_ms'))})"),
    ("host med ms", lambda c: _fmt(_median(c, "host_latency_ms"))),
    ("enqueue med ms", lambda c: _fmt(_median(c, "enqueue_ms"))),
    ("img/s", lambda c: _fmt(c["throughput"].get("images_per_s"))),
    ("MP/s", lambda c: _fmt(c["throughput"].get("megapixels_per_s"))),
    ("cold start s", lambda c: _fmt(c["cold_start"].get("total_s"))),
    ("GFLOP", lambda c: _fmt((c.get("cost") or {}).get("gflop"))),
    ("TFLOP/s", lambda c: _fmt((c.get("cost") or {}).get("achieved_tflops"))),
    ("% peak", lambda c: _fmt((c.get("cost") or {}).get("percent_of_peak"))),
    ("dev MiB", lambda c: _fmt((c.get("memory") or {}).get("device_peak_mib"))),
    ("host RSS MiB", lambda c: _fmt((c.get("memory") or {}).get("host_peak_rss_mib"))),
)


def markdown_table(cells: Iterable[Mapping[str, Any]]) -> str:
    """The measured cells as one Markdown table (columns no cell has are left out)."""
    ok = [c for c in cells if c.get("status") == "ok"]
    values = [[fn(cell) for _header, fn in _COLUMNS] for cell in ok]
    keep = [i for i, (header, _fn) in enumerate(_COLUMNS)
            if header in ("model", "backend", "prec", "graphs", "size") or any(row[i] != "-" for row in values)]
    if any(row[_header_index("dev MiB")] != "-" for row in values):
        keep = [i for i in keep if _COLUMNS[i][0] != "host RSS MiB"]  # device memory is what matters there
    lines = ["| " + " | ".join(_COLUMNS[i][0] for i in keep) + " |", "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in values]
    return "\n".join(lines)


def _header_index(header: str) -> int:
    return [h for h, _fn in _COLUMNS].index(header)


def markdown(report: Mapping[str, Any]) -> str:
    settings = report["settings"]
    warm = (f"{settings.get('warmup_iterations')} requests" if settings.get("warmup_iterations") is not None
            else f"{settings.get('warmup_seconds')} s")
    lines = [
        f"# ingan-bench report ({report['created']})",
        "",
        *environment_lines(report["environment"]),
        f"- Settings: warm-up {warm}; at least {settings.get('min_iterations')} requests and "
        f"{settings.get('min_duration_s')} s per cell"
        + (f" (at most {settings['max_iterations']})" if settings.get("max_iterations") else "")
        + "; percentiles as trtexec computes them",
        "",
    ]
    ok = [c for c in report["cells"] if c.get("status") == "ok"]
    if ok:
        lines += [markdown_table(ok), ""]
        lines += [
            "GPU compute = trtexec's GPU Compute Time (CUDA events around the enqueue / graph launch); "
            "latency = trtexec's Latency: H2D + compute + D2H with pinned buffers (on the CPU and for ONNX "
            "Runtime on CUDA: wall-clock of the backend call); host = wall-clock of one whole request to a "
            "HxWx3 uint8 array; cold start = load + first request (+ graph capture), in this process; "
            "TFLOP/s = analytic conv FLOPs / median compute (or latency). Full definitions: docs/bench.md.",
            "",
        ]
    else:
        lines += ["No cell ran.", ""]
    others = [c for c in report["cells"] if c.get("status") != "ok"]
    if others:
        lines.append("Not measured:")
        lines += [f"- {c['key']}: {c['status']}: {c.get('reason')}" for c in others]
        lines.append("")
    notes = sorted({f"{c['backend']}: {n}" for c in ok for n in c.get("notes", [])})
    if notes:
        lines.append("Notes:")
        lines += [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plot


def plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path | None:
    """Log-log latency (median of the primary metric, whiskers min..p99) vs output megapixels.

    One line per model x backend x precision x graphs. Returns None when matplotlib is
    missing (pip install 'ingan[bench]') or no cell ran.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[str, list[tuple[float, float, float, float]]] = {}
    for cell in report["cells"]:
        if cell.get("status") != "ok":
            continue
        summary = cell["metrics"][cell["primary_metric"]]
        label = _series_label(cell)
        series.setdefault(label, []).append((cell["output_megapixels"], summary["median"], summary["min"],
                                             summary["p99"]))
    if not series:
        return None
    env = report["environment"]
    device = (env.get("gpu") or {}).get("name") or (env.get("cpu") or {}).get("model") or "?"
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    markers = "osD^v<>pP*Xh"
    for i, (label, points) in enumerate(sorted(series.items())):
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        lower = [max(p[1] - p[2], 0.0) for p in points]
        upper = [max(p[3] - p[1], 0.0) for p in points]
        ax.errorbar(xs, ys, yerr=[lower, upper], marker=markers[i % len(markers)], capsize=3, label=label,
                    linestyle="-" if len(xs) > 1 else "none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # x ticks at the measured sizes, labelled with them; y ticks at 1-2-5 steps, plain numbers.
    sizes: dict[float, list[str]] = {}
    for cell in report["cells"]:
        if cell.get("status") == "ok":
            names = sizes.setdefault(cell["output_megapixels"], [])
            if _size_text(cell) not in names:
                names.append(_size_text(cell))
    ticks = sorted(sizes)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{mp:.3g}\n{', '.join(sizes[mp])}" for mp in ticks], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    ax.set_xlabel("output megapixels")
    ax.set_ylabel("latency, ms (median; whiskers min..p99)")
    ax.set_title(f"ingan-bench on {device}\nGPU compute time where measured, else backend wall-clock", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """A matplotlib figure as a PNG file, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- compare


COMPARE_METRICS: dict[str, tuple[str, bool]] = {
    # name -> (how to read it, lower is better)
    "primary": ("median of each cell's primary metric (GPU compute, else latency)", True),
    "latency": ("median latency_ms", True),
    "host": ("median host_latency_ms", True),
    "throughput": ("images_per_s", False),
}


def _metric_value(cell: Mapping[str, Any], metric: str) -> float | None:
    if cell.get("status") != "ok":
        return None
    if metric == "primary":
        return _median(cell, cell["primary_metric"])
    if metric == "latency":
        return _median(cell, "latency_ms")
    if metric == "host":
        return _median(cell, "host_latency_ms")
    return (cell.get("throughput") or {}).get("images_per_s")


def compare_rows(a: Mapping[str, Any], b: Mapping[str, Any], metric: str = "primary") -> list[dict[str, Any]]:
    """One row per cell key in either report: a value, b value, ratio b/a (None where unmatched)."""
    if metric not in COMPARE_METRICS:
        raise InganError(f"unknown metric '{metric}'; use one of {', '.join(COMPARE_METRICS)}")
    cells_a = {c["key"]: c for c in a["cells"]}
    cells_b = {c["key"]: c for c in b["cells"]}
    keys = list(cells_a) + [k for k in cells_b if k not in cells_a]
    rows = []
    for key in keys:
        va = _metric_value(cells_a[key], metric) if key in cells_a else None
        vb = _metric_value(cells_b[key], metric) if key in cells_b else None
        # Validated reports hold finite values >= 0; a zero has no meaningful ratio.
        ratio = vb / va if va and vb else None
        cell = cells_a.get(key) or cells_b[key]
        rows.append({"key": key, "model": cell["model"], "backend": cell["backend"], "precision": cell["precision"],
                     "cuda_graphs": cell["cuda_graphs"], "size": _size_text(cell), "a": va, "b": vb, "ratio": ratio,
                     "only_in": "a" if key not in cells_b else ("b" if key not in cells_a else None)})
    return rows


def compare_text(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, name_a: str, name_b: str) -> str:
    how, lower_better = COMPARE_METRICS[metric]
    rows = compare_rows(a, b, metric)
    unit = "img/s" if metric == "throughput" else "ms"
    lines = [f"A = {name_a} ({a['created']}, {_device_of(a)})",
             f"B = {name_b} ({b['created']}, {_device_of(b)})",
             f"metric: {how}; ratio = B / A ({'< 1' if lower_better else '> 1'} means B is faster)", "",
             f"| model | backend | prec | graphs | size | A {unit} | B {unit} | B/A |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = _fmt(row["ratio"], 4) if row["ratio"] is not None else (
            f"only in {row['only_in'].upper()}" if row["only_in"] else
            "zero value" if row["a"] == 0 or row["b"] == 0 else "not measured")
        lines.append(f"| {row['model']} | {row['backend']} | {row['precision']} | "
                     f"{'on' if row['cuda_graphs'] else 'off'} | {row['size']} | {_fmt(row['a'])} | {_fmt(row['b'])} "
                     f"| {ratio} |")
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines += ["", f"{len(ratios)} matched cells; geometric mean of B/A: {_fmt(geo, 4)}"]
    else:
        lines += ["", "no cell was measured in both reports"]
    return "\n".join(lines)


def _device_of(report: Mapping[str, Any]) -> str:
    env = report["environment"]
    return (env.get("gpu") or {}).get("name") or (env.get("cpu") or {}).get("model") or "?"


Printer = Callable[[str], None]
