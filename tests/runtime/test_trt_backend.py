"""The TensorRT backend (ingan/runtime/backends/trt.py) and the session's CUDA-graph cache.

- Pure checks: every branch, each error naming its fix (CPU).
- Loader on a GPU-less machine: DeviceError pointing at the sibling .onnx (CPU).
- The real TrtEngineSession / TrtRunner code driven by small fakes of cuda.bindings.runtime
  and TensorRT (CPU): plain runs, CUDA-graph capture/replay/LRU eviction, capture failure
  fallback, teardown. The fakes model the documented rules the design relies on: shape-tensor
  values are read on the host at enqueue (so a captured graph bakes them in), a capture right
  after a shape change fails (enqueue once first), and a graph must not outlive changes to
  the context it was captured from.
- GPU tests (markers tensorrt + gpu) build a tiny engine and compare with ONNX Runtime.
"""

from __future__ import annotations

import ctypes
import enum
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ingan.errors import ConfigError, DeviceError, InganError, MissingDependencyError
from ingan.runtime.registry import LoadOptions
from ingan.metadata import MetadataError, ModelMetadata, TensorSpec, sha256_of, sidecar_path

ROOT = Path(__file__).resolve().parents[2]

INFO = {
    "version": "11.4.0.106", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
    "flags": ["TF32"], "build_seconds": 1.0, "profile": {}, "version_compatible": False,
    "onnx": "model.onnx",
}


def write_model(folder: Path, *, name: str = "model.plan", plan: bytes = b"not a real plan", info: Any = None,
                min_size=(8, 8), max_size=(32, 40), warp: bool = False, image_input: bool = False,
                output_format: str = "uint8", onnx: bool = True) -> tuple[Path, ModelMetadata]:
    """A plan file + a valid sidecar (checksum of these very bytes); optionally the sibling .onnx."""
    path = folder / name
    path.write_bytes(plan)
    if onnx:
        (folder / "model.onnx").write_bytes(b"onnx placeholder")
    inputs = [TensorSpec("size", "int64", [2])]
    if warp:
        inputs.append(TensorSpec("homography", "float32", [1, 3, 3]))
    meta = ModelMetadata(
        kind="tensorrt", artifact=path.name, artifact_sha256=sha256_of(path), precision="fp32", opset=18,
        inputs=inputs, outputs=[TensorSpec("output", "uint8", [1, "height", "width", 3])],
        image_input=image_input, warp=warp, output_format=output_format, min_size=list(min_size),
        opt_size=list(min_size), max_size=list(max_size), training_image_size=[16, 16],
        trained_scale_range=[0.5, 2.0], source_checkpoint={"file": "ckpt.pt"}, exporter="test",
        tensorrt=dict(INFO if info is None else info),
    )
    meta.write(sidecar_path(path))
    return path, meta


# ============================================================================ pure checks


def test_parse_device():
    from ingan.runtime.backends.trt import parse_device

    assert parse_device(None) is None
    assert parse_device("cuda") is None
    assert parse_device("CUDA:1") == 1
    assert parse_device("cuda:0") == 0
    assert parse_device("auto") is None
    with pytest.raises(DeviceError) as info:
        parse_device("cpu")
    assert "runs only on an NVIDIA GPU" in str(info.value)
    assert "with ONNX Runtime instead: ingan-run model.onnx" in str(info.value)
    with pytest.raises(DeviceError, match=r"ingan-run /x/model\.onnx"):
        parse_device("cpu", Path("/x/model.onnx"))
    for bad in ("gpu", "mps", "cuda:x"):
        with pytest.raises(ConfigError, match="unknown device .*; use auto, cpu, cuda or cuda:N"):
            parse_device(bad)


def test_check_gpu_present(tmp_path):
    from ingan.runtime.backends.trt import check_gpu_present

    plan = tmp_path / "model.plan"
    check_gpu_present(True, "", plan, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ingan\[gpu-lean\]'"):
        check_gpu_present(False, "cuda-python is not installed", plan, None)
    reason = "no CUDA GPU found (cudaGetDeviceCount: cudaErrorNoDevice)"
    with pytest.raises(DeviceError) as info:
        check_gpu_present(False, reason, plan, tmp_path / "model.onnx")
    message = str(info.value)
    assert reason in message and f"ingan-run {tmp_path / 'model.onnx'}" in message
    assert "\n" not in message
    with pytest.raises(DeviceError, match="ingan-run model.onnx"):
        check_gpu_present(False, reason, plan, None)


def test_check_device_index():
    from ingan.runtime.backends.trt import check_device_index

    check_device_index(None, 1)
    check_device_index(1, 2)
    with pytest.raises(DeviceError, match=r"cuda:2 does not exist.*cuda:0 \.\. cuda:1"):
        check_device_index(2, 2)


def test_check_cuda_graphs():
    from ingan.runtime.backends.trt import check_cuda_graphs

    assert check_cuda_graphs(0) == 0 and check_cuda_graphs(4) == 4
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ConfigError, match=">= 0"):
            check_cuda_graphs(bad)


def test_choose_tensorrt_module():
    from ingan.runtime.backends.trt import choose_tensorrt_module

    assert choose_tensorrt_module(False, True, True) == "tensorrt"
    assert choose_tensorrt_module(True, True, True) == "tensorrt"
    assert choose_tensorrt_module(True, False, True) == "tensorrt_lean"
    with pytest.raises(MissingDependencyError) as info:
        choose_tensorrt_module(False, False, True)  # lean cannot load a plain plan
    assert "--version-compatible" in str(info.value) and "https://pypi.nvidia.com 'ingan[gpu]'" in str(info.value)
    with pytest.raises(MissingDependencyError, match=r"https://pypi.nvidia.com 'ingan\[gpu\]'"):
        choose_tensorrt_module(False, False, False)
    # A version-compatible plan needs only the lean runtime: the small, PyPI-only extra.
    with pytest.raises(MissingDependencyError, match=r"pip install 'ingan\[gpu-lean\]'"):
        choose_tensorrt_module(True, False, False)


def test_check_host_code(tmp_path):
    from ingan.runtime.backends.trt import check_host_code

    check_host_code(False, False, tmp_path / "m.plan")
    check_host_code(True, True, tmp_path / "m.plan")
    with pytest.raises(ConfigError) as info:
        check_host_code(True, False, tmp_path / "m.plan")
    assert "--allow-host-code (ingan-run) / allow_host_code=True only for plans you trust" in str(info.value)


def test_check_gpu_match(tmp_path):
    from ingan.runtime.backends.trt import check_gpu_match

    plan = tmp_path / "model.plan"
    h100 = dict(INFO)
    assert check_gpu_match(h100, "NVIDIA H100 80GB HBM3", "9.0", plan) is None
    warning = check_gpu_match(h100, "NVIDIA H100 PCIe", "9.0", plan)
    assert warning and "NVIDIA H100 PCIe" in warning and "rebuild with ingan-export" in warning
    with pytest.raises(DeviceError) as info:
        check_gpu_match(h100, "NVIDIA A100-SXM4-80GB", "8.0", plan)
    assert str(info.value) == (
        "'model.plan' was built on NVIDIA H100 80GB HBM3 (sm 9.0); this GPU is NVIDIA A100-SXM4-80GB "
        "(sm 8.0); rebuild with ingan-export on this machine"
    )
    ampere_plus = dict(INFO, flags=["TF32", "VERSION_COMPATIBLE", "HardwareCompatibilityLevel.AMPERE_PLUS"],
                       version_compatible=True)
    assert check_gpu_match(ampere_plus, "NVIDIA A100-SXM4-80GB", "8.0", plan) is None
    with pytest.raises(DeviceError, match="rebuild with ingan-export on this machine"):
        check_gpu_match(ampere_plus, "Tesla T4", "7.5", plan)  # AMPERE_PLUS means sm >= 8.0
    same_cc = dict(INFO, flags=["SAME_COMPUTE_CAPABILITY"])
    with pytest.raises(DeviceError):
        check_gpu_match(same_cc, "NVIDIA A100-SXM4-80GB", "8.0", plan)
    with pytest.raises(MetadataError, match="compute capability"):
        check_gpu_match(dict(INFO, compute_capability="sm90"), "NVIDIA H100", "9.0", plan)


def test_check_tensorrt_version(tmp_path):
    from ingan.runtime.backends.trt import check_tensorrt_version
    from ingan.runtime.trt_helpers import EngineLoadError

    plan = tmp_path / "model.plan"
    assert check_tensorrt_version(INFO, "tensorrt", "11.4.1.2", plan) is None  # patch level may differ
    with pytest.raises(EngineLoadError) as info:
        check_tensorrt_version(INFO, "tensorrt", "11.1.0.106", plan)
    message = str(info.value)
    assert "11.4.0.106" in message and "11.1.0.106" in message
    assert "rebuild it with ingan-export on this machine" in message and "--version-compatible" in message
    vc = dict(INFO, version_compatible=True, version="11.1.0.106")
    assert check_tensorrt_version(vc, "tensorrt_lean", "11.4.0.106", plan) is None  # newer runtime: fine
    assert check_tensorrt_version(dict(vc, version="10.9.0.34"), "tensorrt_lean", "11.4.0.106", plan) is None
    older = check_tensorrt_version(dict(vc, version="11.4.0"), "tensorrt_lean", "11.1.0", plan)
    assert older and "upgrade TensorRT or rebuild" in older
    for built, here in (("8.6.1", "11.4.0"), ("11.0.0", "10.9.0")):
        with pytest.raises(EngineLoadError, match="rebuild it with ingan-export on this machine"):
            check_tensorrt_version(dict(vc, version=built), "tensorrt", here, plan)
    with pytest.raises(MetadataError):
        check_tensorrt_version(dict(INFO, version="eleven"), "tensorrt", "11.4.0", plan)


def test_engine_info_and_sibling_onnx(tmp_path):
    from ingan.runtime.backends.trt import engine_info, sibling_onnx

    plan, meta = write_model(tmp_path)
    assert engine_info(meta)["compute_capability"] == "9.0"
    assert sibling_onnx(plan, INFO) == tmp_path / "model.onnx"
    assert sibling_onnx(plan, dict(INFO, onnx="other.onnx")) is None  # not there
    assert sibling_onnx(plan, dict(INFO, onnx="../model.onnx")) is None  # only next to the plan
    meta.tensorrt = None
    with pytest.raises(MetadataError, match="no 'tensorrt' section; rebuild the engine with ingan-export"):
        engine_info(meta)
    meta.tensorrt = {"version": "11.4.0"}
    with pytest.raises(MetadataError, match=r"lacks tensorrt\.gpu.*rebuild the engine with ingan-export"):
        engine_info(meta)


def test_check_engine_matches_metadata(tmp_path):
    from ingan.runtime.backends.trt import check_engine_matches_metadata

    plan, meta = write_model(tmp_path)
    check_engine_matches_metadata(meta, ("size",), ((8, 8), (32, 40)), plan)
    with pytest.raises(MetadataError, match="size range.*rebuild it with ingan-export"):
        check_engine_matches_metadata(meta, ("size",), ((8, 8), (64, 64)), plan)
    with pytest.raises(MetadataError, match="warp input"):
        check_engine_matches_metadata(meta, ("size", "homography"), ((8, 8), (32, 40)), plan)


# ============================================================================ without a GPU


@pytest.mark.slow
def test_backend_imports_without_torch_or_tensorrt():
    code = textwrap.dedent(
        """
        import json, sys
        import ingan.runtime.backends.trt
        print(json.dumps(sorted(m for m in ("torch", "tensorrt", "tensorrt_lean") if m in sys.modules)))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def _no_gpu_here() -> None:
    from ingan.runtime.cuda import cuda_device_status

    ok, _reason = cuda_device_status()
    if ok:
        pytest.skip("this machine has a GPU: the no-GPU path is not reachable")


def test_load_plan_without_gpu_suggests_the_onnx(tmp_path):
    """Never reaches deserialization (which segfaults without a GPU driver)."""
    _no_gpu_here()
    import ingan.runtime

    plan, _meta = write_model(tmp_path)
    with pytest.raises(DeviceError) as info:
        ingan.runtime.load(plan)
    message = str(info.value)
    assert "'model.plan'" in message and "needs an NVIDIA GPU" in message
    assert f"ingan-run {tmp_path / 'model.onnx'}" in message
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(DeviceError, match="ingan-run model.onnx"):
        ingan.runtime.load(plan)
    with pytest.raises(DeviceError, match="runs only on an NVIDIA GPU"):
        ingan.runtime.load(plan, device="cpu")


# ============================================================================ fakes

GPU_NAME = "Fake GPU 9000"


class Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorStreamCaptureInvalidated = 901


class FakeCudart:
    """Just enough of cuda.bindings.runtime: memory, copies, one stream, stream capture."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice="H2D", cudaMemcpyDeviceToHost="D2H")
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal="thread-local")

    def __init__(self) -> None:
        from cuda.bindings import runtime as real

        self.real = real
        self.calls: list[str] = []
        self.device: dict[int, bytearray] = {}
        self.host: dict[int, Any] = {}
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.capturing: list | None = None
        self.invalidated = False
        self._next = 0x10000
        self.current_device = 0

    def _id(self) -> int:
        self._next += 0x10000
        return self._next

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("cuda") and not name.startswith(("cudaMemcpyKind", "cudaStreamCaptureMode")):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    # device
    def cudaGetDeviceCount(self):
        return Err.cudaSuccess, 1

    def cudaGetDevice(self):
        return Err.cudaSuccess, self.current_device

    def cudaSetDevice(self, index):
        self.current_device = index
        return (Err.cudaSuccess,)

    def cudaGetDeviceProperties(self, device):
        return Err.cudaSuccess, SimpleNamespace(name=GPU_NAME.encode() + b"\0junk", major=9, minor=0)

    # memory
    def cudaMalloc(self, nbytes):
        ptr = self._id()
        self.device[ptr] = bytearray(nbytes)
        return Err.cudaSuccess, ptr

    def cudaFree(self, ptr):
        del self.device[ptr]
        return (Err.cudaSuccess,)

    def cudaMallocHost(self, nbytes):
        buf = (ctypes.c_ubyte * nbytes)()
        self.host[ctypes.addressof(buf)] = buf
        return Err.cudaSuccess, ctypes.addressof(buf)

    def cudaFreeHost(self, ptr):
        del self.host[ptr]
        return (Err.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert self.capturing is None, "ingan never copies inside a capture"
        if kind == "H2D":
            self.device[dst][:nbytes] = ctypes.string_at(src, nbytes)
        else:
            ctypes.memmove(dst, bytes(self.device[src][:nbytes]), nbytes)
        return (Err.cudaSuccess,)

    # stream
    def cudaStreamCreate(self):
        return Err.cudaSuccess, self.real.cudaStream_t(4242)

    def cudaStreamSynchronize(self, stream):
        assert self.capturing is None
        return (Err.cudaSuccess,)

    def cudaStreamDestroy(self, stream):
        return (Err.cudaSuccess,)

    # graphs
    def cudaStreamBeginCapture(self, stream, mode):
        assert self.capturing is None and mode == "thread-local"
        self.capturing, self.invalidated = [], False
        return (Err.cudaSuccess,)

    def record(self, op) -> None:
        self.capturing.append(op)

    def cudaStreamEndCapture(self, stream):
        ops, self.capturing = self.capturing, None
        if self.invalidated:
            return Err.cudaErrorStreamCaptureInvalidated, None
        handle = self._id()
        self.graphs[handle] = ops
        return Err.cudaSuccess, self.real.cudaGraph_t(handle)

    def cudaGraphInstantiate(self, graph, flags):
        handle = self._id()
        self.execs[handle] = list(self.graphs[int(self._native(graph))])
        return Err.cudaSuccess, self.real.cudaGraphExec_t(handle)

    def cudaGraphLaunch(self, graph_exec, stream):
        for op in self.execs[self._native(graph_exec)]:
            op()
        return (Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph_exec):
        del self.execs[self._native(graph_exec)]
        return (Err.cudaSuccess,)

    def cudaGraphDestroy(self, graph):
        del self.graphs[self._native(graph)]
        return (Err.cudaSuccess,)

    def cudaGetLastError(self):
        return (Err.cudaSuccess,)

    @staticmethod
    def _native(handle) -> int:
        from cuda.bindings.utils import get_cuda_native_handle

        return int(get_cuda_native_handle(handle))


class FakeContext:
    """Reads `size` from host memory at enqueue time (so a capture bakes it in); reads the
    homography from device memory when the work runs (so a replay sees new input values)."""

    def __init__(self, engine: "FakeEngine", strategy: str) -> None:
        self.engine, self.strategy = engine, strategy
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple] = {}
        self.memory: tuple[int, int] | None = None
        self.flushed_for: Any = None  # the state the last plain enqueue ran with
        self.version = 0
        self.enqueues = 0

    def _touch(self) -> None:
        self.version += 1

    def set_tensor_address(self, name, ptr):
        self._touch()
        self.addresses[name] = int(ptr)
        return True

    def set_input_shape(self, name, shape):
        self._touch()
        self.shapes[name] = tuple(shape)
        return True

    def set_device_memory(self, ptr, size):
        assert size >= self.engine.device_memory_size_v2
        self.memory = (ptr, size)

    def infer_shapes(self):
        return [] if "size" in self.addresses else ["size"]

    def _size(self) -> tuple[int, int]:
        h, w = np.frombuffer(ctypes.string_at(self.addresses["size"], 16), dtype=np.int64)
        return int(h), int(w)

    def get_tensor_shape(self, name):
        assert name == "output"
        h, w = self._size()
        return (1, h, w, 3)

    def _state(self) -> Any:
        return (self._size(), tuple(sorted(self.shapes.items())), tuple(sorted(self.addresses.items())))

    def execute_async_v3(self, stream):
        assert stream == 4242
        if self.strategy == "USER_MANAGED" and self.memory is None:
            return False
        self.enqueues += 1
        cudart = self.engine.cudart
        size, state = self._size(), self._state()
        if cudart.capturing is not None:
            if not self.engine.capturable or self.flushed_for != state:
                cudart.invalidated = True  # e.g. first enqueue after a shape change
                return False
            version = self.version
            cudart.record(lambda: self._compute(size, version))
            return True
        self._compute(size, None)
        self.flushed_for = state
        return True

    def _compute(self, size, version) -> None:
        if version is not None:
            assert version == self.version, "graph replayed after its context was changed"
        h, w = size
        cudart = self.engine.cudart
        h22 = 1.0
        if "homography" in self.addresses:
            h22 = float(np.frombuffer(bytes(cudart.device[self.addresses["homography"]][:36]), np.float32)[8])
        out = expected_output((h, w), h22)
        cudart.device[self.addresses["output"]][: out.nbytes] = out.tobytes()


def expected_output(size, h22: float = 1.0) -> np.ndarray:
    """What the fake engine computes: uint8 [1, H, W, 3]."""
    h, w = size
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((7 * h + 3 * w + y + 2 * x + 50 * c + int(round(h22 * 10))) % 256).astype(np.uint8)[None]


class FakeEngine:
    device_memory_size_v2 = 4096

    def __init__(self, cudart: FakeCudart, warp: bool, capturable: bool, size_range) -> None:
        self.cudart, self.capturable, self.size_range = cudart, capturable, size_range
        self.names = ["size"] + (["homography"] if warp else []) + ["output"]
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return "OUTPUT" if name == "output" else "INPUT"

    def is_shape_inference_io(self, name):
        return name == "size"

    def get_tensor_dtype(self, name):
        return {"size": np.int64, "homography": np.float32, "output": np.uint8}[name]

    def get_tensor_profile_values(self, profile_index, name):
        assert isinstance(profile_index, int) and name == "size"
        lo, hi = self.size_range
        return [list(lo), list(lo), list(hi)]

    def get_tensor_shape(self, name):
        return {"homography": (1, 3, 3), "output": (1, -1, -1, 3)}[name]

    def create_execution_context(self, strategy="STATIC"):
        context = FakeContext(self, strategy)
        self.contexts.append(context)
        return context


class FakeLogger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self) -> None:
        pass


class FakeRuntime:
    def __init__(self, module: "FakeTrt", logger) -> None:
        self.module, self.engine_host_code_allowed = module, False

    def deserialize_cuda_engine(self, plan):
        module = self.module
        module.deserialized += 1
        module.host_code_allowed = self.engine_host_code_allowed
        module.engine = FakeEngine(module.cudart, module.warp, module.capturable, module.size_range)
        return module.engine


class FakeTrt:
    """Stands in for the `tensorrt` module (same attribute names)."""

    __name__ = "fake_tensorrt"
    __version__ = "11.4.0.106"
    ILogger = FakeLogger
    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    ExecutionContextAllocationStrategy = SimpleNamespace(STATIC="STATIC", USER_MANAGED="USER_MANAGED")

    def __init__(self, cudart: FakeCudart) -> None:
        self.cudart = cudart
        self.warp = False
        self.capturable = True
        self.size_range = ((8, 8), (32, 40))
        self.deserialized = 0
        self.host_code_allowed = None
        self.engine: FakeEngine | None = None

    @staticmethod
    def nptype(dtype):
        return dtype

    def Runtime(self, logger):  # noqa: N802 - TensorRT's name
        return FakeRuntime(self, logger)


@pytest.fixture
def fake(monkeypatch):
    """Route ingan's TensorRT/CUDA entry points to the fakes; yields (trt, cudart)."""
    pytest.importorskip("cuda.bindings", reason="the fakes use cuda-python's handle types")
    import ingan.runtime.backends.trt as backend
    import ingan.runtime.cuda as cuda_mod
    import ingan.runtime.trt_session as session_mod

    cudart = FakeCudart()
    trt = FakeTrt(cudart)
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: cudart)  # cuda_device_info
    monkeypatch.setattr(session_mod, "import_cudart", lambda: cudart)
    monkeypatch.setattr(session_mod, "import_tensorrt", lambda lean: trt)
    monkeypatch.setattr(session_mod, "cuda_device_status", lambda: (True, ""))
    monkeypatch.setattr(backend, "import_cudart", lambda: cudart)
    monkeypatch.setattr(backend, "cuda_device_status", lambda: (True, ""))
    available = {"tensorrt": True, "tensorrt_lean": True}
    monkeypatch.setattr(backend, "_module_available", lambda name: available[name])
    loaded: list[str] = []

    def load_module(name):
        loaded.append(name)
        return trt

    monkeypatch.setattr(backend, "_load_module", load_module)
    trt.available, trt.loaded = available, loaded
    return trt, cudart


def _graph_calls(cudart: FakeCudart) -> list[str]:
    return [c for c in cudart.calls if "Graph" in c or "Capture" in c]


def _session(trt, **kwargs):
    from ingan.runtime.trt_session import TrtEngineSession

    return TrtEngineSession(b"fake plan", **kwargs)


def _assert_all_freed(cudart: FakeCudart) -> None:
    assert cudart.device == {} and cudart.host == {}
    assert cudart.graphs == {} and cudart.execs == {}


# ============================================================================ session on fakes


def test_session_without_graphs_runs_plainly(fake):
    trt, cudart = fake
    session = _session(trt)
    for size in [(8, 8), (17, 33), (8, 8), (32, 40)]:
        np.testing.assert_array_equal(session.run(size), expected_output(size))
    assert _graph_calls(cudart) == []
    assert len(trt.engine.contexts) == 1 and trt.engine.contexts[0].strategy == "STATIC"
    assert session.cuda_graph_keys == ()
    host_before = len(cudart.host)
    session.run((9, 9))
    assert len(cudart.host) == host_before  # the pinned `size` staging is not reallocated per run
    with pytest.raises(ConfigError, match=r"size 8x33 .* 8x8 \.\. 40x32 \(width x height\)"):  # WIDTHxHEIGHT
        session.run((33, 8))
    session.close()
    _assert_all_freed(cudart)


def test_session_rejects_bad_cuda_graphs_before_gpu_work(fake):
    trt, cudart = fake
    for bad in (-1, 2.0, True):
        with pytest.raises(ConfigError, match="cuda_graphs"):
            _session(trt, cuda_graphs=bad)
    assert cudart.calls == [] and trt.deserialized == 0


def test_cuda_graph_cache_replays_and_evicts_lru(fake):
    trt, cudart = fake
    session = _session(trt, cuda_graphs=2)
    a, b, c = (8, 8), (16, 24), (32, 40)
    for size in [a, a, b, a, c, b, a]:
        np.testing.assert_array_equal(session.run(size), expected_output(size))
    assert session.cuda_graph_counts == {"captures": 5, "launches": 2, "evictions": 3, "failures": 0}
    assert [key[0] for key in session.cuda_graph_keys] == [b, a]  # least recently used first
    assert len(cudart.execs) == 2 and len(cudart.graphs) == 2  # evicted graphs were destroyed
    # each graph has its own USER_MANAGED context on one shared scratch block
    graph_contexts = [ctx for ctx in trt.engine.contexts if ctx.strategy == "USER_MANAGED"]
    assert len(graph_contexts) == 5
    assert len({ctx.memory for ctx in graph_contexts}) == 1
    # graph keys never run on the main context; each graph context ran its warm-up and its capture
    assert trt.engine.contexts[0].enqueues == 0
    assert [ctx.enqueues for ctx in graph_contexts] == [2] * 5
    session.close()
    _assert_all_freed(cudart)


def test_cuda_graph_sequence_of_the_gpu_test(fake):
    """The exact bookkeeping test_gpu_cuda_graphs_equal_plain_runs_and_evict expects."""
    trt, cudart = fake
    trt.size_range = ((8, 8), (64, 64))
    with _session(trt, cuda_graphs=4) as session:
        for size in GPU_SEQUENCE:
            np.testing.assert_array_equal(session.run(size), expected_output(size))
        assert [key[0] for key in session.cuda_graph_keys] == GPU_FINAL_KEYS
        assert session.cuda_graph_counts == GPU_COUNTS
    _assert_all_freed(cudart)


def test_graph_replay_reads_new_inputs_but_baked_size(fake):
    """Inputs go into the same device buffers before each launch; the size is part of the key."""
    trt, cudart = fake
    trt.warp, trt.size_range = True, ((8, 8), (32, 40))
    session = _session(trt, cuda_graphs=4)
    plain = _session(trt)
    for h22 in (1.0, 2.5, 0.3):
        hom = np.eye(3, dtype=np.float32)[None]
        hom[0, 2, 2] = h22
        for size in [(8, 8), (20, 12)]:
            got = session.run(size, homography=hom)
            np.testing.assert_array_equal(got, expected_output(size, h22))
            np.testing.assert_array_equal(got, plain.run(size, homography=hom))
    counts = session.cuda_graph_counts
    assert counts["captures"] == 2 and counts["launches"] == 4
    plain.close()
    session.close()


def test_capture_failure_falls_back_and_logs_once(fake, caplog):
    trt, cudart = fake
    trt.capturable = False
    session = _session(trt, cuda_graphs=4)
    with caplog.at_level(logging.DEBUG, logger="ingan.runtime.trt_graphs"):
        for size in [(8, 8), (8, 8), (16, 16), (8, 8)]:
            np.testing.assert_array_equal(session.run(size), expected_output(size))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "CUDA graph capture failed" in warnings[0].getMessage()
    assert session.cuda_graph_counts == {"captures": 0, "launches": 0, "evictions": 0, "failures": 2}
    assert session.cuda_graph_keys == ()
    assert cudart.graphs == {} and cudart.execs == {}
    session.close()
    _assert_all_freed(cudart)


def test_close_destroys_cached_graphs(fake):
    trt, cudart = fake
    with _session(trt, cuda_graphs=3) as session:
        for size in [(8, 8), (9, 9), (10, 10)]:
            session.run(size)
        assert len(cudart.execs) == 3
    _assert_all_freed(cudart)
    with pytest.raises(InganError, match="closed"):
        session.run((8, 8))


GPU_SEQUENCE = [(8, 8), (16, 32), (8, 8), (33, 47), (64, 64), (20, 20), (16, 32), (8, 8), (64, 64), (9, 61)]
GPU_FINAL_KEYS = [(16, 32), (8, 8), (64, 64), (9, 61)]
GPU_COUNTS = {"captures": 8, "launches": 2, "evictions": 4, "failures": 0}


# ============================================================================ runner on fakes


def test_runner_through_the_loader(fake, tmp_path):
    import ingan.runtime
    from ingan.runtime.backends.trt import TrtRunner

    trt, cudart = fake
    plan, _meta = write_model(tmp_path)
    with ingan.runtime.load(plan) as runner:
        assert isinstance(runner, TrtRunner) and runner.backend == "tensorrt"
        assert runner.device == f"cuda:0 ({GPU_NAME}, TensorRT 11.4.0)"
        assert trt.loaded == ["tensorrt"] and trt.host_code_allowed is False
        image = runner.retarget((17, 30))
        np.testing.assert_array_equal(image, expected_output((17, 30))[0])
        assert image.shape == (17, 30, 3) and image.dtype == np.uint8
        calls = []
        real_run = runner.session.run
        runner.session.run = lambda *a, **k: calls.append(a) or real_run(*a, **k)
        with pytest.raises(ConfigError, match="outside this model's range"):
            runner.retarget((33, 40))
        with pytest.raises(ConfigError, match="exported without --warp"):
            runner.retarget((16, 16), homography=np.eye(3))
        assert calls == []  # rejected before any GPU work
    _assert_all_freed(cudart)


def test_runner_with_cuda_graphs(fake, tmp_path):
    from ingan.runtime.backends.trt import TrtRunner
    from ingan.runtime.sidecar import read_sidecar

    trt, cudart = fake
    trt.warp = True
    plan, _meta = write_model(tmp_path, warp=True)
    meta = read_sidecar(plan, "tensorrt")
    with TrtRunner(plan, meta, LoadOptions(cuda_graphs=2, device="cuda:0")) as runner:
        for size in [(8, 8), (8, 8), (12, 20), (8, 8)]:
            np.testing.assert_array_equal(runner.retarget(size), expected_output(size, 1.0)[0])  # identity H
        assert runner.session.cuda_graph_counts["launches"] == 2
    _assert_all_freed(cudart)


def test_runner_checks_run_before_the_plan_is_read(fake, tmp_path):
    from ingan.runtime.backends.trt import TrtRunner
    from ingan.runtime.trt_helpers import EngineLoadError

    trt, cudart = fake
    plan, meta = write_model(tmp_path)
    with pytest.raises(DeviceError, match=r"ingan-run .*model\.onnx"):
        TrtRunner(plan, meta, LoadOptions(device="cpu"))
    with pytest.raises(DeviceError, match="cuda:3 does not exist"):
        TrtRunner(plan, meta, LoadOptions(device="cuda:3"))
    with pytest.raises(ConfigError, match="cuda_graphs"):
        TrtRunner(plan, meta, LoadOptions(cuda_graphs=-2))
    # another GPU architecture
    _p, other = write_model(tmp_path, info=dict(INFO, gpu="NVIDIA A100-SXM4-80GB", compute_capability="8.0"))
    with pytest.raises(DeviceError, match=r"sm 8\.0\); this GPU is Fake GPU 9000 \(sm 9\.0\)"):
        TrtRunner(plan, other)
    # another TensorRT version
    _p, old = write_model(tmp_path, info=dict(INFO, version="10.9.0.34"))
    with pytest.raises(EngineLoadError, match="--version-compatible"):
        TrtRunner(plan, old)
    # version-compatible: lean when the full package is missing, and only with the opt-in
    trt.available["tensorrt"] = False
    _p, vc = write_model(tmp_path, info=dict(INFO, version_compatible=True, flags=["VERSION_COMPATIBLE"]))
    with pytest.raises(ConfigError, match="--allow-host-code"):
        TrtRunner(plan, vc)
    with pytest.raises(MissingDependencyError, match="--version-compatible"):
        TrtRunner(plan, meta)  # plain plan, lean only
    assert trt.deserialized == 0  # every refusal came before deserialization
    with TrtRunner(plan, vc, LoadOptions(allow_host_code=True)) as runner:
        assert runner.device == f"cuda:0 ({GPU_NAME}, TensorRT lean 11.4.0)"
        assert trt.host_code_allowed is True and trt.loaded[-1] == "tensorrt_lean"
    # the sidecar must describe the engine that loaded
    trt.available["tensorrt"] = True
    trt.size_range = ((8, 8), (64, 64))
    with pytest.raises(MetadataError, match="size range"):
        TrtRunner(plan, meta)
    _assert_all_freed(cudart)


# ============================================================================ GPU


def _size_resize_onnx(path: Path) -> Path:
    """size int64[2] -> nearest Resize of a constant [1,3,4,4] -> uint8 [1,H,W,3]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    base = np.arange(3 * 4 * 4, dtype=np.float32).reshape(1, 3, 4, 4) * 5.0
    graph = helper.make_graph(
        [helper.make_node("Concat", ["nc", "size"], ["sizes"], axis=0),
         helper.make_node("Resize", ["base", "", "", "sizes"], ["resized"], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
         helper.make_node("Cast", ["resized"], ["as_u8"], to=TensorProto.UINT8),
         helper.make_node("Transpose", ["as_u8"], ["output"], perm=[0, 2, 3, 1])],
        "size_uint8",
        [helper.make_tensor_value_info("size", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("output", TensorProto.UINT8, [1, "height", "width", 3])],
        [numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "nc"), numpy_helper.from_array(base, "base")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def gpu_plan(tmp_path_factory):
    """A tiny engine with its sidecar, built once: (plan, metadata, onnx)."""
    from ingan.export.tensorrt_build import EngineBuildConfig, build_engine

    folder = tmp_path_factory.mktemp("trt_backend")
    onnx_path = _size_resize_onnx(folder / "model.onnx")
    config = EngineBuildConfig(min_size=(8, 8), opt_size=(32, 32), max_size=(64, 64), progress=False)
    built = build_engine(onnx_path, folder / "model.plan", config)
    info = {"version": built.tensorrt_version, "gpu": built.gpu_name, "compute_capability": built.compute_capability,
            "flags": list(built.flags), "build_seconds": built.build_seconds, "profile": built.profile,
            "version_compatible": False, "onnx": onnx_path.name}
    plan = built.plan_path
    meta = ModelMetadata(
        kind="tensorrt", artifact=plan.name, artifact_sha256=sha256_of(plan), precision="fp32", opset=18,
        inputs=[TensorSpec("size", "int64", [2])], outputs=[TensorSpec("output", "uint8", [1, "height", "width", 3])],
        image_input=False, warp=False, output_format="uint8", min_size=[8, 8], opt_size=[32, 32], max_size=[64, 64],
        training_image_size=[4, 4], trained_scale_range=[0.5, 2.0], source_checkpoint={}, exporter="test",
        tensorrt=info,
    )
    meta.write(sidecar_path(plan))
    return plan, meta, onnx_path


def _ort(onnx_path: Path, size) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"size": np.array(size, dtype=np.int64)})[0][0]


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_gpu_runner_matches_onnxruntime(gpu_plan):
    import ingan.runtime

    plan, _meta, onnx_path = gpu_plan
    with ingan.runtime.load(plan) as runner:
        assert runner.device.startswith("cuda:") and "TensorRT" in runner.device
        for size in [(8, 8), (16, 32), (64, 64)]:  # power-of-two factors: nearest is exact
            np.testing.assert_array_equal(runner.retarget(size), _ort(onnx_path, size))


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_gpu_cuda_graphs_equal_plain_runs_and_evict(gpu_plan):
    from ingan.runtime.backends.trt import TrtRunner

    plan, meta, _onnx = gpu_plan
    with TrtRunner(plan, meta) as plain, TrtRunner(plan, meta, LoadOptions(cuda_graphs=4)) as graphs:
        for size in GPU_SEQUENCE:  # repeated and new sizes; 4 evictions (see the fake twin above)
            np.testing.assert_array_equal(graphs.retarget(size), plain.retarget(size))
        counts = graphs.session.cuda_graph_counts
        assert counts["failures"] == 0, f"this engine could not be captured on this GPU: {counts}"
        assert counts == GPU_COUNTS
        assert [key[0] for key in graphs.session.cuda_graph_keys] == GPU_FINAL_KEYS
        for size in GPU_FINAL_KEYS:  # replays only
            np.testing.assert_array_equal(graphs.retarget(size), plain.retarget(size))
        assert graphs.session.cuda_graph_counts["launches"] == GPU_COUNTS["launches"] + len(GPU_FINAL_KEYS)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_gpu_out_of_range_size_is_a_config_error_before_gpu_work(gpu_plan):
    from ingan.runtime.backends.trt import TrtRunner

    plan, meta, _onnx = gpu_plan
    with TrtRunner(plan, meta, LoadOptions(cuda_graphs=2)) as runner:
        calls = []
        real_run = runner.session.run
        runner.session.run = lambda *a, **k: calls.append(a) or real_run(*a, **k)
        for size in [(65, 64), (7, 8), (8, 100)]:
            with pytest.raises(ConfigError, match="outside this model's range"):
                runner.retarget(size)
        assert calls == [] and runner.session.cuda_graph_counts["captures"] == 0
        assert runner.retarget((8, 8)).shape == (8, 8, 3)
