"""The exported graph's I/O contract (docs/onnx-contract.md): the one home of its names.

The exporter writes these names, every runtime feeds them, the TensorRT builder sets their
profiles, and the sidecar and Triton configs describe them. No torch here.

- `size`: int64 [2], the output (height, width); a shape tensor (host memory) in TensorRT.
- `image` (graphs exported with --image-input): float32 [N, 3, H, W], RGB in [0, 1].
- `homography` (graphs exported with --warp): float32 [N, 3, 3], output -> input coordinates.
- `output`: uint8 [N, H, W, 3] RGB (default), or float32 [N, 3, H, W] in [0, 1].
"""

from __future__ import annotations

import numpy as np

SIZE_INPUT = "size"
IMAGE_INPUT = "image"
HOMOGRAPHY_INPUT = "homography"
OUTPUT_NAME = "output"
INPUT_NAMES = (SIZE_INPUT, IMAGE_INPUT, HOMOGRAPHY_INPUT)
# Each optional input and the sidecar flag that declares it.
OPTIONAL_INPUTS = {IMAGE_INPUT: "image_input", HOMOGRAPHY_INPUT: "warp"}


def input_names(image_input: bool, warp: bool) -> list[str]:
    """The graph's inputs, in the order the exporter declares them."""
    return [SIZE_INPUT] + ([IMAGE_INPUT] if image_input else []) + ([HOMOGRAPHY_INPUT] if warp else [])


def graph_feed(size: tuple[int, int], image: np.ndarray | None = None,
               homography: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The inputs of one request: (height, width), and the optional image / homography arrays."""
    feed = {SIZE_INPUT: np.asarray([int(size[0]), int(size[1])], dtype=np.int64)}
    if image is not None:
        feed[IMAGE_INPUT] = image
    if homography is not None:
        feed[HOMOGRAPHY_INPUT] = homography
    return feed
