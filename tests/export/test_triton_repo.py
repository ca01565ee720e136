"""Triton model repositories: every config.pbtxt parses with Triton's own schema (tritonclient's
model_config_pb2) and declares exactly the inputs and outputs of the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ingan.export.cli import main as export_main
from ingan.export.triton_repo import write_triton_repo
from ingan.metadata import ModelMetadata, sha256_of, sidecar_path

ONNX_TYPES = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32",
              onnx.TensorProto.FLOAT16: "TYPE_FP16", onnx.TensorProto.UINT8: "TYPE_UINT8"}


def parse(config: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())


def graph_io(model: Path) -> tuple[dict, dict]:
    """{name: (Triton type, dims)} of the graph's inputs and outputs; named dimensions are -1."""
    graph = onnx.load(model, load_external_data=False).graph

    def describe(values):
        return {v.name: (ONNX_TYPES[v.type.tensor_type.elem_type],
                         [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
                for v in values}

    return describe(graph.input), describe(graph.output)


def config_io(config: model_config_pb2.ModelConfig) -> tuple[dict, dict]:
    def describe(tensors):
        return {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors}

    return describe(config.input), describe(config.output)


def check_against_graph(repo: Path, name: str, platform: str, onnx_file: Path, model_file: str) -> None:
    config = parse(repo / name / "config.pbtxt")
    assert config.name == name and config.platform == platform and config.max_batch_size == 0
    assert config_io(config) == graph_io(onnx_file)
    shape_tensors = {t.name for t in config.input if t.is_shape_tensor}
    assert shape_tensors == ({"size"} if platform == "tensorrt_plan" else set())
    assert (repo / name / "1" / model_file).is_file()


def test_onnx_models_match_their_graphs(default_export, tmp_path):
    out, result = default_export
    repo = tmp_path / "repo"
    models = write_triton_repo(repo, result.artifacts)
    assert [(m.name, m.platform) for m in models] == [("model", "onnxruntime_onnx"), ("model_fp16", "onnxruntime_onnx")]
    for model in models:
        source = out / f"{model.name}.onnx"
        check_against_graph(repo, model.name, "onnxruntime_onnx", source, "model.onnx")
        assert model.model.read_bytes() == source.read_bytes() and model.notes == ()
    assert "16x16 .. 120x96" in (repo / "model" / "config.pbtxt").read_text()  # the range, as a comment


def test_a_plan_becomes_a_tensorrt_model_with_size_as_a_shape_tensor(default_export, tmp_path):
    out, _ = default_export
    plan = tmp_path / "model.plan"  # the engine's bytes are opaque to the writer; its sidecar is what counts
    plan.write_bytes(b"serialized engine")
    meta = ModelMetadata.read(sidecar_path(out / "model.onnx"))
    meta.kind, meta.artifact, meta.artifact_sha256 = "tensorrt", plan.name, sha256_of(plan)
    meta.write(sidecar_path(plan))
    repo = tmp_path / "repo"
    models = write_triton_repo(repo, [out / "model.onnx", plan])
    assert [(m.name, m.platform) for m in models] == [("model", "onnxruntime_onnx"), ("model_trt", "tensorrt_plan")]
    check_against_graph(repo, "model_trt", "tensorrt_plan", out / "model.onnx", "model.plan")
    assert (repo / "model_trt" / "1" / "model.plan").read_bytes() == b"serialized engine"


def test_rewriting_replaces_its_models_and_leaves_the_others(default_export, tmp_path):
    out, _ = default_export
    repo = tmp_path / "repo"
    (repo / "someone_else" / "1").mkdir(parents=True)
    (repo / "model" / "3").mkdir(parents=True)
    write_triton_repo(repo, [out / "model.onnx"])
    (model,) = write_triton_repo(repo, [out / "model.onnx"])
    assert (repo / "someone_else" / "1").is_dir()
    assert sorted(p.name for p in (repo / "model").iterdir() if not p.name.startswith(".")) == ["1", "3",
                                                                                                "config.pbtxt"]
    assert model.notes and "version(s) 3" in model.notes[0]


@pytest.mark.slow  # one export with the optional inputs (~15 s)
def test_ingan_export_triton_repo_with_image_input_warp_and_float_output(tiny_checkpoint, tmp_path):
    repo = tmp_path / "triton"
    result = CliRunner().invoke(export_main, [str(tiny_checkpoint), "-o", str(tmp_path / "export"), "--name", "dyn",
                                              "--image-input", "--warp", "--output", "float", "--no-engine",
                                              "--triton-repo", str(repo), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote Triton model {repo / 'dyn'} (onnxruntime_onnx)" in result.output
    check_against_graph(repo, "dyn", "onnxruntime_onnx", tmp_path / "export" / "dyn.onnx", "model.onnx")
    inputs, outputs = config_io(parse(repo / "dyn" / "config.pbtxt"))
    assert inputs["image"] == ("TYPE_FP32", [-1, 3, -1, -1]) and inputs["homography"][0] == "TYPE_FP32"
    assert outputs == {"output": ("TYPE_FP32", [-1, 3, -1, -1])}


def test_the_docs_tritonclient_request_matches_the_config(default_export, tmp_path):
    """docs/serve.md's request, built as written (sending it needs a Triton server)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    out, _ = default_export
    (model,) = write_triton_repo(tmp_path / "repo", [out / "model.onnx"])
    declared = {t.name: model_config_pb2.DataType.Name(t.data_type) for t in parse(model.config).input}
    size = grpcclient.InferInput("size", [2], "INT64")
    size.set_data_from_numpy(np.array([360, 640], dtype=np.int64))
    wanted = grpcclient.InferRequestedOutput("output")
    assert declared == {size.name(): "TYPE_" + size.datatype()} and wanted.name() == "output"
