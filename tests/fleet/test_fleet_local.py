"""Fleets in this process (no Ray): outputs, manifest, bad images, Ctrl-C, idempotent re-runs."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from testimages import synthetic_image
from ingan.fleet.fleet import FleetSpec, train_fleet
from ingan.fleet.inputs import discover
from ingan.fleet.job import FleetTraining, GroupJob, run_job
from ingan.model.checkpoint import load_checkpoint
from ingan.train.config import RunOptions

OPTIONS = RunOptions(device="cpu", save_every=2, monitor_every=1000, quiet=True)
SIZES = {"a": (48, 56), "b": (40, 52), "c": (56, 48)}


def make_images(folder: Path, bad: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        Image.fromarray(synthetic_image(h, w, seed=seed)).save(folder / f"{name}.png")
    if bad:
        (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        Image.fromarray(synthetic_image(20, 20)).save(folder / "small.png")  # below the 32 px crop
    return folder


def spec_for(folder: Path, out: Path, config, options: RunOptions = OPTIONS, export: bool = False,
             **changes) -> FleetSpec:
    training = FleetTraining(out, config, options, export=export)
    return dataclasses.replace(FleetSpec(tuple(discover([folder])), training, group_size=2), **changes)


def manifest(out: Path) -> dict:
    return json.loads((out / "fleet.json").read_text())["images"]


@pytest.fixture
def config(tiny_config):
    return tiny_config.with_overrides(iters=4)


@pytest.mark.slow
def test_a_fleet_trains_every_readable_image_and_reports_the_bad_one(tmp_path, config):
    out = tmp_path / "out"
    events = []
    summary = train_fleet(spec_for(make_images(tmp_path / "in", bad=True), out, config), events.append)
    assert summary.counts["finished"] == 3 and summary.counts["failed"] == 2 and summary.exit_code == 0
    failures = dict(summary.failures)
    assert "cannot read" in failures["bad"] and "too small to train on" in failures["small"]
    records = manifest(out)
    assert records["bad"]["status"] == "failed" and records["bad"]["attempts"] == 0
    for stem, (h, w) in SIZES.items():
        ckpt = load_checkpoint(out / stem / "ckpt.pt")  # an ordinary checkpoint: export/run/eval read it
        assert ckpt.iteration == 4 and ckpt.has_training_state and ckpt.payload["image_name"] == f"{stem}.png"
        record = records[stem]
        assert (record["status"], record["iteration"], record["iters"], record["started_at"]) == ("finished", 4, 4, 0)
        assert record["size"] == f"{w}x{h}" and set(record["losses"]) >= {"g_gan", "d_real"}
        assert record["train_seconds"] > 0
        assert (out / stem / "monitor_000004.png").exists()
    # Groups of up to 2, by size: a (56x48) with c (48x56), then b with small, which fails in
    # its group (too small for the crop) while b trains on; saves every 2 iterations.
    starts = [e.stems for e in events if e.kind == "start"]
    assert starts == [("a", "c"), ("b",)]
    assert [e.iteration for e in events if e.kind == "saved" and e.stems == ("b",)] == [2]
    assert summary.group_size == 2


@pytest.mark.slow
def test_ctrl_c_saves_the_group_and_a_rerun_resumes_then_skips(tmp_path, config, monkeypatch):
    from ingan.train.group import GroupTrainer

    images, out = make_images(tmp_path / "in"), tmp_path / "out"
    real_step = GroupTrainer.step

    def step_then_interrupt(self):
        result = real_step(self)
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(GroupTrainer, "step", step_then_interrupt)
    first = train_fleet(spec_for(images, out, config))
    monkeypatch.undo()
    assert first.exit_code == 130 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    records = manifest(out)
    assert [records[s]["status"] for s in "acb"] == ["partial", "partial", "pending"]
    assert load_checkpoint(out / "a" / "ckpt.pt").iteration == 2 and not (out / "b").exists()

    second = train_fleet(spec_for(images, out, config))
    assert second.exit_code == 0 and second.counts["finished"] == 3 and second.skipped == 0
    records = manifest(out)
    assert [records[s]["started_at"] for s in "acb"] == [2, 2, 0]  # resumed from the save, not restarted
    assert all(load_checkpoint(out / s / "ckpt.pt").iteration == 4 for s in "abc")

    stamps = {s: (out / s / "ckpt.pt").stat().st_mtime_ns for s in "abc"}
    monkeypatch.setattr("ingan.fleet.local.run_job", lambda *a: pytest.fail("a finished image was trained again"))
    third = train_fleet(spec_for(images, out, config))
    assert third.skipped == 3 and third.counts["finished"] == 3 and third.exit_code == 0
    assert stamps == {s: (out / s / "ckpt.pt").stat().st_mtime_ns for s in "abc"}


@pytest.mark.slow
def test_without_its_manifest_a_rerun_finds_the_finished_checkpoints(tmp_path, config):
    images, out = make_images(tmp_path / "in"), tmp_path / "out"
    train_fleet(spec_for(images, out, config))
    (out / "fleet.json").unlink()
    events = []
    again = train_fleet(spec_for(images, out, config), events.append)
    assert again.counts["finished"] == 3 and again.skipped == 0 and not events  # checked by the groups, none trained
    assert all(r["status"] == "finished" and r["iteration"] == 4 for r in manifest(out).values())


@pytest.mark.slow
def test_other_settings_are_refused_and_foreign_checkpoints_fail_alone(tmp_path, config):
    from ingan.errors import ConfigError

    images, out = make_images(tmp_path / "in"), tmp_path / "out"
    rarely = dataclasses.replace(OPTIONS, save_every=1000)  # only the final saves: a faster test
    short, longer = config.with_overrides(iters=1), config.with_overrides(iters=2)
    train_fleet(spec_for(images, out, short, options=rarely))
    with pytest.raises(ConfigError, match="belongs to another fleet: its iters is 1, this command's is 2"):
        train_fleet(spec_for(images, out, longer, options=rarely))
    (out / "fleet.json").unlink()
    (out / "b" / "ckpt.pt").unlink()
    summary = train_fleet(spec_for(images, out, longer, options=rarely))
    records = manifest(out)
    assert records["a"]["status"] == "failed" and "is not this fleet's run of 'a.png'" in records["a"]["error"]
    assert records["b"]["status"] == "finished" and load_checkpoint(out / "b" / "ckpt.pt").iteration == 2
    assert summary.counts["failed"] == 2

    forced = train_fleet(spec_for(images, out, longer, options=rarely, force=True))
    assert forced.counts["finished"] == 3 and all(r["started_at"] == 0 for r in manifest(out).values())


@pytest.mark.slow
def test_once_a_group_stops_at_the_time_budget_no_other_starts(tmp_path, config, monkeypatch):
    from ingan.train.budget import TimeBudget

    monkeypatch.setattr(TimeBudget, "should_stop", lambda self: True)  # the budget is used up after one step
    images, out = make_images(tmp_path / "in"), tmp_path / "out"
    budgeted = dataclasses.replace(OPTIONS, time_budget=600.0)
    summary = train_fleet(spec_for(images, out, config, options=budgeted))
    assert summary.exit_code == 0 and (summary.counts["partial"], summary.counts["pending"]) == (2, 1)
    records = manifest(out)
    assert [(records[s]["status"], records[s]["iteration"]) for s in "acb"] == [
        ("partial", 1), ("partial", 1), ("pending", 0)]


def test_a_group_past_the_time_budget_does_not_start(tmp_path, config):
    images = discover([make_images(tmp_path / "in")])
    job = GroupJob(tuple(images[:2]), FleetTraining(tmp_path / "out", config, OPTIONS, deadline=time.time() - 1))
    result = run_job(job)
    assert [o.status for o in result.outcomes] == ["pending", "pending"] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_default_group_is_one_on_a_cpu(tmp_path, config):
    summary = train_fleet(spec_for(make_images(tmp_path / "in"), tmp_path / "out", config.with_overrides(iters=1),
                                   group_size=None))
    assert summary.group_size == 1 and summary.counts["finished"] == 3


@pytest.mark.slow
def test_export_feeds_ingan_serve_and_is_done_once(tmp_path, config):
    pytest.importorskip("onnxruntime")
    from ingan.serve.catalog import scan

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(synthetic_image(48, 56)).save(folder / "beach.png")
    out = tmp_path / "out"
    summary = train_fleet(spec_for(folder, out, config, export=True))
    assert summary.counts["finished"] == 1, summary.failures
    record = manifest(out)["beach"]
    assert "model.onnx" in record["exported"] and (out / "beach" / "model.onnx").exists()
    catalog = scan([out])
    assert catalog.ids == ["beach"] and catalog.get("beach").available
    stamp = (out / "beach" / "model.onnx").stat().st_mtime_ns
    again = train_fleet(spec_for(folder, out, config, export=True))
    assert again.skipped == 1 and (out / "beach" / "model.onnx").stat().st_mtime_ns == stamp
