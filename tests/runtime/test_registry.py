"""A backend is one file: a toy runner declared here shows up in load(), ingan-run and the bench
without any other module knowing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ingan.runtime
from ingan.metadata import ModelMetadata, TensorSpec
from ingan.runtime import registry
from ingan.runtime.base import Runner


@pytest.fixture
def toy_backend():
    class ToyRunner(Runner):
        """A 'model' that paints its output one colour: enough to exercise the contract."""

        backend = "toy"
        aliases = ("paint",)
        suffixes = (".toy",)
        extra = "onnx"
        devices = ("cpu",)
        takes = frozenset({"threads"})

        @classmethod
        def describe(cls, path: Path) -> ModelMetadata:
            spec = json.loads(Path(path).read_text())
            return ModelMetadata(
                kind="toy", artifact=Path(path).name, artifact_sha256="", precision="fp32", opset=0,
                inputs=[TensorSpec("size", "int64", [2])], outputs=[TensorSpec("output", "uint8", [1, "h", "w", 3])],
                image_input=False, warp=False, output_format="uint8", min_size=[8, 8], opt_size=[16, 16],
                max_size=[64, 64], training_image_size=[16, 16], trained_scale_range=[0.5, 4.0],
                source_checkpoint={}, exporter="test")

        def __init__(self, path, metadata, options=registry.LoadOptions()):
            super().__init__(path, metadata)
            self.colour = json.loads(Path(path).read_text())["colour"]

        @property
        def device(self) -> str:
            return "cpu (toy)"

        def _retarget(self, size, homography, image):
            return np.full((size[0], size[1], 3), self.colour, dtype=np.uint8)

    yield ToyRunner
    registry.unregister("toy")


@pytest.fixture
def toy_model(tmp_path):
    path = tmp_path / "red.toy"
    path.write_text(json.dumps({"colour": [200, 10, 10]}))
    return path


def test_a_declared_runner_is_in_the_registry_and_load_opens_its_files(toy_backend, toy_model):
    assert "toy" in registry.backend_names() and registry.suffix_table()[".toy"] == "toy"
    assert registry.runner_class("paint") is toy_backend
    with ingan.runtime.load(toy_model) as runner:
        assert runner.backend == "toy" and runner.retarget((10, 20))[0, 0].tolist() == [200, 10, 10]
    with pytest.raises(Exception, match="--cuda-graphs applies to the tensorrt backend"):
        ingan.runtime.load(toy_model, cuda_graphs=2)


def test_ingan_run_offers_and_runs_it(toy_backend, toy_model, tmp_path):
    from ingan.runtime.cli import main

    assert "toy" in CliRunner().invoke(main, ["--help"]).output
    result = CliRunner().invoke(main, [str(toy_model), "--backend", "toy", "--size", "20x10", "-o",
                                       str(tmp_path / "out.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file() and "toy on cpu (toy)" in result.output


def test_the_bench_times_it_through_the_runner_contract(toy_backend, toy_model, tmp_path):
    from ingan.bench.suite import BenchOptions, run_benchmark
    from ingan.bench.timing import Settings

    settings = Settings(warmup_iterations=1, warmup_seconds=None, iterations=2, duration_s=0.0, max_iterations=2)
    report = run_benchmark([toy_model], BenchOptions(sizes=[(10, 20)], settings=settings))
    (cell,) = report["cells"]
    assert cell["status"] == "ok" and cell["backend"] == "toy" and cell["runtime"] == "toy"


def test_declarations_that_clash_are_refused(toy_backend):
    with pytest.raises(ValueError, match="suffixes"):
        class Clash(Runner):  # noqa: F841 - defining it is the test
            backend = "clash"
            suffixes = (".onnx",)
    registry.unregister("clash")
