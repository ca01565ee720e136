"""OUT/fleet.json: written atomically, read back, and the owner of its output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingan.errors import ConfigError
from ingan.fleet.inputs import FleetImage
from ingan.fleet.manifest import FORMAT, ImageRecord, Manifest, fleet_settings


def settings(tiny_config, **changes):
    return fleet_settings(tiny_config.with_overrides(**changes).to_dict(), 1024)


def test_round_trip_keeps_every_field(tmp_path, tiny_config):
    manifest = Manifest(tmp_path / "fleet.json", settings(tiny_config))
    manifest.images["a"] = ImageRecord(source="/a.png", status="finished", iteration=8, iters=8,
                                       losses={"g_gan": 0.5}, train_seconds=1.5, started_at=4, attempts=2,
                                       size="56x48", exported=["model.onnx"])
    manifest.images["b"] = ImageRecord(source="/b.png", status="failed", error="cannot read it")
    manifest.write()
    data = json.loads((tmp_path / "fleet.json").read_text())
    assert data["format"] == FORMAT and data["counts"]["finished"] == 1 and data["counts"]["failed"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed
    again = Manifest.read(tmp_path / "fleet.json")
    assert again.images == manifest.images and again.settings == manifest.settings
    again.check_same_fleet(settings(tiny_config), [FleetImage("a", Path("/a.png"))])


def test_no_manifest_is_none_and_a_foreign_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "fleet.json"
    assert Manifest.read(path) is None
    for text, message in (("{not json", "is not an ingan fleet manifest"),
                          ('{"format": "something else"}', "is not an ingan fleet manifest"),
                          (json.dumps({"format": FORMAT, "format_version": 99}), "format version 99"),
                          (json.dumps({"format": FORMAT, "format_version": 1, "images": {"a": {"status": "odd"}},
                                       "settings": {}}), "damaged fleet manifest")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as caught:
            Manifest.read(path)
        assert "--force" in str(caught.value) and "\n" not in str(caught.value)


def test_another_fleets_settings_or_images_are_refused(tmp_path, tiny_config):
    manifest = Manifest(tmp_path / "fleet.json", settings(tiny_config))
    manifest.images["a"] = ImageRecord(source="/photos/a.png")
    with pytest.raises(ConfigError, match="another fleet: its iters is 8, this command's is 9"):
        manifest.check_same_fleet(settings(tiny_config, iters=9), [])
    with pytest.raises(ConfigError, match="its generator.base_channels is 4, this command's is 8"):
        manifest.check_same_fleet(settings(tiny_config, base_channels=8), [])
    with pytest.raises(ConfigError, match="holds another fleet's image \\('/photos/a.png'"):
        manifest.check_same_fleet(settings(tiny_config), [FleetImage("a", Path("/elsewhere/a.png"))])
    # New images may join the fleet.
    manifest.check_same_fleet(settings(tiny_config), [FleetImage("b", Path("/photos/b.png"))])
