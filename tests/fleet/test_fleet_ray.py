"""A fleet on a local Ray cluster (2 CPUs, 2 logical GPUs): Ctrl-C saves every task, a re-run
resumes, a killed task is retried and resumes from its last save, and a re-run skips every
finished image (issue 20's test)."""

from __future__ import annotations

import json
import os
import signal

import pytest
from PIL import Image

import ingan
from testimages import synthetic_image
from ingan.fleet.fleet import FleetSpec, train_fleet
from ingan.fleet.inputs import discover
from ingan.fleet.job import FleetTraining
from ingan.fleet.ray_runner import RayOptions
from ingan.model.checkpoint import load_checkpoint
from ingan.train.config import RunOptions

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ITERS, SAVE_EVERY = 40, 10


@pytest.fixture(scope="module")
def cluster():
    """A local cluster whose workers import this checkout (they inherit this environment)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(ingan.__file__)))
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "PYTHONPATH")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # tests only: production clusters keep Ray's token auth
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_ctrl_c_then_a_killed_task_resume_and_a_rerun_skips_all(tmp_path, tiny_config, cluster):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(4):
        Image.fromarray(synthetic_image(40 + 4 * seed, 52, seed=seed)).save(folder / f"img{seed}.png")
    out = tmp_path / "out"
    training = FleetTraining(out, tiny_config.with_overrides(iters=ITERS),
                             RunOptions(device="cpu", save_every=SAVE_EVERY, monitor_every=1000, quiet=True))
    spec = FleetSpec(tuple(discover([folder])), training, group_size=2,
                     ray=RayOptions(gpus_per_task=1, cpus_per_task=1, max_retries=2))

    # 1. Ctrl-C once both groups train and one has saved: every task saves after its current
    # step and stops.
    started, interrupted = set(), []

    def interrupt_once_both_groups_train(event):
        started.update([event.stems] if event.kind == "start" else [])
        if event.kind == "saved" and len(started) == 2 and not interrupted:
            interrupted.append(event.iteration)
            os.kill(os.getpid(), signal.SIGINT)

    first = train_fleet(spec, interrupt_once_both_groups_train)
    assert first.exit_code == 130 and first.counts["partial"] == 4, first
    stopped_at = {stem: load_checkpoint(out / stem / "ckpt.pt").iteration for stem in ("img0", "img1", "img2", "img3")}
    assert all(0 < it < ITERS for it in stopped_at.values()) and max(stopped_at.values()) >= SAVE_EVERY
    records = json.loads((out / "fleet.json").read_text())["images"]
    assert {stem: r["iteration"] for stem, r in records.items()} == stopped_at

    # 2. The same command resumes them; one task's worker is killed (kill -9) after its first
    # save of this run: Ray retries the task, which resumes from that save.
    killed: dict = {}

    def kill_after_its_first_save(event):
        if event.kind == "saved" and not killed:
            killed.update(stems=event.stems, iteration=event.iteration, pid=event.pid)
            os.kill(event.pid, signal.SIGKILL)  # the worker process, mid-run

    summary = train_fleet(spec, kill_after_its_first_save)
    assert summary.exit_code == 0 and summary.counts["finished"] == 4, summary
    assert killed, "no task was killed"
    records = json.loads((out / "fleet.json").read_text())["images"]
    for stem, record in records.items():
        ckpt = load_checkpoint(out / stem / "ckpt.pt")
        assert ckpt.iteration == ITERS and ckpt.has_training_state and ckpt.payload["image_name"] == f"{stem}.png"
        assert (record["status"], record["iteration"]) == ("finished", ITERS)
        if stem in killed["stems"]:
            # Retried and resumed from a save at or after the one seen before the kill: at most
            # one save interval of work was lost.
            assert record["attempts"] == 2 and killed["iteration"] <= record["started_at"] < ITERS, record
        else:
            assert (record["attempts"], record["started_at"]) == (1, stopped_at[stem]), record

    # 3. Once more: every image is finished, nothing runs.
    stamps = {stem: (out / stem / "ckpt.pt").stat().st_mtime_ns for stem in records}
    events: list = []
    again = train_fleet(spec, events.append)
    assert again.skipped == 4 and again.counts["finished"] == 4 and not events
    assert stamps == {stem: (out / stem / "ckpt.pt").stat().st_mtime_ns for stem in records}
