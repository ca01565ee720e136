"""The HTTP API as plain functions (no Ray, no web framework), so every rule is unit-tested.

    GET  /healthz                       200 while the API answers
    GET  /readyz                        200 once a model replica answers, else 503
    GET  /v1/models                     every model id with its size range and status
    GET  /v1/models/{id}                one of them
    GET  /v1/models/{id}/retarget?size=640x360[&format=png|jpeg|webp][&quality=90][&warp=L,R]
    POST /v1/models/{id}/retarget?...   the same; the body is the image for --image-input models

Send the model id in the `serve_multiplexed_model_id` header too: Ray routes such requests
to a replica that already holds the model (without it, any replica answers).
`scale=SYxSX` (height scale x width scale of the training image, as `ingan-run --scale`)
replaces `size`; with neither, the 1x1 size is served (clipped into the model's range).
Every error is JSON, `{"error": "<one line>", "status": N, ...}`: 400 malformed or out of
range (with the allowed range), 404 unknown model or route, 405 wrong method, 413 too many
pixels or too large a body, 503 a model that cannot be loaded, 504 over the time limit.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import click
import numpy as np

from ingan.errors import InganError, first_line
from ingan.runtime import render
from ingan.runtime.cli import ScaleParam, WarpParam
from ingan.serve.catalog import Catalog, ModelEntry
from ingan.sizes import format_size, in_range, parse_size

# format parameter -> (Pillow format, media type)
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"),
           "webp": ("WEBP", "image/webp")}
DEFAULT_QUALITY = 95  # ingan.imageio.save_image's, so served JPEGs equal ingan-run's files
RETARGET_PARAMETERS = ("size", "scale", "format", "quality", "warp")
# Ray Serve's proxy routes a request carrying this header to a replica that holds the model.
MODEL_ID_HEADER = "serve_multiplexed_model_id"
ROUTES_TEXT = ("GET /v1/models, GET /v1/models/ID, GET or POST /v1/models/ID/retarget?size=WxH, "
               "GET /healthz, GET /readyz")
MIN_IMAGE_SIDE = 8  # what the runtime accepts for --image-input models


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body, media type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def with_headers(self, *pairs: tuple[str, str]) -> "Reply":
        return Reply(self.status, self.body, self.content_type, self.headers + tuple(pairs))

    def json(self) -> Any:
        return json.loads(self.body)


def json_reply(status: int, data: Any) -> Reply:
    return Reply(status, (json.dumps(data) + "\n").encode())


class RequestError(Exception):
    """A request the server refuses: the status and a one-line reason (plus details)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = (), **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra

    def reply(self) -> Reply:
        return Reply(self.status, json_reply(self.status, {"error": self.message, "status": self.status,
                                                            **self.extra}).body, headers=self.headers)


@dataclass(frozen=True)
class Route:
    name: str  # health | ready | list | model | retarget
    model_id: str | None = None


def route(method: str, path: str) -> Route:
    """Which endpoint a method and path (below the app's route prefix) ask for."""
    parts = [p for p in path.split("/") if p]
    found: tuple[str, str | None, tuple[str, ...]] | None = None
    if parts == ["healthz"]:
        found = ("health", None, ("GET",))
    elif parts == ["readyz"]:
        found = ("ready", None, ("GET",))
    elif parts == ["v1", "models"]:
        found = ("list", None, ("GET",))
    elif len(parts) == 3 and parts[:2] == ["v1", "models"]:
        found = ("model", parts[2], ("GET",))
    elif len(parts) == 4 and parts[:2] == ["v1", "models"] and parts[3] == "retarget":
        found = ("retarget", parts[2], ("GET", "POST"))
    if found is None:
        raise RequestError(404, f"no such route: {method} {path or '/'}; the API is {ROUTES_TEXT}")
    name, model_id, methods = found
    if method not in methods:
        raise RequestError(405, f"{method} is not allowed on {path}; use {' or '.join(methods)}",
                           headers=(("Allow", ", ".join(methods)),))
    return Route(name, model_id)


def find_model(catalog: Catalog, model_id: str) -> ModelEntry:
    entry = catalog.get(model_id)
    if entry is None:
        shown = ", ".join(catalog.ids[:10]) + (", ..." if len(catalog.ids) > 10 else "")
        raise RequestError(404, f"unknown model '{model_id}'; this server has: {shown} (GET /v1/models lists them)")
    return entry


def describe(entry: ModelEntry, load_failures: dict[str, str]) -> dict[str, Any]:
    """A model's listing, with the last load failure a replica reported for it (if any)."""
    info = entry.describe()
    if entry.id in load_failures:
        info.update(status="failing", error=load_failures[entry.id])
    return info


def check_routing_header(entry: ModelEntry, header: str | None) -> None:
    """The routing header, when sent, must name the model the path names."""
    if header and header != entry.id:
        raise RequestError(400, f"the {MODEL_ID_HEADER} header names '{header}' but the path names '{entry.id}'; "
                           "send the same model id in both (the header routes the request to a replica holding it)")


def listing(catalog: Catalog, load_failures: dict[str, str]) -> dict[str, Any]:
    return {"models": [describe(entry, load_failures) for entry in catalog.entries]}


@dataclass(frozen=True)
class RetargetJob:
    """A validated retarget request, as a replica hands it to its models."""

    model_id: str
    size: tuple[int, int]  # (height, width)
    image_format: str  # Pillow's name: PNG, JPEG, WEBP
    media_type: str
    quality: int = DEFAULT_QUALITY
    homography: np.ndarray | None = field(default=None, compare=False)
    image: np.ndarray | None = field(default=None, compare=False)  # HxWx3 uint8, --image-input models


def image_reply(entry: ModelEntry, job: RetargetJob, data: bytes, timings: list[tuple[str, float]]) -> Reply:
    """The image answer: its bytes, the model id and version, and where the time went."""
    timing = ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in timings)
    return Reply(200, data, job.media_type, (("X-Model-Id", entry.id), ("X-Model-Version", entry.version or ""),
                                             ("X-Image-Size", format_size(job.size)), ("Server-Timing", timing)))


def response_headers(reply: Reply, elapsed_s: float) -> dict[str, str]:
    """The reply's headers plus the server-side latency (X-Latency-Ms, Server-Timing's total)."""
    headers = dict(reply.headers)
    total = f"total;dur={elapsed_s * 1000:.1f}"
    headers["Server-Timing"] = f"{headers['Server-Timing']}, {total}" if headers.get("Server-Timing") else total
    headers["X-Latency-Ms"] = f"{elapsed_s * 1000:.1f}"
    return headers


def server_timing(header: str | None) -> dict[str, float]:
    """'load;dur=12.0, retarget;dur=3.1' -> {'load': 12.0, 'retarget': 3.1} (milliseconds)."""
    timings: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                timings[name] = float(rest[4:])
            except ValueError:
                continue
    return timings


def parse_retarget(entry: ModelEntry, query: str, body: bytes, max_pixels: int) -> RetargetJob:
    """Check a retarget request against the model and the server's limits, before any model work.

    Raises RequestError: 400 malformed or outside the model's range, 413 over `max_pixels`,
    503 when the model is known to be unservable.
    """
    params = _parameters(query)
    if not entry.available:
        raise RequestError(503, f"model '{entry.id}' is unavailable: {entry.problem}", model=entry.id)
    format_name = params.get("format", "png").lower()
    if format_name not in FORMATS:
        raise RequestError(400, f"format '{params['format']}' is not served; use png, jpeg or webp")
    image_format, media_type = FORMATS[format_name]
    quality = DEFAULT_QUALITY
    if "quality" in params:
        if image_format == "PNG":
            raise RequestError(400, "quality applies to jpeg and webp only; drop it for png (PNG is lossless)")
        text = params["quality"]
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise RequestError(400, f"quality '{text}' must be a whole number from 1 to 100")
        quality = int(text)
    image = _uploaded_image(entry, body, max_pixels)
    size = _requested_size(entry, params, image)
    check_size(entry, size, max_pixels)
    homography = _homography(entry, params.get("warp"))
    return RetargetJob(entry.id, size, image_format, media_type, quality, homography, image)


def _parameters(query: str) -> dict[str, str]:
    pairs = parse_qsl(query, keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key not in RETARGET_PARAMETERS:
            raise RequestError(400, f"unknown parameter '{key}'; use {', '.join(RETARGET_PARAMETERS)}")
        if key in params:
            raise RequestError(400, f"parameter '{key}' is given twice; give it once")
        params[key] = value
    return params


def _uploaded_image(entry: ModelEntry, body: bytes, max_pixels: int) -> np.ndarray | None:
    if not entry.image_input:
        if body:
            raise RequestError(400, f"model '{entry.id}' has its training image baked in and takes no request body; "
                               "send a GET (or an empty POST)")
        return None
    if not body:
        raise RequestError(400, f"model '{entry.id}' retargets the image it is given: POST the image file's bytes "
                           "as the request body")
    from PIL import Image, UnidentifiedImageError

    try:  # the header alone: refuse huge images before decoding them
        with Image.open(io.BytesIO(body)) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        width = height = 0  # decode_image below names the problem
    if width * height > max_pixels:
        raise RequestError(413, f"the uploaded image is {width}x{height} = {width * height:,} pixels, over this "
                           f"server's limit of {max_pixels:,}; send a smaller image", max_pixels=max_pixels)
    from ingan.imageio import decode_image

    try:
        pixels = decode_image(body, "request body").pixels
    except InganError as exc:
        raise RequestError(400, first_line(exc)) from None
    if min(pixels.shape[:2]) < MIN_IMAGE_SIDE:
        raise RequestError(400, f"the uploaded image is {pixels.shape[1]}x{pixels.shape[0]}; each side must be at "
                           f"least {MIN_IMAGE_SIDE} pixels")
    return pixels


def _requested_size(entry: ModelEntry, params: dict[str, str], image: np.ndarray | None) -> tuple[int, int]:
    base = (int(image.shape[0]), int(image.shape[1])) if image is not None else entry.image_size
    assert base is not None  # an available entry has its sizes
    if "size" in params and "scale" in params:
        raise RequestError(400, "give size or scale, not both")
    if "size" in params:
        try:
            return parse_size(params["size"])
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
    if "scale" in params:
        sy, sx = _convert(ScaleParam(), params["scale"])
        return render.scale_to_size(base, sy, sx)
    return render.clip_size(entry, base)  # type: ignore[arg-type]  # the 1x1 output, as ingan-run gives


def check_size(entry: ModelEntry, size: tuple[int, int], max_pixels: int) -> None:
    """413 over the server's pixel limit, 400 outside the model's range (naming the range)."""
    h, w = size
    if h * w > max_pixels:
        raise RequestError(413, f"{format_size(size)} is {h * w:,} pixels, over this server's limit of "
                           f"{max_pixels:,} (ingan-serve --max-pixels); ask for a smaller size", max_pixels=max_pixels)
    assert entry.min_size is not None and entry.max_size is not None
    if not in_range(size, entry.min_size, entry.max_size):
        low, high = format_size(entry.min_size), format_size(entry.max_size)
        raise RequestError(400, f"size {format_size(size)} is outside the range of model '{entry.id}', {low} .. "
                           f"{high} (width x height); pick a size inside it", allowed={"min": low, "max": high})


def _homography(entry: ModelEntry, warp: str | None) -> np.ndarray | None:
    if warp is None:
        return None
    if not entry.warp:
        raise RequestError(400, f"model '{entry.id}' takes no warp (it was not exported with ingan-export --warp); "
                           "drop warp, or serve a model exported with it")
    left, right = _convert(WarpParam(), warp)
    try:
        return render.top_shift_homography_np(left, right)
    except InganError as exc:
        raise RequestError(400, first_line(exc).replace("--warp", "warp")) from None


def _convert(param_type: Any, text: str) -> Any:
    """ingan-run's own --scale / --warp grammar, its messages turned into 400s."""
    try:
        return param_type.convert(text, None, None)
    except click.BadParameter as exc:
        raise RequestError(400, exc.message) from None
