"""Running the application: a local Ray cluster (or an existing one), Serve's HTTP proxy, shutdown.

With no address, a local single-node cluster is started inside this process (no dashboard:
start one with `ray start --head` and pass `--address auto` for that). With an address,
the application joins that cluster; stopping then removes only this application, never
Serve or the cluster itself.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ingan.errors import ConfigError, InganError, MissingDependencyError, first_line
from ingan.serve.catalog import Catalog
from ingan.serve.options import ServeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterOptions:
    """Where the application runs: `address` joins a cluster; the rest shape a local one."""

    address: str | None = None
    num_cpus: int | None = None  # local cluster only (default: every core)
    object_store_bytes: int | None = None  # local cluster only (default: Ray's, 30% of memory)
    log_to_driver: bool = True  # show replica logs (loads, failures, access log) on this terminal

    def problem(self) -> str | None:
        if self.address is not None and (self.num_cpus is not None or self.object_store_bytes is not None):
            return "--num-cpus and --object-store-mib shape a local cluster; drop them with --address"
        if self.num_cpus is not None and self.num_cpus < 1:
            return f"--num-cpus must be at least 1, got {self.num_cpus}"
        if self.object_store_bytes is not None and self.object_store_bytes < 75 * 2**20:
            return "--object-store-mib must be at least 75 (Ray's minimum object store)"
        return None


@dataclass(frozen=True)
class RunningServer:
    url: str  # http://HOST:PORT, where the API answers
    app_name: str
    started_cluster: bool  # this process started the Ray cluster (and stops it)
    connected: bool  # this process called ray.init (and disconnects)

    def stop(self) -> None:
        """Remove the application; stop Serve and the cluster only if this process started them."""
        import ray
        from ray import serve

        try:
            if self.started_cluster:
                serve.shutdown()
            else:
                serve.delete(self.app_name)
        finally:
            if self.connected:
                ray.shutdown()


def import_ray_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise MissingDependencyError("ray[serve]", "serve", "ingan-serve") from None
    return serve


def start(options: ServeOptions, catalog: Catalog, cluster: ClusterOptions = ClusterOptions(),
          say: Callable[[str], None] = log.info) -> RunningServer:
    """Start (or join) Ray, start Serve's HTTP proxy and deploy the application; returns once
    it is running. Raises InganError (nothing left running) when it cannot start."""
    problem = cluster.problem()
    if problem:
        raise ConfigError(problem)
    serve = import_ray_serve()
    import ray

    from ingan.serve.app import build_application

    started_cluster = connected = False
    if not ray.is_initialized():
        if cluster.address is None:
            _check_port_free(options.host, options.port)
            say(f"starting a local Ray cluster ({cluster.num_cpus or 'all'} CPUs) ...")
            try:
                ray.init(num_cpus=cluster.num_cpus, object_store_memory=cluster.object_store_bytes,
                         include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=cluster.log_to_driver)
            except (OSError, RuntimeError, ValueError) as exc:
                raise InganError(f"cannot start a local Ray cluster: {first_line(exc)}; check --num-cpus and "
                                 "--object-store-mib against this machine, or join a cluster with --address") from None
            started_cluster = True
        else:
            say(f"joining the Ray cluster at {cluster.address} ...")
            try:
                ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=cluster.log_to_driver)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InganError(f"cannot join the Ray cluster at '{cluster.address}': {first_line(exc)}; start one "
                                 "with `ray start --head` or drop --address for a local cluster") from None
        connected = True
    server = RunningServer(url=f"http://{_display_host(options.host)}:{options.port}", app_name=options.app_name,
                           started_cluster=started_cluster, connected=connected)
    try:
        _check_resources(options, strict=started_cluster)
        if not cluster.log_to_driver:  # quiet: Serve's own progress lines too
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": options.host, "port": options.port,
                                  "request_timeout_s": options.proxy_timeout_s})
        say(f"deploying {len(catalog.entries)} model(s) ...")
        serve.run(build_application(options, catalog), name=options.app_name, route_prefix="/", blocking=False)
    except BaseException as exc:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            log.debug("cleanup after a failed start failed", exc_info=True)
        if isinstance(exc, (InganError, KeyboardInterrupt, SystemExit)):
            raise
        raise InganError(f"Ray Serve could not start the application: {first_line(exc)}") from None
    return server


class Terminated(SystemExit):
    """SIGTERM (docker stop, systemd, schedulers): stop cleanly, then exit 143 like the other CLIs."""


def wait(server: RunningServer, say: Callable[[str], None] = log.info) -> None:
    """Block until Ctrl-C or SIGTERM, then stop the application (and a cluster started here)."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    # ray.init replaced the SIGTERM handler with one that only prints a stack trace.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        say("stopping (Ctrl-C) ...")
    except Terminated:
        say("stopping (SIGTERM) ...")
        raise
    finally:
        try:
            server.stop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            say("stopped")


def _check_resources(options: ServeOptions, strict: bool) -> None:
    """Replicas the cluster can never place would leave `serve.run` waiting forever: a local
    cluster refuses them; a remote one only warns (its autoscaler may add nodes)."""
    import ray

    resources = ray.cluster_resources()
    problems = []
    if options.gpus_per_replica > 0 and resources.get("GPU", 0) == 0:
        problems.append(f"--gpus-per-replica {options.gpus_per_replica:g} needs GPUs, and this Ray cluster has none; "
                        "drop the flag to serve the .onnx models on CPUs, or join a cluster with GPU nodes (--address)")
    cpus = resources.get("CPU", 0)
    if options.fixed_cpus > cpus:
        problems.append(f"{options.fixed_cpus:g} CPUs are needed for the replicas (replicas x --cpus-per-replica) but "
                        f"the cluster has {cpus:g}; lower --replicas or --cpus-per-replica (fractions such as 0.5 "
                        "are allowed)")
    for problem in problems:
        if strict:
            raise ConfigError(problem)
        log.warning("%s (continuing: the cluster may add nodes)", problem)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port "
                              "(or stop what is using it)") from None


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"  # reachable from this machine; other machines use its name
    return f"[{host}]" if ":" in host else host
