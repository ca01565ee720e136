"""What a model replica does with a validated request: load, run, encode, answer (no Ray here).

The Retargeter deployment (`ingan.serve.app`) gives a `ModelPool` its `get_model`: Ray
Serve's multiplexing LRU around `ModelPool.open`. Keeping the work Ray-free lets the tests
run it with a plain cache.

Failures become replies, never exceptions that reach Ray: a model that cannot be loaded
answers 503 (and keeps answering 503 without reloading for `FAILED_LOAD_RETRY_S`, so a
broken file is not re-read on every request, yet a file fixed in place is picked up); a
runtime error while running answers 500 with its one-line reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from ingan.errors import ConfigError, InganError, first_line
from ingan.serve import protocol
from ingan.serve.catalog import Catalog, ModelEntry

# Replicas log through Ray Serve's logger, which Ray writes to each replica's log file.
log = logging.getLogger("ray.serve")

FAILED_LOAD_RETRY_S = 30.0


class LoadedModel:
    """A runner in a replica's cache; Ray's multiplexing calls `__del__` when it evicts one."""

    def __init__(self, runner: Any, load_s: float) -> None:
        self.runner = runner
        self.load_s = load_s
        self.load_reported = False  # the first request served reports the load time
        self.evicted = False

    def __del__(self) -> None:
        self.evicted = True
        self.runner.close()


class ModelPool:
    """Loads catalog models through `ingan.runtime` and answers `RetargetJob`s with them."""

    def __init__(self, catalog: Catalog, device: str, threads: int, allow_host_code: bool,
                 get_model: Callable[[str], Awaitable[LoadedModel]] | None = None) -> None:
        self.catalog = catalog
        self.device = device  # "cpu" or "cuda": ONNX Runtime's device (a plan always runs on CUDA)
        self.threads = threads
        self.allow_host_code = allow_host_code
        self.get_model = get_model  # the cache around `open`, set by the deployment
        self._failed: dict[str, tuple[str, float]] = {}

    def load_failures(self) -> dict[str, str]:
        """Model id -> why it last failed to load here (cleared by a later successful load)."""
        return {model_id: reason for model_id, (reason, _when) in self._failed.items()}

    def open(self, model_id: str) -> LoadedModel:
        """Load one model (blocking: call it in a thread)."""
        import ingan.runtime

        entry = self.catalog.get(model_id)
        if entry is None:  # requests are checked against the catalog first; this guards direct calls
            raise InganError(f"unknown model '{model_id}'")
        started = time.perf_counter()
        if entry.backend == "onnxruntime":
            runner = ingan.runtime.load(entry.path, entry.backend, device=self.device, threads=self.threads)
        else:
            runner = ingan.runtime.load(entry.path, entry.backend, allow_host_code=self.allow_host_code)
        elapsed = time.perf_counter() - started
        log.info("loaded model '%s' (%s on %s) in %.0f ms", model_id, runner.backend, runner.device, elapsed * 1000)
        return LoadedModel(runner, elapsed)

    async def retarget(self, job: protocol.RetargetJob) -> protocol.Reply:
        entry = self.catalog.get(job.model_id)
        if entry is None:
            return protocol.RequestError(404, f"unknown model '{job.model_id}'").reply()
        for _attempt in range(2):  # a second time only when the model was evicted under this request
            model = await self._model(entry)
            if isinstance(model, protocol.Reply):
                return model
            try:
                return await self._run(entry, model, job)
            except InganError as exc:
                if model.evicted:
                    continue
                status = 400 if isinstance(exc, ConfigError) else 500
                return protocol.RequestError(status, f"model '{entry.id}': {first_line(exc)}").reply()
        return protocol.RequestError(503, f"model '{entry.id}' was evicted twice while this request waited; the "
                                     "replicas are overloaded: add replicas or raise --models-per-replica").reply()

    async def _model(self, entry: ModelEntry) -> LoadedModel | protocol.Reply:
        failed = self._failed.get(entry.id)
        if failed is not None and time.monotonic() - failed[1] < FAILED_LOAD_RETRY_S:
            return unavailable(entry, failed[0])
        assert self.get_model is not None, "the deployment sets get_model"
        try:
            model = await self.get_model(entry.id)
        except InganError as exc:
            reason = first_line(exc)
        except Exception as exc:  # noqa: BLE001 - a broken file must not take the replica down
            log.exception("loading model '%s' failed", entry.id)
            reason = f"{type(exc).__name__}: {first_line(exc)}"
        else:
            self._failed.pop(entry.id, None)
            return model
        log.warning("model '%s' cannot be loaded: %s", entry.id, reason)
        self._failed[entry.id] = (reason, time.monotonic())
        return unavailable(entry, reason)

    async def _run(self, entry: ModelEntry, model: LoadedModel, job: protocol.RetargetJob) -> protocol.Reply:
        timings: list[tuple[str, float]] = []
        if not model.load_reported:
            model.load_reported = True
            timings.append(("load", model.load_s))
        data, run_timings = await asyncio.to_thread(_retarget_and_encode, model, job)  # one thread hop, not two
        return protocol.image_reply(entry, job, data, timings + run_timings)


def _retarget_and_encode(model: LoadedModel, job: protocol.RetargetJob) -> tuple[bytes, list[tuple[str, float]]]:
    from ingan.imageio import encode_image

    started = time.perf_counter()
    pixels = model.runner.retarget(job.size, job.homography, job.image)
    encoding = time.perf_counter()
    data = encode_image(pixels, job.image_format, job.quality)
    return data, [("retarget", encoding - started), ("encode", time.perf_counter() - encoding)]


def unavailable(entry: ModelEntry, reason: str) -> protocol.Reply:
    return protocol.RequestError(503, f"model '{entry.id}' cannot be loaded: {reason}; the other models are "
                                 "unaffected", model=entry.id).reply()
