"""`ingan-bench serve`: a load test of an ingan-serve server, and its HTTP overhead.

Two phases, both over real HTTP with the standard-library client (`ingan.serve.client`):

1. **Overhead**: one model, one size (256x256 by default), one request at a time: each
   served request is followed by a direct `ingan.runtime` call of the same model file at
   the same size in this process (same backend, same ONNX Runtime thread count as a
   replica), so both see the same background load. Overhead = median served round trip
   minus median direct call: HTTP, Ray's proxy and handle hops, PNG encoding.
2. **Load**: N concurrent clients (threads, one keep-alive connection each) x R requests,
   each for a model drawn from M served ones and a size drawn uniformly from that model's
   range (or from --sizes), all from one seed. With more models than the replicas hold,
   replicas evict and reload: requests whose answer reports a model load (Server-Timing
   `load`) are the cold ones.

Statistics are `ingan.bench.stats.Summary` (trtexec's percentile rule), in milliseconds.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ingan.bench.stats import Summary, summarize
from ingan.errors import ConfigError, InganError, first_line
from ingan.sizes import format_size, parse_size

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LoadOptions:
    clients: int = 8
    requests_per_client: int = 100
    models: int | None = None  # serve-able models to spread the load over (default: all)
    sizes: tuple[tuple[int, int], ...] | None = None  # (h, w) to draw from; None: each model's range
    image_format: str = "png"
    overhead_size: tuple[int, int] | None = (256, 256)  # None: skip the overhead phase
    overhead_requests: int = 100
    seed: int = 0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.clients < 1 or self.requests_per_client < 1:
            raise ConfigError("--clients and --requests must be at least 1")
        if self.models is not None and self.models < 1:
            raise ConfigError("--models must be at least 1")
        if self.overhead_requests < 1:
            raise ConfigError("--overhead-requests must be at least 1")


@dataclass(frozen=True)
class Sample:
    """One request of the load phase."""

    client: int
    model: str
    size: tuple[int, int]  # (h, w)
    start_s: float  # from the start of the load phase
    latency_ms: float  # round trip, as the client saw it
    status: int  # 200, an HTTP error status, or 0 when the server could not be reached
    cold: bool = False
    load_ms: float | None = None
    server_ms: float | None = None
    error: str | None = None


def plan_requests(models: Sequence[dict[str, Any]], options: LoadOptions) -> list[list[tuple[str, tuple[int, int]]]]:
    """Every client's (model id, (h, w)) list, reproducible from the seed."""
    rng = random.Random(options.seed)
    plans = []
    for _client in range(options.clients):
        plan = []
        for _ in range(options.requests_per_client):
            model = rng.choice(models)
            if options.sizes:
                size = rng.choice(options.sizes)
            else:
                (lo_h, lo_w), (hi_h, hi_w) = parse_size(model["min_size"]), parse_size(model["max_size"])
                size = (rng.randint(lo_h, hi_h), rng.randint(lo_w, hi_w))
            plan.append((model["id"], size))
        plans.append(plan)
    return plans


def choose_models(listing: Sequence[dict[str, Any]], count: int | None) -> list[dict[str, Any]]:
    available = [m for m in listing if m.get("status") == "available" and not m.get("image_input")]
    if not available:
        raise InganError("the server has no available model that needs no uploaded image; nothing to load-test")
    if count is not None and count > len(available):
        raise ConfigError(f"--models {count}: the server has only {len(available)} available model(s) "
                          f"({', '.join(m['id'] for m in available)})")
    return available[:count] if count is not None else available


def run_load(base_url: str, models: Sequence[dict[str, Any]], options: LoadOptions,
             progress: Progress | None = None) -> tuple[list[Sample], float]:
    """The load phase: every client's plan at once; returns the samples and the wall time."""
    from ingan.serve.client import ServeClient, ServerError

    plans = plan_requests(models, options)
    samples: list[list[Sample]] = [[] for _ in plans]
    barrier = threading.Barrier(len(plans) + 1)
    t0 = [0.0]

    def client_loop(index: int) -> None:
        with ServeClient(base_url, timeout=options.timeout_s) as client:
            barrier.wait()
            for model_id, size in plans[index]:
                started = time.perf_counter()
                try:
                    served = client.retarget(model_id, size, image_format=options.image_format)
                except ServerError as exc:
                    samples[index].append(Sample(index, model_id, size, started - t0[0],
                                                 (time.perf_counter() - started) * 1000, exc.status,
                                                 error=first_line(exc)))
                    continue
                except InganError as exc:
                    samples[index].append(Sample(index, model_id, size, started - t0[0],
                                                 (time.perf_counter() - started) * 1000, 0, error=first_line(exc)))
                    continue
                samples[index].append(Sample(
                    index, model_id, size, started - t0[0], served.round_trip_ms, 200, cold=served.cold,
                    load_ms=served.timings.get("load"), server_ms=served.latency_ms))

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    total = len(plans) * options.requests_per_client
    if progress:
        progress(f"load: {len(plans)} clients x {options.requests_per_client} requests over {len(models)} models ...")
    t0[0] = time.perf_counter()
    barrier.wait()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=5.0)
            if progress and thread.is_alive():
                done = sum(len(s) for s in samples)
                progress(f"load: {done}/{total} requests")
    wall = time.perf_counter() - t0[0]
    return [s for client in samples for s in client], wall


def measure_overhead(base_url: str, model: dict[str, Any], model_file: str | os.PathLike[str], threads: int,
                     options: LoadOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Served round trip vs a direct runtime call, interleaved, at `options.overhead_size`."""
    import ingan.runtime
    from ingan.serve.client import ServeClient

    size = options.overhead_size
    assert size is not None
    (lo_h, lo_w), (hi_h, hi_w) = parse_size(model["min_size"]), parse_size(model["max_size"])
    if not (lo_h <= size[0] <= hi_h and lo_w <= size[1] <= hi_w):
        raise ConfigError(f"--overhead-size {format_size(size)} is outside the range of model '{model['id']}', "
                          f"{model['min_size']} .. {model['max_size']}; pick a size inside it (or --no-overhead)")
    if progress:
        progress(f"overhead: {options.overhead_requests} served requests and direct calls of '{model['id']}' "
                 f"at {format_size(size)} ...")
    served_ms, direct_ms, retarget_ms, encode_ms, server_ms = [], [], [], [], []
    kwargs = {"threads": threads} if Path(model_file).suffix.lower() == ".onnx" else {}
    with ServeClient(base_url, timeout=options.timeout_s) as client, \
            ingan.runtime.load(model_file, **kwargs) as runner:
        for _ in range(3):  # warm: the model loaded in a replica and here, the connection open
            client.retarget(model["id"], size, image_format=options.image_format)
            runner.retarget(size)
        for _ in range(options.overhead_requests):
            served = client.retarget(model["id"], size, image_format=options.image_format)
            served_ms.append(served.round_trip_ms)
            server_ms.append(served.latency_ms)
            retarget_ms.append(served.timings.get("retarget", float("nan")))
            encode_ms.append(served.timings.get("encode", float("nan")))
            started = time.perf_counter()
            runner.retarget(size)
            direct_ms.append((time.perf_counter() - started) * 1000)
        device = runner.device
    served_summary, direct_summary = Summary.of(served_ms), Summary.of(direct_ms)
    return {
        "model": model["id"], "model_file": str(model_file), "size": format_size(size),
        "requests": options.overhead_requests, "direct_backend": runner.backend, "direct_device": device,
        "direct_threads": threads if kwargs else None,
        "served_ms": served_summary.to_dict(), "direct_ms": direct_summary.to_dict(),
        "server_total_ms": Summary.of(server_ms).to_dict(), "server_retarget_ms": _maybe(retarget_ms),
        "server_encode_ms": _maybe(encode_ms),
        "overhead_p50_ms": round(served_summary.median - direct_summary.median, 3),
        "paired_overhead_p50_ms": round(Summary.of([s - d for s, d in zip(served_ms, direct_ms)]).median, 3),
    }


def _maybe(values: list[float]) -> dict[str, Any] | None:
    finite = [v for v in values if v == v]
    return Summary.of(finite).to_dict() if finite else None


def summarize_load(samples: Sequence[Sample], wall_s: float) -> dict[str, Any]:
    ok = [s for s in samples if s.status == 200]
    errors: dict[str, int] = {}
    examples: list[str] = []
    for sample in samples:
        if sample.status != 200:
            errors[str(sample.status)] = errors.get(str(sample.status), 0) + 1
            if sample.error and len(examples) < 5 and sample.error not in examples:
                examples.append(sample.error)
    cold = [s for s in ok if s.cold]
    per_model: dict[str, dict[str, int]] = {}
    for sample in samples:
        entry = per_model.setdefault(sample.model, {"requests": 0, "cold": 0, "errors": 0})
        entry["requests"] += 1
        entry["cold"] += int(sample.cold)
        entry["errors"] += int(sample.status != 200)
    megapixels = sum(s.size[0] * s.size[1] for s in ok) / 1e6

    def summary(values: list[float]) -> dict[str, Any] | None:
        result = summarize(values)
        return result.to_dict() if result is not None else None

    return {
        "requests": len(samples), "ok": len(ok), "errors": errors, "error_examples": examples,
        "wall_s": round(wall_s, 3), "throughput_rps": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
        "megapixels_per_s": round(megapixels / wall_s, 3) if wall_s > 0 else None,
        "latency_ms": summary([s.latency_ms for s in ok]),
        "warm_latency_ms": summary([s.latency_ms for s in ok if not s.cold]),
        "cold_requests": len(cold), "cold_latency_ms": summary([s.latency_ms for s in cold]),
        "model_load_ms": summary([s.load_ms for s in cold if s.load_ms is not None]),
        "server_latency_ms": summary([s.server_ms for s in ok if s.server_ms is not None]),
        "per_model": per_model,
    }


def sample_rows(samples: Sequence[Sample]) -> list[list[Any]]:
    """Compact per-request rows for the report (and its plot): start s, latency ms, status, cold."""
    return [[round(s.start_s, 4), round(s.latency_ms, 3), s.status, int(s.cold)] for s in samples]


def options_dict(options: LoadOptions) -> dict[str, Any]:
    data = asdict(options)
    data["sizes"] = [format_size(s) for s in options.sizes] if options.sizes else "each model's range"
    data["overhead_size"] = format_size(options.overhead_size) if options.overhead_size else None
    return data


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
