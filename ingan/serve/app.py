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

from ingan.errors import first_line
from ingan.serve import protocol
from ingan.serve.catalog import Catalog, scan
from ingan.serve.options import ServeOptions
from ingan.serve.replica import LoadedModel, ModelPool

# Replicas log through Ray Serve's logger, which Ray writes to each replica's log file.
log = logging.getLogger("ray.serve")

READY_TIMEOUT_S = 5.0


@serve.deployment
class Retargeter:
    """Runs models: up to `models_per_replica` loaded at once, least recently used evicted."""

    def __init__(self, catalog: Catalog, models_per_replica: int, threads: int, allow_host_code: bool) -> None:
        self._pool = ModelPool(catalog, device="cuda" if ray.get_gpu_ids() else "cpu", threads=threads,
                               allow_host_code=allow_host_code)

        # A closure, not a method: max_num_models_per_replica comes from the options.
        async def _load_ingan_model(model_id: str) -> LoadedModel:
            return await asyncio.to_thread(self._pool.open, model_id)

        self._pool.get_model = serve.multiplexed(max_num_models_per_replica=models_per_replica)(_load_ingan_model)

    async def status(self) -> dict[str, Any]:
        return {"device": self._pool.device}

    async def retarget(self, job: protocol.RetargetJob) -> protocol.Reply:
        return await self._pool.retarget(job)


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
