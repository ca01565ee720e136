"""Checkpoint -> ONNX (dynamo exporter, opset 18), written atomically."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch

from ingan.contract import HOMOGRAPHY_INPUT, IMAGE_INPUT, OUTPUT_NAME, SIZE_INPUT
from ingan.errors import InganError, first_line
from ingan.export.graph import ExportSpec, RetargetGraph
from ingan.model.generator import Generator

log = logging.getLogger(__name__)


class ExportError(InganError):
    """torch.onnx could not export the graph."""


def example_inputs(spec: ExportSpec, image_hw: tuple[int, int], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Inputs for tracing and for the PyTorch side of validation."""
    inputs: dict[str, torch.Tensor] = {SIZE_INPUT: torch.tensor(size, dtype=torch.int64)}
    if spec.image_input:
        inputs[IMAGE_INPUT] = torch.full((1, 3, *image_hw), 0.5)
    if spec.warp:
        inputs[HOMOGRAPHY_INPUT] = torch.eye(3).unsqueeze(0)
    return inputs


def _dynamic_shapes(spec: ExportSpec) -> dict[str, object] | None:
    if not spec.image_input and not spec.warp:
        return None
    batch = torch.export.Dim("batch", min=1, max=256)
    shapes: dict[str, object] = {SIZE_INPUT: None}
    if spec.image_input:
        shapes[IMAGE_INPUT] = {0: batch, 2: torch.export.Dim("in_height", min=8, max=16384),
                           3: torch.export.Dim("in_width", min=8, max=16384)}
    if spec.warp:
        shapes[HOMOGRAPHY_INPUT] = {0: batch} if spec.image_input else None
    return shapes


def _rename_dims(model: "onnx.ModelProto") -> None:  # noqa: F821
    """Give the output's symbolic dims readable names (the exporter calls them u0, u1, ...)."""
    output = next(o for o in model.graph.output if o.name == OUTPUT_NAME)
    dims = output.type.tensor_type.shape.dim
    spatial = (1, 2) if len(dims) == 4 and dims[3].dim_value == 3 else (2, 3)
    renames = {}
    for index, label in zip(spatial, ("height", "width")):
        if dims[index].dim_param:
            renames[dims[index].dim_param] = label
    if dims[0].dim_param:
        renames.setdefault(dims[0].dim_param, "batch")
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def export_onnx(
    generator: Generator,
    image: torch.Tensor,
    spec: ExportSpec,
    path: str | os.PathLike[str],
    doc_string: str = "",
    metadata_props: dict[str, str] | None = None,
) -> Path:
    """Export the retargeting graph for `generator` to `path`.

    The caller owns atomicity (the pipeline exports to a temporary name, validates, renames).

    Args:
        generator: the trained generator (spectral norm is baked into a copy).
        image: the training image, [1, 3, H, W] in [-1, 1] (baked in unless spec.image_input).
    """
    import onnx

    graph = RetargetGraph(generator, image, spec).eval()
    h, w = image.shape[2], image.shape[3]
    trace_size = (max(h, graph.min_side) + 1, max(w, graph.min_side) + 3)  # deliberately not multiples of 8
    inputs = example_inputs(spec, (h, w), trace_size)
    chatter = io.StringIO()
    # "torchvision is not installed. Skipping torchvision::nms" etc.: noise for our graph.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                (),
                kwargs=inputs,
                dynamo=True,
                opset_version=spec.opset,
                input_names=spec.input_names,
                output_names=[OUTPUT_NAME],
                dynamic_shapes=_dynamic_shapes(spec),
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean the same to a user
        first = first_line(exc)
        raise ExportError(f"torch.onnx could not export the generator ({type(exc).__name__}: {first})") from exc
    log.debug("exporter output: %s", chatter.getvalue())
    model = program.model_proto
    _rename_dims(model)
    model.doc_string = doc_string
    model.producer_name = "ingan"
    for key, value in (metadata_props or {}).items():
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})
    onnx.save_model(model, os.fspath(path))
    return Path(path)
