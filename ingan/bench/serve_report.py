"""`ingan-bench serve` reports: JSON (schema `ingan-bench-serve` v1), its validator, Markdown and
the PNG plot, in the family of `ingan.bench.report` (same environment block, same statistics).

Times are milliseconds unless a name ends in `_s`; every summary is `ingan.bench.stats.Summary`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ingan.bench.report import ReportError, environment_lines, save_figure
from ingan.bench.stats import SUMMARY_FIELDS
from ingan.fsutil import atomic_path, ensure_output_dir

SCHEMA = "ingan-bench-serve"
SCHEMA_VERSION = 1
LOAD_SUMMARIES = ("latency_ms", "warm_latency_ms", "cold_latency_ms", "model_load_ms", "server_latency_ms")
OVERHEAD_SUMMARIES = ("served_ms", "direct_ms", "server_total_ms", "server_retarget_ms", "server_encode_ms")


def build_report(*, created: str, command: list[str] | None, elapsed_s: float, settings: Mapping[str, Any],
                 environment: Mapping[str, Any], server: Mapping[str, Any], load: Mapping[str, Any],
                 overhead: Mapping[str, Any] | None, samples: list[list[Any]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": created, "command": command,
            "elapsed_s": round(elapsed_s, 3), "settings": dict(settings), "environment": dict(environment),
            "server": dict(server), "load": dict(load), "overhead": dict(overhead) if overhead else None,
            "samples": samples}


def validate(data: Any) -> list[str]:
    """Every schema problem as 'where: what'; empty when the report is valid."""
    if not isinstance(data, dict):
        return ["report: not a JSON object"]
    if data.get("schema") != SCHEMA:
        return [f"schema: expected '{SCHEMA}', got {data.get('schema')!r}"]
    if data.get("schema_version") != SCHEMA_VERSION:
        return [f"schema_version: expected {SCHEMA_VERSION}, got {data.get('schema_version')!r}"]
    problems = []
    for key, kind in (("created", str), ("settings", dict), ("environment", dict), ("server", dict),
                      ("load", dict), ("samples", list)):
        if not isinstance(data.get(key), kind):
            problems.append(f"{key}: missing or not a {kind.__name__}")
    load = data.get("load") if isinstance(data.get("load"), dict) else {}
    for key in ("requests", "ok", "cold_requests"):
        if not _count(load.get(key)):
            problems.append(f"load.{key}: must be a count")
    if not isinstance(load.get("errors"), dict) or not all(_count(v) for v in load["errors"].values()):
        problems.append("load.errors: must map statuses to counts")
    for name in LOAD_SUMMARIES:
        problems += _summary_problems(load.get(name), f"load.{name}", nullable=True)
    overhead = data.get("overhead")
    if overhead is not None:
        if not isinstance(overhead, dict):
            problems.append("overhead: must be an object or null")
        else:
            for name in OVERHEAD_SUMMARIES:
                problems += _summary_problems(overhead.get(name), f"overhead.{name}",
                                              nullable=name.startswith("server_"))
            if not _number(overhead.get("overhead_p50_ms")):
                problems.append("overhead.overhead_p50_ms: must be a number")
    for i, row in enumerate(data.get("samples") or []):
        if not (isinstance(row, list) and len(row) == 4 and all(_number(v) for v in row)):
            problems.append(f"samples[{i}]: must be [start_s, latency_ms, status, cold]")
            break
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _summary_problems(value: Any, where: str, nullable: bool) -> list[str]:
    if value is None:
        return [] if nullable else [f"{where}: missing"]
    if not isinstance(value, dict):
        return [f"{where}: must be a summary object"]
    return [f"{where}.{field}: must be a finite number >= 0" for field in SUMMARY_FIELDS
            if field != "cv_percent" and not (_number(value.get(field)) and value[field] >= 0)]


def check(data: Any, source: str = "report") -> dict[str, Any]:
    problems = validate(data)
    if problems:
        raise ReportError(f"'{source}' is not a valid ingan-bench serve report: {'; '.join(problems[:3])}")
    return data


# --------------------------------------------------------------------------- Markdown


def _ms(summary: Mapping[str, Any] | None, field: str = "median") -> str:
    if not summary:
        return "-"
    value = summary[field]
    return f"{value:,.0f}" if value >= 1000 else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def markdown(report: Mapping[str, Any]) -> str:
    settings, server, load, overhead = report["settings"], report["server"], report["load"], report["overhead"]
    env = report["environment"]
    lines = [f"# ingan-bench serve report ({report['created']})", "", *environment_lines(env)]
    before, after = env.get("load_average_start"), env.get("load_average_end")
    if before or after:
        lines.append(f"- Machine load (1/5/15-min load average): {before} at the start, {after} at the end, on "
                     f"{(env.get('cpu') or {}).get('logical_cores')} logical cores")
    if env.get("ray_serve_env"):
        lines.append("- Ray Serve settings from the environment: "
                     + ", ".join(f"{k}={v}" for k, v in env["ray_serve_env"].items()))
    scaling = server.get("scaling") or "unknown (a server this run did not start)"
    lines += [
        f"- Server: {server.get('url')}; {len(server.get('models', []))} models in the load "
        f"({', '.join(m['id'] for m in server.get('models', []))}); {scaling}",
        f"- Load: {settings['clients']} concurrent clients x {settings['requests_per_client']} requests, "
        f"sizes from {settings['sizes']}, format {settings['image_format']}, seed {settings['seed']}",
        "",
        "| requests | ok | errors | wall s | req/s | MP/s | p50 ms | p95 ms | p99 ms | max ms | cold requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {load['requests']} | {load['ok']} | {sum(load['errors'].values())} | {load['wall_s']:.1f} | "
        f"{load['throughput_rps'] or 0:.1f} | {load['megapixels_per_s'] or 0:.2f} | {_ms(load['latency_ms'])} | "
        f"{_ms(load['latency_ms'], 'p95')} | {_ms(load['latency_ms'], 'p99')} | {_ms(load['latency_ms'], 'max')} | "
        f"{load['cold_requests']} |",
        "",
    ]
    if load["errors"]:
        lines.append(f"Errors by status: {load['errors']}; first messages: {'; '.join(load['error_examples'])}")
        lines.append("")
    if load["cold_requests"]:
        lines.append(f"Cold requests (the model was loaded for them): latency p50 {_ms(load['cold_latency_ms'])} ms, "
                     f"max {_ms(load['cold_latency_ms'], 'max')} ms; model load p50 {_ms(load['model_load_ms'])} ms. "
                     f"Warm requests: p50 {_ms(load['warm_latency_ms'])} ms, p99 "
                     f"{_ms(load['warm_latency_ms'], 'p99')} ms.")
        lines.append("")
    if overhead:
        lines += [
            f"HTTP overhead at {overhead['size']} (model '{overhead['model']}', {overhead['requests']} sequential "
            f"requests, each followed by a direct `ingan.runtime` call of {Path(overhead['model_file']).name} on "
            f"{overhead['direct_device']}, {overhead['direct_threads']} thread(s)):",
            "",
            "| | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
            *(f"| {label} | {_ms(overhead[key])} | {_ms(overhead[key], 'p95')} | {_ms(overhead[key], 'p99')} |"
              for label, key in (("served (client round trip)", "served_ms"), ("direct runtime call", "direct_ms"),
                                 ("server side: total", "server_total_ms"),
                                 ("server side: retarget", "server_retarget_ms"),
                                 ("server side: encode", "server_encode_ms"))),
            "",
            f"**Overhead p50: {overhead['overhead_p50_ms']:.2f} ms** (served p50 minus direct p50; the median of "
            f"the paired differences is {overhead['paired_overhead_p50_ms']:.2f} ms).",
            "",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plot


def plot(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path | None:
    """Each load-phase request's round trip over time (warm, cold, failed), with p50/p95/p99."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report["samples"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    groups = (("warm", lambda r: r[2] == 200 and not r[3], "o", 8),
              ("cold (model loaded)", lambda r: r[2] == 200 and r[3], "^", 24),
              ("failed", lambda r: r[2] != 200, "x", 30))
    for label, keep, marker, area in groups:
        chosen = [r for r in rows if keep(r)]
        if chosen:
            ax.scatter([r[0] for r in chosen], [r[1] for r in chosen], s=area, marker=marker, label=label,
                       alpha=0.6)
    latency = report["load"]["latency_ms"]
    if latency:
        for field, style in (("median", "-"), ("p95", "--"), ("p99", ":")):
            ax.axhline(latency[field], color="black", linestyle=style, linewidth=0.8,
                       label=f"{'p50' if field == 'median' else field} {latency[field]:.1f} ms")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))  # 200, not 2x10^2
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("request start, s from the start of the load phase")
    ax.set_ylabel("round trip, ms")
    settings = report["settings"]
    cpu = (report["environment"].get("cpu") or {}).get("model") or "?"
    ax.set_title(f"ingan-serve under load: {settings['clients']} clients x {settings['requests_per_client']} "
                 f"requests, {len(report['server'].get('models', []))} models\n{cpu}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(report: dict[str, Any], out_dir: str | os.PathLike[str], name: str = "serve",
                  plot_it: bool = True) -> dict[str, Path | None]:
    """NAME.json (validated first), NAME.md and NAME.png (None without matplotlib) in `out_dir`."""
    check(report, name)
    folder = ensure_output_dir(out_dir)
    paths: dict[str, Path | None] = {}
    with atomic_path(folder / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    paths["json"] = folder / f"{name}.json"
    with atomic_path(folder / f"{name}.md") as tmp:
        tmp.write_text(markdown(report))
    paths["markdown"] = folder / f"{name}.md"
    paths["plot"] = plot(report, folder / f"{name}.png") if plot_it else None
    return paths
