"""ingan.train.speed.measure_training_speed and the GPU script built on it, on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingan.train.speed import SpeedOptions, images_rate_gain, measure_training_speed

REPO = Path(__file__).resolve().parents[2]
TINY = dict(preset="quick", device="cpu", crop_size=32, warmup_steps=1, steps=2)


@pytest.mark.slow
def test_measures_a_single_image_and_a_group(monkeypatch):
    single = measure_training_speed(SpeedOptions(**TINY, count_ops=True))
    assert single.error is None and single.images == 1 and single.steps == 2
    assert single.it_per_s > 0 and single.images_it_per_s == single.it_per_s and single.losses_finite
    # past the quick preset's curriculum (200) and inverse start (500): the full size range
    assert single.start_iteration == 501 and single.crop_size == 32
    assert single.ops_per_image_step > 1000 and single.kernels_per_image_step is None  # no CUDA here

    group = measure_training_speed(SpeedOptions(**TINY, group=3, count_ops=True))
    assert group.error is None and group.images == 3
    assert group.images_it_per_s == pytest.approx(3 * group.it_per_s)
    # One grouped step dispatches about the ops of one image's step, for three images.
    assert group.ops_per_image_step < 0.6 * single.ops_per_image_step
    assert images_rate_gain(group, single) == pytest.approx(group.images_it_per_s / single.images_it_per_s)


@pytest.mark.slow
def test_a_failing_variant_is_reported_not_raised():
    report = measure_training_speed(SpeedOptions(**TINY, cuda_graphs=True))
    assert report.error.startswith("DeviceError: CUDA graphs need a CUDA device")
    assert report.it_per_s == 0 and images_rate_gain(report, report) is None


@pytest.mark.slow
def test_the_time_cap_ends_the_timed_steps_early():
    report = measure_training_speed(SpeedOptions(**{**TINY, "steps": 50}, max_seconds=0.0))
    assert report.steps == 1 and report.error is None


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    # One thread: the test machine's 2 cores are shared, and contended OpenMP threads spin.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)


# What the GPU machine has: these distributions and what they require (torch pulls sympy...).
BARE = ("torch", "numpy", "pillow", "click", "tqdm", "onnx", "onnxruntime")


def _requirements(names) -> set[str]:
    import re
    from importlib.metadata import PackageNotFoundError, requires

    found, todo = set(), [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            todo += [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requires(name) or []]
        except PackageNotFoundError:
            pass
    return found


# torch.cuda imports cuda-bindings when it is installed (optional, here for the runtime's CUDA code).
BARE_MACHINE = _requirements(BARE) | {"cuda-bindings", None}


def _distribution(module: str) -> str | None:
    """The distribution providing a top-level module (None: ours, or generated/private)."""
    from importlib.metadata import packages_distributions

    if module in ("ingan", "__main__") or module.startswith("_"):
        return None
    dists = packages_distributions().get(module)
    return dists[0].lower().replace("_", "-") if dists else None  # None: built in or generated


IMPORTS = """
import json, runpy, sys
{setup}
modules = sorted({{name.split('.')[0] for name in sys.modules}} - set(sys.stdlib_module_names))
print('MODULES=' + json.dumps(modules))
"""


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu_train_speed.py --device cpu --quick: the flow a GPU loan runs, with
    the CUDA-only variants reported as skipped; it imports nothing the bare GPU machine
    lacks (torch, numpy, Pillow, click, tqdm and what torch itself imports)."""
    out = tmp_path / "out"
    script = (f"sys.argv = ['gpu_train_speed.py', {str(out)!r}, '--device', 'cpu', '--quick']\n"
              "try:\n    runpy.run_path('benchmarks/gpu_train_speed.py', run_name='__main__')\n"
              "except SystemExit as exc:\n    print('EXIT=' + str(exc.code))")
    done = _run(IMPORTS.format(setup=script))
    assert done.returncode == 0 and "EXIT=0" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    used = set(json.loads(done.stdout.split("MODULES=")[1].splitlines()[0]))
    assert not {name for name in used if _distribution(name) not in BARE_MACHINE}

    assert sorted(p.name for p in out.iterdir()) == ["gpu_train_speed.json", "gpu_train_speed.md"]
    result = json.loads((out / "gpu_train_speed.json").read_text())
    assert [c["ok"] for c in result["checks"]] == [True]
    status = {row["name"]: row["status"] for row in result["variants"]}
    assert status == {
        "single eager": "ok", "single graphs, size step 32": "skipped: needs CUDA",
        "single graphs, size step 128": "skipped: needs CUDA", "group 1 eager": "ok", "group 2 eager": "ok",
        "group 2 graphs, size step 128": "skipped: needs CUDA", "group 2 eager, cuDNN off": "skipped: needs CUDA",
    }
    rows = {row["name"]: row for row in result["variants"]}
    assert rows["group 2 eager"]["report"]["images"] == 2 and rows["group 2 eager"]["vs_single_eager"] > 0
    assert rows["single eager"]["report"]["ops_per_image_step"] > 0
    table = (out / "gpu_train_speed.md").read_text()
    assert "| group 2 eager |" in table and "skipped: needs CUDA" in table


@pytest.mark.slow
def test_gpu_script_skips_what_would_start_after_its_time_cap(tmp_path):
    out = tmp_path / "out"
    done = _run("import runpy, sys; sys.argv = sys.argv[1:]; "
                "runpy.run_path('benchmarks/gpu_train_speed.py', run_name='__main__')",
                "gpu_train_speed.py", str(out), "--device", "cpu", "--quick", "--skip-checks",
                "--total-seconds", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "gpu_train_speed.json").read_text())
    assert result["checks"] == []
    assert {row["status"].split(":")[0] for row in result["variants"]} == {"skipped"}
    assert any("s of the 0 s cap left" in row["status"] for row in result["variants"])
