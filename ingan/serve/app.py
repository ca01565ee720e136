"""The Ray Serve application: one multiplexed `Retargeter` deployment that answers HTTP itself.

    HTTP -> Ray's proxy -> a Retargeter replica: routes and validation (from the catalog,
                           before any model work), then the model: `@serve.multiplexed`
                           keeps up to N runners per replica and evicts the least recently used

Ray's proxy sends a request that carries the `serve_multiplexed_model_id` header to a replica
that already holds that model (the client in `ingan.serve.client` always sends it; the path
names the model too, and the two must agree). A request without the header goes to any
replica, which loads the model if it must. There is no separate ingress deployment in front:
that would add an actor call to every request. Runners come from `ingan.runtime.load`, the
same backends as `ingan-run`; nothing here imports torch. `build_app` is the builder a Ray
Serve config file names (`import_path: ingan.serve.app:build_app`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from ingan.serve import protocol
from ingan.serve.catalog import Catalog, scan
from ingan.serve.options import ServeOptions
from ingan.serve.replica import LoadedModel, ModelPool

# Replicas log through Ray Serve's logger, which Ray writes to each replica's log file.
log = logging.getLogger("ray.serve")


def replica_device() -> str:
    """ONNX Runtime's device in this replica: CUDA where Ray gave it a GPU."""
    return "cuda" if ray.is_initialized() and ray.get_gpu_ids() else "cpu"


@serve.deployment
class Retargeter:
    """The HTTP API and up to `models_per_replica` loaded models (least recently used evicted)."""

    def __init__(self, catalog: Catalog, options: ServeOptions) -> None:
        self._catalog = catalog
        self._options = options
        self._pool = ModelPool(catalog, device=replica_device(), threads=options.model_threads,
                               allow_host_code=options.allow_host_code)

        # A closure, not a method: max_num_models_per_replica comes from the options.
        async def _load_ingan_model(model_id: str) -> LoadedModel:
            return await asyncio.to_thread(self._pool.open, model_id)

        self._pool.get_model = serve.multiplexed(max_num_models_per_replica=options.models_per_replica)(
            _load_ingan_model)

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            reply = await self._answer(request)
        except protocol.RequestError as exc:
            reply = exc.reply()
        except Exception:  # noqa: BLE001 - a bug answers 500 and the replica keeps serving
            log.exception("internal error answering %s %s", request.method, request.url.path)
            reply = protocol.RequestError(500, "internal server error; the server's log has the details").reply()
        headers = protocol.response_headers(reply, time.perf_counter() - started)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)

    async def _answer(self, request: Request) -> protocol.Reply:
        found = protocol.route(request.method, _path_below_prefix(request))
        if found.name == "health":
            return protocol.json_reply(200, {"status": "ok"})
        if found.name == "ready":
            return protocol.json_reply(200, {"status": "ready", "models": len(self._catalog.entries),
                                             "available": len(self._catalog.available),
                                             "device": self._pool.device})
        failures = self._pool.load_failures()
        if found.name == "list":
            return protocol.json_reply(200, protocol.listing(self._catalog, failures))
        assert found.model_id is not None
        entry = protocol.find_model(self._catalog, found.model_id)
        if found.name == "model":
            return protocol.json_reply(200, protocol.describe(entry, failures))
        protocol.check_routing_header(entry, request.headers.get(protocol.MODEL_ID_HEADER))
        body = await self._body(request)
        query = request.url.query
        if body:  # decoding an upload is CPU work: keep the event loop free
            job = await asyncio.to_thread(protocol.parse_retarget, entry, query, body, self._options.max_pixels)
        else:
            job = protocol.parse_retarget(entry, query, body, self._options.max_pixels)
        try:
            return await asyncio.wait_for(self._pool.retarget(job), self._options.timeout_s)
        except asyncio.TimeoutError:
            raise protocol.RequestError(
                504, f"model '{entry.id}' did not answer within {self._options.timeout_s:g} s (ingan-serve "
                "--timeout); retry, or ask for a smaller size") from None

    async def _body(self, request: Request) -> bytes:
        limit = self._options.max_body_bytes
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
    return Retargeter.options(**options.retargeter_options()).bind(catalog, options)


def build_app(args: dict) -> Any:  # noqa: ANN001 - Ray passes the config's `args` mapping
    """The application builder a Ray Serve config names: scans `args.models` once, here."""
    options = ServeOptions.from_args(args)
    return build_application(options, scan(options.models, gpu=options.gpus_per_replica > 0))
