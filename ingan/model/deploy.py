"""The generator as deployed: spectral norm baked into plain weights, eval mode, colour
calibration kept. One home for everything that runs a trained generator outside training:
the exported graph (ingan/export/graph.py builds on it) and the bench's PyTorch FP16/BF16
probes, so they time the same maths the ONNX file computes."""

from __future__ import annotations

from dataclasses import replace

from ingan.model.generator import Generator
from ingan.model.layers import baked_state_dict


def baked_generator(generator: Generator) -> Generator:
    """A float32, eval-mode copy of `generator` with W / sigma baked into each spectral-normalised
    conv (no power iteration at run time) and the same colour calibration."""
    baked = Generator(replace(generator.config, spectral_norm=False))
    baked.load_state_dict(baked_state_dict(generator))
    baked = baked.float().eval()
    baked.set_colour_calibration(generator.colour_calibration)  # not in the state dict
    return baked
