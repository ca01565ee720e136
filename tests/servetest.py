"""Helpers shared by the serving tests (tests/serve, tests/bench): model files with sidecars, and a
Retargeter replica answering real HTTP without Ray (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

from ingan.metadata import ModelMetadata, TensorSpec, sha256_of, sidecar_path
from ingan.serve.app import Retargeter
from ingan.serve.options import ServeOptions
from ingan.serve.replica import LoadedModel, ModelPool


def exported(path: Path, precision: str = "fp32", min_size=(16, 16), max_size=(96, 120)) -> Path:
    """A model file with a valid sidecar: scanning reads sidecars only (loading is a replica's job)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"graph bytes of " + path.name.encode())
    kind = "tensorrt" if path.suffix in (".plan", ".engine") else "onnx"
    ModelMetadata(
        kind=kind, artifact=path.name, artifact_sha256=sha256_of(path), precision=precision, opset=18,
        inputs=[TensorSpec("size", "int64", [2])], outputs=[TensorSpec("output", "uint8", [1, "height", "width", 3])],
        image_input=False, warp=False, output_format="uint8", min_size=list(min_size), opt_size=list(min_size),
        max_size=list(max_size), training_image_size=[40, 52], trained_scale_range=[0.5, 2.0], source_checkpoint={},
        exporter="test",
    ).write(sidecar_path(path))
    return path


class LocalCache:
    """In place of Ray's multiplexing LRU: a dict of loaded models (and an optional delay)."""

    def __init__(self, pool: ModelPool, delay_s: float = 0.0) -> None:
        self.pool = pool
        self.cache: dict[str, LoadedModel] = {}
        self.opened: list[str] = []
        self.delay_s = delay_s
        pool.get_model = self.get

    async def get(self, model_id: str) -> LoadedModel:
        await asyncio.sleep(self.delay_s)
        if model_id not in self.cache:
            self.opened.append(model_id)
            self.cache[model_id] = await asyncio.to_thread(self.pool.open, model_id)
        return self.cache[model_id]


class HttpServer:
    """A Retargeter replica's HTTP handler under uvicorn on a free port, in a thread."""

    def __init__(self, api) -> None:
        import uvicorn
        from starlette.requests import Request

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            response = await api(Request(scope, receive))
            await response(scope, receive, send)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_keep_alive=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def replica_server(catalog, delay_s=0.0, timeout_s=30.0, max_body_bytes=2**20, max_pixels=5000):
    """The real Retargeter class (outside Ray) answering over HTTP; returns (server, cache)."""
    options = ServeOptions(models=("unused",), max_pixels=max_pixels, max_body_bytes=max_body_bytes,
                           timeout_s=timeout_s)
    replica = Retargeter.func_or_class(catalog, options)  # the deployment's class, outside Ray
    return HttpServer(replica), LocalCache(replica._pool, delay_s)
