"""The TensorRT lint on small hand-built ONNX graphs (no torch, no GPU)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ingan.export.trt_lint import (  # noqa: E402
    LintReport,
    lint_model,
    load_support_table,
    validate_support_table,
)

GRIDSAMPLE_ISSUE = "https://github.com/NVIDIA/TensorRT/issues/4646"

# Every op a CNN generator export can contain must be covered by the table.
REQUIRED_OPS = """
Conv ConvTranspose InstanceNormalization BatchNormalization GroupNormalization LayerNormalization
Relu LeakyRelu Tanh Sigmoid Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Max Min Clip Round
Floor Ceil Cast CastLike Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather
GatherElements Shape Size Expand Tile Range ConstantOfShape Constant Identity Pad Resize Upsample
GridSample AffineGrid MaxPool AveragePool GlobalAveragePool ReduceMean ReduceSum ReduceMax MatMul
Gemm Einsum Where Equal Less Greater And Or Not If Loop NonZero TopK ScatterND Dropout Softmax Trilu
Mod Sign Erf
""".split()


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _model(nodes, inputs, outputs, initializers=(), opset: int = 18, functions=(), extra_opsets=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _x(name: str = "x", shape=(1, 3, 8, 8)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _y(name: str = "y", shape=None):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _errors(report: LintReport) -> list[str]:
    return [f.message for f in report.findings if f.severity == "error"]


def _warnings(report: LintReport) -> list[str]:
    return [f.message for f in report.findings if f.severity == "warning"]


def _clean_model() -> onnx.ModelProto:
    """Pad(reflect) -> Conv -> InstanceNorm -> LeakyRelu -> Resize(linear, half_pixel, sizes)."""
    inits = [
        _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
        _init("w", np.zeros((4, 3, 3, 3), np.float32)),
        _init("b", np.zeros(4, np.float32)),
        _init("scale", np.ones(4, np.float32)),
        _init("bias", np.zeros(4, np.float32)),
        _init("sizes", np.array([1, 4, 16, 16], np.int64)),
    ]
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="reflect"),
        helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv"),
        helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["n"], name="norm"),
        helper.make_node("LeakyRelu", ["n"], ["a"], name="act", alpha=0.2),
        helper.make_node(
            "Resize",
            ["a", "", "", "sizes"],
            ["y"],
            name="up",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
    ]
    model = _model(nodes, [_x()], [_y(shape=[1, 4, 16, 16])], inits)
    onnx.checker.check_model(model, full_check=True)
    return model


def _grid_sample_model(opset: int, **attrs) -> onnx.ModelProto:
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="warp", **attrs)
    grid = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 8, 8, 2])
    return _model([node], [_x(), grid], [_y()], opset=opset)


def test_clean_generator_graph_passes():
    report = lint_model(_clean_model())
    assert report.ok, report.findings
    assert report.findings == ()
    assert report.opset == 18


def test_op_counts_and_summary():
    model = _clean_model()
    extra = helper.make_node("Relu", ["y"], ["z"], name="relu2")
    model.graph.node.append(extra)
    del model.graph.output[:]
    model.graph.output.append(_y("z"))
    report = lint_model(model)
    assert report.op_counts == {
        "Conv": 1,
        "InstanceNormalization": 1,
        "LeakyRelu": 1,
        "Pad": 1,
        "Relu": 1,
        "Resize": 1,
    }
    assert report.summary() == "TensorRT lint: 6 op types, 6 nodes, 0 errors, 0 warnings"


def test_summary_singular():
    node = helper.make_node("Upsample", ["x", "s"], ["y"])
    scales = _init("s", np.array([1, 1, 2, 2], np.float32))
    report = lint_model(_model([node], [_x()], [_y()], [scales], opset=9))
    assert report.summary() == "TensorRT lint: 1 op type, 1 node, 0 errors, 1 warning"


def test_gridsample_opset20_linear_is_error_naming_issue():
    report = lint_model(_grid_sample_model(20, mode="linear"))
    assert not report.ok
    errors = _errors(report)
    assert any("opset 20" in m for m in errors)
    assert any("'linear'" in m for m in errors)
    assert all(GRIDSAMPLE_ISSUE in m for m in errors)
    assert {f.node for f in report.findings} == {"warp"}


def test_gridsample_opset20_default_mode_is_error():
    """GridSample-20's default mode is 'linear', so leaving it unset is just as wrong."""
    report = lint_model(_grid_sample_model(20))
    assert any("(ONNX default)" in m and "'linear'" in m for m in _errors(report))


def test_gridsample_opset18_bilinear_passes():
    model = _grid_sample_model(18, mode="bilinear", padding_mode="border", align_corners=1)
    report = lint_model(model)
    assert report.ok, report.findings
    assert report.findings == ()


def test_gridsample_5d_is_error():
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode="bilinear")
    grid = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 2, 4, 4, 3])
    report = lint_model(_model([node], [_x(shape=(1, 3, 2, 4, 4)), grid], [_y()], opset=18))
    assert any("rank 5" in m for m in _errors(report))


def test_affine_grid_is_error():
    theta = helper.make_tensor_value_info("theta", TensorProto.FLOAT, [1, 2, 3])
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], name="affine")
    size = _init("size", np.array([1, 3, 8, 8], np.int64))
    report = lint_model(_model([node], [theta], [_y("grid")], [size], opset=20))
    assert not report.ok
    assert any("not supported" in m for m in _errors(report))


def test_custom_domain_op_is_error():
    node = helper.make_node("MyPlugin", ["x"], ["y"], name="custom", domain="com.example")
    model = _model([node], [_x()], [_y()], extra_opsets=[helper.make_opsetid("com.example", 1)])
    report = lint_model(model)
    assert not report.ok
    assert any("com.example" in m for m in _errors(report))
    assert report.op_counts == {"com.example::MyPlugin": 1}


def test_local_function_body_is_linted():
    """A model-local function is expanded by the parser, so its body is what must be supported."""
    body = [helper.make_node("AffineGrid", ["t", "s"], ["g"])]
    opsets = [helper.make_opsetid("", 20)]
    fn = helper.make_function("local", "Warp", ["t", "s"], ["g"], body, opsets)
    node = helper.make_node("Warp", ["x", "size"], ["y"], name="call", domain="local")
    model = _model(
        [node],
        [_x()],
        [_y()],
        [_init("size", np.array([1, 3, 8, 8], np.int64))],
        functions=[fn],
        extra_opsets=[helper.make_opsetid("local", 1)],
    )
    report = lint_model(model)
    errors = [(f.node, f.op_type) for f in report.findings if f.severity == "error"]
    assert errors == [("call/AffineGrid_0", "AffineGrid")]


def test_squeeze_with_computed_axes_is_error():
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    node = helper.make_node("Squeeze", ["x", "axes"], ["y"], name="sq")
    report = lint_model(_model([node], [_x(shape=(1, 3, 8, 8)), axes], [_y()]))
    assert any("input 1 ('axes') must be constant" in m for m in _errors(report))


def test_unsqueeze_with_constant_node_axes_passes():
    nodes = [
        helper.make_node("Constant", [], ["axes"], value=_init("v", np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["x", "axes"], ["y"]),
    ]
    report = lint_model(_model(nodes, [_x()], [_y()]))
    assert report.ok, report.findings


def test_unknown_op_is_error():
    node = helper.make_node("FancyNewOp", ["x"], ["y"], name="fancy")
    report = lint_model(_model([node], [_x()], [_y()]))
    assert _errors(report) == ["not in the ONNX-TensorRT support table"]


def test_upsample_is_deprecated_warning():
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")
    scales = _init("scales", np.array([1, 1, 2, 2], np.float32))
    model = _model([node], [_x()], [_y()], [scales], opset=9)
    report = lint_model(model)
    assert report.ok
    assert any("deprecated" in m for m in _warnings(report))


def test_resize_unsupported_attributes():
    node = helper.make_node(
        "Resize",
        ["x", "", "", "sizes"],
        ["y"],
        mode="cubic",
        coordinate_transformation_mode="tf_crop_and_resize",
        antialias=1,
    )
    sizes = _init("sizes", np.array([1, 3, 16, 16], np.int64))
    report = lint_model(_model([node], [_x()], [_y()], [sizes]))
    errors = _errors(report)
    assert any("tf_crop_and_resize" in m for m in errors)
    assert any("antialias" in m for m in errors)
    assert any("cubic" in m for m in _warnings(report))  # importer handles it, docs do not list it


def test_pad_wrong_mode_and_dropout_training():
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="bogus"),
        helper.make_node("Dropout", ["p", "ratio", "train"], ["y"]),
    ]
    inits = [
        _init("pads", np.zeros(8, np.int64)),
        _init("ratio", np.array(0.5, np.float32)),
        _init("train", np.array(True)),
    ]
    report = lint_model(_model(nodes, [_x()], [_y()], inits))
    errors = _errors(report)
    assert any("mode='bogus'" in m for m in errors)
    assert any("training_mode" in m for m in errors)


def test_cast_targets():
    """DOUBLE is cast down (warning only); INT8 outside quantization is an error, nothing else."""

    def cast(to: int) -> LintReport:
        return lint_model(_model([helper.make_node("Cast", ["x"], ["y"], to=to)], [_x()], [_y()]))

    double, int8 = cast(TensorProto.DOUBLE), cast(TensorProto.INT8)
    assert double.ok and len(_warnings(double)) == 1 and "DOUBLE" in _warnings(double)[0]
    assert len(_errors(int8)) == 1 and "'INT8'" in _errors(int8)[0] and not _warnings(int8)


def test_if_branches_are_linted():
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["x"], ["out"])], op, [], [_y("out")])

    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node(
        "If", ["cond"], ["y"], name="if", then_branch=branch("Relu"), else_branch=branch("NotAnOp")
    )
    report = lint_model(_model([node], [_x(), cond], [_y()]))
    found = [(f.node, f.op_type) for f in report.findings]
    assert found == [("if/else_branch/NotAnOp_0", "NotAnOp")]
    assert report.op_counts == {"If": 1, "NotAnOp": 1, "Relu": 1}


def test_opset_outside_documented_range_warns():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_y()], opset=25)
    report = lint_model(model)
    assert report.ok
    assert any("opset 25" in m for m in _warnings(report))


def test_double_tensor_warns():
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 3])
    report = lint_model(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [_y()]))
    assert report.ok
    assert any("DOUBLE" in m for m in _warnings(report))


def test_table_covers_generator_ops_and_is_well_formed():
    table = load_support_table()
    assert table["source"], "the table must say where its facts come from"
    assert all(s.startswith("https://") for s in table["source"])
    assert table["retrieved"] and table["tensorrt_versions"]
    missing = [op for op in REQUIRED_OPS if op not in table["ops"]]
    assert not missing
    for op_type, entry in table["ops"].items():
        assert {"supported", "dtypes", "notes", "constraints"} <= entry.keys(), op_type
        assert isinstance(entry["supported"], bool), op_type
        assert isinstance(entry["constraints"], list), op_type
        assert not entry["supported"] or entry["dtypes"], op_type
    assert table["ops"]["AffineGrid"]["supported"] is False


def test_table_is_package_data():
    path = resources.files("ingan.export").joinpath("data", "onnx_trt_support.json")
    assert json.loads(path.read_text(encoding="utf-8"))["ops"]


def test_validation_rejects_unknown_rule_keys():
    table = json.loads(json.dumps(load_support_table()))
    table["ops"]["Pad"]["constraints"].append({"attribute": "mode", "alowed": ["reflect"]})
    with pytest.raises(ValueError, match="unknown keys"):
        validate_support_table(table)
    table["ops"]["Pad"]["constraints"][-1] = {"attribute": "mode", "input": 1, "allowed": []}
    with pytest.raises(ValueError, match="exactly one"):
        validate_support_table(table)
