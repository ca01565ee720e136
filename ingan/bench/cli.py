"""`ingan-bench`: latency, throughput and cost of exported models, per backend and size."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from ingan.bench.serve_cli import serve
from ingan.cli.common import Duration, check_plain_stem, collect_sizes, device_option, notice, setup_logging, size_options, user_errors
from ingan.extras import install_hint


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class WarmupParam(click.ParamType):
    name = "N|DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        from ingan.bench.timing import parse_warmup

        try:
            return parse_warmup(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SecondsParam(Duration):
    """A duration >= 0 in bench's grammar: '3', '3s', '500ms', '2m' (see `parse_seconds`)."""

    def parse(self, text: str) -> float:
        from ingan.bench.timing import parse_seconds

        return parse_seconds(text)


def _backends_option(ctx: click.Context, param: click.Parameter, value: str) -> list[str] | None:
    from ingan.bench.models import parse_backends
    from ingan.errors import ConfigError

    try:
        return parse_backends(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


class DefaultToRun(click.Group):
    """`ingan-bench MODEL ...` means `ingan-bench run MODEL ...`; subcommands by name otherwise."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def bench_options(opt: dict[str, Any]) -> Any:
    """ingan-bench run's options, as the library's frozen BenchOptions."""
    from ingan.bench.suite import BenchOptions
    from ingan.bench.timing import Settings

    device = select_gpu(opt["device"]) if opt["device"].startswith("cuda:") else opt["device"]
    warm_n, warm_s = opt["warmup"]
    settings = Settings(warmup_iterations=warm_n, warmup_seconds=warm_s, iterations=opt["iterations"],
                        duration_s=opt["duration"], max_iterations=opt["max_iterations"])
    return BenchOptions(sizes=collect_sizes(opt["sizes"], opt["old_sizes"]) or [(360, 640), (720, 1280)],
                        backends=opt["backends"], device=device, threads=opt["threads"],
                        cuda_graphs=opt["cuda_graphs"], settings=settings, peak_tflops=opt["peak_tflops"],
                        time_budget_s=opt["time_budget"], allow_host_code=opt["allow_host_code"],
                        any_size=opt["any_size"])


def select_gpu(device: str) -> str:
    """--device cuda:N: make GPU N the only one this process sees (CUDA_VISIBLE_DEVICES, before any
    CUDA library starts), so every runtime's "cuda" is that GPU; returns "cuda"."""
    import os

    index = int(device.split(":")[1])
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and index >= len(visible):
        raise click.BadParameter(f"{device}: CUDA_VISIBLE_DEVICES lists {len(visible)} GPU(s)",
                                 param_hint="'--device'")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)
    return "cuda"


def _check_peak(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a positive number of TFLOP/s", param_hint="'--peak-tflops'")
    return value


@click.group(cls=DefaultToRun, context_settings=CONTEXT)
def main() -> None:
    """Benchmark ingan models: latency, throughput, cold start, memory and FLOP/s per backend and size.

    \b
    ingan-bench MODEL [MODEL ...] [options]   same as: ingan-bench run MODEL ...
    ingan-bench compare A.json B.json         per-cell ratios of two reports
    ingan-bench serve URL|MODELS... [options] load-test ingan-serve (docs/serve.md)

    Times and statistics follow trtexec (GPU Compute Time, Latency, Enqueue Time, its
    percentile formula); docs/bench.md maps every report field to trtexec's names.
    """


@main.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@size_options("Output sizes WIDTHxHEIGHT; repeat the option or give a comma list. [default: 640x360,1280x720]")
@click.option("--backends", default="all", show_default=True, callback=_backends_option,
              help="Comma-separated: tensorrt, ort-tensorrt, ort-cuda, ort-cpu, torch-fp32, torch-fp16, "
                   "torch-bf16 (each runs the model files of its kind), or 'all' available here.")
@device_option("auto: every backend available here; cpu: the CPU backends only; cuda[:N]: the GPU backends "
               "only, on GPU N.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="CPU threads per request for ONNX Runtime and PyTorch on the CPU (0: the library's default, "
                   "one per physical core).")
@click.option("--cuda-graphs", type=click.Choice(["both", "on", "off"]), default="both", show_default=True,
              help="CUDA-graph dimension for TensorRT and PyTorch on CUDA (trtexec 11 default: on).")
@click.option("--warmup", type=WarmupParam(), default="200ms", show_default=True,
              help="Warm-up per cell: a request count (5) or a duration (200ms, 2s).")
@click.option("--iterations", type=click.IntRange(min=1), default=10, show_default=True,
              help="Time at least this many requests per cell ...")
@click.option("--duration", type=SecondsParam(), default="3s", show_default=True,
              help="... and for at least this long (like trtexec --iterations/--duration).")
@click.option("--max-iterations", type=click.IntRange(min=1), default=None,
              help="Never time more than this many requests per cell (bounds slow CPU cells).")
@click.option("--time-budget", type=SecondsParam(), default=None,
              help="Stop starting new cells after this long; the rest are reported as skipped.")
@click.option("--peak-tflops", type=float, default=None, callback=_check_peak,
              help="Device peak TFLOP/s for '% of peak' (overrides the built-in GPU table; the only way "
                   "to get it on a CPU).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Report folder. [default: bench-YYYYmmdd-HHMMSS beside the first model]")
@click.option("--name", default="bench", show_default=True, callback=check_plain_stem,
              help="Report file stem: NAME.json, NAME.md, NAME.png.")
@click.option("--no-plot", is_flag=True, help="Do not draw NAME.png.")
@click.option("--any-size", is_flag=True,
              help="PyTorch on CUDA: also benchmark sizes outside the checkpoint's trained range (the network "
                   "runs any size; ONNX and TensorRT ranges stay hard limits).")
@click.option("--allow-host-code", is_flag=True,
              help="Allow version-compatible TensorRT plans (they embed host code: trusted plans only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines and no table on the terminal.")
def run(models: tuple[Path, ...], out: Path | None, name: str, no_plot: bool, quiet: bool, **opt: Any) -> None:
    """Measure MODELS (.plan/.engine, .onnx with its .json, or ckpt.pt) on every available backend.

    For each model x backend x precision x CUDA-graphs setting x size: cold start (load +
    first request), warm-up, then at least --iterations requests for at least --duration.
    Reports GPU compute time (CUDA events), latency with the real input/output copies
    (pinned memory), enqueue time, host wall-clock, throughput, peak memory, analytic
    FLOPs and achieved TFLOP/s; min, mean, median, p90, p95, p99, max and std of each.
    On a CPU-only machine the same report holds wall-clock times. Writes NAME.json,
    NAME.md and NAME.png into --out and prints the table. Exit status 1 if a cell failed.

    \b
    Examples:
      ingan-bench model.onnx ckpt.pt --size 256x256,640x360
      ingan-bench model.plan model_fp16.plan --cuda-graphs on --duration 5s -o bench/h100
      ingan-bench model.onnx --backends ort-cpu --warmup 1 --iterations 3 --duration 0
    """
    setup_logging(quiet)
    from ingan.bench import report as report_mod
    from ingan.bench.suite import default_out_dir, run_benchmark, write_outputs

    started = time.monotonic()
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    with user_errors():
        options = bench_options(opt)
        target = out or default_out_dir(Path(models[0]).parent)
        if (Path(target) / f"{name}.json").exists():
            notice(f"'{Path(target) / name}.json' exists and will be replaced when this run finishes "
                   "(pass another -o or --name to keep it)")
        report = run_benchmark(models, options, progress=say, command=["ingan-bench", *sys.argv[1:]])
        paths = write_outputs(report, target, name=name, plot=not no_plot)
    if not quiet:
        click.echo(report_mod.markdown(report))
    for kind, path in paths.items():
        if path is not None:
            click.echo(f"wrote {path}")
    if not no_plot and paths.get("plot") is None:
        why = ("no cell ran" if not any(c["status"] == "ok" for c in report["cells"])
               else f"matplotlib is missing: {install_hint('matplotlib')}")
        click.echo(f"note: no plot ({why})", err=True)
    cells = report["cells"]
    ok = sum(c["status"] == "ok" for c in cells)
    failed = [c for c in cells if c["status"] == "failed"]
    skipped = [c for c in cells if c["status"] == "skipped"]
    if quiet:  # the table (not printed with -q) gives each skipped cell's reason; say them once each
        for reason, count in Counter(c["reason"] for c in skipped).items():
            click.echo(f"skipped {count} cell{'s' if count > 1 else ''}: {reason}", err=True)
    summary = (f"{ok} cells measured, {len(skipped)} skipped, {len(failed)} failed in "
               f"{time.monotonic() - started:.1f}s")
    if failed or ok == 0:
        for cell in failed:
            click.echo(f"failed: {cell['key']}: {cell['reason']}", err=True)
        click.echo(f"FAILED: {summary}")
        sys.exit(1)
    click.echo(f"PASSED: {summary}")


@main.command(context_settings=CONTEXT)
@click.argument("report_a", type=click.Path(path_type=Path))
@click.argument("report_b", type=click.Path(path_type=Path))
@click.option("--metric", type=click.Choice(["primary", "latency", "host", "throughput"]), default="primary",
              show_default=True,
              help="primary: each cell's GPU compute time (else latency); latency; host; throughput.")
def compare(report_a: Path, report_b: Path, metric: str) -> None:
    """Print per-cell ratios B / A of two ingan-bench JSON reports.

    Cells match on model file name, backend, precision, CUDA graphs and size; cells in
    only one report are listed too. The last line is the geometric mean of the ratios.
    """
    from ingan.bench.report import compare_text, load_report

    with user_errors():
        a = load_report(report_a)
        b = load_report(report_b)
        click.echo(compare_text(a, b, metric, str(report_a), str(report_b)))


main.add_command(serve)  # ingan-bench serve: its own module (ingan.bench.serve_cli)
