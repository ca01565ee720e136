"""ingan-export as a library: checkpoint -> validated ONNX (FP32, FP16) -> TensorRT engines.

Each artifact is exported to a temporary name and validated; the ONNX files and their
sidecars are renamed into place together only once all of them passed, so a failed export
leaves the output folder as it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

import ingan
from ingan.contract import HOMOGRAPHY_INPUT, IMAGE_INPUT, OUTPUT_NAME, SIZE_INPUT, graph_feed
from ingan.errors import ConfigError, InganError, OptionError
from ingan.export.graph import ExportSpec, RetargetGraph
from ingan.export.onnx_export import export_onnx
from ingan.export.validate import (
    ValidationReport,
    ToleranceExceeded,
    check_model,
    choose_sizes,
    compare_outputs,
    tolerance_text,
)
from ingan.fsutil import atomic_path, ensure_output_dir, is_plain_stem
from ingan.metadata import ModelMetadata, TensorSpec, sha256_of, sidecar_path, size_range_property
from ingan.model.checkpoint import Checkpoint, file_sha256, load_checkpoint
from ingan.model.generator import Generator
from ingan.model.tensors import image_to_tensor, to_uint8
from ingan.model.sizes import default_size_range
from ingan.model.warp import top_shift_homography

log = logging.getLogger(__name__)

# An engine is compared with ONNX Runtime on the same graph: GPU kernels (and FP16 tactics)
# reorder arithmetic, so the bar is PSNR rather than a max difference.
ENGINE_TOLERANCE = "TensorRT vs ONNX Runtime on the same graph: PSNR >= 40 dB"

# The homography used to validate --warp graphs: a clearly non-rectangular retarget.
VALIDATION_SHIFTS = (-0.25, 0.3)


@dataclass(frozen=True)
class ExportOptions:
    out_dir: Path
    name: str = "model"
    fp16: bool = False
    image_input: bool = False
    warp: bool = False
    output: Literal["uint8", "float"] = "uint8"
    opset: int = 18
    min_size: tuple[int, int] | None = None  # (height, width)
    opt_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    engine: Literal["auto", "require", "skip"] = "auto"
    workspace_bytes: int = 4 << 30
    optimization_level: int = 3
    timing_cache: Path | None = None
    version_compatible: bool = False
    device: str = "auto"  # where the FP16 arithmetic check runs (CUDA: real FP16; CPU: emulated)


@dataclass
class ExportResult:
    artifacts: list[Path] = field(default_factory=list)
    reports: dict[str, ValidationReport] = field(default_factory=dict)
    engine_note: str | None = None


@dataclass(frozen=True)
class SizeRange:
    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]


MAX_EXPORT_SIDE = 8192  # the 64-channel full-resolution feature maps of an 8192x8192 output take 17 GB in fp32


def size_range(ckpt: Checkpoint, options: ExportOptions) -> SizeRange:
    """Defaults: the trained output/input scale range applied to the training image."""
    h, w = ckpt.image.shape[:2]
    floor = ckpt.generator_config.min_size
    default_min, default_max = default_size_range((h, w), ckpt.scale_range, floor)
    low = options.min_size or default_min
    high = options.max_size or (min(default_max[0], MAX_EXPORT_SIDE), min(default_max[1], MAX_EXPORT_SIDE))
    opt = options.opt_size or (min(max(h, low[0]), high[0]), min(max(w, low[1]), high[1]))
    for name, value in (("--min-size", low), ("--opt-size", opt), ("--max-size", high)):
        if max(value) > MAX_EXPORT_SIDE:
            raise OptionError(
                f"{name} {value[1]}x{value[0]} exceeds {MAX_EXPORT_SIDE} px per side (one such output "
                f"needs tens of GB); use at most {MAX_EXPORT_SIDE}x{MAX_EXPORT_SIDE}"
            )
        if min(value) < floor:
            raise OptionError(
                f"{name} {value[1]}x{value[0]} is below the generator's minimum side {floor} px; "
                f"use at least {floor}x{floor}"
            )
    if not (low[0] <= opt[0] <= high[0] and low[1] <= opt[1] <= high[1]):
        raise OptionError(
            f"size range is inconsistent: need min <= opt <= max per side, got min {low[1]}x{low[0]}, "
            f"opt {opt[1]}x{opt[0]}, max {high[1]}x{high[0]}"
        )
    return SizeRange(min=tuple(low), opt=tuple(opt), max=tuple(high))  # type: ignore[arg-type]


def image_tensor(ckpt: Checkpoint) -> torch.Tensor:
    """The training image as [1, 3, H, W] in [-1, 1] (the generator's input)."""
    return image_to_tensor(ckpt.image)


def torch_reference(
    generator: Generator, image: torch.Tensor, size: tuple[int, int], output: str, homography: np.ndarray | None
) -> np.ndarray:
    """The PyTorch generator's answer, converted exactly as the graph converts its output."""
    h = None if homography is None else torch.from_numpy(homography)
    with torch.no_grad():
        y = generator(image, size, h)
    if output == "float":
        return ((y.float() + 1.0) * 0.5).numpy()
    return to_uint8(y).numpy()


def validation_feed(spec: ExportSpec, ckpt: Checkpoint, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The graph's inputs for one validation check at `size`: the training image (when it is
    an input) and the validation warp (when the graph has one)."""
    image = np.transpose(ckpt.image, (2, 0, 1))[None].astype(np.float32) / 255.0 if spec.image_input else None
    homography = top_shift_homography(*VALIDATION_SHIFTS).astype(np.float32)[None] if spec.warp else None
    return graph_feed(size, image, homography)


def validate_with_onnxruntime(
    onnx_path: Path, spec: ExportSpec, ckpt: Checkpoint, generator: Generator, sizes: list[tuple[int, int]],
    progress: Callable[[str], None] | None = None, device: str = "auto",
) -> tuple[ValidationReport, dict[tuple[int, int], np.ndarray]]:
    from ingan.runtime.ort_session import create_session

    session = create_session(onnx_path, providers=["CPUExecutionProvider"])
    image = image_tensor(ckpt)
    report = ValidationReport(precision=spec.precision, tolerance=tolerance_text(spec.precision, spec.output))
    outputs, expected = {}, {}
    for size in sizes:
        _say(progress, f"checking the {spec.precision} graph in ONNX Runtime against PyTorch at {size[1]}x{size[0]}")
        feed = validation_feed(spec, ckpt, size)
        got = session.run([OUTPUT_NAME], feed)[0]
        expected[size] = torch_reference(generator, image, size, spec.output, feed.get(HOMOGRAPHY_INPUT))
        report.checks.append(compare_outputs(expected[size], got, size, spec.output, spec.precision))
        outputs[size] = got
    if spec.precision == "fp16":
        check_fp16_arithmetic(spec, ckpt, generator, expected, report, progress, device)
    return report, outputs


def check_fp16_arithmetic(
    spec: ExportSpec, ckpt: Checkpoint, generator: Generator, expected: dict[tuple[int, int], np.ndarray],
    report: ValidationReport, progress: Callable[[str], None] | None = None, device: str = "auto",
) -> None:
    """The FP16 graph's arithmetic in PyTorch against the FP32 outputs `expected` (per size).

    ONNX Runtime's CPU provider computes FP16 nodes it has no FP16 kernel for in FP32, so
    its check covers the FP16 weights and graph, not FP16 arithmetic. This check does: in
    real FP16 on a CUDA GPU, else emulated in FP32 on the CPU (FP16 values everywhere, FP32
    speed; ingan/model/precision.py, docs/export.md). Never FP16 kernels on a CPU: they are
    ~100x slower than FP32 on CPUs without FP16 matrix units.
    """
    from ingan.model.device import torch_device

    where = torch_device(device)  # never FP16 kernels on a CPU: emulated there
    emulate = where.type == "cpu"
    graph = RetargetGraph(generator, image_tensor(ckpt), spec, emulate_fp16=emulate).eval().to(where)
    if emulate:
        report.fp16_arithmetic = "emulated: FP32 arithmetic on FP16-rounded weights and tensors, on the CPU"
    else:
        report.fp16_arithmetic = f"native FP16 on {where} ({torch.cuda.get_device_name(where)})"
    for size, reference in expected.items():
        _say(progress, f"checking fp16 arithmetic in PyTorch ({report.fp16_arithmetic.split(':')[0]}) at "
                       f"{size[1]}x{size[0]}")
        feed = validation_feed(spec, ckpt, size)
        kwargs = {k: torch.from_numpy(v).to(where) for k, v in feed.items() if k != SIZE_INPUT}
        with torch.no_grad():
            got = graph(torch.tensor(size), **kwargs).cpu().numpy()
        report.fp16_emulation.append(compare_outputs(reference, got, size, spec.output, "fp16"))


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _io_specs(spec: ExportSpec) -> tuple[list[TensorSpec], list[TensorSpec]]:
    batch: int | str = "batch" if spec.image_input else 1
    inputs = [TensorSpec(SIZE_INPUT, "int64", [2])]
    if spec.image_input:
        inputs.append(TensorSpec(IMAGE_INPUT, "float32", ["batch", 3, "in_height", "in_width"]))
    if spec.warp:
        inputs.append(TensorSpec(HOMOGRAPHY_INPUT, "float32", [batch, 3, 3]))
    if spec.output == "uint8":
        outputs = [TensorSpec(OUTPUT_NAME, "uint8", [batch, "height", "width", 3])]
    else:
        outputs = [TensorSpec(OUTPUT_NAME, "float32", [batch, 3, "height", "width"])]
    return inputs, outputs


def _metadata(kind: str, artifact: Path, tmp: Path, spec: ExportSpec, ckpt: Checkpoint, ckpt_sha: str,
              sizes: SizeRange, report: ValidationReport, tensorrt: dict[str, Any] | None = None) -> ModelMetadata:
    import onnx

    inputs, outputs = _io_specs(spec)
    h, w = ckpt.image.shape[:2]
    return ModelMetadata(
        kind=kind,
        artifact=artifact.name,
        artifact_sha256=sha256_of(tmp),
        precision=spec.precision,
        opset=spec.opset,
        inputs=inputs,
        outputs=outputs,
        image_input=spec.image_input,
        warp=spec.warp,
        output_format=spec.output,
        min_size=list(sizes.min),
        opt_size=list(sizes.opt),
        max_size=list(sizes.max),
        training_image_size=[int(h), int(w)],
        trained_scale_range=list(ckpt.scale_range),
        source_checkpoint={"file": ckpt.path.name, "sha256": ckpt_sha, "iteration": ckpt.iteration,
                           "image_name": str(ckpt.payload["image_name"])},
        exporter=f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnx {onnx.__version__}",
        validation=report.to_dict(),
        tensorrt=tensorrt,
        ingan_version=ingan.__version__,
    )


def export_checkpoint(
    checkpoint: str | Path, options: ExportOptions, progress: Callable[[str], None] | None = None
) -> ExportResult:
    """Export, validate and (where possible) build engines; see the module docstring."""
    from ingan.export.trt_lint import lint_model

    ckpt = load_checkpoint(checkpoint)
    if options.engine == "require":
        from ingan.export.tensorrt_build import tensorrt_status

        available, reason = tensorrt_status()
        if not available:  # fail before spending minutes on ONNX
            raise InganError(f"--engine: cannot build a TensorRT engine: {reason}")
    if not is_plain_stem(options.name):
        raise OptionError(f"invalid --name '{options.name}'; use a plain file stem such as 'model'")
    sizes = size_range(ckpt, options)
    generator = ckpt.build_generator()
    out_dir = ensure_output_dir(options.out_dir)  # only once the options are known to be good
    ckpt_sha = file_sha256(ckpt.path)
    check_sizes = choose_sizes(tuple(ckpt.image.shape[:2]), sizes.min, sizes.max)
    result = ExportResult()
    precisions = ["fp32"] + (["fp16"] if options.fp16 else [])
    onnx_outputs: dict[str, tuple[Path, ExportSpec, dict]] = {}
    # Every ONNX file and sidecar stays a temporary file until all of them passed validation;
    # then they are renamed together, so a failed FP16 check cannot leave a new FP32 model
    # beside an old FP16 one.
    with contextlib.ExitStack() as commit:
        for precision in precisions:
            spec = ExportSpec(image_input=options.image_input, warp=options.warp, output=options.output,
                              precision=precision, opset=options.opset)
            final = out_dir / f"{options.name}{'_fp16' if precision == 'fp16' else ''}.onnx"
            _say(progress, f"exporting {final.name}")
            tmp_onnx = commit.enter_context(atomic_path(final))
            tmp_json = commit.enter_context(atomic_path(sidecar_path(final)))
            started = time.perf_counter()
            export_onnx(generator, image_tensor(ckpt), spec, tmp_onnx,
                        doc_string=f"InGAN retargeting graph from {ckpt.path.name} (ingan {ingan.__version__})",
                        metadata_props=size_range_property(sizes.min, sizes.max))
            log.info("exported %s in %.1fs", final.name, time.perf_counter() - started)
            _say(progress, f"checking {final.name}: ONNX checker, shape inference, TensorRT parser lint")
            model = check_model(tmp_onnx)
            lint = lint_model(model)
            if not lint.ok:
                errors = "; ".join(f.message for f in lint.findings if f.severity == "error")
                raise InganError(f"{final.name} would not parse in TensorRT: {errors}")
            report, outputs = validate_with_onnxruntime(tmp_onnx, spec, ckpt, generator, check_sizes, progress,
                                                        options.device)
            report.op_counts = dict(sorted(lint.op_counts.items()))
            report.lint = lint.summary()
            report.lint_findings = [f"{f.severity}: {f.op_type} {f.node}: {f.message}" for f in lint.findings]
            if not report.passed:
                bad = [c for c in report.checks if not c.passed][0]
                raise ToleranceExceeded(
                    f"{final.name} does not match PyTorch at {bad.size[1]}x{bad.size[0]}: max |diff| "
                    f"{bad.max_abs_diff:.3g}, PSNR {bad.psnr_db:.1f} dB ({report.tolerance})"
                )
            # The new sidecar remembers the one it replaces and is renamed into place before the
            # model (the ExitStack unwinds in reverse): a kill between the two renames leaves
            # the old model loadable through the old metadata (ModelMetadata.for_artifact).
            metadata = _metadata("onnx", final, tmp_onnx, spec, ckpt, ckpt_sha, sizes, report)
            metadata.replacing(sidecar_path(final)).write(tmp_json)
            result.artifacts.append(final)
            result.reports[final.name] = report
            onnx_outputs[precision] = (final, spec, outputs)

    if options.engine != "skip":
        result.engine_note = _build_engines(onnx_outputs, options, ckpt, ckpt_sha, sizes, check_sizes, result, progress)
    return result


def _build_engines(onnx_outputs: dict, options: ExportOptions, ckpt: Checkpoint, ckpt_sha: str, sizes: SizeRange,
                   check_sizes: list[tuple[int, int]], result: ExportResult,
                   progress: Callable[[str], None] | None) -> str | None:
    from ingan.export.tensorrt_build import EngineBuildConfig, build_engine, tensorrt_status

    available, reason = tensorrt_status()
    if not available:
        if options.engine == "require":
            raise InganError(f"--engine: cannot build a TensorRT engine: {reason}")
        return (f"no TensorRT engine built: {reason}. The ONNX files run with ONNX Runtime; to build an "
                "engine, run ingan-export on a machine with TensorRT and a CUDA GPU (add --engine to make "
                "that a hard requirement)")
    from ingan.runtime.trt_session import TrtEngineSession

    h, w = ckpt.image.shape[:2]
    for precision, (onnx_path, spec, ort_outputs) in onnx_outputs.items():
        plan_path = onnx_path.with_suffix(".plan")
        _say(progress, f"building {plan_path.name} with TensorRT")
        image_shape = None
        if spec.image_input:
            image_shape = ((1, 3, 8, 8), (1, 3, h, w), (1, 3, max(h, 2048), max(w, 2048)))
        config = EngineBuildConfig(min_size=sizes.min, opt_size=sizes.opt, max_size=sizes.max,
                                   image_shape=image_shape, workspace_bytes=options.workspace_bytes,
                                   optimization_level=options.optimization_level,
                                   timing_cache=options.timing_cache,
                                   version_compatible=options.version_compatible)
        with atomic_path(plan_path) as tmp_plan, atomic_path(sidecar_path(plan_path)) as tmp_json:
            built = build_engine(onnx_path, tmp_plan, config)
            report = ValidationReport(precision=precision, tolerance=ENGINE_TOLERANCE)
            with TrtEngineSession(tmp_plan.read_bytes(), allow_host_code=options.version_compatible) as session:
                for size in check_sizes:
                    feed = validation_feed(spec, ckpt, size)
                    got = session.run(size, image=feed.get(IMAGE_INPUT), homography=feed.get(HOMOGRAPHY_INPUT))
                    check = compare_outputs(ort_outputs[size], got, size, spec.output, "fp16")
                    report.checks.append(check)
            if not report.passed:
                bad = [c for c in report.checks if not c.passed][0]
                raise ToleranceExceeded(
                    f"{plan_path.name} does not match ONNX Runtime at {bad.size[1]}x{bad.size[0]}: PSNR {bad.psnr_db:.1f} dB"
                )
            trt_info = {"version": built.tensorrt_version, "gpu": built.gpu_name,
                        "compute_capability": built.compute_capability, "flags": list(built.flags),
                        "build_seconds": round(built.build_seconds, 1), "profile": built.profile,
                        "version_compatible": options.version_compatible, "onnx": onnx_path.name}
            metadata = _metadata("tensorrt", plan_path, tmp_plan, spec, ckpt, ckpt_sha, sizes, report, trt_info)
            metadata.replacing(sidecar_path(plan_path)).write(tmp_json)  # renamed before the plan, as above
        result.artifacts.append(plan_path)
        result.reports[plan_path.name] = report
    return None
