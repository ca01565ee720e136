"""TensorRT / CUDA API names used by ingan, checked against real bindings or the docs.

No full TensorRT (Builder, OnnxParser) installs on the project's CPU machines, so:
- runtime names (the session and its helpers, ingan/runtime/{cuda,trt_helpers,trt_io,
  trt_graphs,trt_session}.py, and the backend ingan/runtime/backends/trt.py) are checked against the real `tensorrt_lean` 11.x bindings and the CUDA names against
  `cuda.bindings.runtime`;
- builder names (ingan/export/tensorrt_build.py) are checked against a list verified by hand
  in the TensorRT 11.x docs and 11.1 binding sources (URLs below), plus `tensorrt_lean` for
  the builder enums/classes the lean wheel also ships;
- an AST pass makes sure each module uses no TensorRT/CUDA name outside these lists, and no
  name removed in TensorRT 11.x.

The AST pass finds TensorRT objects by variable name (the modules follow this convention):
`trt` is the module; `runtime`/`engine`/`context` (or `self._runtime` ...) are Runtime /
ICudaEngine / IExecutionContext; in the builder `builder`, `network`, `parser`, `error`,
`tensor`/`size_tensor`, `profile`, `builder_config`, `timing_cache`; `cudart` is CUDA.

GPU tests at the end (markers `tensorrt` + `cuda`) build real engines from tiny hand-made
ONNX graphs and compare TrtEngineSession with ONNX Runtime.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingan.errors import ConfigError, InganError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = ROOT / "ingan" / "runtime"
SESSION_SRCS = tuple(RUNTIME_DIR / f"{name}.py" for name in ("cuda", "trt_helpers", "trt_io", "trt_graphs", "trt_session"))
BACKEND_SRC = RUNTIME_DIR / "backends" / "trt.py"
BUILD_SRC = ROOT / "ingan" / "export" / "tensorrt_build.py"
RUNTIME_SRCS = (*SESSION_SRCS, BACKEND_SRC)
ALL_SRCS = (*SESSION_SRCS, BACKEND_SRC, BUILD_SRC)

MODULE = "module"  # role label for the `trt` module itself

# ----------------------------------------------------------------------------- name lists

# Runtime side: every name is checked against the installed tensorrt_lean 11.x bindings.
RUNTIME_TRT_NAMES: dict[str, set[str]] = {
    MODULE: {
        "Runtime", "ILogger", "ILogger.__init__", "ILogger.INTERNAL_ERROR", "ILogger.ERROR",
        "ILogger.WARNING", "TensorIOMode.INPUT", "TensorIOMode.OUTPUT", "nptype",
        "__version__", "__name__",
        # CUDA-graph contexts share one scratch block (NvInferRuntime.h setDeviceMemoryV2)
        "ExecutionContextAllocationStrategy.USER_MANAGED",
    },
    "Runtime": {"deserialize_cuda_engine", "engine_host_code_allowed"},
    "ICudaEngine": {
        "num_io_tensors", "get_tensor_name", "get_tensor_mode", "is_shape_inference_io",
        "get_tensor_dtype", "get_tensor_profile_values", "get_tensor_shape",
        "get_tensor_profile_shape", "create_execution_context", "device_memory_size_v2",
    },
    "IExecutionContext": {
        "set_tensor_address", "set_input_shape", "infer_shapes", "get_tensor_shape",
        "execute_async_v3", "set_device_memory",
    },
}
RUNTIME_ROLES = {
    "trt": MODULE,
    "runtime": "Runtime", "self._runtime": "Runtime",
    "engine": "ICudaEngine", "self._engine": "ICudaEngine",
    "context": "IExecutionContext", "self._context": "IExecutionContext",
}

# CUDA runtime names, checked against cuda.bindings.runtime (cuda-python 13.x).
CUDART_NAMES: set[str] = {
    "cudaGetDeviceCount", "cudaGetDevice", "cudaGetDeviceProperties", "cudaStreamCreate",
    "cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync", "cudaMemcpyKind.cudaMemcpyHostToDevice",
    "cudaMemcpyKind.cudaMemcpyDeviceToHost", "cudaStreamSynchronize", "cudaFree", "cudaFreeHost",
    "cudaStreamDestroy",
    # backends/trt.py: device selection
    "cudaSetDevice",
    # trt_graphs.py: the optional CUDA-graph cache (trtexec's TrtCudaGraph recipe)
    "cudaStreamBeginCapture", "cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal",
    "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphLaunch", "cudaGraphExecDestroy",
    "cudaGraphDestroy", "cudaGetLastError",
    # trt_session.py: TrtEngineSession.enqueue(events=...) records the caller's events (ingan.bench)
    "cudaEventRecord",
}
CUDA_DEVICE_PROP_NAMES = {"name", "major", "minor"}
CUDART_ROLES = {"cudart": "cudart", "self._cudart": "cudart", "props": "cudaDeviceProp"}

# Builder side. Verified by hand for TensorRT 11.x in:
#  - Builder / create_network(flags=0) / NetworkDefinitionCreationFlag (no EXPLICIT_BATCH):
#    https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html
#  - IBuilderConfig members (clearFlag, createTimingCache, setTimingCache, getTimingCache,
#    setMemoryPoolLimit, builderOptimizationLevel, addOptimizationProfile, setProgressMonitor):
#    https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/_static/c-api/classnvinfer1_1_1_i_builder_config-members.html
#  - IOptimizationProfile.set_shape / set_shape_input:
#    https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/_static/python-api/infer/Core/OptimizationProfile.html
#  - IProgressMonitor (phase_start/step_complete/phase_finish):
#    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ProgressMonitor.html
#  - OnnxParser (parse_from_file, num_errors, get_error) and ParserError (desc, node_name,
#    node_operator): https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/parsers/Onnx/pyOnnx.html
#    and https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/c-api/_nv_onnx_parser_8h.html
#  - ITimingCache.serialize: https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/TimingCache.html
#  - Removed in 11.x: https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration/tensorrt-10x-to-11x-python-api-reference.html
# and read in the pybind sources of NVIDIA/TensorRT at commit a892d222 (11.1.0):
#  python/src/infer/pyCore.cpp (Builder, IBuilderConfig incl. the `progress_monitor` property,
#  `set_timing_cache(cache, ignore_mismatch)`, IOptimizationProfile, ITimingCache),
#  python/src/infer/pyGraph.cpp (INetworkDefinition.num_inputs/get_input, ITensor.name/
#  is_shape_tensor), python/src/parsers/pyOnnx.cpp (OnnxParser, ParserError methods) — and at
#  tag v10.0.0 for the 10.x side (all of these names exist there too).
BUILD_TRT_NAMES: dict[str, set[str]] = {
    MODULE: {
        "Builder", "OnnxParser", "MemoryPoolType.WORKSPACE", "BuilderFlag.TF32",
        "BuilderFlag.VERSION_COMPATIBLE", "BuilderFlag.__members__", "IProgressMonitor",
        "IProgressMonitor.__init__", "__version__",
    },
    "Builder": {
        "create_network", "create_optimization_profile", "create_builder_config",
        "build_serialized_network",
    },
    "INetworkDefinition": {"num_inputs", "get_input"},
    "ITensor": {"name", "is_shape_tensor"},
    "OnnxParser": {"parse_from_file", "num_errors", "get_error"},
    "ParserError": {"desc", "node_name", "node_operator"},
    "IOptimizationProfile": {"set_shape_input", "set_shape"},
    "IBuilderConfig": {
        "set_memory_pool_limit", "builder_optimization_level", "add_optimization_profile",
        "clear_flag", "set_flag", "get_flag", "create_timing_cache", "set_timing_cache",
        "get_timing_cache", "progress_monitor",
    },
    "ITimingCache": {"serialize"},
}
BUILD_ROLES = {
    "trt": MODULE, "builder": "Builder", "network": "INetworkDefinition", "tensor": "ITensor",
    "size_tensor": "ITensor", "parser": "OnnxParser", "error": "ParserError",
    "profile": "IOptimizationProfile", "builder_config": "IBuilderConfig",
    "timing_cache": "ITimingCache",
}

# Names removed in TensorRT 11.x (or 10.x) that must not appear as attributes anywhere.
REMOVED_NAMES = {
    "FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "EXPLICIT_BATCH", "OBEY_PRECISION_CONSTRAINTS",
    "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "device_memory_size",
    "get_device_memory_size_for_profile", "platform_has_fast_fp16", "platform_has_fast_int8",
    "platform_has_tf32", "int8_calibrator", "set_quantization_flag", "clear_quantization_flag",
    "quantization_flags", "set_calibration_profile", "get_calibration_profile",
    "all_shape_inputs_specified", "create_execution_context_without_device_memory",
    "supports_model", "parse_with_weight_descriptors", "weight_streaming_budget",
    "minimum_weight_streaming_budget", "algorithm_selector", "set_dynamic_range",
    "set_output_type", "reset_precision", "CUBLAS", "CUBLAS_LT", "CUDNN",
    # removed in 10.x already (old binding-index API)
    "execute_async_v2", "get_binding_shape", "num_bindings", "max_workspace_size", "build_engine",
}
# The ones whose owning class exists in tensorrt_lean: confirm the removal on real 11.x bindings.
REMOVED_ON_LEAN = {
    "BuilderFlag": {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                    "PREFER_PRECISION_CONSTRAINTS"},
    "ICudaEngine": {"device_memory_size", "get_device_memory_size_for_profile",
                    "weight_streaming_budget", "minimum_weight_streaming_budget"},
    "IExecutionContext": {"all_shape_inputs_specified", "execute_async_v2"},
}


# ----------------------------------------------------------------------------- AST helpers


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _named_attribute(node: ast.AST) -> str | None:
    """The literal name in a getattr/hasattr/setattr(obj, "name", ...) call; None for any other node."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "hasattr", "setattr"}
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[1].value
    return None


def _collect(tree: ast.Module, roles: dict[str, str]) -> set[tuple[str, str]]:
    """(role, dotted attribute) for every outermost attribute chain rooted at a role variable,
    plus getattr/hasattr/setattr(<role>, "name")."""
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    by_length = sorted(roles.items(), key=lambda kv: -len(kv[0]))
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            dotted = _dotted(node)
            if dotted is None:
                continue
            for prefix, role in by_length:
                if dotted.startswith(prefix + "."):
                    found.add((role, dotted[len(prefix) + 1:]))
                    break
        elif (name := _named_attribute(node)) is not None:
            base = _dotted(node.args[0])
            if base in roles:
                found.add((roles[base], name))
    return found


def _flatten(names: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(role, name) for role, values in names.items() for name in values}


def _resolve(root: Any, dotted: str) -> bool:
    obj = root
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _attribute_names(tree: ast.Module) -> set[str]:
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names.update(name for node in ast.walk(tree) if (name := _named_attribute(node)) is not None)
    return names


def _lean():
    return pytest.importorskip(
        "tensorrt_lean", reason="tensorrt_lean is not installed (pip install tensorrt-lean-cu13)"
    )


def _cudart():
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed (pip install cuda-python)")
    from cuda.bindings import runtime as cudart

    return cudart


# ----------------------------------------------------------------------------- name checks


def test_runtime_uses_exactly_the_listed_tensorrt_names():
    used = set().union(*(_collect(_tree(path), RUNTIME_ROLES) for path in RUNTIME_SRCS))
    listed = _flatten(RUNTIME_TRT_NAMES)
    assert used - listed == set(), "the runtime's TensorRT modules use names missing from RUNTIME_TRT_NAMES"
    assert listed - used == set(), "RUNTIME_TRT_NAMES lists names the runtime's TensorRT modules no longer use"


def test_runtime_tensorrt_names_exist_on_lean_bindings():
    trt = _lean()
    assert trt.__version__.split(".")[0] in {"10", "11"}
    missing = []
    for role, names in RUNTIME_TRT_NAMES.items():
        root = trt if role == MODULE else getattr(trt, role)
        missing += [f"{role}.{name}" for name in sorted(names) if not _resolve(root, name)]
    assert missing == [], f"not in tensorrt_lean {trt.__version__}: {missing}"


def test_get_tensor_profile_values_order_matches_installed_bindings():
    """The binding names its parameters (name, profile_index) but takes (int, str): see the
    docstring. ingan calls it positionally as (profile_index, name) and falls back."""
    trt = _lean()
    doc = trt.ICudaEngine.get_tensor_profile_values.__doc__
    signature = doc.strip().splitlines()[0]
    params = [p.strip() for p in signature.split("(", 1)[1].rsplit(")", 1)[0].split(",")][1:]
    first_type = params[0].split(":", 1)[1].strip()
    second_type = params[1].split(":", 1)[1].strip()
    int_first = "int" in first_type.lower() and second_type == "str"
    str_first = first_type == "str" and "int" in second_type.lower()
    assert int_first or str_first, f"unexpected signature: {signature}"

    from ingan.runtime.trt_helpers import tensor_profile_values

    table = {("size", 0): [[8, 8], [32, 48], [64, 80]]}

    class IntFirst:  # the C++ lambda's real order (10.0 .. 11.4)
        def get_tensor_profile_values(self, index, name):
            if not isinstance(index, int) or not isinstance(name, str):
                raise TypeError("incompatible function arguments")
            return table[(name, index)]

    class StrFirst:  # the documented order, should a release fix the binding
        def get_tensor_profile_values(self, name, index):
            if not isinstance(index, int) or not isinstance(name, str):
                raise TypeError("incompatible function arguments")
            return table[(name, index)]

    assert tensor_profile_values(IntFirst(), 0, "size") == table[("size", 0)]
    assert tensor_profile_values(StrFirst(), 0, "size") == table[("size", 0)]
    # the installed order is the first one tried
    if int_first:
        calls = []

        class Recorder:
            def get_tensor_profile_values(self, *args):
                calls.append(args)
                return table[("size", 0)]

        tensor_profile_values(Recorder(), 0, "size")
        assert calls == [(0, "size")]


def test_runtime_uses_exactly_the_listed_cuda_names():
    used = set().union(*(_collect(_tree(path), CUDART_ROLES) for path in ALL_SRCS))
    listed = {("cudart", n) for n in CUDART_NAMES} | {("cudaDeviceProp", n) for n in CUDA_DEVICE_PROP_NAMES}
    assert used - listed == set(), "CUDA names missing from CUDART_NAMES"
    assert listed - used == set(), "CUDART_NAMES lists names no longer used"


def test_cuda_names_exist_in_cuda_bindings_runtime():
    cudart = _cudart()
    missing = [name for name in sorted(CUDART_NAMES) if not _resolve(cudart, name)]
    assert missing == [], f"not in cuda.bindings.runtime: {missing}"
    props = cudart.cudaDeviceProp()
    assert all(hasattr(props, name) for name in CUDA_DEVICE_PROP_NAMES)
    from cuda.bindings.utils import get_cuda_native_handle

    assert get_cuda_native_handle(cudart.cudaStream_t(1234)) == 1234


def test_cuda_calls_pass_the_documented_number_of_arguments():
    """cuda-python's docstrings start with the C signature, e.g. cudaMemcpyAsync(dst, src, ...)."""
    cudart = _cudart()
    for path in ALL_SRCS:
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted(node.func) or ""
            for prefix in ("self._cudart.", "cudart."):
                if dotted.startswith(prefix):
                    name = dotted[len(prefix):]
                    first = getattr(cudart, name).__doc__.strip().splitlines()[0]
                    inside = first.split("(", 1)[1].rsplit(")", 1)[0]
                    expected = len([p for p in inside.split(",") if p.strip()])
                    got = len(node.args) + len(node.keywords)
                    assert got == expected, f"{path.name}:{node.lineno} {name} takes {expected} args: {first}"
                    break


def test_builder_uses_only_doc_verified_names():
    used = _collect(_tree(BUILD_SRC), BUILD_ROLES)
    listed = _flatten(BUILD_TRT_NAMES)
    assert used - listed == set(), "tensorrt_build.py uses TensorRT names missing from BUILD_TRT_NAMES"
    assert listed - used == set(), "BUILD_TRT_NAMES lists names tensorrt_build.py no longer uses"


def test_builder_names_shipped_by_lean_exist_there():
    """tensorrt_lean also carries the builder enums, IProgressMonitor, IOptimizationProfile
    and ITimingCache: check those builder names against real 11.x bindings too."""
    trt = _lean()
    checked = 0
    for role, names in BUILD_TRT_NAMES.items():
        for name in sorted(names):
            root, path = (trt, name) if role == MODULE else (getattr(trt, role, None), name)
            if root is None or not hasattr(root, path.split(".")[0]):
                continue  # Builder, OnnxParser, IBuilderConfig, ...: docs only (see list above)
            assert _resolve(root, path), f"{role}.{name} not in tensorrt_lean {trt.__version__}"
            checked += 1
    assert checked >= 10  # BuilderFlag.*, MemoryPoolType.WORKSPACE, IProgressMonitor, profile, cache


def test_no_removed_tensorrt_names():
    for path in ALL_SRCS:
        used = _attribute_names(_tree(path)) & REMOVED_NAMES
        assert used == set(), f"{path.name} uses names removed in TensorRT 10/11: {sorted(used)}"


def test_removed_names_really_are_gone_in_lean_11():
    trt = _lean()
    if not trt.__version__.startswith("11."):
        pytest.skip(f"tensorrt_lean {trt.__version__} is not 11.x")
    still_there = [
        f"{cls}.{name}" for cls, names in REMOVED_ON_LEAN.items() for name in names
        if hasattr(getattr(trt, cls), name)
    ]
    assert still_there == []
    # and the replacements exist
    assert hasattr(trt.ICudaEngine, "device_memory_size_v2")
    assert hasattr(trt.IExecutionContext, "infer_shapes")


# ----------------------------------------------------------------------------- CPU behaviour


def test_modules_import_without_torch_or_tensorrt():
    code = textwrap.dedent(
        """
        import json, sys
        import ingan.export.tensorrt_build as build
        import ingan.runtime.trt_session
        loaded_at_import = sorted(m for m in ("torch", "tensorrt", "tensorrt_lean") if m in sys.modules)
        build.tensorrt_status()
        print(json.dumps({"import": loaded_at_import, "torch_after_status": "torch" in sys.modules}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"import": [], "torch_after_status": False}


def test_tensorrt_status_explains_what_is_missing():
    from ingan.export.tensorrt_build import tensorrt_status

    ok, reason = tensorrt_status()
    if importlib.util.find_spec("tensorrt") is None:
        assert (ok, reason) == (False, "the 'tensorrt' package is not installed (pip install --extra-index-url "
                                       "https://pypi.nvidia.com 'ingan[gpu]')")
    elif not ok:
        assert reason.startswith(("no CUDA GPU found (cudaGetDeviceCount: ", "cuda-python is not installed"))
    else:
        assert reason == ""


def test_cuda_device_status_reason_names_the_cuda_error():
    from ingan.runtime.cuda import cuda_device_status

    ok, reason = cuda_device_status()
    if not ok:
        assert reason == "cuda-python is not installed" or reason.startswith("no CUDA GPU found (cudaGetDeviceCount: ")


def test_build_config_validation():
    from ingan.export.tensorrt_build import EngineBuildConfig

    good = EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(64, 80))
    good.validate()
    bad = [
        EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(16, 80)),  # opt > max
        EngineBuildConfig(min_size=(40, 8), opt_size=(32, 48), max_size=(64, 80)),  # min > opt
        EngineBuildConfig(min_size=(0, 8), opt_size=(32, 48), max_size=(64, 80)),
        EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(64, 80), optimization_level=6),
        EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(64, 80), batch=0),
        EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(64, 80),
                          image_shape=((1, 3, 8, 8), (1, 3, 4, 8), (1, 3, 16, 16))),
        EngineBuildConfig(min_size=(8, 8), opt_size=(32, 48), max_size=(64, 80),
                          image_shape=((1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8))),
    ]
    for config in bad:
        with pytest.raises(ConfigError):
            config.validate()


def test_build_engine_checks_config_and_input_before_tensorrt(tmp_path):
    from ingan.export.tensorrt_build import EngineBuildConfig, EngineBuildError, build_engine

    assert issubclass(EngineBuildError, InganError)
    bad = EngineBuildConfig(min_size=(64, 64), opt_size=(32, 32), max_size=(80, 80))
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "x.plan", bad)
    good = EngineBuildConfig(min_size=(8, 8), opt_size=(32, 32), max_size=(64, 64))
    with pytest.raises(EngineBuildError, match="not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "x.plan", good)


def test_build_engine_without_tensorrt_names_the_extra(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed")
    from ingan.export.tensorrt_build import EngineBuildConfig, build_engine

    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"placeholder: never parsed")
    config = EngineBuildConfig(min_size=(8, 8), opt_size=(32, 32), max_size=(64, 64))
    with pytest.raises(MissingDependencyError, match=r"ingan\[gpu\]"):
        build_engine(onnx_path, tmp_path / "m.plan", config)
    assert not (tmp_path / "m.plan").exists()


def test_size_range_check_names_range_and_fix():
    from ingan.runtime.trt_io import check_size_in_range

    assert check_size_in_range((np.int64(33), 47), (8, 8), (64, 80)) == (33, 47)
    assert check_size_in_range((8, 80), (8, 8), (64, 80)) == (8, 80)
    for size in [(7, 40), (40, 81), (65, 8), (0, 10)]:
        with pytest.raises(ConfigError) as info:
            check_size_in_range(size, (8, 8), (64, 80))
        if size[0] > 0:
            assert "8x8 .. 80x64 (width x height)" in str(info.value)  # the runners' wording: WIDTHxHEIGHT
            assert "ingan-export --min-size/--max-size" in str(info.value)
    with pytest.raises(ConfigError):
        check_size_in_range((1, 2, 3), (8, 8), (64, 80))


def test_parser_errors_are_all_listed():
    from ingan.export.tensorrt_build import format_parser_errors

    class Error:
        def __init__(self, desc, node, op):
            self._d, self._n, self._o = desc, node, op

        def desc(self):
            return self._d

        def node_name(self):
            return self._n

        def node_operator(self):
            return self._o

    class Parser:
        errors = [Error("No importer for op FooOp", "/gen/foo", "FooOp"),
                  Error("Invalid graph", "", ""),
                  Error("Unsupported mode", "/gen/resize", "Resize")]
        num_errors = 3

        def get_error(self, i):
            return self.errors[i]

    assert format_parser_errors(Parser()) == (
        "No importer for op FooOp (node '/gen/foo', op FooOp); Invalid graph; "
        "Unsupported mode (node '/gen/resize', op Resize)"
    )


def test_logger_keeps_errors_on_real_ilogger_base():
    trt = _lean()
    from ingan.runtime.trt_helpers import make_logger

    logger = make_logger(trt)
    assert isinstance(logger, trt.ILogger)
    logger.log(trt.ILogger.WARNING, "just a warning")
    logger.log(trt.ILogger.ERROR, "first error")
    logger.log(trt.ILogger.INTERNAL_ERROR, "second error")
    logger.log(trt.ILogger.VERBOSE, "noise")
    assert logger.take_errors() == ["first error", "second error"]
    assert logger.take_errors() == []


def test_progress_monitor_on_real_iprogressmonitor_base():
    trt = _lean()
    from ingan.export.tensorrt_build import _progress_monitor_class

    cls = _progress_monitor_class(trt)
    assert cls is not None and issubclass(cls, trt.IProgressMonitor)
    monitor = cls(enabled=True)  # bars go to stderr (captured by pytest)
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 2)
    assert monitor._depth == {"Building engine": 0, "Tactic selection": 1}
    assert monitor.step_complete("Tactic selection", 0) is True
    assert monitor.step_complete("Tactic selection", 1) is True
    assert monitor._bars["Tactic selection"].n == 2
    monitor.phase_finish("Tactic selection")
    assert monitor.step_complete("Building engine", 0) is True
    assert monitor.step_complete("unknown phase", 5) is True  # never raises into TensorRT
    monitor.close()  # "Building engine" was never finished: close() cleans up
    assert monitor._bars == {}
    monitor.cancelled = True
    assert monitor.step_complete("anything", 0) is False


def test_session_refuses_to_start_without_gpu_or_plan():
    """Here (no GPU) this is a DeviceError raised before deserialization, which would
    segfault without a GPU; on a GPU machine the junk plan fails to load."""
    _lean()
    from ingan.runtime.trt_session import TrtEngineSession

    with pytest.raises(InganError):
        TrtEngineSession(b"not a TensorRT plan", lean=True)


# ----------------------------------------------------------------------------- GPU: tiny graphs


def _size_resize_model(kind: str):
    """size int64[2] -> Resize of a constant [1,3,4,4] to [1,3,H,W] -> uint8 NHWC or float NCHW."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    base = (np.arange(3 * 4 * 4, dtype=np.float32).reshape(1, 3, 4, 4) * 5.0)  # exact in uint8
    nodes = [
        helper.make_node("Concat", ["nc", "size"], ["sizes"], axis=0),
    ]
    inits = [numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "nc")]
    if kind == "uint8":
        inits.append(numpy_helper.from_array(base, "base"))
        nodes += [
            helper.make_node("Resize", ["base", "", "", "sizes"], ["resized"], mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
            helper.make_node("Cast", ["resized"], ["as_u8"], to=TensorProto.UINT8),
            helper.make_node("Transpose", ["as_u8"], ["output"], perm=[0, 2, 3, 1]),
        ]
        output = helper.make_tensor_value_info("output", TensorProto.UINT8, [1, "height", "width", 3])
    else:
        inits.append(numpy_helper.from_array(base / 255.0, "base"))
        nodes.append(helper.make_node("Resize", ["base", "", "", "sizes"], ["output"], mode="linear",
                                      coordinate_transformation_mode="half_pixel"))
        output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "height", "width"])
    graph = helper.make_graph(
        nodes, f"size_{kind}", [helper.make_tensor_value_info("size", TensorProto.INT64, [2])], [output], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def _image_homography_model():
    """size + image [N,3,h,w] + homography [N,3,3] -> Resize(image) + homography[:,2,2] (float NCHW)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def ints(name, values):
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    nodes = [
        helper.make_node("Shape", ["image"], ["nc"], start=0, end=2),
        helper.make_node("Concat", ["nc", "size"], ["sizes"], axis=0),
        helper.make_node("Resize", ["image", "", "", "sizes"], ["resized"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Slice", ["homography", "s", "e", "ax"], ["h22"]),  # [N,1,1]
        helper.make_node("Unsqueeze", ["h22", "one"], ["h22_4d"]),  # [N,1,1,1]
        helper.make_node("Add", ["resized", "h22_4d"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "image_homography",
        [helper.make_tensor_value_info("size", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "in_h", "in_w"]),
         helper.make_tensor_value_info("homography", TensorProto.FLOAT, ["batch", 3, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [ints("s", [2, 2]), ints("e", [3, 3]), ints("ax", [1, 2]), ints("one", [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def _save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], feeds)[0]


SIZE_PROFILE = dict(min_size=(8, 8), opt_size=(32, 32), max_size=(64, 64))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build each tiny graph once per module: {kind: (onnx_path, plan_path, result)}."""
    from ingan.export.tensorrt_build import EngineBuildConfig, build_engine

    folder = tmp_path_factory.mktemp("trt")
    cache: dict[str, Any] = {}

    def get(kind: str):
        if kind not in cache:
            if kind == "image":
                model = _image_homography_model()
                config = EngineBuildConfig(
                    **SIZE_PROFILE,
                    image_shape=((1, 3, 4, 4), (2, 3, 8, 8), (2, 3, 16, 16)),
                    progress=False,
                )
            else:
                model = _size_resize_model(kind.removesuffix("_vc"))
                config = EngineBuildConfig(
                    **SIZE_PROFILE, progress=False, version_compatible=kind.endswith("_vc"),
                    timing_cache=folder / "timing.cache",
                )
            onnx_path = _save(model, folder / f"{kind}.onnx")
            result = build_engine(onnx_path, folder / f"{kind}.plan", config)
            cache[kind] = (onnx_path, folder / f"{kind}.plan", result)
        return cache[kind]

    return get


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize(
    "kind, sizes",
    [("uint8", [(8, 8), (16, 32), (64, 64)]),  # power-of-two factors: nearest is exact in both
     ("float", [(8, 8), (33, 47), (64, 64)])],
)
def test_engine_matches_onnxruntime(built, kind, sizes):
    from ingan.runtime.trt_session import TrtEngineSession

    onnx_path, plan_path, result = built(kind)
    assert "TF32" not in result.flags
    assert result.profile["size"] == {"min": [8, 8], "opt": [32, 32], "max": [64, 64]}
    with TrtEngineSession(plan_path.read_bytes()) as session:
        assert session.input_names == ("size",)
        assert session.size_range == ((8, 8), (64, 64))
        assert not session.has_image_input and not session.has_homography
        for height, width in sizes:
            got = session.run((height, width))
            want = _ort(onnx_path, {"size": np.array([height, width], dtype=np.int64)})
            assert got.dtype == want.dtype and got.shape == want.shape
            if kind == "uint8":
                assert got.shape == (1, height, width, 3)
                np.testing.assert_array_equal(got, want)
            else:
                assert got.shape == (1, 3, height, width)
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_image_and_homography_inputs(built):
    from ingan.runtime.trt_session import TrtEngineSession

    onnx_path, plan_path, result = built("image")
    assert result.profile["homography"] == {"min": [1, 3, 3], "opt": [2, 3, 3], "max": [2, 3, 3]}
    rng = np.random.default_rng(0)
    with TrtEngineSession(plan_path.read_bytes()) as session:
        assert session.has_image_input and session.has_homography
        for batch, in_hw, size in [(1, (4, 4), (8, 8)), (2, (9, 13), (33, 47)), (2, (16, 16), (64, 64))]:
            image = rng.random((batch, 3, *in_hw), dtype=np.float32)
            homography = np.tile(np.eye(3, dtype=np.float32), (batch, 1, 1))
            homography[:, 2, 2] = rng.random(batch, dtype=np.float32)
            got = session.run(size, image=image, homography=homography)
            want = _ort(onnx_path, {"size": np.array(size, dtype=np.int64), "image": image,
                                    "homography": homography})
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        with pytest.raises(ConfigError):
            session.run((8, 8))  # image missing
        with pytest.raises(ConfigError):
            session.run((8, 8), image=np.zeros((3, 3, 8, 8), np.float32),
                        homography=np.zeros((3, 3, 3), np.float32))  # batch 3 > profile max 2


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_out_of_profile_size_is_a_config_error(built):
    from ingan.runtime.trt_session import TrtEngineSession

    _onnx_path, plan_path, _result = built("uint8")
    session = TrtEngineSession(plan_path.read_bytes())
    try:
        for size in [(65, 64), (7, 8), (8, 100)]:
            with pytest.raises(ConfigError, match=r"8x8 \.\. 64x64.*--min-size/--max-size"):
                session.run(size)
        with pytest.raises(ConfigError):
            session.run((8, 8), image=np.zeros((1, 3, 8, 8), np.float32))  # engine has no image
        assert session.run((8, 8)).shape == (1, 8, 8, 3)  # still usable afterwards
    finally:
        session.close()
        session.close()  # frees exactly once; second call is a no-op
    with pytest.raises(InganError, match="closed"):
        session.run((8, 8))


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_version_compatible_plan_needs_host_code_opt_in(built):
    from ingan.runtime.trt_helpers import EngineLoadError
    from ingan.runtime.trt_session import TrtEngineSession

    onnx_path, plan_path, result = built("uint8_vc")
    assert "VERSION_COMPATIBLE" in result.flags
    with pytest.raises(EngineLoadError, match="allow_host_code"):
        TrtEngineSession(plan_path.read_bytes())
    with TrtEngineSession(plan_path.read_bytes(), allow_host_code=True) as session:
        got = session.run((16, 32))
    np.testing.assert_array_equal(got, _ort(onnx_path, {"size": np.array([16, 32], dtype=np.int64)}))


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_version_compatible_plan_runs_on_lean_runtime(built):
    if importlib.util.find_spec("tensorrt_lean") is None:
        pytest.skip("tensorrt_lean is not installed")
    onnx_path, plan_path, _result = built("uint8_vc")
    # A separate process: the full and the lean runtime are not meant to share one.
    code = textwrap.dedent(
        f"""
        import sys, numpy as np
        from ingan.runtime.trt_session import TrtEngineSession
        with TrtEngineSession(open({str(plan_path)!r}, "rb").read(), lean=True, allow_host_code=True) as s:
            np.save(sys.argv[1], s.run((16, 32)))
        """
    )
    out = plan_path.with_suffix(".lean.npy")
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, check=True, timeout=300)
    np.testing.assert_array_equal(
        np.load(out), _ort(onnx_path, {"size": np.array([16, 32], dtype=np.int64)})
    )


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_timing_cache_is_written_and_reused(built, tmp_path):
    from ingan.export.tensorrt_build import EngineBuildConfig, build_engine

    onnx_path, _plan, _result = built("float")
    cache = onnx_path.parent / "timing.cache"
    assert cache.is_file() and cache.stat().st_size > 0  # written by the fixture's build
    config = EngineBuildConfig(**SIZE_PROFILE, progress=False, timing_cache=cache)
    result = build_engine(onnx_path, tmp_path / "again.plan", config)
    assert result.plan_path.is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_parse_failure_lists_the_failing_node(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from ingan.export.tensorrt_build import EngineBuildConfig, EngineBuildError, build_engine

    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["size"], ["output"], name="bad_node")],
        "broken",
        [helper.make_tensor_value_info("size", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("output", TensorProto.INT64, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(tmp_path / "broken.onnx"))  # not checked: the op does not exist
    config = EngineBuildConfig(**SIZE_PROFILE, progress=False)
    with pytest.raises(EngineBuildError, match="could not parse") as info:
        build_engine(tmp_path / "broken.onnx", tmp_path / "broken.plan", config)
    message = str(info.value)
    assert "bad_node" in message or "NoSuchOp" in message, message
    assert not (tmp_path / "broken.plan").exists()
