"""`ingan-bench serve`: load-test an ingan-serve server (a running one, or one started for the run)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from ingan.cli.common import Duration, SizeParam, check_plain_stem, collect_sizes, notice, setup_logging, size_options, user_errors

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command("serve", context_settings=CONTEXT)
@click.argument("targets", nargs=-1, required=True)
@click.option("--clients", type=click.IntRange(min=1), default=8, show_default=True,
              help="Concurrent clients (threads, one keep-alive connection each).")
@click.option("--requests", "requests_per_client", type=click.IntRange(min=1), default=100, show_default=True,
              help="Requests per client.")
@click.option("--models", "model_count", type=click.IntRange(min=1), default=None,
              help="Spread the load over the first M available models. [default: all]")
@size_options("Draw sizes from these WIDTHxHEIGHT (repeat or comma list). [default: uniformly from each model's "
              "range]")
@click.option("--format", "image_format", type=click.Choice(["png", "jpeg", "webp"]), default="png",
              show_default=True, help="Image format to ask for.")
@click.option("--overhead-size", type=SizeParam(), default="256x256", show_default=True,
              help="Size of the HTTP-overhead phase (served vs direct runtime calls).")
@click.option("--overhead-requests", type=click.IntRange(min=1), default=100, show_default=True,
              help="Requests (and direct calls) in the overhead phase.")
@click.option("--no-overhead", is_flag=True, help="Skip the overhead phase.")
@click.option("--direct", type=click.Path(path_type=Path), metavar="FILE",
              help="With a URL: the model file the server runs for the first model, for the overhead's direct "
                   "calls (without it the overhead phase is skipped).")
@click.option("--direct-threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="With a URL: ONNX Runtime threads for the direct calls (match the server's replicas).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the models and sizes drawn.")
@click.option("--timeout", "timeout_s", type=Duration(), default="120s", show_default=True,
              help="Per-request client time limit.")
@click.option("--models-per-replica", type=click.IntRange(min=1), default=3, show_default=True,
              help="Server started here: models each replica holds.")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server started here: model replicas.")
@click.option("--cpus-per-replica", type=float, default=1.0, show_default=True,
              help="Server started here: CPUs per replica (also its ONNX Runtime threads per model).")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="Server started here: CPUs of its local Ray cluster. [default: all]")
@click.option("--object-store-mib", type=click.IntRange(min=75), default=None,
              help="Server started here: object store of its local Ray cluster in MiB. [default: Ray's]")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Report folder. [default: bench-YYYYmmdd-HHMMSS beside the first model, or in the current "
                   "folder for a URL]")
@click.option("--name", default="serve", show_default=True, callback=check_plain_stem,
              help="Report file stem: NAME.json, NAME.md, NAME.png.")
@click.option("--no-plot", is_flag=True, help="Do not draw NAME.png.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines and no table on the terminal.")
def serve(targets: tuple[str, ...], quiet: bool, out: Path | None, name: str, no_plot: bool, **opt: Any) -> None:
    """Load-test ingan-serve: N concurrent clients x R requests over M models, and the HTTP overhead.

    TARGETS is a running server's URL (http://HOST:PORT), or exported models and folders of
    them: then a local ingan-serve is started for the run (--models-per-replica, --replicas,
    --cpus-per-replica, --num-cpus) and stopped after it. The report gives throughput,
    p50/p95/p99 latency, errors by status and cold-load latency (requests whose model had to
    be loaded: give more models than the replicas hold to see eviction), plus the HTTP
    overhead: served requests minus direct runtime calls of the same model file at
    --overhead-size. Writes NAME.json, NAME.md and NAME.png; exit status 1 if any request failed.

    \b
    Examples:
      ingan-bench serve models/ --models-per-replica 3 --clients 8 --requests 100 -o bench/serve
      ingan-bench serve http://127.0.0.1:8000 --direct models/beach.onnx --direct-threads 1
    """
    setup_logging(quiet)
    opt["sizes"] = collect_sizes(opt.pop("sizes"), opt.pop("old_sizes")) or None
    urls = [t for t in targets if t.lower().startswith(("http://", "https://"))]
    if urls and len(targets) > 1:
        raise click.UsageError("give one server URL, or model files and folders (to start a server), not both")
    say = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    with user_errors():
        report, failed = _run(targets, bool(urls), say, **opt)
        from ingan.bench import serve_report
        from ingan.bench.suite import default_out_dir

        target = out or default_out_dir(None if urls else Path(targets[0]).resolve().parent)
        if (Path(target) / f"{name}.json").exists():
            notice(f"'{Path(target) / name}.json' will be replaced (pass another -o or --name to keep it)")
        paths = serve_report.write_outputs(report, target, name=name, plot_it=not no_plot)
    if not quiet:
        click.echo(serve_report.markdown(report))
    for path in paths.values():
        if path is not None:
            click.echo(f"wrote {path}")
    load = report["load"]
    summary = (f"{load['ok']}/{load['requests']} requests answered, {load['throughput_rps'] or 0:.1f} req/s, "
               f"p50 {load['latency_ms']['median'] if load['latency_ms'] else float('nan'):.1f} ms")
    if report["overhead"]:
        summary += f", HTTP overhead p50 {report['overhead']['overhead_p50_ms']:.2f} ms"
    if failed:
        click.echo(f"FAILED: {summary}; errors by status {load['errors']}")
        sys.exit(1)
    click.echo(f"PASSED: {summary}")


def _run(targets: tuple[str, ...], url_mode: bool, say: Any, clients: int, requests_per_client: int,
         model_count: int | None, sizes: list[tuple[int, int]] | None, image_format: str,
         overhead_size: tuple[int, int], overhead_requests: int, no_overhead: bool, direct: Path | None,
         direct_threads: int, seed: int, timeout_s: float, models_per_replica: int, replicas: int,
         cpus_per_replica: float, num_cpus: int | None, object_store_mib: int | None) -> tuple[dict[str, Any], bool]:
    from ingan.bench import env as env_mod
    from ingan.bench import serve_load, serve_report
    from ingan.serve.client import ServeClient

    started = time.perf_counter()
    options = serve_load.LoadOptions(
        clients=clients, requests_per_client=requests_per_client, models=model_count,
        sizes=tuple(sizes) if sizes else None, image_format=image_format,
        overhead_size=None if no_overhead else overhead_size, overhead_requests=overhead_requests, seed=seed,
        timeout_s=timeout_s)
    load_start = serve_load.load_average()
    running = None
    files: dict[str, str] = {}
    threads = direct_threads
    if url_mode:
        base = targets[0].rstrip("/")
        server: dict[str, Any] = {"url": base, "scaling": None, "started_by_this_run": False}
    else:
        from ingan.serve import server as server_mod
        from ingan.serve.catalog import scan
        from ingan.serve.options import ServeOptions

        serve_options = ServeOptions(models=tuple(str(Path(t).resolve()) for t in targets),
                                     models_per_replica=models_per_replica, replicas=replicas,
                                     cpus_per_replica=cpus_per_replica, port=_free_port(), timeout_s=timeout_s)
        catalog = scan(serve_options.models)
        for note in catalog.notes:
            notice(note)
        files = {entry.id: entry.path for entry in catalog.available}
        threads = serve_options.model_threads
        cluster = server_mod.ClusterOptions(num_cpus=num_cpus, log_to_driver=False,
                                            object_store_bytes=object_store_mib * 2**20 if object_store_mib else None)
        running = server_mod.start(serve_options, catalog, cluster, say=say)
        base = running.url
        server = {"url": base, "started_by_this_run": True, "replicas": replicas,
                  "models_per_replica": models_per_replica, "cpus_per_replica": cpus_per_replica,
                  "model_threads": threads,
                  "scaling": f"{replicas} replica(s) x {models_per_replica} models each, {cpus_per_replica:g} CPU "
                             f"and {threads} ONNX Runtime thread(s) per model, local Ray cluster "
                             f"({num_cpus or 'all'} CPUs)"}
    try:
        with ServeClient(base, timeout=timeout_s) as client:
            models = serve_load.choose_models(client.models(), options.models)
        server["models"] = [{k: m.get(k) for k in ("id", "backend", "precision", "version", "min_size", "max_size")}
                            for m in models]
        if running is not None and len(models) <= replicas * models_per_replica:
            notice(f"{len(models)} models fit in {replicas} x {models_per_replica} replica slots: no eviction after "
                   "the first loads (use more models or fewer --models-per-replica to measure it)")
        overhead = None
        if options.overhead_size is not None:
            direct_file = files.get(models[0]["id"]) if running is not None else direct
            if direct_file is None:
                notice("no HTTP overhead measured: pass --direct MODEL_FILE (the file the server runs for "
                       f"'{models[0]['id']}') to compare with direct runtime calls")
            else:
                overhead = serve_load.measure_overhead(base, models[0], direct_file, threads, options, say)
        samples, wall = serve_load.run_load(base, models, options, say)
    finally:
        if running is not None:
            say("stopping the server ...")
            running.stop()
    environment = env_mod.environment(with_gpu=False)
    environment.update(load_average_start=load_start, load_average_end=serve_load.load_average(),
                       ray_serve_env={k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")})
    load = serve_load.summarize_load(samples, wall)
    report = serve_report.build_report(
        created=env_mod.utc_now(), command=["ingan-bench", *sys.argv[1:]], elapsed_s=time.perf_counter() - started,
        settings=serve_load.options_dict(options), environment=environment, server=server, load=load,
        overhead=overhead, samples=serve_load.sample_rows(samples))
    return report, load["ok"] != load["requests"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
