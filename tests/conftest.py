"""Shared fixtures: tiny generators and synthetic images keep the suite fast."""

from __future__ import annotations

import numpy as np
import pytest

from testimages import synthetic_image


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU/TensorRT tests with a reason where the hardware or package is missing."""
    cuda_ok, gpu_ok, trt_ok = _cuda_available(), _gpu_present(), _importable("tensorrt")
    for item in items:
        if "cuda" in item.keywords and not cuda_ok:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of torch"))
        if "gpu" in item.keywords and not gpu_ok:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none found through cuda-bindings)"))
        if "tensorrt" in item.keywords and not trt_ok:
            item.add_marker(pytest.mark.skip(reason="needs the 'tensorrt' package (pip install 'ingan[gpu]')"))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    if not _importable("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _gpu_present() -> bool:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


@pytest.fixture
def image() -> np.ndarray:
    return synthetic_image()


@pytest.fixture
def tiny_config():
    from ingan.model.config import DiscriminatorConfig, GeneratorConfig
    from ingan.train.config import TrainConfig

    return TrainConfig(
        preset="tiny",
        iters=8,
        crop_size=32,
        curriculum_iters=4,
        lr_decay_start=4,
        inverse_start=3,
        scale_weights_even_at=4,
        g_lr=2e-4,
        d_lr=2e-4,
        generator=GeneratorConfig(base_channels=4, n_blocks=1),
        discriminator=DiscriminatorConfig(base_channels=4),
    )


@pytest.fixture
def image_file(tmp_path, image):
    from PIL import Image

    path = tmp_path / "tiny.png"
    Image.fromarray(image).save(path)
    return path


# Shared by the export and runtime tests: exports are slow, so they are made once.
@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from ingan.model.config import DiscriminatorConfig, GeneratorConfig
    from ingan.train.config import RunOptions, TrainConfig
    from ingan.train.trainer import Trainer

    config = TrainConfig(
        preset="tiny", iters=4, crop_size=32, curriculum_iters=2, lr_decay_start=4, inverse_start=10,
        generator=GeneratorConfig(base_channels=4, n_blocks=1), discriminator=DiscriminatorConfig(base_channels=4),
    )
    trainer = Trainer(synthetic_image(40, 52), config, RunOptions(device="cpu"), image_name="tiny.png")
    for _ in range(3):
        trainer.step()
    trainer.losses()
    return trainer.save(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")


@pytest.fixture(scope="session")
def default_export(tiny_checkpoint, tmp_path_factory):
    """ingan-export ckpt.pt --fp16 (FP32 + FP16 ONNX, baked image, uint8 output)."""
    from ingan.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export")
    result = export_checkpoint(tiny_checkpoint, ExportOptions(out_dir=out, fp16=True, min_size=(16, 16),
                                                              max_size=(96, 120)))
    return out, result


@pytest.fixture
def no_half_cpu_convolutions(monkeypatch):
    """Fail the test if a float16/bfloat16 convolution or matrix product executes on the CPU.

    Such kernels are ~100x slower than float32 on CPUs without FP16/BF16 matrix units (AMD
    EPYC with AVX2 only), even where this machine runs them fast (ingan/model/precision.py).
    Yields the list of offending ops seen (empty when the test passes). torch.onnx.export
    runs outside the guard: it traces with fake tensors (no kernel executes) and refuses to
    trace under a user dispatch mode.
    """
    import torch
    from torch.utils._python_dispatch import _disable_current_modes

    from ingan.model.precision import HalfOnCpuGuard

    export = torch.onnx.export

    def export_outside_the_guard(*args, **kwargs):
        with _disable_current_modes():
            return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_outside_the_guard)
    with HalfOnCpuGuard() as guard:
        yield guard.seen
    assert not guard.seen, f"half-precision ops ran on the CPU: {sorted(set(guard.seen))}"
