"""Every command whose heavy dependency is missing ends in one line naming the extra, and a
missing file is reported before any heavy import (fast)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Runs a command's main() in a fresh interpreter where `blocked` cannot be imported, the way a
# venv without that package behaves (find_spec and import both fail).
HIDE = textwrap.dedent("""
    import importlib.abc, sys
    blocked = set(sys.argv[1].split(","))
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked or name in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Hide())
    module = __import__(sys.argv[2], fromlist=["main"])
    sys.argv = [sys.argv[2]] + sys.argv[3:]
    module.main()
""")


def run_without(blocked: str, module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE, blocked, module, *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module, args, extra", [
    ("ingan.train.cli", ["{image}", "--preset", "quick"], "ingan[train]"),
    ("ingan.export.cli", ["{ckpt}"], "ingan[export]"),
    ("ingan.quality.cli", ["{ckpt}", "--size", "64x40"], "ingan[train]"),
    ("ingan.demo", ["--checkpoint", "{ckpt}", "-o", "{out}"], "ingan[demo]"),
    ("ingan.bench.cli", ["{ckpt}", "--size", "52x40"], "ingan[train]"),
    ("ingan.runtime.cli", ["{ckpt}", "--size", "52x40", "-o", "{out}/x.png"], "ingan[train]"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("ingan.") else None)
def test_without_torch_each_command_says_which_extra(module, args, extra, tiny_checkpoint, image_file, tmp_path):
    argv = [a.format(image=image_file, ckpt=tiny_checkpoint, out=tmp_path / "out") for a in args]
    done = run_without("torch", module, *argv)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and f"pip install '{extra}'" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_without_onnxruntime_a_serving_box_is_sent_to_the_small_extra(default_export, tmp_path):
    out, _ = default_export
    done = run_without("onnxruntime", "ingan.runtime.cli", out / "model.onnx", "--size", "52x40",
                       "-o", tmp_path / "x.png")
    assert done.returncode == 1 and "pip install 'ingan[onnx]'" in done.stderr, done.stderr
    assert "ingan[export]" not in done.stderr  # never sent to an extra that pulls torch


def test_export_without_onnx_names_the_export_extra(tiny_checkpoint, tmp_path):
    done = run_without("onnx,onnxscript", "ingan.export.cli", tiny_checkpoint, "-o", tmp_path / "o")
    assert done.returncode == 1 and "needs the Python package 'onnx'" in done.stderr
    assert "pip install 'ingan[export]'" in done.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("module, args", [
    ("ingan.train.cli", ["{missing}.png"]),
    ("ingan.train.cli", ["--resume", "{missing}.pt"]),
    ("ingan.export.cli", ["{missing}.pt"]),
    ("ingan.quality.cli", ["{missing}.pt", "--size", "64x40"]),
    ("ingan.runtime.cli", ["{missing}.onnx", "--size", "64x40"]),
    ("ingan.bench.cli", ["{missing}.onnx"]),
    ("ingan.demo", ["--checkpoint", "{missing}.pt"]),
])
def test_a_missing_file_is_reported_before_any_heavy_import(module, args, tmp_path):
    """torch is blocked: reaching an `import torch` would print a different error."""
    argv = [a.format(missing=tmp_path / "missing") for a in args]
    done = run_without("torch,onnx,onnxruntime,tensorrt", module, *argv)
    assert done.returncode == 1, done.stderr
    assert ("does not exist" in done.stderr or "not found" in done.stderr), done.stderr
    assert "needs the Python package" not in done.stderr  # so no heavy import was reached
