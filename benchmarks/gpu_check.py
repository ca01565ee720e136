#!/usr/bin/env python3
"""The prepared GPU check: GPU-marked tests + a short benchmark of every available backend.

    python benchmarks/gpu_check.py OUT_DIR [--model PATH ...] [--time-cap 420]
    python benchmarks/gpu_check.py OUT_DIR --cpu-smoke --no-tests --model m.onnx --size 52x40

On a CUDA machine it:
  1. exports examples/hubble/ckpt.pt (ONNX FP32 + FP16, TensorRT plans where a TensorRT
     builder exists) into a temporary folder, unless --model is given;
  2. runs `pytest -m "cuda or gpu or tensorrt"` (its output goes to OUT_DIR/pytest.txt);
  3. benchmarks every available GPU backend (TensorRT plans with and without CUDA graphs,
     ONNX Runtime TensorRT/CUDA EPs, PyTorch FP32/FP16/BF16 with and without graphs) at
     640x360 and 1280x720, then ONNX Runtime CPU on the FP32 graph as a baseline with
     whatever time is left;
  4. writes bench.json / bench.md / bench.png (ingan-bench's report) and gpu_check.log
     into OUT_DIR (5 files at most, no sub-folders).
Everything stops within --time-cap seconds (default 420: under 8 minutes on one H100,
export included); cells that would start later are reported as skipped. Backends that
are not installed (TensorRT, onnxruntime-gpu) are skipped with the reason in the report.

On a machine without CUDA it refuses (exit 2) unless given --cpu-smoke, which runs the
same flow on the CPU backends with tiny iteration counts (tests/bench exercise this).
Exit status: 0 when tests passed (or were skipped) and no benchmark cell failed, 1
otherwise. Documented in docs/bench.md ("The GPU check").
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ingan.bench import report as report_mod  # noqa: E402
from ingan.bench.suite import BenchOptions, run_benchmark, write_outputs  # noqa: E402
from ingan.bench.timing import Settings  # noqa: E402
from ingan.errors import InganError  # noqa: E402
from ingan.sizes import parse_size  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "examples" / "hubble" / "ckpt.pt"
MARKERS = "cuda or gpu or tensorrt"
GPU_BACKENDS = ("tensorrt", "ort-tensorrt", "ort-cuda", "torch-fp32", "torch-fp16", "torch-bf16")
GPU_SETTINGS = Settings(warmup_seconds=0.2, iterations=20, duration_s=1.0, max_iterations=2000)
CPU_SETTINGS = Settings(warmup_iterations=1, warmup_seconds=None, iterations=3, duration_s=0.0, max_iterations=3)
SMOKE_SETTINGS = Settings(warmup_iterations=1, warmup_seconds=None, iterations=2, duration_s=0.0, max_iterations=2)
RESERVE_S = 15.0  # kept back for writing the reports


def pytest_command(repo: Path = REPO) -> list[str]:
    """The GPU-marked test run (an argv list, never a shell)."""
    return [sys.executable, "-m", "pytest", "-m", MARKERS, "-q", "-p", "no:cacheprovider", str(repo / "tests")]


def cuda_status() -> tuple[bool, str]:
    """(True, '') when a CUDA GPU is usable through cuda-python or torch; never imports torch first."""
    from ingan.runtime.cuda import cuda_device_status

    ok, why = cuda_device_status()
    if ok:
        return True, ""
    try:
        import torch
    except ImportError:
        return False, why
    return (True, "") if torch.cuda.is_available() else (False, f"{why}; torch sees no CUDA device either")


def make_logger(out_dir: Path) -> logging.Logger:
    logger = logging.getLogger("gpu_check")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for handler in (logging.FileHandler(out_dir / "gpu_check.log", encoding="utf-8"), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def export_models(checkpoint: Path, workdir: Path, sizes: list[tuple[int, int]],
                  say: Callable[[str], None]) -> list[Path]:
    """ingan-export CHECKPOINT --fp16 (engine auto) into `workdir`; the artifacts plus the checkpoint.

    The size range is widened to hold every benchmark size (the hubble example's trained
    range stops at 864x720, short of 1280x720).
    """
    from ingan.export.pipeline import ExportOptions, export_checkpoint, size_range
    from ingan.model.checkpoint import load_checkpoint

    default = size_range(load_checkpoint(checkpoint), ExportOptions(out_dir=workdir))
    max_size = (max([default.max[0], *(h for h, _w in sizes)]), max([default.max[1], *(w for _h, w in sizes)]))
    say(f"export size range {default.min[1]}x{default.min[0]} .. {max_size[1]}x{max_size[0]}")
    result = export_checkpoint(checkpoint, ExportOptions(out_dir=workdir, fp16=True, engine="auto", max_size=max_size),
                               progress=say)
    if result.engine_note:
        say(f"note: {result.engine_note}")
    return [*result.artifacts, checkpoint]


def run_tests(out_dir: Path, timeout_s: float, say: Callable[[str], None]) -> int:
    """pytest on the GPU-marked tests; returns its exit status (124 on timeout)."""
    command = pytest_command()
    say(f"running {' '.join(command[1:])} (timeout {timeout_s:.0f}s)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log_path = out_dir / "pytest.txt"
    with open(log_path, "w", encoding="utf-8") as fh:
        try:
            proc = subprocess.run(command, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=max(timeout_s, 1),
                                  env=env, check=False)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = 124
            fh.write(f"\ngpu_check: pytest stopped after {timeout_s:.0f}s\n")
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
    say(f"pytest exit status {rc}: {tail[0] if tail else ''}")
    return rc


def merge(first: dict[str, Any], second: dict[str, Any] | None) -> dict[str, Any]:
    """One report from two passes (GPU backends, then the CPU baseline)."""
    if second is None:
        return first
    merged = dict(first)
    labels = {m["label"] for m in first["models"]}
    merged["models"] = first["models"] + [m for m in second["models"] if m["label"] not in labels]
    keys = {c["key"] for c in first["cells"]}
    merged["cells"] = first["cells"] + [c for c in second["cells"] if c["key"] not in keys]
    merged["elapsed_s"] = round((first.get("elapsed_s") or 0) + (second.get("elapsed_s") or 0), 3)
    merged["settings"] = {**first["settings"], "cpu_baseline_settings": second["settings"]}
    return report_mod.check_report(merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder for bench.json/.md/.png, pytest.txt and gpu_check.log")
    parser.add_argument("--model", action="append", type=Path, default=[],
                        help="model to benchmark (repeatable); default: export --checkpoint")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="checkpoint to export and benchmark when no --model is given")
    parser.add_argument("--size", "--sizes", dest="sizes", default="640x360,1280x720",
                        help="WxH list, comma-separated (default: %(default)s)")
    parser.add_argument("--time-cap", type=float, default=420.0, help="total seconds (default: %(default)s)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="no GPU: run the same flow on CPU backends with tiny iteration counts")
    parser.add_argument("--no-tests", action="store_true", help="skip the pytest step")
    args = parser.parse_args(argv)

    started = time.perf_counter()

    def left() -> float:
        return args.time_cap - (time.perf_counter() - started)

    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not sizes:
        parser.error("--size: give at least one size")
    gpu, why = cuda_status()
    if not gpu and not args.cpu_smoke:
        print(f"gpu_check: no usable CUDA GPU ({why}); run on a GPU machine, or pass --cpu-smoke", file=sys.stderr)
        return 2
    out_dir = args.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        parser.error(f"{out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = make_logger(out_dir)
    say = log.info
    say(f"gpu_check: {'CUDA' if gpu else 'CPU smoke'} run, time cap {args.time_cap:.0f}s, sizes {args.sizes}")
    workdir: Path | None = None
    status = 0
    try:
        models = list(args.model)
        if not models:
            workdir = Path(tempfile.mkdtemp(prefix="ingan-gpu-check-"))
            say(f"exporting {args.checkpoint} into {workdir}")
            models = export_models(args.checkpoint, workdir, sizes, say)
        say("models: " + ", ".join(str(m) for m in models))
        test_rc = None
        if not args.no_tests:
            test_rc = run_tests(out_dir, min(180.0, max(left() * 0.35, 30.0)), say)
            if test_rc not in (0, 5):  # 5: no test selected (e.g. every GPU test deselected)
                status = 1
        command = ["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]
        if gpu and not args.cpu_smoke:
            say(f"benchmark, GPU backends ({left():.0f}s left)")
            report = run_benchmark(models, BenchOptions(sizes=sizes, backends=GPU_BACKENDS, device="cuda",
                                                        settings=GPU_SETTINGS, any_size=True,
                                                        time_budget_s=max(left() - RESERVE_S - 60, 5)),
                                   progress=say, command=command)
            baseline = None
            fp32_onnx = [m for m in models if m.suffix == ".onnx" and not m.stem.endswith("_fp16")]
            if fp32_onnx and left() > RESERVE_S + 10:
                say(f"benchmark, ONNX Runtime CPU baseline ({left():.0f}s left)")
                try:
                    baseline = run_benchmark(fp32_onnx, BenchOptions(
                        sizes=sizes, backends=["ort-cpu"], device="cpu", settings=CPU_SETTINGS,
                        time_budget_s=max(left() - RESERVE_S, 1)), progress=say, command=command)
                except InganError as exc:
                    say(f"CPU baseline not run: {exc}")
            report = merge(report, baseline)
        else:
            say("benchmark, CPU backends (smoke)")
            report = run_benchmark(models, BenchOptions(sizes=sizes, device="cpu", settings=SMOKE_SETTINGS,
                                                        time_budget_s=max(left() - RESERVE_S, 5)),
                                   progress=say, command=command)
        paths = write_outputs(report, out_dir, name="bench")
        say(report_mod.markdown_table(report["cells"]))
        for path in paths.values():
            if path is not None:
                say(f"wrote {path}")
        cells = report["cells"]
        failed = [c for c in cells if c["status"] == "failed"]
        for cell in failed:
            say(f"FAILED cell {cell['key']}: {cell['reason']}")
        for cell in cells:
            if cell["status"] == "skipped":
                say(f"skipped {cell['key']}: {cell['reason']}")
        if failed or not any(c["status"] == "ok" for c in cells):
            status = 1
        say(f"{'PASSED' if status == 0 else 'FAILED'}: {sum(c['status'] == 'ok' for c in cells)} cells measured, "
            f"{len(failed)} failed, tests {'not run' if test_rc is None else f'exit {test_rc}'}, "
            f"{time.perf_counter() - started:.0f}s")
    except InganError as exc:
        say(f"FAILED: {exc}")
        status = 1
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)
    return status


if __name__ == "__main__":
    sys.exit(main())
