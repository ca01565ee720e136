"""`ingan-serve`: many exported generators over HTTP on Ray Serve (docs/serve.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ingan.cli.common import Duration, notice, setup_logging, user_errors

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
MIB = 2**20


@click.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--models-per-replica", type=click.IntRange(min=1), default=3, show_default=True,
              help="Models each replica keeps loaded (Ray Serve multiplexing); the least recently used is "
                   "evicted, and requests go to a replica that holds their model.")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="Fixed number of model replicas. [default: 1, unless --max-replicas autoscales]")
@click.option("--min-replicas", type=click.IntRange(min=0), default=None,
              help="Autoscaling lower bound (with --max-replicas). [default: 1]")
@click.option("--max-replicas", type=click.IntRange(min=1), default=None,
              help="Autoscale between --min-replicas and this, by ongoing requests per replica.")
@click.option("--target-ongoing-requests", type=float, default=2.0, show_default=True,
              help="Autoscaling target: requests in flight per replica.")
@click.option("--cpus-per-replica", type=float, default=1.0, show_default=True,
              help="CPUs each model replica reserves (fractions allowed).")
@click.option("--gpus-per-replica", type=float, default=0.0, show_default=True,
              help="GPUs each model replica reserves; fractions (e.g. 0.25) share a GPU. With GPUs, TensorRT "
                   "plans are served where a model has one; without, the .onnx on CPUs.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="ONNX Runtime threads per model; 0: the replica's --cpus-per-replica (at least 1).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=3840 * 2160, show_default=True,
              help="Refuse requests for more output pixels than this (HTTP 413).")
@click.option("--max-body-mib", type=float, default=20.0, show_default=True,
              help="Refuse request bodies (uploaded images) larger than this many MiB (HTTP 413).")
@click.option("--timeout", "timeout_s", type=Duration(), default="60s", show_default=True,
              help="Per-request time limit for the model work (HTTP 504 past it): 30, 30s, 2m.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface (put an authenticating proxy in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="HTTP port.")
@click.option("--address", default=None, metavar="ADDRESS",
              help="Join this Ray cluster ('auto', or HOST:6379) instead of starting a local one. The model "
                   "paths must then exist on every node.")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="Local cluster only: CPUs it may use. [default: all]")
@click.option("--object-store-mib", type=click.IntRange(min=75), default=None,
              help="Local cluster only: Ray object store size in MiB. [default: Ray's, 30% of memory]")
@click.option("--allow-host-code", is_flag=True,
              help="Allow version-compatible TensorRT plans (they embed host code: only plans you trust).")
@click.option("--write-config", type=click.Path(path_type=Path), metavar="FILE",
              help="Write a Ray Serve config (YAML) for `serve run FILE` / `serve deploy FILE` and exit "
                   "without serving.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors, notices and the serving line; no replica logs.")
def main(models: tuple[Path, ...], write_config: Path | None, quiet: bool, **opt: Any) -> None:
    """Serve MODELS (exported .onnx/.plan files, or folders of them) over HTTP with Ray Serve.

    A model's id is its file stem, or the name of the folder holding it; MODELS are read
    once, at start. Each replica keeps up to --models-per-replica models loaded and Ray
    routes every request to a replica holding its model. Without --address a local Ray
    cluster is started here; Ctrl-C stops the server cleanly.

    \b
    API (docs/serve.md has curl examples for every route and error):
      GET  /v1/models                          ids, size ranges, versions
      GET  /v1/models/ID/retarget?size=640x360 the image (&format=png|jpeg|webp&quality=90)
      GET  /healthz, /readyz                   liveness, readiness
    Errors: 404 unknown model, 400 malformed or outside the model's range, 413 over
    --max-pixels or --max-body-mib, 503 a model that cannot be loaded, 504 over --timeout.

    \b
    Examples:
      ingan-serve models/ --models-per-replica 3 --replicas 2
      ingan-serve models/ --max-replicas 8 --gpus-per-replica 0.25 --address auto --host 0.0.0.0
      ingan-serve models/ --write-config ingan.yaml && serve run ingan.yaml
      ingan-run http://127.0.0.1:8000/beach --size 640x360 -o wide.png
    """
    setup_logging(quiet)
    with user_errors():
        _serve(models, write_config, quiet, **opt)


def _serve(models: tuple[Path, ...], write_config: Path | None, quiet: bool, replicas: int | None,
           min_replicas: int | None, max_replicas: int | None, address: str | None, num_cpus: int | None,
           object_store_mib: int | None, max_body_mib: float, **settings: Any) -> None:
    from ingan.errors import ConfigError
    from ingan.serve.catalog import scan
    from ingan.serve.options import ServeOptions
    from ingan.serve.server import ClusterOptions

    if replicas is not None and max_replicas is not None:
        raise click.UsageError("--replicas fixes the replica count; --max-replicas autoscales: give one of them")
    if min_replicas is not None and max_replicas is None:
        raise click.UsageError("--min-replicas needs --max-replicas (autoscaling runs between the two)")
    options = ServeOptions(models=tuple(str(m.resolve()) for m in models), replicas=replicas or 1,
                           min_replicas=min_replicas, max_replicas=max_replicas,
                           max_body_bytes=int(max_body_mib * MIB), **settings)
    cluster = ClusterOptions(address=address, num_cpus=num_cpus, log_to_driver=not quiet,
                             object_store_bytes=object_store_mib * MIB if object_store_mib else None)
    problem = cluster.problem()
    if problem:
        raise click.UsageError(problem)
    catalog = scan(options.models, gpu=options.gpus_per_replica > 0)
    for note in catalog.notes:
        notice(note)
    if not quiet:
        click.echo(f"{len(catalog.entries)} model(s), {len(catalog.available)} available:")
        for entry in catalog.entries:
            click.echo(f"  {entry.summary()}")
    if write_config is not None:
        from ingan.serve.config import write_config as write

        path = write(options, write_config)
        click.echo(f"wrote {path}; deploy it with: serve run {path}  (or serve deploy {path} on a running cluster)")
        return
    if not catalog.available:
        raise ConfigError("none of the models can be served (see the notices above); fix or re-export them")

    from ingan.serve import server as server_mod

    say = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    running = server_mod.start(options, catalog, cluster, say=say)
    click.echo(f"serving {len(catalog.entries)} model(s) at {running.url}  (GET {running.url}/v1/models; "
               "Ctrl-C to stop)")
    sys.stdout.flush()
    server_mod.wait(running, say=say)
