"""What a deserialized TensorRT engine takes and returns, checked against the ingan graph
contract (ingan/contract.py, docs/onnx-contract.md), and the checks of one request against it.

Pure: reads the engine's I/O description once and checks requests with numpy only (no CUDA
calls), so everything a user can get wrong is refused before any GPU work.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ingan.contract import HOMOGRAPHY_INPUT, IMAGE_INPUT, INPUT_NAMES, OUTPUT_NAME, SIZE_INPUT
from ingan.errors import ConfigError
from ingan.runtime.trt_helpers import EngineLoadError, tensor_profile_values
from ingan.sizes import check_in_range

REBUILD_HINT = "rebuild the engine with ingan-export --min-size/--max-size"

Shape = tuple[int, ...]


def check_size_in_range(size: Sequence[int], size_min: Sequence[int], size_max: Sequence[int]) -> tuple[int, int]:
    """A requested (height, width) against an engine's profile: the runners' check and wording
    (ingan.sizes.check_in_range), for callers of a bare session (export validation, the bench)."""
    return check_in_range(size, size_min, size_max, whose="this engine's", fix=REBUILD_HINT)


def shapes_of(arrays: Mapping[str, np.ndarray]) -> dict[str, Shape]:
    """{input name: shape} of a request's device inputs."""
    return {name: tuple(int(d) for d in a.shape) for name, a in arrays.items()}


@dataclass(frozen=True)
class EngineIO:
    """An engine's inputs, their dtypes and profile-0 ranges, and its output dtype."""

    inputs: tuple[str, ...]  # every input, `size` included, in engine order
    size_dtype: np.dtype
    size_min: tuple[int, int]  # (height, width)
    size_max: tuple[int, int]
    input_dtypes: Mapping[str, np.dtype]  # the device inputs (all but `size`)
    input_ranges: Mapping[str, tuple[Shape, Shape]]  # (min shape, max shape) of each device input
    output_dtype: np.dtype

    @classmethod
    def read(cls, trt: ModuleType, engine: Any) -> EngineIO:
        """The engine's I/O; EngineLoadError when it does not follow the contract."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        unknown = [n for n in inputs if n not in INPUT_NAMES]
        if SIZE_INPUT not in inputs or unknown or outputs != [OUTPUT_NAME]:
            raise EngineLoadError(
                f"engine inputs {list(inputs)} / outputs {outputs} do not follow the ingan graph contract "
                f"(inputs {SIZE_INPUT}[, {IMAGE_INPUT}][, {HOMOGRAPHY_INPUT}]; output '{OUTPUT_NAME}'); rebuild it "
                f"from an ingan-export ONNX file"
            )
        if not engine.is_shape_inference_io(SIZE_INPUT):
            raise EngineLoadError(
                f"the engine's '{SIZE_INPUT}' input is not a shape tensor (expected per docs/onnx-contract.md); "
                "rebuild it from an ingan-export ONNX file"
            )
        profile = tensor_profile_values(engine, 0, SIZE_INPUT)
        if len(profile) != 3 or any(len(row) != 2 for row in profile):
            raise EngineLoadError(f"the engine has no usable optimization profile for '{SIZE_INPUT}' ({profile})")
        dtypes: dict[str, np.dtype] = {}
        ranges: dict[str, tuple[Shape, Shape]] = {}
        for name in inputs:
            if name == SIZE_INPUT:
                continue
            dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            static = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in static):
                shapes = engine.get_tensor_profile_shape(name, 0)
                ranges[name] = (tuple(shapes[0]), tuple(shapes[2]))
            else:
                ranges[name] = (static, static)
        return cls(
            inputs=inputs,
            size_dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(SIZE_INPUT))),
            size_min=(profile[0][0], profile[0][1]),
            size_max=(profile[2][0], profile[2][1]),
            input_dtypes=dtypes,
            input_ranges=ranges,
            output_dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(OUTPUT_NAME))),
        )

    @property
    def max_shapes(self) -> dict[str, Shape]:
        """The profile maximum of each device input: what every buffer is sized for."""
        return {name: hi for name, (_lo, hi) in self.input_ranges.items()}

    def check_request(
        self, size: Sequence[int], image: np.ndarray | None, homography: np.ndarray | None
    ) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
        """All user-input checks: ((height, width), {input: contiguous array in the engine's
        dtype}) or ConfigError, before any GPU work."""
        hw = check_size_in_range(size, self.size_min, self.size_max)
        arrays: dict[str, np.ndarray] = {}
        for name, value in ((IMAGE_INPUT, image), (HOMOGRAPHY_INPUT, homography)):
            if name not in self.inputs:
                if value is not None:
                    raise ConfigError(f"this engine has no '{name}' input; do not pass {name}")
                continue
            if value is None:
                raise ConfigError(f"this engine needs the '{name}' input")
            array = np.ascontiguousarray(value, dtype=self.input_dtypes[name])
            lo, hi = self.input_ranges[name]
            if array.ndim != len(lo) or any(not (a <= d <= b) for d, a, b in zip(array.shape, lo, hi)):
                raise ConfigError(
                    f"{name} shape {tuple(array.shape)} is outside this engine's range {lo} .. {hi}; "
                    f"rebuild the engine with a wider profile"
                )
            arrays[name] = array
        if IMAGE_INPUT in arrays and HOMOGRAPHY_INPUT in arrays:
            if arrays[IMAGE_INPUT].shape[0] != arrays[HOMOGRAPHY_INPUT].shape[0]:
                raise ConfigError(
                    f"{IMAGE_INPUT} batch {arrays[IMAGE_INPUT].shape[0]} and {HOMOGRAPHY_INPUT} batch "
                    f"{arrays[HOMOGRAPHY_INPUT].shape[0]} differ"
                )
        return hw, arrays
