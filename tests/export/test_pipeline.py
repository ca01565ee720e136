"""Exported graphs: contract, odd sizes, FP16, metadata; checked with ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from ingan.export.pipeline import ExportOptions, export_checkpoint, image_tensor, size_range, torch_reference
from ingan.metadata import ModelMetadata, sidecar_path
from ingan.model.checkpoint import load_checkpoint
from ingan.model.warp import top_shift_homography
from ingan.runtime.ort_session import create_session


def test_default_export_writes_fp32_and_fp16_with_metadata(default_export):
    out, result = default_export
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model.onnx", "model.onnx.json", "model_fp16.onnx", "model_fp16.onnx.json"]
    assert "no TensorRT engine built" in result.engine_note


def test_graph_contract(default_export):
    out, _ = default_export
    model = onnx.load(str(out / "model.onnx"))
    assert model.opset_import[0].version == 18
    (size,) = model.graph.input
    assert size.name == "size" and size.type.tensor_type.elem_type == onnx.TensorProto.INT64
    (output,) = model.graph.output
    dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    assert output.type.tensor_type.elem_type == onnx.TensorProto.UINT8 and dims == [1, "height", "width", 3]
    # TensorRT takes UINT8 only at I/O and in Cast: the Cast must be the last node.
    assert model.graph.node[-1].op_type == "Cast"


@pytest.mark.slow
@pytest.mark.parametrize("size", [(16, 16), (17, 33), (40, 52), (95, 23), (61, 119), (96, 120)])
def test_any_size_in_range_matches_pytorch(default_export, tiny_checkpoint, size):
    out, _ = default_export
    ckpt = load_checkpoint(tiny_checkpoint)
    session = create_session(out / "model.onnx")
    got = session.run(None, {"size": np.array(size, dtype=np.int64)})[0]
    expected = torch_reference(ckpt.build_generator(), image_tensor(ckpt), size, "uint8", None)
    assert got.shape == (1, *size, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.slow
def test_the_colour_calibration_is_part_of_the_graph(default_export, tiny_checkpoint):
    out, _ = default_export
    ckpt = load_checkpoint(tiny_checkpoint)
    calibrated = ckpt.build_generator()
    assert calibrated.colour_calibration is not None and calibrated.colour_calibration.gain != (1.0, 1.0, 1.0)
    raw = ckpt.build_generator()
    raw.set_colour_calibration(None)
    size = (40, 80)
    for name in ("model.onnx", "model_fp16.onnx"):
        got = create_session(out / name).run(None, {"size": np.array(size, dtype=np.int64)})[0].astype(int)
        with_cal = torch_reference(calibrated, image_tensor(ckpt), size, "uint8", None).astype(int)
        without = torch_reference(raw, image_tensor(ckpt), size, "uint8", None).astype(int)
        assert np.abs(got - with_cal).mean() < 0.5 < np.abs(got - without).mean(), name


@pytest.mark.slow
def test_metadata_describes_the_model(default_export, tiny_checkpoint):
    out, _ = default_export
    meta = ModelMetadata.read(sidecar_path(out / "model.onnx"))
    ckpt = load_checkpoint(tiny_checkpoint)
    assert meta.kind == "onnx" and meta.precision == "fp32" and meta.opset == 18
    assert meta.min_size == [16, 16] and meta.max_size == [96, 120] and meta.opt_size == [40, 52]
    assert meta.training_image_size == [40, 52]
    assert meta.source_checkpoint["iteration"] == ckpt.iteration == 3
    assert len(meta.source_checkpoint["sha256"]) == 64
    assert [(t.name, t.dtype) for t in meta.inputs] == [("size", "int64")]
    assert [(t.name, t.dtype, t.shape) for t in meta.outputs] == [("output", "uint8", [1, "height", "width", 3])]
    validation = meta.validation
    assert len(validation["checks"]) == 3 and all(c["passed"] for c in validation["checks"])
    sizes = [tuple(c["size"]) for c in validation["checks"]]
    assert any(h % 8 or w % 8 for h, w in sizes)  # at least one non-multiple of 8
    assert len({h == w for h, w in sizes}) == 2  # a square and non-square ones
    assert "0 errors" in validation["lint"] and validation["op_counts"]["Conv"] >= 5
    assert validation["lint_findings"] == []
    assert meta.tensorrt is None
    from ingan.metadata import sha256_of

    assert meta.artifact_sha256 == sha256_of(out / "model.onnx")


def test_fp16_graph_is_fp16_inside_with_fp32_norms_and_meets_psnr(default_export):
    out, _ = default_export
    model = onnx.load(str(out / "model_fp16.onnx"))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    assert conv_weights and all(inits[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    norm_scales = [n.input[1] for n in model.graph.node if n.op_type == "InstanceNormalization"]
    assert norm_scales and all(inits[w] == onnx.TensorProto.FLOAT for w in norm_scales if w in inits)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = ModelMetadata.read(sidecar_path(out / "model_fp16.onnx"))
    assert meta.precision == "fp16"
    checks = meta.validation["checks"] + meta.validation["fp16_emulation"]
    assert len(checks) == 6 and all(c["psnr_db"] >= 40 for c in checks)


@pytest.mark.slow
def test_image_input_warp_float_variant(tiny_checkpoint, tmp_path):
    result = export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=tmp_path, name="dyn", image_input=True,
                                                              warp=True, output="float", engine="skip"))
    assert result.engine_note is None
    model = onnx.load(str(tmp_path / "dyn.onnx"))
    assert [i.name for i in model.graph.input] == ["size", "image", "homography"]
    assert {n.op_type for n in model.graph.node} >= {"GridSample", "Range"}
    assert "AffineGrid" not in {n.op_type for n in model.graph.node}
    grid_sample = next(n for n in model.graph.node if n.op_type == "GridSample")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in grid_sample.attribute}["mode"] == b"bilinear"

    # A different image and a new homography at an odd size: the graph must follow both.
    ckpt = load_checkpoint(tiny_checkpoint)
    generator = ckpt.build_generator()
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (2, 3, 36, 44)).astype(np.float32)
    homography = np.stack([top_shift_homography(-0.3, 0.2), top_shift_homography(0.1, 0.4)]).astype(np.float32)
    size = (29, 51)
    got = create_session(tmp_path / "dyn.onnx").run(
        None, {"size": np.array(size, np.int64), "image": image, "homography": homography})[0]
    with torch.no_grad():
        expected = (generator(torch.from_numpy(image) * 2 - 1, size, torch.from_numpy(homography)) + 1) / 2
    assert got.shape == (2, 3, *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-3)
    meta = json.loads((tmp_path / "dyn.onnx.json").read_text())
    assert meta["image_input"] and meta["warp"] and meta["output_format"] == "float"


def test_default_size_range_comes_from_the_trained_scales(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    lo, hi = ckpt.scale_range
    sizes = size_range(ckpt, ExportOptions(out_dir=tmp_path))
    assert sizes.opt == (40, 52)
    assert sizes.min == (max(int(np.ceil(lo * 40)), 16), max(int(np.ceil(lo * 52)), 16))
    assert sizes.max == (int(hi * 40), int(hi * 52))


@pytest.mark.slow
def test_a_failed_fp16_check_leaves_the_previous_export_untouched(tiny_checkpoint, tmp_path, monkeypatch):
    from ingan.errors import InganError
    from ingan.export import pipeline

    out = tmp_path / "o"
    export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=out, fp16=True, engine="skip"))
    before = {p.name: p.stat().st_ino for p in out.iterdir()}
    real = pipeline.validate_with_onnxruntime

    def fp16_fails(path, spec, *args, **kwargs):
        if spec.precision == "fp16":
            raise pipeline.ToleranceExceeded("model_fp16.onnx does not match PyTorch (simulated)")
        return real(path, spec, *args, **kwargs)

    monkeypatch.setattr(pipeline, "validate_with_onnxruntime", fp16_fails)
    with pytest.raises(InganError, match="simulated"):
        export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=out, fp16=True, engine="skip"))
    # FP32 passed this time, but was not renamed in: all four files are the first export's.
    assert {p.name: p.stat().st_ino for p in out.iterdir()} == before
