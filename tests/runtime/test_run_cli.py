"""ingan-run on the command line: outputs, collage, sweep, timing, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ingan
import ingan.runtime
from ingan.collage import grid
from ingan.runtime import render
from ingan.runtime.cli import main
from clitest import one_line_error

# The tiny export: training image 40x52 (h, w); range 16x16 .. 120x96 (w x h).
IMAGE_HW = (40, 52)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def onnx_model(default_export):
    out, _ = default_export
    return out / "model.onnx"


@pytest.fixture
def model_copy(onnx_model, tmp_path):
    """A private copy of model.onnx + its sidecar, to break."""
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(onnx_model, folder / "model.onnx")
    shutil.copy(onnx_model.with_name("model.onnx.json"), folder / "model.onnx.json")
    return folder / "model.onnx"


def load_png(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# ---------------------------------------------------------------------------- outputs
def test_help():
    result = run("--help")
    assert result.exit_code == 0
    for text in ("--size", "--scale", "--collage", "--sweep", "--warp", "--repeat", "SYxSX", "Examples"):
        assert text in result.output


def test_single_size_to_a_file(onnx_model, tmp_path):
    target = tmp_path / "wide.png"
    result = run(onnx_model, "--size", "57x37", "-o", target)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("onnxruntime on CPUExecutionProvider")
    assert "57x37" in lines[1] and " ms" in lines[1] and f"-> {target}" in lines[1]
    assert load_png(target).shape == (37, 57, 3)
    assert files(tmp_path) == ["wide.png"]


def test_several_sizes_into_a_folder(onnx_model, tmp_path):
    out = tmp_path / "new" / "out"
    result = run(onnx_model, "--size", "64x48", "--size", "16x96", "--size", "120x16", "-o", out)
    assert result.exit_code == 0, result.output
    assert files(out) == ["retarget_120x16.png", "retarget_16x96.png", "retarget_64x48.png"]
    assert load_png(out / "retarget_16x96.png").shape == (96, 16, 3)
    assert len(result.stdout.strip().splitlines()) == 4  # header + one line per size


def test_scale_is_height_by_width(onnx_model, tmp_path):
    result = run(onnx_model, "--scale", "1x2", "--scale", "0.5", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    # 1x2 of 52x40 (w x h) -> 104x40; 0.5 -> 26x20
    assert files(tmp_path) == ["retarget_104x40.png", "retarget_26x20.png"]


def test_default_is_the_1x1_size(onnx_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(onnx_model, "-q")
    assert result.exit_code == 0, result.output
    assert "notice: no --size" in result.output and "52x40" in result.output
    assert result.stdout == ""  # -q: no lines on stdout
    assert files(tmp_path) == ["retarget_52x40.png"]


def test_repeat_prints_min_and_median(onnx_model, tmp_path):
    result = run(onnx_model, "--size", "32x32", "--repeat", "3", "-o", tmp_path / "r.png")
    assert result.exit_code == 0, result.output
    assert "ms min" in result.output and "ms median (3 runs)" in result.output
    assert load_png(tmp_path / "r.png").shape == (32, 32, 3)


def test_collage(onnx_model, tmp_path):
    result = run(onnx_model, "--collage", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert files(tmp_path) == ["collage.png"]
    picture = load_png(tmp_path / "collage.png")
    # 5x5 tiles: heights 80 50 40 26 13->16 (clipped), widths 104 65 52 34 17, 6 px margins.
    assert picture.shape == (80 + 50 + 40 + 26 + 16 + 6 * 6, 104 + 65 + 52 + 34 + 17 + 6 * 6, 3)
    assert "clipped" in result.output and "height x0.33 (13 px -> 16)" in result.output
    # The 1x1 tile (row 3, column 3) is framed in red.
    top, left = 6 + 80 + 6 + 50 + 6, 6 + 104 + 6 + 65 + 6
    assert tuple(picture[top, left]) == (255, 0, 0) and tuple(picture[top + 39, left + 51]) == (255, 0, 0)


def test_collage_function_tiles(onnx_model):
    with ingan.runtime.load(onnx_model) as runner:
        picture, notes = render.collage(runner, scales=(1.0, 0.5))
        assert notes == []
        tiles = [[runner.retarget((h, w)) for w in (52, 26)] for h in (40, 20)]
        from ingan.collage import frame

        tiles[0][0] = frame(tiles[0][0])
        assert np.array_equal(picture, grid(tiles))


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_sweep(onnx_model, tmp_path, suffix):
    target = tmp_path / f"sweep{suffix}"
    result = run(onnx_model, "--sweep", target, "--sweep-steps", "2", "--fps", "10")
    assert result.exit_code == 0, result.output
    assert "19 frames on a 120x96 canvas" in result.output
    assert files(tmp_path) == [target.name]  # nothing else written; no temporary file left
    with Image.open(target) as anim:
        assert anim.n_frames > 1
        sizes = set()
        for i in range(anim.n_frames):
            anim.seek(i)
            sizes.add(anim.size)
        assert sizes == {(120, 96)}


def test_sweep_sizes_follow_the_path(onnx_model):
    with ingan.runtime.load(onnx_model) as runner:
        sizes = render.sweep_sizes(runner, low=(0.5, 0.5), high=(2.0, 2.0), steps_per_segment=1)
        # (1,1) (1,2) (1,.5) (1,1) (2,1) (.5,1) (1,1) (2,2) (.5,.5) (1,1) of 52x40 (w x h)
        assert sizes == [(40, 52), (40, 104), (40, 26), (40, 52), (80, 52), (20, 52), (40, 52), (80, 104),
                         (20, 26), (40, 52)]
        frames = list(render.sweep_frames(runner, low=(0.5, 0.5), high=(2.0, 2.0), steps_per_segment=1))
        assert len(frames) == 10 and {f.shape for f in frames} == {(80, 104, 3)}
        assert frames[8][20:, :].max() == 0 and frames[8][:, 26:].max() == 0  # black outside the frame


def test_mp4_sweep(onnx_model, tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed (pip install imageio-ffmpeg)")
    target = tmp_path / "sweep.mp4"
    result = run(onnx_model, "--sweep", target, "--sweep-steps", "1", "-q")
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 0 and files(tmp_path) == ["sweep.mp4"]


def test_mp4_without_imageio_ffmpeg(onnx_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import now raises ImportError
    one_line_error(run(onnx_model, "--sweep", tmp_path / "s.mp4"), "pip install imageio-ffmpeg")
    assert files(tmp_path) == []


def test_onnx_matches_pytorch_backend(onnx_model, tiny_checkpoint, tmp_path):
    assert run(onnx_model, "--size", "33x17", "-o", tmp_path / "onnx.png").exit_code == 0
    result = run(tiny_checkpoint, "--size", "33x17", "-o", tmp_path / "torch.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("pytorch on cpu")
    diff = load_png(tmp_path / "onnx.png").astype(int) - load_png(tmp_path / "torch.png").astype(int)
    assert np.abs(diff).max() <= 1


def test_warp_on_the_pytorch_backend(tiny_checkpoint, tmp_path):
    result = run(tiny_checkpoint, "--warp", "-0.5,0.5", "--size", "48x40", "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    assert load_png(tmp_path / "w.png").shape == (40, 48, 3)


def test_homography_matches_the_model_code():
    from ingan.model.warp import top_shift_homography

    for left, right in [(0.0, 0.0), (-0.5, 0.5), (0.3, -0.2), (-0.8, 0.8)]:
        got = render.top_shift_homography_np(left, right)
        assert got.dtype == np.float32 and got.shape == (3, 3)
        np.testing.assert_allclose(got, top_shift_homography(left, right), atol=1e-6)
    np.testing.assert_allclose(render.top_shift_homography_np(0, 0), np.eye(3), atol=1e-7)


def test_scale_to_size():
    assert render.scale_to_size((40, 52), 0.33, 2.0) == (13, 104)
    assert render.scale_to_size((40, 52), 0.001, 0.001) == (1, 1)


@pytest.mark.slow
def test_no_torch_for_onnx(onnx_model, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(ingan.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "x.png"
    done = subprocess.run([sys.executable, "-m", "ingan.runtime", str(onnx_model), "--size", "64x48", "-o",
                           str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_png(out).shape == (48, 64, 3)
    script = ("import sys\nfrom ingan.runtime.cli import main\n"
              f"main([{str(onnx_model)!r}, '--size', '64x48', '--collage', "
              f"'--sweep', {str(tmp_path / 's.gif')!r}, '--sweep-steps', '1', '-o', {str(tmp_path / 'd')!r}, '-q'], "
              "standalone_mode=False)\nprint('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert files(tmp_path / "d") == ["collage.png", "retarget_64x48.png"]


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args", [
    ["--size", "640"], ["--size", "0x10"], ["--size", "-5x5"], ["--size", "axb"], ["--size", "1x"],
    ["--scale", "1x"], ["--scale", "0x1"], ["--scale", "ax2"], ["--warp", "0.5"], ["--warp", "1,-1.5"],
    ["--device", "gpu"], ["--backend", "tflite"], ["--repeat", "0"], ["--frobnicate"],
])
def test_usage_errors(onnx_model, tmp_path, args):
    result = run(onnx_model, *args, "-o", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert files(tmp_path) == []


def test_malformed_size_message(onnx_model):
    result = run(onnx_model, "--size", "640")
    assert result.exit_code == 2 and "'640' is not a size; write WIDTHxHEIGHT" in result.output


def test_out_of_range_size_writes_nothing(onnx_model, tmp_path):
    out = tmp_path / "out"
    result = run(onnx_model, "--size", "64x48", "--size", "500x48", "-o", out)
    one_line_error(result, "size 500x48 is outside this model's range 16x16 .. 120x96")
    assert "ingan-export --min-size/--max-size" in result.output
    assert files(tmp_path) == []  # checked before any size runs; no folder made


def test_out_of_range_scale(onnx_model, tmp_path):
    result = run(onnx_model, "--scale", "3x1", "-o", tmp_path / "x.png")
    one_line_error(result, "--scale 3x1: size 52x120 is outside")
    assert files(tmp_path) == []


def test_missing_model(tmp_path):
    one_line_error(run(tmp_path / "nope.onnx", "--size", "32x32"), "does not exist")


def test_model_without_sidecar(model_copy, tmp_path):
    model_copy.with_name("model.onnx.json").unlink()
    one_line_error(run(model_copy, "-o", tmp_path / "o"), "model.onnx.json' not found")
    assert not (tmp_path / "o").exists()


def test_truncated_model(model_copy, tmp_path):
    model_copy.write_bytes(model_copy.read_bytes()[:2000])
    one_line_error(run(model_copy, "-o", tmp_path / "o"), "does not match its metadata")


def test_corrupt_sidecar(model_copy, tmp_path):
    model_copy.with_name("model.onnx.json").write_text("{not json")
    one_line_error(run(model_copy, "-o", tmp_path / "o"), "not JSON")


def test_sidecar_of_another_kind(model_copy, tmp_path):
    sidecar = model_copy.with_name("model.onnx.json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "kind": "tensorrt"}))
    one_line_error(run(model_copy, "-o", tmp_path / "o"), "describes a tensorrt model")


def test_unknown_model_suffix(model_copy):
    renamed = model_copy.with_suffix(".bin")
    model_copy.rename(renamed)
    one_line_error(run(renamed), "cannot tell the model type")


def test_unknown_output_suffix(onnx_model, tmp_path):
    one_line_error(run(onnx_model, "--size", "32x32", "-o", tmp_path / "x.bmp"), "unsupported image type '.bmp'")
    assert files(tmp_path) == []


def test_one_file_for_several_images(onnx_model, tmp_path):
    one_line_error(run(onnx_model, "--size", "32x32", "--collage", "-o", tmp_path / "x.png"),
                   "2 images are requested; pass a folder")
    assert files(tmp_path) == []


def test_unknown_animation_suffix(onnx_model, tmp_path):
    one_line_error(run(onnx_model, "--sweep", tmp_path / "s.avi"), "unsupported animation type '.avi'")


def test_warp_on_a_model_without_warp(onnx_model, tmp_path):
    result = run(onnx_model, "--warp", "-0.5,0.5", "--size", "32x32", "-o", tmp_path / "o")
    one_line_error(result, "exported without --warp; re-export with ingan-export --warp")
    assert files(tmp_path) == []


def test_image_for_a_baked_model(onnx_model, image_file, tmp_path):
    one_line_error(run(onnx_model, "--image", image_file, "-o", tmp_path / "o"), "takes no --image")


def test_unwritable_output(onnx_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run(onnx_model, "--size", "32x32", "-o", blocker / "x.png"), "is not a folder")
    one_line_error(run(onnx_model, "--size", "32x32", "--size", "40x40", "-o", blocker), "is not a folder")
    assert files(tmp_path) == ["file"]


def test_tensorrt_backend_on_onnx(onnx_model):
    one_line_error(run(onnx_model, "--backend", "tensorrt"), "cannot run a '.onnx' file")


def test_provider_on_a_checkpoint(tiny_checkpoint):
    one_line_error(run(tiny_checkpoint, "--provider", "cpu"), "--provider applies to the onnxruntime backend(s), not to pytorch")


def test_animation_options_need_sweep(onnx_model, tmp_path):
    result = run(onnx_model, "--fps", "10", "-o", tmp_path / "a.png")
    assert result.exit_code == 2 and "--fps only applies to an animation; add --sweep FILE" in result.output
    assert not (tmp_path / "a.png").exists()


def test_a_request_failing_at_run_time_leaves_no_partial_results(onnx_model, tmp_path, monkeypatch):
    """All sizes pass the range check; the second fails inside the backend (e.g. out of memory)."""
    from ingan.errors import InganError
    from ingan.runtime.backends.ort import OrtRunner

    real = OrtRunner._retarget

    def failing(self, size, homography, image):
        if size == (48, 64):
            raise InganError("ONNX Runtime failed at 64x48 (simulated allocation failure)")
        return real(self, size, homography, image)

    monkeypatch.setattr(OrtRunner, "_retarget", failing)
    out = tmp_path / "out"
    one_line_error(run(onnx_model, "--size", "32x32", "--size", "64x48", "--collage", "-o", out), "simulated")
    assert files(tmp_path) == []  # no image of the first request, no empty folder
    one_line_error(run(onnx_model, "--size", "64x48", "-o", out), "simulated")
    assert files(tmp_path) == []


def test_a_sidecar_claiming_a_wider_range_than_the_model_is_refused(model_copy, tmp_path):
    """The validated range is also recorded inside the ONNX file, which the checksum covers."""
    sidecar = model_copy.with_name("model.onnx.json")
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "max_size": {"width": 4000, "height": 4000}}))
    one_line_error(run(model_copy, "--size", "3000x3000", "-o", tmp_path / "o.png"),
                   "does not match its .json sidecar (size range: model 16x16 .. 120x96 (width x height), "
                   "sidecar 16x16 .. 4000x4000")
    assert files(tmp_path) == ["m"]


@pytest.mark.slow
def test_an_export_killed_between_its_renames_leaves_the_old_model_loadable(tiny_checkpoint, tmp_path, monkeypatch):
    """The new sidecar is renamed first and remembers the old one; the model rename is killed."""
    import ingan.fsutil
    from ingan.export.pipeline import ExportOptions, export_checkpoint

    export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=tmp_path, min_size=(16, 16), max_size=(64, 64),
                                                     engine="skip"))
    old_bytes = (tmp_path / "model.onnx").read_bytes()
    real_replace = os.replace

    def killed_at_the_model(src, dst):
        if str(dst).endswith("model.onnx"):
            raise KeyboardInterrupt  # stands in for kill -9 between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(ingan.fsutil.os, "replace", killed_at_the_model)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=tmp_path, min_size=(16, 16), max_size=(96, 120),
                                                         engine="skip"))
    monkeypatch.setattr(ingan.fsutil.os, "replace", real_replace)
    assert (tmp_path / "model.onnx").read_bytes() == old_bytes
    assert json.loads((tmp_path / "model.onnx.json").read_text())["max_size"] == {"width": 120, "height": 96}
    with ingan.runtime.load(tmp_path / "model.onnx") as runner:  # ... still serves the old model
        assert runner.max_size == (64, 64)
        assert runner.retarget((64, 64)).shape == (64, 64, 3)
    export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=tmp_path, min_size=(16, 16), max_size=(96, 120),
                                                     engine="skip"))
    with ingan.runtime.load(tmp_path / "model.onnx") as runner:
        assert runner.max_size == (96, 120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def _forged_model(folder, nodes, output_shape):
    """A valid ONNX file with the contract's `size` input and a sidecar that matches it."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "forged", [helper.make_tensor_value_info("size", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("output", TensorProto.UINT8, output_shape)])
    path = folder / "forged.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    data = json.loads((folder / "model.onnx.json").read_text())
    data.update(artifact="forged.onnx", artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (folder / "forged.onnx.json").write_text(json.dumps(data))
    return path


def test_a_model_breaking_the_contract_is_named_not_an_internal_error(model_copy, tmp_path):
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 2, 1, 1])
    nodes = [helper.make_node("Reshape", ["size", "shape_c"], ["r"]), helper.make_node("Cast", ["r"], ["output"],
                                                                                      to=TensorProto.UINT8)]
    nodes.insert(0, helper.make_node("Constant", [], ["shape_c"], value=shape))
    forged = _forged_model(model_copy.parent, nodes, [1, 2, 1, 1])
    result = run(forged, "--size", "32x32", "-o", tmp_path / "x.png")
    one_line_error(result, "returned a 2x1x1 uint8 array for a 32x32 request, not the 32x32 RGB image")
    assert "internal error" not in result.output and "not an ingan export" in result.output


def test_onnx_runtime_prints_no_log_of_its_own_before_our_error(model_copy, tmp_path):
    """ORT logs run-time failures itself (coloured, on the C++ stderr): only our line must show."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [1], [3])),
             helper.make_node("Reshape", ["size", "shape"], ["r"]),
             helper.make_node("Cast", ["r"], ["output"], to=TensorProto.UINT8)]
    forged = _forged_model(model_copy.parent, nodes, None)
    done = subprocess.run([sys.executable, "-m", "ingan.runtime", str(forged), "--size", "32x32", "-q",
                           "-o", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [line for line in done.stderr.strip().splitlines()
                                                if line.startswith("Error: ONNX Runtime failed at 32x32")]
    assert "[E:onnxruntime" not in done.stderr and "\x1b[" not in done.stderr


def test_sidecar_sizes_are_labelled_and_format_1_sidecars_still_load(model_copy, tmp_path):
    sidecar = model_copy.with_name("model.onnx.json")
    data = json.loads(sidecar.read_text())
    assert data["format_version"] == 2
    assert data["min_size"] == {"width": 16, "height": 16} and data["max_size"] == {"width": 120, "height": 96}
    assert data["training_image_size"] == {"width": 52, "height": 40}
    old = {**data, "format_version": 1, "previous": None}
    for name in ("min_size", "opt_size", "max_size", "training_image_size"):
        old[name] = [data[name]["height"], data[name]["width"]]  # format 1: unlabelled [height, width]
    sidecar.write_text(json.dumps(old))
    with ingan.runtime.load(model_copy) as runner:
        assert runner.max_size == (96, 120) and runner.image_size == (40, 52)
