"""Server settings, the Ray Serve config file (checked with Ray's own schema) and the app builder,
all without a Ray cluster."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from ray.serve.schema import ServeDeploySchema

from clitest import one_line_error
from ingan.errors import ConfigError
from ingan.serve.app import build_app
from ingan.serve.cli import main
from ingan.serve.config import check_config, serve_config, write_config
from ingan.serve.options import APP_FIELDS, ServeOptions
from ingan.serve.server import ClusterOptions
from servetest import exported


def test_defaults_and_derived_values():
    options = ServeOptions(models=("/m",))
    assert options.model_threads == 1 and not options.autoscaling and options.fixed_cpus == 1.0
    assert options.retargeter_options() == {"ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0}, "num_replicas": 1}
    scaled = ServeOptions(models=("/m",), min_replicas=0, max_replicas=4, cpus_per_replica=2, gpus_per_replica=0.25)
    assert scaled.model_threads == 2 and scaled.fixed_cpus == 0
    assert scaled.retargeter_options() == {
        "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.25},
        "autoscaling_config": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.0}}
    assert ServeOptions(models=("/m",), threads=3).model_threads == 3


@pytest.mark.parametrize("changes, text", [
    ({"models": ()}, "no MODELS"), ({"models_per_replica": 0}, "--models-per-replica"),
    ({"replicas": 0}, "--replicas"), ({"min_replicas": 2}, "needs --max-replicas"),
    ({"min_replicas": 3, "max_replicas": 2}, "autoscaling needs"), ({"cpus_per_replica": 0}, "--cpus-per-replica"),
    ({"gpus_per_replica": -1}, "--gpus-per-replica"), ({"gpus_per_replica": 1.5}, "whole number"),
    ({"timeout_s": float("nan")}, "--timeout"), ({"max_pixels": 0}, "--max-pixels"), ({"port": 0}, "--port"),
])
def test_settings_that_cannot_work_are_refused(changes, text):
    with pytest.raises(ConfigError, match=text):
        ServeOptions(**{"models": ("/m",), **changes})


def test_builder_args_round_trip_and_refuse_what_they_cannot_read():
    options = ServeOptions(models=("/a", "/b"), models_per_replica=5, threads=2, max_pixels=1000, timeout_s=9.5,
                           gpus_per_replica=0.5, allow_host_code=True)
    args = options.to_args()
    assert sorted(args) == sorted(APP_FIELDS) and args["models"] == ["/a", "/b"]
    again = ServeOptions.from_args(args)
    assert again.to_args() == args
    with pytest.raises(ConfigError, match="unknown ingan-serve setting.*colour"):
        ServeOptions.from_args({**args, "colour": "red"})
    with pytest.raises(ConfigError, match="args.models must be a list"):
        ServeOptions.from_args({"models": "/a"})
    with pytest.raises(ConfigError, match="args.models_per_replica must be a whole number"):
        ServeOptions.from_args({"models": ["/a"], "models_per_replica": 2.5})
    with pytest.raises(ConfigError, match="args.allow_host_code must be true or false"):
        ServeOptions.from_args({"models": ["/a"], "allow_host_code": "yes"})
    with pytest.raises(ConfigError, match="args.models is missing"):
        ServeOptions.from_args({})


def test_the_config_passes_rays_schema_and_builds_the_app(tmp_path):
    exported(tmp_path / "models" / "beach.onnx")
    options = ServeOptions(models=(str(tmp_path / "models"),), max_replicas=3, gpus_per_replica=0.0, port=8100)
    path = write_config(options, tmp_path / "ingan.yaml")
    text = path.read_text()
    assert text.startswith("# Ray Serve config for ingan-serve") and "serve run ingan.yaml" in text
    document = yaml.safe_load(text)
    schema = ServeDeploySchema.model_validate(document)
    (app,) = schema.applications
    assert app.import_path == "ingan.serve.app:build_app" and app.route_prefix == "/"
    assert schema.http_options.port == 8100 and schema.http_options.request_timeout_s == 70.0
    deployments = {d.name: d for d in app.deployments}
    assert deployments["Retargeter"].autoscaling_config["max_replicas"] == 3
    assert list(deployments) == ["Retargeter"]
    built = build_app(app.args)  # what `serve run` does with the args: scan and bind (no cluster needed)
    assert type(built).__name__ == "Application"


def test_a_config_ray_would_refuse_is_never_written(tmp_path):
    document = serve_config(ServeOptions(models=("/m",)))
    document["applications"][0]["deployments"][0]["num_replicas"] = -1
    with pytest.raises(ConfigError, match="num_replicas"):
        check_config(document)


def test_cluster_options():
    assert ClusterOptions().problem() is None
    assert "drop them with --address" in ClusterOptions(address="auto", num_cpus=2).problem()
    assert "at least 75" in ClusterOptions(object_store_bytes=10 * 2**20).problem()


# ---------------------------------------------------------------------------- the command line
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_explains_every_flag():
    result = run("--help")
    assert result.exit_code == 0
    for flag in ("--models-per-replica", "--replicas", "--min-replicas", "--max-replicas", "--gpus-per-replica",
                 "--cpus-per-replica", "--threads", "--max-pixels", "--max-body-mib", "--timeout", "--host",
                 "--port", "--address", "--num-cpus", "--object-store-mib", "--write-config", "--allow-host-code"):
        assert flag in result.output


def test_write_config_from_the_command_line(tmp_path):
    exported(tmp_path / "models" / "beach.onnx")
    result = run(tmp_path / "models", "--replicas", "2", "--models-per-replica", "4", "--write-config",
                 tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    assert "beach: beach.onnx" in result.output and "serve run" in result.output
    document = yaml.safe_load((tmp_path / "c.yaml").read_text())
    ServeDeploySchema.model_validate(document)
    application = document["applications"][0]
    assert application["args"]["models"] == [str((tmp_path / "models").resolve())]
    assert application["args"]["models_per_replica"] == 4
    assert application["deployments"][0]["num_replicas"] == 2


@pytest.mark.parametrize("args, text", [
    (["--replicas", "2", "--max-replicas", "3"], "give one of them"),
    (["--min-replicas", "1"], "needs --max-replicas"),
    (["--address", "auto", "--num-cpus", "2"], "drop them with --address"),
    (["--port", "0"], "0 is not in the range"),
])
def test_usage_errors_exit_2(tmp_path, args, text):
    exported(tmp_path / "m" / "a.onnx")
    result = run(tmp_path / "m", *args)
    assert result.exit_code == 2 and text in result.output, result.output


def test_user_errors_are_one_line(tmp_path):
    one_line_error(run(tmp_path / "missing"), "does not exist")
    exported(tmp_path / "plans" / "photo.plan")
    one_line_error(run(tmp_path / "plans"), "none of the models can be served")
