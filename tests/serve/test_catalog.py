"""Scanning MODELS into model ids: files, folders, choices between exports, and every refusal."""

from __future__ import annotations


import pytest

from ingan.errors import ConfigError
from ingan.metadata import sha256_of, sidecar_path
from ingan.serve.catalog import scan
from servetest import exported


def test_a_file_is_served_under_its_stem(tmp_path):
    model = exported(tmp_path / "beach.onnx")
    catalog = scan([model])
    (entry,) = catalog.entries
    assert (entry.id, entry.backend, entry.precision, entry.path) == ("beach", "onnxruntime", "fp32", str(model))
    assert entry.version == sha256_of(model)[:12]
    assert (entry.min_size, entry.max_size, entry.image_size) == ((16, 16), (96, 120), (40, 52))
    assert entry.describe() == {"id": "beach", "status": "available", "backend": "onnxruntime", "precision": "fp32",
                                "version": entry.version, "min_size": "16x16", "max_size": "120x96",
                                "image_size": "52x40", "warp": False, "image_input": False}
    assert catalog.notes == ()


def test_a_folder_serves_files_by_stem_and_subfolders_by_name(tmp_path):
    exported(tmp_path / "models" / "beach.onnx")
    exported(tmp_path / "models" / "forest" / "model.onnx")
    exported(tmp_path / "models" / "forest" / "model_fp16.onnx", precision="fp16")
    exported(tmp_path / "models" / ".hidden" / "model.onnx")
    exported(tmp_path / "models" / ".old.onnx")
    exported(tmp_path / "models" / "deep" / "deeper" / "model.onnx")  # only one level is read
    (tmp_path / "models" / "notes.txt").write_text("not a model")
    catalog = scan([tmp_path / "models"])
    assert catalog.ids == ["beach", "forest"]
    forest = catalog.get("forest")
    assert forest.precision == "fp32" and forest.path.endswith("model.onnx")  # CPU: FP32
    assert scan([tmp_path / "models"], gpu=True).get("forest").precision == "fp16"


def test_plans_are_chosen_on_gpus_and_onnx_on_cpus(tmp_path):
    exported(tmp_path / "m" / "photo.onnx")
    exported(tmp_path / "m" / "photo.plan", precision="fp16")
    assert scan([tmp_path / "m"]).get("photo").backend == "onnxruntime"
    assert scan([tmp_path / "m"], gpu=True).get("photo").backend == "tensorrt"


def test_a_plan_alone_on_a_cpu_server_is_unavailable_with_the_fix(tmp_path):
    exported(tmp_path / "m" / "photo.plan")
    exported(tmp_path / "m" / "other.onnx")
    catalog = scan([tmp_path / "m"])
    photo = catalog.get("photo")
    assert not photo.available and "--gpus-per-replica" in photo.problem and ".onnx" in photo.problem
    assert [e.id for e in catalog.available] == ["other"]
    assert any("'photo' is unavailable" in note for note in catalog.notes)
    assert photo.describe()["status"] == "unavailable" and "error" in photo.describe()


def test_a_damaged_or_missing_sidecar_makes_that_model_unavailable(tmp_path):
    good = exported(tmp_path / "m" / "good.onnx")
    sidecar_path(exported(tmp_path / "m" / "damaged.onnx")).write_text("{not json")
    sidecar_path(exported(tmp_path / "m" / "orphan.onnx")).unlink()
    catalog = scan([tmp_path / "m"])
    assert catalog.get("good").available and catalog.get("good").path == str(good)
    assert "not JSON" in catalog.get("damaged").problem
    assert "not found" in catalog.get("orphan").problem


def test_fp16_onnx_on_a_cpu_server_gets_a_notice(tmp_path):
    catalog = scan([exported(tmp_path / "half.onnx", precision="fp16")])
    assert catalog.get("half").available
    assert any("FP16" in note and "slower" in note for note in catalog.notes)


def test_checkpoints_in_a_folder_are_skipped_with_a_notice(tmp_path):
    exported(tmp_path / "m" / "a.onnx")
    (tmp_path / "m" / "ckpt.pt").write_bytes(b"checkpoint")
    catalog = scan([tmp_path / "m"])
    assert catalog.ids == ["a"] and any("ingan-export" in note for note in catalog.notes)


def test_the_same_id_from_two_files_is_refused(tmp_path):
    exported(tmp_path / "one" / "beach.onnx")
    exported(tmp_path / "two" / "beach.onnx")
    with pytest.raises(ConfigError, match="model id 'beach' is given twice.*rename one"):
        scan([tmp_path / "one", tmp_path / "two"])
    exported(tmp_path / "three" / "beach" / "model.onnx")
    exported(tmp_path / "three" / "beach.onnx")  # a stem and a folder name in one folder
    with pytest.raises(ConfigError, match="given twice"):
        scan([tmp_path / "three"])


def test_the_same_file_named_twice_is_one_model(tmp_path):
    model = exported(tmp_path / "m" / "beach.onnx")
    assert scan([tmp_path / "m", model]).ids == ["beach"]


@pytest.mark.parametrize("name", ["my photo.onnx", "-dash.onnx", "caf\u00e9.onnx"])
def test_ids_must_be_url_safe(tmp_path, name):
    with pytest.raises(ConfigError, match="not usable in a URL"):
        scan([exported(tmp_path / name)])


def test_paths_that_hold_no_models_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no exported models in"):
        scan([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="does not exist"):
        scan([tmp_path / "missing"])
    (tmp_path / "ckpt.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="export it first with ingan-export"):
        scan([tmp_path / "ckpt.pt"])
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not an exported model"):
        scan([tmp_path / "photo.png"])
    with pytest.raises(ConfigError, match="no MODELS given"):
        scan([])
