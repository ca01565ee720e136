"""The HTTP API's rules without Ray: routes, every parameter, every refusal and its status."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ingan.serve import protocol
from ingan.serve.catalog import Catalog, ModelEntry
from ingan.serve.protocol import RequestError, parse_retarget

BAKED = ModelEntry(id="beach", path="/m/beach.onnx", backend="onnxruntime", precision="fp32", version="abc123",
                   min_size=(16, 16), max_size=(96, 120), image_size=(40, 52))
WARP = ModelEntry(id="warped", path="/m/warped.onnx", backend="onnxruntime", precision="fp32", version="w",
                  min_size=(16, 16), max_size=(96, 120), image_size=(40, 52), warp=True)
UPLOAD = ModelEntry(id="any", path="/m/any.onnx", backend="onnxruntime", precision="fp32", version="u",
                    min_size=(8, 8), max_size=(200, 200), image_size=(40, 52), image_input=True)
BROKEN = ModelEntry(id="plan", path="/m/plan.plan", backend="tensorrt", problem="needs a GPU")
MAX_PIXELS = 10_000


def refused(entry, query, body=b"", max_pixels=MAX_PIXELS) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_retarget(entry, query, body, max_pixels)
    assert "\n" not in caught.value.message
    return caught.value


def png_bytes(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- routes
@pytest.mark.parametrize("method, path, name, model", [
    ("GET", "/healthz", "health", None), ("GET", "/readyz", "ready", None), ("GET", "/v1/models", "list", None),
    ("GET", "/v1/models/", "list", None), ("GET", "/v1/models/beach", "model", "beach"),
    ("GET", "/v1/models/beach/retarget", "retarget", "beach"), ("POST", "/v1/models/beach/retarget", "retarget", "beach"),
])
def test_routes(method, path, name, model):
    assert protocol.route(method, path) == protocol.Route(name, model)


def test_unknown_routes_and_methods():
    with pytest.raises(RequestError) as caught:
        protocol.route("GET", "/v1/nothing")
    assert caught.value.status == 404 and "/v1/models" in caught.value.message
    with pytest.raises(RequestError) as caught:
        protocol.route("PUT", "/v1/models/beach/retarget")
    assert caught.value.status == 405 and dict(caught.value.headers)["Allow"] == "GET, POST"
    reply = caught.value.reply()
    assert reply.status == 405 and reply.json() == {"error": caught.value.message, "status": 405}


def test_unknown_model_is_404_naming_the_known_ones():
    catalog = Catalog((BAKED, WARP))
    assert protocol.find_model(catalog, "beach") is BAKED
    with pytest.raises(RequestError) as caught:
        protocol.find_model(catalog, "nope")
    assert caught.value.status == 404 and "beach, warped" in caught.value.message


def test_listing_shows_load_failures():
    listed = protocol.listing(Catalog((BAKED, BROKEN)), {"beach": "checksum differs"})["models"]
    assert listed[0]["status"] == "failing" and listed[0]["error"] == "checksum differs"
    assert listed[1]["status"] == "unavailable" and listed[1]["error"] == "needs a GPU"


# ---------------------------------------------------------------------------- sizes
def test_size_scale_and_the_default_1x1():
    assert parse_retarget(BAKED, "size=100x60", b"", MAX_PIXELS).size == (60, 100)
    assert parse_retarget(BAKED, "scale=1x2", b"", MAX_PIXELS).size == (40, 104)  # height x width scales
    assert parse_retarget(BAKED, "scale=0.5", b"", MAX_PIXELS).size == (20, 26)
    assert parse_retarget(BAKED, "", b"", MAX_PIXELS).size == (40, 52)  # the training image's size


def test_sizes_outside_the_range_name_it():
    error = refused(BAKED, "size=130x40")
    assert error.status == 400 and "16x16 .. 120x96" in error.message
    assert error.reply().json()["allowed"] == {"min": "16x16", "max": "120x96"}
    assert refused(BAKED, "scale=3x1").status == 400


@pytest.mark.parametrize("query, text", [
    ("size=64", "is not a size"), ("size=0x10", "at least 1x1"), ("size=-5x5", "is not a size"),
    ("scale=ax2", "is not a scale"), ("scale=0x1", "must be positive"), ("size=64x48&scale=1", "not both"),
    ("size=64x48&size=32x32", "given twice"), ("sise=64x48", "unknown parameter 'sise'"),
    ("format=gif", "use png, jpeg or webp"), ("format=png&quality=90", "quality applies to jpeg and webp"),
    ("format=jpeg&quality=0", "from 1 to 100"), ("format=webp&quality=high", "from 1 to 100"),
    ("warp=-0.5,0.5", "takes no warp"),
])
def test_malformed_requests_are_400(query, text):
    error = refused(BAKED, query)
    assert error.status == 400 and text in error.message, error.message


def test_too_many_pixels_is_413_even_inside_the_range():
    error = refused(BAKED, "size=120x96", max_pixels=5000)
    assert error.status == 413 and "5,000" in error.message and error.extra["max_pixels"] == 5000


def test_an_unservable_model_is_503():
    error = refused(BROKEN, "size=64x48")
    assert error.status == 503 and "needs a GPU" in error.message and error.extra["model"] == "plan"


def test_formats_and_quality():
    job = parse_retarget(BAKED, "size=64x48&format=JPG&quality=80", b"", MAX_PIXELS)
    assert (job.image_format, job.media_type, job.quality) == ("JPEG", "image/jpeg", 80)
    job = parse_retarget(BAKED, "size=64x48", b"", MAX_PIXELS)
    assert (job.image_format, job.media_type, job.quality) == ("PNG", "image/png", protocol.DEFAULT_QUALITY)


def test_warp():
    job = parse_retarget(WARP, "size=64x48&warp=-0.5,0.5", b"", MAX_PIXELS)
    assert job.homography.shape == (3, 3) and job.homography.dtype == np.float32
    assert refused(WARP, "warp=0.5").status == 400
    assert "folds the image" in refused(WARP, "warp=1,-1.5").message


# ---------------------------------------------------------------------------- bodies
def test_a_baked_model_takes_no_body():
    assert "takes no request body" in refused(BAKED, "size=64x48", b"image").message


def test_image_input_models_take_the_image_as_the_body():
    job = parse_retarget(UPLOAD, "scale=1x2", png_bytes(30, 20), MAX_PIXELS)
    assert job.image.shape == (30, 20, 3) and job.size == (30, 40)  # the scale is of the uploaded image
    assert "POST the image" in refused(UPLOAD, "size=64x48").message
    assert "not a recognised image" in refused(UPLOAD, "size=64x48", b"\x00\x01junk" * 10).message
    assert "at least 8 pixels" in refused(UPLOAD, "size=64x48", png_bytes(4, 20)).message
    error = refused(UPLOAD, "size=64x48", png_bytes(200, 100), max_pixels=10_000)
    assert error.status == 413 and "200" in error.message


# ---------------------------------------------------------------------------- replies
def test_image_reply_headers_and_timings():
    job = parse_retarget(BAKED, "size=64x48", b"", MAX_PIXELS)
    reply = protocol.image_reply(BAKED, job, b"png", [("load", 0.012), ("retarget", 0.0031), ("encode", 0.001)])
    headers = protocol.response_headers(reply, 0.02)
    assert headers["X-Model-Id"] == "beach" and headers["X-Model-Version"] == "abc123"
    assert headers["X-Image-Size"] == "64x48" and headers["X-Latency-Ms"] == "20.0"
    assert protocol.server_timing(headers["Server-Timing"]) == {"load": 12.0, "retarget": 3.1, "encode": 1.0,
                                                                "total": 20.0}
    assert protocol.response_headers(protocol.json_reply(200, {}), 0.001)["Server-Timing"] == "total;dur=1.0"
    assert protocol.server_timing(None) == {} and protocol.server_timing("x;desc=1, y;dur=z") == {}
