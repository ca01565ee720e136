"""benchmarks/readme_images.py: an ingan-demo folder -> the README's pictures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "readme_images.py"


def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(w * h)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _fake_demo(run: Path) -> None:
    _png(run / "input.png", 48, 40)
    _png(run / "retarget_wide_96x40.png", 96, 40)
    _png(run / "retarget_narrow_24x40.png", 24, 40)
    _png(run / "collage.png", 120, 100)
    _png(run / "quality" / "side_by_side.png", 200, 60)
    frames = [Image.new("RGB", (40, 30), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(run / "sweep.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    method = {"label": "InGAN", "swd": 0.05, "coherence": 0.2, "completeness": 0.3}
    report = {"results": [{"size_text": "96x40", "methods": {"ingan": method}}]}
    (run / "quality" / "quality.json").write_text(json.dumps(report))


def test_copies_the_demo_pictures_at_readme_sizes(tmp_path):
    run, images = tmp_path / "demo", tmp_path / "images"
    _fake_demo(run)
    done = subprocess.run([sys.executable, str(SCRIPT), str(run), "--images", str(images)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in images.iterdir())
    assert names == ["demo_collage.jpg", "demo_input.jpg", "demo_retarget_narrow_24x40.jpg",
                     "demo_retarget_wide_96x40.jpg", "demo_side_by_side.jpg", "demo_sweep.gif"]
    assert Image.open(images / "demo_collage.jpg").size == (60, 50)  # half size
    assert Image.open(images / "demo_retarget_wide_96x40.jpg").size == (96, 40)  # full size
    with Image.open(images / "demo_sweep.gif") as gif:
        assert gif.size == (20, 15) and gif.n_frames == 3 and gif.info["duration"] == 120
    assert "96x40" in done.stdout and "SWD 0.050" in done.stdout


def test_incomplete_folder_is_one_line_error_and_writes_nothing(tmp_path):
    run, images = tmp_path / "demo", tmp_path / "images"
    _fake_demo(run)
    (run / "sweep.gif").unlink()
    done = subprocess.run([sys.executable, str(SCRIPT), str(run), "--images", str(images)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "sweep.gif" in done.stderr and "ingan-demo" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not images.exists()
