"""Atomic writes, and the clean-up of what a hard kill leaves behind."""

from __future__ import annotations

import os
import time

from ingan.fsutil import STALE_TEMP_SECONDS, atomic_path, remove_stale_temps


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_stale_temps_of_ours_are_removed_on_the_next_write(tmp_path):
    stale = tmp_path / ".model.onnx.ab3_xy9z.tmp"  # what a kill -9 during an export leaves
    fresh = tmp_path / ".model.onnx.q1w2e3r4.tmp"  # another writer, still working
    foreign = [tmp_path / ".bashrc.tmp", tmp_path / "notes.ab3_xy9z.tmp", tmp_path / ".x.TOOLONG1.tmp"]
    for path in (stale, fresh, *foreign):
        path.write_bytes(b"x" * 100)
        _age(path, STALE_TEMP_SECONDS + 60)
    _age(fresh, 60)
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / ".ckpt.pt.abcdefgh.tmp"
    nested.write_bytes(b"x")
    _age(nested, STALE_TEMP_SECONDS + 60)

    with atomic_path(tmp_path / "ckpt.pt") as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists()
    assert fresh.exists() and nested.exists() and all(p.exists() for p in foreign)
    assert (tmp_path / "ckpt.pt").read_bytes() == b"new"


def test_remove_stale_temps_reports_what_it_removed(tmp_path):
    path = tmp_path / ".a.png.zzzzzzzz.tmp"
    path.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == []
    assert remove_stale_temps(tmp_path, older_than=-1) == [path]
    assert remove_stale_temps(tmp_path / "missing") == []
