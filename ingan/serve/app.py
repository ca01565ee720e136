"""The Ray Serve application: an `Api` ingress in front of a multiplexed `Retargeter`.

    HTTP -> Ray's proxy -> Api (routes, validation, limits; no model work)
                        -> Retargeter, routed by model id (`@serve.multiplexed`: each replica
                           keeps up to N runners, evicts the least recently used, and Ray
                           sends a request to a replica that already holds its model)

Bad requests are answered by the Api from the catalog alone, so they never reach (or evict
anything on) a model replica. Runners come from `ingan.runtime.load`, the same backends as
`ingan-run`; nothing here imports torch. `build_app` is the builder a Ray Serve config
file names (`import_path: ingan.serve.app:build_app`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from ingan.errors import ConfigError, InganError, first_line
from ingan.serve import protocol
from ingan.serve.catalog import Catalog, ModelEntry, scan
from ingan.serve.options import ServeOptions

# Replicas log through Ray Serve's logger, which Ray writes to each replica's log file.
log = logging.getLogger("ray.serve")

# A model that failed to load answers 503 at once for this long, then a request tries again
# (so a file fixed in place is picked up without a restart, but a broken one is not reloaded
# on every request).
FAILED_LOAD_RETRY_S = 30.0
READY_TIMEOUT_S = 5.0


class LoadedModel:
    """A runner in a replica's multiplexing cache; Ray calls `__del__` when it evicts one."""

    def __init__(self, runner: Any, load_s: float) -> None:
        self.runner = runner
        self.load_s = load_s
        self.load_reported = False  # the first request served reports the load time
        self.evicted = False

    def __del__(self) -> None:
        self.evicted = True
        self.runner.close()


@serve.deployment
class Retargeter:
    """Runs models: up to `models_per_replica` loaded at once, least recently used evicted."""

    def __init__(self, catalog: Catalog, models_per_replica: int, threads: int, allow_host_code: bool) -> None:
        self._catalog = catalog
        self._threads = threads
        self._allow_host_code = allow_host_code
        self._device = "cuda" if ray.get_gpu_ids() else "cpu"
        self._failed: dict[str, tuple[str, float]] = {}

        # A closure, not a method: max_num_models_per_replica comes from the options.
        async def _load_ingan_model(model_id: str) -> LoadedModel:
            return await asyncio.to_thread(self._open, model_id)

        self._get_model = serve.multiplexed(max_num_models_per_replica=models_per_replica)(_load_ingan_model)

    def _open(self, model_id: str) -> LoadedModel:
        import ingan.runtime

        entry = self._catalog.get(model_id)
        if entry is None:  # the Api checks ids; this guards direct handle calls
            raise InganError(f"unknown model '{model_id}'")
        started = time.perf_counter()
        if entry.backend == "onnxruntime":
            runner = ingan.runtime.load(entry.path, entry.backend, device=self._device, threads=self._threads)
        else:
            runner = ingan.runtime.load(entry.path, entry.backend, allow_host_code=self._allow_host_code)
        elapsed = time.perf_counter() - started
        log.info("loaded model '%s' (%s on %s) in %.0f ms", model_id, runner.backend, runner.device, elapsed * 1000)
        return LoadedModel(runner, elapsed)

    async def status(self) -> dict[str, Any]:
        return {"device": self._device}

    async def retarget(self, job: protocol.RetargetJob) -> protocol.Reply:
        entry = self._catalog.get(job.model_id)
        if entry is None:
            return protocol.RequestError(404, f"unknown model '{job.model_id}'").reply()
        for _attempt in range(2):  # a second time only when the model was evicted under this request
            model_or_reply = await self._model(entry)
            if isinstance(model_or_reply, protocol.Reply):
                return model_or_reply
            try:
                return await self._run(entry, model_or_reply, job)
            except InganError as exc:
                if model_or_reply.evicted:
                    continue
                status = 400 if isinstance(exc, ConfigError) else 500
                return protocol.RequestError(status, f"model '{entry.id}': {first_line(exc)}").reply()
        return protocol.RequestError(503, f"model '{entry.id}' was evicted twice while this request waited; "
                                     "the server is overloaded: add replicas or --models-per-replica").reply()

    async def _model(self, entry: ModelEntry) -> LoadedModel | protocol.Reply:
        failed = self._failed.get(entry.id)
        if failed is not None and time.monotonic() - failed[1] < FAILED_LOAD_RETRY_S:
            return _unavailable(entry, failed[0])
        try:
            model = await self._get_model(entry.id)
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
        return _unavailable(entry, reason)

    async def _run(self, entry: ModelEntry, model: LoadedModel, job: protocol.RetargetJob) -> protocol.Reply:
        from ingan.imageio import encode_image

        timings: list[tuple[str, float]] = []
        if not model.load_reported:
            model.load_reported = True
            timings.append(("load", model.load_s))
        started = time.perf_counter()
        pixels = await asyncio.to_thread(model.runner.retarget, job.size, job.homography, job.image)
        timings.append(("retarget", time.perf_counter() - started))
        started = time.perf_counter()
        data = await asyncio.to_thread(encode_image, pixels, job.image_format, job.quality)
        timings.append(("encode", time.perf_counter() - started))
        return protocol.image_reply(entry, job, data, timings)


def _unavailable(entry: ModelEntry, reason: str) -> protocol.Reply:
    return protocol.RequestError(503, f"model '{entry.id}' cannot be loaded: {reason}; the other models are "
                                 "unaffected", model=entry.id).reply()


@serve.deployment
class Api:
    """The HTTP ingress: routes, validation and limits, then one handle call per retarget."""

    def __init__(self, retargeter: DeploymentHandle, catalog: Catalog, max_pixels: int, max_body_bytes: int,
                 timeout_s: float) -> None:
        self._retargeter = retargeter
        self._catalog = catalog
        self._max_pixels = max_pixels
        self._max_body_bytes = max_body_bytes
        self._timeout_s = timeout_s
        self._load_failures: dict[str, str] = {}  # model id -> the last load failure a replica answered

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            reply = await self._answer(request)
        except protocol.RequestError as exc:
            reply = exc.reply()
        except Exception:  # noqa: BLE001 - a bug answers 500 and the server keeps serving
            log.exception("internal error answering %s %s", request.method, request.url.path)
            reply = protocol.RequestError(500, "internal server error; the server's log has the details").reply()
        headers = protocol.response_headers(reply, time.perf_counter() - started)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)

    async def _answer(self, request: Request) -> protocol.Reply:
        found = protocol.route(request.method, _path_below_prefix(request))
        if found.name == "health":
            return protocol.json_reply(200, {"status": "ok"})
        if found.name == "ready":
            return await self._ready()
        if found.name == "list":
            return protocol.json_reply(200, protocol.listing(self._catalog, self._load_failures))
        assert found.model_id is not None
        entry = protocol.find_model(self._catalog, found.model_id)
        if found.name == "model":
            return protocol.json_reply(200, protocol.describe(entry, self._load_failures))
        body = await self._body(request)
        query = request.url.query
        if body:  # decoding an upload is CPU work: keep the event loop free
            job = await asyncio.to_thread(protocol.parse_retarget, entry, query, body, self._max_pixels)
        else:
            job = protocol.parse_retarget(entry, query, body, self._max_pixels)
        response = self._retargeter.options(multiplexed_model_id=entry.id).retarget.remote(job)
        try:
            reply = await asyncio.wait_for(_result(response), self._timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise protocol.RequestError(
                504, f"model '{entry.id}' did not answer within {self._timeout_s:g} s (ingan-serve --timeout); "
                "retry, or ask for a smaller size") from None
        except ray.exceptions.RayError as exc:
            log.warning("model replica failed for '%s': %s", entry.id, first_line(exc))
            raise protocol.RequestError(503, f"no model replica could answer for '{entry.id}' "
                                        f"({type(exc).__name__}); retry shortly") from None
        if reply.status == 503 and reply.json().get("model") == entry.id:
            self._load_failures[entry.id] = reply.json()["error"]
        elif reply.status == 200:
            self._load_failures.pop(entry.id, None)
        return reply

    async def _ready(self) -> protocol.Reply:
        try:
            await asyncio.wait_for(_result(self._retargeter.status.remote()), READY_TIMEOUT_S)
        except (asyncio.TimeoutError, ray.exceptions.RayError) as exc:
            return protocol.RequestError(503, f"no model replica answers yet ({type(exc).__name__}); retry shortly"
                                         ).reply()
        return protocol.json_reply(200, {"status": "ready", "models": len(self._catalog.entries),
                                         "available": len(self._catalog.available)})

    async def _body(self, request: Request) -> bytes:
        limit = self._max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _body_too_large(int(declared), limit)
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _body_too_large(received, limit)
            chunks.append(chunk)
        return b"".join(chunks)


async def _result(response: Any) -> Any:
    return await response


def _body_too_large(size: int, limit: int) -> protocol.RequestError:
    return protocol.RequestError(413, f"the request body is over this server's limit of {limit:,} bytes "
                                 f"({size:,} or more; ingan-serve --max-body-mib); send a smaller image",
                                 max_body_bytes=limit)


def _path_below_prefix(request: Request) -> str:
    """The request path without the application's route prefix (Ray sets it as root_path)."""
    path = request.url.path
    root = request.scope.get("root_path") or ""
    return path[len(root):] if root and path.startswith(root) else path


def build_application(options: ServeOptions, catalog: Catalog) -> Any:
    """The bound application for an already scanned catalog (what ingan-serve runs)."""
    retargeter = Retargeter.options(**options.retargeter_options()).bind(
        catalog, options.models_per_replica, options.model_threads, options.allow_host_code)
    return Api.options(num_replicas=1, ray_actor_options={"num_cpus": 0}).bind(
        retargeter, catalog, options.max_pixels, options.max_body_bytes, options.timeout_s)


def build_app(args: dict) -> Any:  # noqa: ANN001 - Ray passes the config's `args` mapping
    """The application builder a Ray Serve config names: scans `args.models` once, here."""
    options = ServeOptions.from_args(args)
    return build_application(options, scan(options.models, gpu=options.gpus_per_replica > 0))
