#!/usr/bin/env python3
"""Measure a CPU serving box: `pip install "ingan[onnx]"` into a fresh venv, then its footprint and
the start-up of `ingan-run model.onnx --size 64x64` as a whole process.

    python benchmarks/serving_box.py OUT_DIR [--model model.onnx] [--runs 7]

1. Creates a virtual environment in a temporary folder and installs this checkout with the
   `onnx` extra (no torch), from PyPI for the dependencies.
2. Records site-packages size, the largest installed distributions, and that `torch`,
   `onnx` and `tensorrt` are absent.
3. Exports examples/hubble/ckpt.pt with this (the calling) environment, unless --model is
   given (the serving box itself cannot export: it has no torch).
4. Times, in the serving venv: the whole `ingan-run` process (median of --runs), and its
   parts in one process (imports, ONNX Runtime session, first request at 64x64).
5. Writes serving_box.json and serving_box.md into OUT_DIR.

Documented in docs/runtime.md ("Serving box"); results under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PARTS = """
import json, time
t0 = time.perf_counter()
import ingan.runtime
import onnxruntime
t1 = time.perf_counter()
runner = ingan.runtime.load({model!r}, device="cpu")
t2 = time.perf_counter()
runner.retarget((64, 64))
t3 = time.perf_counter()
print(json.dumps({{"imports_s": t1 - t0, "session_s": t2 - t1, "first_request_s": t3 - t2}}))
"""


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[arg-type]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, help="an exported .onnx (default: export the bundled example)")
    parser.add_argument("--runs", type=int, default=7, help="whole-process runs to time (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ingan-serving-box-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            print("exporting the bundled example (calling environment) ...", file=sys.stderr)
            run([sys.executable, "-m", "ingan.export", str(REPO / "examples/hubble/ckpt.pt"), "-o",
                 str(work / "model"), "-q"])
            model = work / "model" / "model.onnx"

        venv = work / "venv"
        print("creating the serving venv and installing ingan[onnx] ...", file=sys.stderr)
        started = time.perf_counter()
        run([sys.executable, "-m", "venv", str(venv)])
        python = venv / "bin" / "python"
        run([str(python), "-m", "pip", "install", "-q", f"{REPO}[onnx]"])
        install_s = time.perf_counter() - started
        site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
        sizes = {}
        for entry in site.iterdir():
            if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__")):
                sizes[entry.name] = du(entry)
        absent = {}
        for module in ("torch", "onnx", "tensorrt", "matplotlib"):
            probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
            absent[module] = probe.returncode != 0

        print("timing ingan-run ...", file=sys.stderr)
        ingan_run = venv / "bin" / "ingan-run"
        out_png = work / "x.png"
        cmd = [str(ingan_run), str(model), "--size", "64x64", "--device", "cpu", "-q", "-o", str(out_png)]
        run(cmd)  # warm the page cache once
        wall = []
        for _ in range(args.runs):
            t = time.perf_counter()
            run(cmd)
            wall.append(time.perf_counter() - t)
        parts = [json.loads(run([str(python), "-c", PARTS.format(model=str(model))]).stdout)
                 for _ in range(3)]
        torch_import = None
        if shutil.which(sys.executable):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
            torch_import = time.perf_counter() - t if done.returncode == 0 else None

    total = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
    result = {
        "command": "python benchmarks/serving_box.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "load_average": os.getloadavg()},
        "install_s": round(install_s, 1),
        "site_packages_mb": round(total / 2**20, 1),
        "largest_mb": {name: round(size / 2**20, 1) for name, size in largest},
        "absent": absent,
        "ingan_run_process_s": {"median": round(statistics.median(wall), 3), "min": round(min(wall), 3),
                                "runs": len(wall)},
        "parts_s": {k: round(statistics.median(p[k] for p in parts), 3) for k in parts[0]},
        "import_torch_s_for_comparison": round(torch_import, 3) if torch_import else None,
    }
    (args.out / "serving_box.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Serving box: `pip install \"ingan[onnx]\"` (no torch)",
        "",
        f"Command: `{result['command']}` ({result['date']}; {result['machine']['cores']} cores, load average "
        f"{', '.join(f'{v:.1f}' for v in result['machine']['load_average'])} during the run).",
        "",
        f"- site-packages: **{result['site_packages_mb']} MB** (largest: "
        + ", ".join(f"{k} {v} MB" for k, v in result["largest_mb"].items()) + ")",
        "- not installed: " + ", ".join(k for k, v in absent.items() if v),
        f"- `ingan-run model.onnx --size 64x64` as a whole process: median **{result['ingan_run_process_s']['median']} s**"
        f" (min {result['ingan_run_process_s']['min']} s, {len(wall)} runs)",
        "- in one process: imports {imports_s} s, ONNX Runtime session {session_s} s, first request {first_request_s} s"
        .format(**result["parts_s"]),
    ]
    if result["import_torch_s_for_comparison"]:
        lines.append(f"- for comparison, `import torch` alone (calling environment): "
                     f"{result['import_torch_s_for_comparison']} s")
    (args.out / "serving_box.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
