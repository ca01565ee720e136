"""benchmarks/gpu_train_graphs.py, the one-call GPU training run, in its CPU dry-run mode.

On CPU it probes eager speed only (graphs are CUDA-only), trains, scores and splits the
checkpoint: the same flow a GPU loan runs, so a broken script is caught here, not there.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cpu_dry_run_trains_scores_and_splits(tmp_path, image_file):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_train_graphs.py"), str(out), "--device", "cpu",
           "--preset", "quick", "--crop-size", "32", "--image", str(image_file), "--init-from", "none",
           "--iters", "12", "--total-seconds", "240", "--reserve-seconds", "60", "--probe-steps", "2",
           "--skip-tests"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "gpu_train_graphs.json").read_text())
    assert [row["cuda_graphs"] for row in summary["speed_probe"]] == [False]
    assert summary["speed_probe"][0]["it_per_s"] > 0
    assert "--cuda-graphs" not in summary["train_command"] and "--crop-size 32" in summary["train_command"]
    assert summary["checkpoint"]["iteration"] == summary["checkpoint"]["iters_planned"] == 12
    assert all((out / part).is_file() for part in summary["checkpoint"]["parts"])
    # 2x wider and 0.5x narrower than the 56x48 image, InGAN and both baselines scored.
    assert set(summary["eval"]["swd"]) == {"112x48", "28x48"}
    assert set(summary["eval"]["swd"]["112x48"]) == {"ingan", "bicubic", "centre_crop"}
    assert (out / "quality" / "quality.md").is_file() and (out / "monitor_final.png").is_file()
