"""The runner contract: every backend on this machine answers the same requests alike."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import ingan.runtime
from ingan.errors import ConfigError, InganError
from ingan.metadata import MetadataError, sidecar_path

SIZES = [(40, 52), (17, 33), (61, 101), (88, 16)]


@pytest.fixture(scope="module")
def models(default_export, tiny_checkpoint):
    out, _ = default_export
    return {"onnx": out / "model.onnx", "onnx_fp16": out / "model_fp16.onnx", "pt": tiny_checkpoint}


@pytest.mark.slow
def test_every_available_backend_gives_the_same_images(models):
    reference = ingan.runtime.load(models["pt"])
    assert reference.backend == "pytorch" and reference.device == "cpu"
    runners = [ingan.runtime.load(models["onnx"]), ingan.runtime.load(models["onnx_fp16"])]
    # A TensorRT engine joins the comparison wherever one could be built (GPU + TensorRT).
    for runner in runners:
        assert runner.backend == "onnxruntime"
        for size in SIZES:
            expected = reference.retarget(size)
            got = runner.retarget(size)
            assert got.shape == (*size, 3) and got.dtype == np.uint8
            tolerance = 1 if runner.metadata.precision == "fp32" else 3
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance, (runner, size)
            assert runner.last_timing is not None and runner.last_timing.seconds > 0
        runner.close()
    reference.close()


@pytest.mark.slow
def test_pytorch_backend_range_matches_export_defaults(models, tiny_checkpoint):
    from ingan.export.pipeline import ExportOptions, size_range
    from ingan.model.checkpoint import load_checkpoint

    with ingan.runtime.load(models["pt"]) as runner:
        sizes = size_range(load_checkpoint(tiny_checkpoint), ExportOptions(out_dir=tiny_checkpoint.parent))
        assert runner.min_size == sizes.min and runner.max_size == sizes.max
        assert runner.image_size == (40, 52)


def test_importing_and_running_onnx_never_imports_torch(models):
    code = (
        "import sys, ingan.runtime\n"
        "assert 'onnxruntime' not in sys.modules, 'backend imported too early'\n"
        f"r = ingan.runtime.load({str(models['onnx'])!r})\n"
        "img = r.retarget((33, 47))\n"
        "assert img.shape == (33, 47, 3)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_concurrent_requests_are_safe(models):
    runner = ingan.runtime.load(models["onnx"])
    expected = {size: runner.retarget(size) for size in SIZES}
    results: list[tuple[tuple[int, int], np.ndarray]] = []

    def work(size):
        for _ in range(3):
            results.append((size, runner.retarget(size)))

    threads = [threading.Thread(target=work, args=(s,)) for s in SIZES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and all(np.array_equal(img, expected[s]) for s, img in results)


def test_size_outside_range_is_refused_before_running(models):
    with ingan.runtime.load(models["onnx"]) as runner:
        with pytest.raises(ConfigError, match=r"outside this model's range 16x16 \.\. 120x96.*re-export"):
            runner.retarget((200, 40))
        with pytest.raises(ConfigError, match="must be positive"):
            runner.retarget((0, 40))
        assert runner.last_timing is None  # nothing ran


def test_onnx_runtime_failures_are_one_line_errors(models):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    with ingan.runtime.load(models["onnx"]) as runner:
        def fail(*args, **kwargs):
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer\nmore")

        runner.session.run = fail
        with pytest.raises(InganError, match=r"ONNX Runtime failed at 52x40 \(\[ONNXRuntimeError\].*buffer\); "
                                             r"for an allocation failure pick a smaller size"):
            runner.retarget((40, 52))


def test_warp_and_image_arguments_must_fit_the_model(models):
    with ingan.runtime.load(models["onnx"]) as runner:
        with pytest.raises(ConfigError, match="exported without --warp"):
            runner.retarget((40, 52), homography=np.eye(3))
        with pytest.raises(ConfigError, match="baked in"):
            runner.retarget((40, 52), image=np.zeros((40, 52, 3), np.uint8))


def test_closed_runner(models):
    runner = ingan.runtime.load(models["onnx"])
    runner.close()
    runner.close()  # idempotent
    with pytest.raises(InganError, match="closed"):
        runner.retarget((40, 52))


def test_pytorch_backend_warps(models):
    from ingan.runtime.render import top_shift_homography_np

    with ingan.runtime.load(models["pt"]) as runner:
        plain = runner.retarget((40, 52))
        warped = runner.retarget((40, 52), homography=top_shift_homography_np(-0.4, 0.4))
    assert warped.shape == plain.shape and not np.array_equal(warped, plain)


@pytest.mark.parametrize(
    "name, backend, message",
    [("missing.onnx", None, "does not exist"), ("model.xyz", None, "cannot tell the model type"),
     ("model.onnx", "tensorrt", "cannot run a '.onnx' file"), ("model.onnx", "magic", "unknown backend")],
)
def test_loader_errors(models, tmp_path, name, backend, message):
    path = tmp_path / name
    if name != "missing.onnx":
        path.write_bytes(models["onnx"].read_bytes())
    with pytest.raises(InganError, match=message):
        ingan.runtime.load(path, backend)


def test_folder_is_not_a_model(tmp_path):
    with pytest.raises(InganError, match="not a file"):
        ingan.runtime.load(tmp_path)


def _copy_model(models, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(models["onnx"].read_bytes())
    meta = json.loads(sidecar_path(models["onnx"]).read_text())
    meta["artifact"] = "m.onnx"
    sidecar_path(model).write_text(json.dumps(meta))
    return model, meta


@pytest.mark.parametrize("edit, message", [
    ({"max_size": "big"}, "max_size must be"),
    ({"min_size": {"width": 0, "height": 0}}, "min_size must be"),
    ({"training_image_size": [40, 52]}, "training_image_size must be"),
    ({"output_format": "png"}, "output_format must be"),
    ({"image_input": True}, "the sidecar does not belong to this model"),
    ({"warp": True}, "the sidecar does not belong to this model"),
])
def test_edited_sidecar_is_refused_on_load(models, tmp_path, edit, message):
    model, meta = _copy_model(models, tmp_path)
    sidecar_path(model).write_text(json.dumps({**meta, **edit}))
    with pytest.raises(MetadataError, match=message):
        ingan.runtime.load(model)


def test_missing_corrupt_or_foreign_metadata(models, tmp_path):
    model, meta = _copy_model(models, tmp_path)
    ingan.runtime.load(model).close()  # the copy itself is fine

    sidecar_path(model).write_text("{not json")
    with pytest.raises(MetadataError, match="not JSON"):
        ingan.runtime.load(model)
    sidecar_path(model).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(MetadataError, match="upgrade ingan"):
        ingan.runtime.load(model)
    sidecar_path(model).unlink()
    with pytest.raises(MetadataError, match="not found"):
        ingan.runtime.load(model)


def test_truncated_or_replaced_model_file(models, tmp_path):
    model, _ = _copy_model(models, tmp_path)
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(MetadataError, match="checksum differs"):
        ingan.runtime.load(model)
    model.write_bytes(b"")
    with pytest.raises(MetadataError, match="empty"):
        ingan.runtime.load(model)


def test_corrupt_onnx_with_matching_metadata_is_a_clear_error(models, tmp_path):
    from ingan.metadata import sha256_of

    model, meta = _copy_model(models, tmp_path)
    model.write_bytes(b"\x08\x01garbage that is not a protobuf model")
    sidecar_path(model).write_text(json.dumps({**meta, "artifact_sha256": sha256_of(model)}))
    with pytest.raises(InganError, match="ONNX Runtime cannot load"):
        ingan.runtime.load(model)


def test_unavailable_provider_is_named(models):
    with pytest.raises(InganError, match="not available here"):
        ingan.runtime.load(models["onnx"], providers=["tensorrt"])
    with pytest.raises(InganError, match="onnxruntime-gpu"):
        ingan.runtime.load(models["onnx"], device="cuda")


def test_provider_and_device_that_contradict_are_refused(tmp_path):
    from ingan.runtime.backends.ort import choose_providers

    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(InganError, match="--device cuda contradicts --provider cpu; drop one"):
        choose_providers(available, ["cpu"], "cuda", tmp_path)
    with pytest.raises(InganError, match="--device cpu contradicts --provider cuda"):
        choose_providers(available, ["cuda"], "cpu", tmp_path)
    assert choose_providers(available, ["cuda"], "cuda:1", tmp_path) == [("CUDAExecutionProvider", {"device_id": 1}),
                                                                         "CPUExecutionProvider"]
    assert choose_providers(available, ["cuda"], "auto", tmp_path) == available
    assert choose_providers(available, ["cpu"], "cpu", tmp_path) == ["CPUExecutionProvider"]
    assert choose_providers(available, ["cpu"], None, tmp_path) == ["CPUExecutionProvider"]
    assert choose_providers(available, ["cpu"], "auto", tmp_path) == ["CPUExecutionProvider"]
