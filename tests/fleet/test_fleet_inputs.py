"""Which images a fleet trains (files, folders, globs) and which train together."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingan.errors import ConfigError, ImageError
from ingan.fleet.inputs import FleetImage, GroupCandidate, discover, plan_groups, wants_many


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def stems(images) -> list[str]:
    return [image.stem for image in images]


def test_a_folder_gives_its_image_files_sorted_without_hidden_or_other_files(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "sub/c.png"):
        touch(tmp_path / name)
    images = discover([tmp_path])
    assert stems(images) == ["a", "b"]  # no recursion, suffixes case-insensitive
    assert all(image.path.is_absolute() for image in images)


def test_files_globs_and_folders_mix_and_one_file_counts_once(tmp_path, monkeypatch):
    touch(tmp_path / "photos" / "x.png")
    touch(tmp_path / "photos" / "deep" / "y.jpg")
    touch(tmp_path / "z.weird")
    monkeypatch.chdir(tmp_path)
    # A quoted pattern is expanded here, ** recursively; a named file is taken whatever its suffix.
    images = discover(["photos/**/*.*", "z.weird", "photos", Path("photos/x.png")])
    assert stems(images) == ["y", "x", "z"]
    assert images[2] == FleetImage("z", (tmp_path / "z.weird").resolve())


@pytest.mark.parametrize("make, argument, message", [
    (lambda d: (d / "empty").mkdir(), "empty", "holds no image files"),
    (lambda d: touch(d / "a.txt"), "*.png", "matches no image files"),
    (lambda d: None, "missing.png", "image 'missing.png' does not exist"),
])
def test_nothing_to_train_is_a_one_line_error(tmp_path, monkeypatch, make, argument, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(ImageError, match=message):
        discover([argument])
    with pytest.raises(ImageError, match="no images given"):
        discover([])


def test_duplicate_stems_are_refused_before_any_work(tmp_path):
    a, b = touch(tmp_path / "one" / "beach.png"), touch(tmp_path / "two" / "Beach.jpg")
    with pytest.raises(ConfigError, match="would both train into 'Beach/'.*rename one"):
        discover([a, b])
    with pytest.raises(ConfigError, match="the name of the fleet's manifest"):
        discover([touch(tmp_path / "fleet.json.png")])


def test_unsafe_stems_become_safe_folder_names(tmp_path):
    (image,) = discover([touch(tmp_path / "..png")])
    assert image.stem == "image"  # safe_folder_name's fallback for a name of dots


def test_what_makes_a_fleet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "a.png")
    assert not wants_many(["a.png"]) and not wants_many(["missing.png"])
    assert wants_many(["a.png", "b.png"]) and wants_many(["."]) and wants_many(["*.png"])


def _candidate(stem: str, iteration: int = 0, pixels: int = 0) -> GroupCandidate:
    return GroupCandidate(FleetImage(stem, Path(f"/{stem}.png")), iteration, pixels)


def test_groups_share_an_iteration_and_hold_images_of_similar_size():
    candidates = [_candidate("small", pixels=10), _candidate("huge", pixels=1000), _candidate("mid", pixels=100),
                  _candidate("mid2", pixels=100), _candidate("resumed", 40, 5), _candidate("resumed2", 40, 7)]
    groups = [[image.stem for image in group] for group in plan_groups(candidates, 2)]
    # The furthest along first; then by size, largest first, ties by name.
    assert groups == [["resumed2", "resumed"], ["huge", "mid"], ["mid2", "small"]]
    assert [len(g) for g in plan_groups(candidates, 4)] == [2, 4]
    assert plan_groups([], 3) == []
    with pytest.raises(ValueError):
        plan_groups(candidates, 0)
