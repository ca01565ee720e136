"""`ingan-export`: checkpoint -> validated ONNX (FP32/FP16) -> TensorRT engines."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from ingan.cli.common import SizeParam, device_option, setup_logging, user_errors
from ingan.errors import CheckpointError, OptionError
from ingan.extras import require
from ingan.fsutil import existing_file
from ingan.sizes import format_size


class ByteSize(click.ParamType):
    name = "BYTES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value).lower())
        if not match:
            self.fail(f"'{value}' is not a size in bytes; use e.g. 4G or 512M", param, ctx)
        number, unit = float(match.group(1)), match.group(2)
        return int(number * 1024 ** "_kmgt".index(unit or "_"))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Output folder. [default: the checkpoint's folder]")
@click.option("--name", default="model", show_default=True, help="File stem: NAME.onnx, NAME_fp16.onnx, NAME.plan ...")
@click.option("--fp16", is_flag=True, help="Also write NAME_fp16.onnx: FP16 convolutions, FP32 normalisation, "
              "same I/O types (strongly typed; valid for TensorRT 10 and 11).")
@click.option("--image-input", is_flag=True, help="Make the image a run-time input [N,3,H,W] (RGB in [0,1]) "
              "instead of baking the training image in.")
@click.option("--warp", is_flag=True, help="Add a run-time 'homography' input [N,3,3] for non-rectangular retargets.")
@click.option("--output", "output_format", type=click.Choice(["uint8", "float"]), default="uint8", show_default=True,
              help="uint8 [N,H,W,3] RGB ready to save (4x fewer bytes to copy back), or float [N,3,H,W] in [0,1].")
@click.option("--min-size", type=SizeParam(), help="Smallest output WxH. [default: trained min scale x image]")
@click.option("--opt-size", type=SizeParam(), help="Output WxH TensorRT optimises for. [default: the image size]")
@click.option("--max-size", type=SizeParam(), help="Largest output WxH. [default: trained max scale x image]")
@click.option("--opset", type=click.IntRange(18, 19), default=18, show_default=True,
              help="ONNX opset (18 is torch's exporter's own; <= 19: TensorRT mis-parses GridSample-20).")
@click.option("--engine/--no-engine", "engine", default=None,
              help="--engine: fail unless a TensorRT engine is built. --no-engine: ONNX only, silently. "
                   "[default: build an engine where TensorRT and a CUDA GPU exist, else explain]")
@click.option("--workspace", type=ByteSize(), default="4G", show_default=True, help="TensorRT workspace limit.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="TensorRT builder optimisation level.")
@click.option("--timing-cache", type=click.Path(path_type=Path), help="Reusable TensorRT timing cache file.")
@click.option("--version-compatible", is_flag=True,
              help="Build a version-compatible engine (runs on the small tensorrt-lean runtime; loading it "
                   "needs ingan-run --allow-host-code because such plans embed host code).")
@device_option("Where the PyTorch side of the checks runs: the FP16 arithmetic check in real FP16 on a GPU, "
               "emulated in FP32 on the CPU (never FP16 kernels on a CPU; docs/export.md).")
@click.option("--triton-repo", type=click.Path(path_type=Path), metavar="DIR",
              help="Also add the exported models to this Triton Inference Server model repository: "
                   "DIR/NAME/config.pbtxt + 1/model.onnx, and DIR/NAME_trt for a TensorRT plan (docs/serve.md).")
@click.option("-q", "--quiet", is_flag=True, help="Errors and the final summary only.")
def main(checkpoint: Path, out: Path | None, engine: bool | None, quiet: bool, **opt: Any) -> None:
    """Export CHECKPOINT (a ckpt.pt from ingan-train) to ONNX, validate it, and build TensorRT engines.

    The ONNX graph takes the output size as a run-time input and returns the retargeted
    image at exactly that size; one file serves every size in the range. Every export is
    checked (ONNX checker, strict shape inference, a TensorRT parser lint) and compared
    with the PyTorch generator at three sizes; a mismatch fails the command and leaves no
    files. Next to each model a NAME.<ext>.json holds its metadata (size range, inputs,
    precision, validation numbers, TensorRT build details).

    \b
    Examples:
      ingan-export runs/photo/ckpt.pt --fp16
      ingan-export ckpt.pt --max-size 1920x1080 --engine --timing-cache trt.cache
    """
    setup_logging(quiet)
    started = time.monotonic()
    with user_errors():
        existing_file(checkpoint, "checkpoint", "the path of a ckpt.pt", CheckpointError)  # before heavy imports
        if opt["timing_cache"] is not None and opt["timing_cache"].is_dir():
            raise OptionError(f"--timing-cache '{opt['timing_cache']}' is a folder; pass a file (created if missing)")
        require("Exporting (ingan-export)", ("torch", "onnx", "onnxscript", "onnxruntime"), extra="export")
        from ingan.export.pipeline import ExportOptions, export_checkpoint

        options = ExportOptions(
            out_dir=out or checkpoint.parent,
            name=opt["name"],
            fp16=opt["fp16"],
            image_input=opt["image_input"],
            warp=opt["warp"],
            output=opt["output_format"],
            opset=opt["opset"],
            min_size=opt["min_size"],
            opt_size=opt["opt_size"],
            max_size=opt["max_size"],
            engine="auto" if engine is None else ("require" if engine else "skip"),
            workspace_bytes=opt["workspace"],
            optimization_level=opt["opt_level"],
            timing_cache=opt["timing_cache"],
            version_compatible=opt["version_compatible"],
            device=opt["device"],
        )
        say = (lambda msg: None) if quiet else (lambda msg: click.echo(f"{msg} ...", err=True))
        result = export_checkpoint(checkpoint, options, progress=say)
    from ingan.metadata import ModelMetadata, sidecar_path

    for artifact in result.artifacts:
        meta = ModelMetadata.read(sidecar_path(artifact))
        report = result.reports[artifact.name]
        click.echo(f"wrote {artifact} ({artifact.stat().st_size / 2**20:.1f} MiB, {meta.precision}, sizes "
                   f"{format_size(meta.min_size)}..{format_size(meta.max_size)})")
        if not quiet:
            click.echo(f"  {report.summary()}" if meta.kind == "onnx" else f"  TensorRT: {report.tolerance}")
            if report.lint:
                click.echo(f"  {report.lint}")
    if result.engine_note:
        click.echo(f"note: {result.engine_note}", err=True)
    if opt["triton_repo"] is not None:
        from ingan.export.triton_repo import write_triton_repo

        with user_errors():
            for model in write_triton_repo(opt["triton_repo"], result.artifacts):
                click.echo(f"wrote Triton model {model.config.parent} ({model.platform})")
                for note in model.notes:
                    click.echo(f"note: {note}", err=True)
    click.echo(f"PASSED in {time.monotonic() - started:.1f}s")
    sys.exit(0)
