"""A client for `ingan-serve`, on the standard library alone (http.client, json).

    from ingan.serve.client import ServeClient, retarget

    served = retarget("http://127.0.0.1:8000/beach", size="640x360")    # one call
    served.save("wide.png")                                              # or served.pixels()

    with ServeClient("http://127.0.0.1:8000") as client:                 # one connection, reused
        print([m["id"] for m in client.models()])
        served = client.retarget("beach", size=(360, 640), image_format="jpeg", quality=90)

Sizes are (height, width) tuples, as in `ingan.runtime`, or 'WxH' strings, as on the command
line. A `ServeClient` keeps one keep-alive connection: use one per thread. Errors the server
answers raise `ServerError` (with `.status`); an unreachable server raises `InganError`.
`ingan-run http://HOST:PORT/MODEL ...` is built on it (`ingan.serve.remote`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

from ingan.errors import ConfigError, InganError, first_line
from ingan.sizes import format_size, parse_size

__all__ = ["ServeClient", "ServedImage", "ServerError", "is_model_url", "retarget", "split_model_url"]

SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


class ServerError(InganError):
    """The server answered an error status; `status` is it, the message the server's reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServedImage:
    """One retarget as the server answered it."""

    data: bytes  # the encoded file (PNG, JPEG or WebP), as the server sent it
    media_type: str
    model_id: str
    version: str
    size: tuple[int, int]  # (height, width)
    latency_ms: float  # server side, from receiving the request to answering it
    round_trip_ms: float  # this client's, connection and transfer included
    timings: dict[str, float] = field(default_factory=dict)  # Server-Timing: load, retarget, encode, total (ms)

    @property
    def cold(self) -> bool:
        """The model was loaded for this request (it was not in a replica's cache)."""
        return "load" in self.timings

    def pixels(self) -> np.ndarray:
        """The image decoded to HxWx3 uint8 RGB."""
        from ingan.imageio import decode_image

        return decode_image(self.data, "the served image").pixels

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bytes as they came, atomically (the suffix should match the format)."""
        from ingan.fsutil import atomic_path

        target = Path(path)
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(self.data)
        except OSError as exc:
            from ingan.errors import OutputPathError

            raise OutputPathError(f"cannot write '{target}': {exc.strerror or exc}; check free space and "
                                  "permissions") from None
        return target


def is_model_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def split_model_url(url: str) -> tuple[str, str]:
    """'http://host:8000/beach' -> ('http://host:8000', 'beach'); a route prefix stays in the base."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    base_path, _, model_id = path.rpartition("/")
    if not model_id or parts.query or parts.fragment:
        raise ConfigError(f"'{url}' does not name a model; write http://HOST:PORT/MODEL, e.g. "
                          "http://127.0.0.1:8000/beach (GET /v1/models on the server lists the ids)")
    return f"{parts.scheme}://{parts.netloc}{base_path}", model_id


class ServeClient:
    """Requests to one ingan-serve base URL over one reused connection (one client per thread)."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"'{base_url}' is not an http(s) URL; write e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._connection: http.client.HTTPConnection | None = None

    # ---- API
    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/models")["models"]

    def model(self, model_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/models/{quote(model_id, safe='')}")

    def ready(self) -> bool:
        try:
            self._json("GET", "/readyz")
        except ServerError:
            return False
        return True

    def retarget(self, model_id: str, size: tuple[int, int] | str | None = None, *,
                 scale: tuple[float, float] | float | str | None = None, image_format: str = "png",
                 quality: int | None = None, warp: tuple[float, float] | None = None,
                 image: bytes | None = None) -> ServedImage:
        """Retarget with a served model; `size` (height, width) or 'WxH', or `scale` (sy, sx)."""
        query: dict[str, str] = {"format": image_format}
        if size is not None:
            query["size"] = size if isinstance(size, str) else format_size(size)
        if scale is not None:
            query["scale"] = scale if isinstance(scale, str) else (
                f"{scale:g}" if isinstance(scale, (int, float)) else f"{scale[0]:g}x{scale[1]:g}")
        if quality is not None:
            query["quality"] = str(quality)
        if warp is not None:
            query["warp"] = f"{warp[0]:g},{warp[1]:g}"
        path = f"/v1/models/{quote(model_id, safe='')}/retarget?{urlencode(query)}"
        started = time.perf_counter()
        # The header lets Ray's proxy pick a replica that already holds the model.
        status, headers, body = self._request("POST" if image is not None else "GET", path, image,
                                              {"serve_multiplexed_model_id": model_id})
        round_trip = (time.perf_counter() - started) * 1000.0
        if status != 200:
            raise self._error(status, body)
        from ingan.serve.protocol import server_timing

        size_text = headers.get("x-image-size", "")
        return ServedImage(
            data=body, media_type=headers.get("content-type", ""), model_id=headers.get("x-model-id", model_id),
            version=headers.get("x-model-version", ""),
            size=parse_size(size_text) if size_text else (0, 0),
            latency_ms=float(headers.get("x-latency-ms", "nan")), round_trip_ms=round_trip,
            timings=server_timing(headers.get("server-timing")),
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "ServeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- HTTP
    def _json(self, method: str, path: str) -> Any:
        status, _headers, body = self._request(method, path)
        if status != 200:
            raise self._error(status, body)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InganError(f"{self.base_url}{path} did not answer JSON; is this an ingan-serve URL?") from None

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        for attempt in range(2):  # a kept-alive connection the server closed is reopened once
            fresh = self._connection is None
            connection = self._connect()
            try:
                connection.request(method, self._prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if fresh or attempt:
                    raise self._unreachable(exc) from None
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._unreachable(exc) from None
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._connection = cls(self._netloc, timeout=self.timeout)
        return self._connection

    def _unreachable(self, exc: BaseException) -> InganError:
        if isinstance(exc, (socket.timeout, TimeoutError)):
            reason = f"no answer within {self.timeout:g} s"
        else:
            reason = getattr(exc, "strerror", None) or first_line(exc)
        return InganError(f"cannot reach ingan-serve at {self.base_url}: {reason}; check the URL, or start the "
                          "server with ingan-serve MODELS")

    def _error(self, status: int, body: bytes) -> ServerError:
        try:
            message = json.loads(body)["error"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
        return ServerError(status, f"{self.base_url} answered {status}: {message}")


def retarget(url: str, size: tuple[int, int] | str | None = None, **options: Any) -> ServedImage:
    """One retarget from a model URL, e.g. retarget('http://127.0.0.1:8000/beach', '640x360')."""
    base, model_id = split_model_url(url)
    timeout = options.pop("timeout", 120.0)
    with ServeClient(base, timeout=timeout) as client:
        return client.retarget(model_id, size, **options)
