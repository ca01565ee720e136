"""The client, `ingan-run http://...`, a replica's HTTP handling and model work, without Ray.

The real `Retargeter` class answers over real HTTP (under uvicorn, which Ray Serve's proxy
also runs), with a plain dict cache (`LocalCache`) in place of Ray's multiplexing LRU.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner

from clitest import one_line_error
from ingan.errors import InganError
from ingan.runtime.cli import main as ingan_run
from ingan.serve import protocol
from ingan.serve.catalog import scan
from ingan.serve.client import ServeClient, ServerError, is_model_url, retarget, split_model_url
from ingan.serve.replica import LoadedModel, ModelPool
from servetest import replica_server

MAX_PIXELS = 5000


@pytest.fixture(scope="module")
def catalog(served_models):
    return scan([served_models])


@pytest.fixture(scope="module")
def served(catalog):
    server, handle = replica_server(catalog)
    yield server, handle
    server.stop()


@pytest.fixture
def client(served):
    with ServeClient(served[0].url, timeout=60) as connection:
        yield connection


def raw(url: str, method: str, path: str, body=None, headers=None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=not isinstance(
            body, (bytes, type(None))))
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if response.getheader("content-type") == "application/json" else data
    finally:
        connection.close()


# ---------------------------------------------------------------------------- client and Api
def test_listing_and_retargets(client):
    assert [m["id"] for m in client.models()] == ["alpha", "beta", "broken", "gamma"]
    assert client.model("gamma")["max_size"] == "120x96" and client.ready()
    first = client.retarget("beta", (48, 64))
    assert first.pixels().shape == (48, 64, 3) and first.media_type == "image/png" and first.size == (48, 64)
    assert first.version == client.model("beta")["version"] and first.latency_ms > 0 and first.round_trip_ms > 0
    second = client.retarget("beta", "64x48")
    assert (first.cold, second.cold) == (True, False) and second.data == first.data
    jpeg = client.retarget("beta", scale=(1, 0.5), image_format="jpeg", quality=70)
    assert jpeg.media_type == "image/jpeg" and jpeg.size == (40, 26) and jpeg.data[:2] == b"\xff\xd8"
    webp = client.retarget("beta", image_format="webp")  # no size: the 1x1 output
    assert webp.media_type == "image/webp" and webp.size == (40, 52)


def test_errors_carry_the_status_and_the_servers_reason(client):
    for call, status, text in [
        (lambda: client.retarget("nope", "64x48"), 404, "unknown model 'nope'"),
        (lambda: client.retarget("alpha", "8x8"), 400, "16x16 .. 120x96"),
        (lambda: client.retarget("alpha", "120x96"), 413, "5,000"),
        (lambda: client.retarget("alpha", "64x48", quality=80), 400, "quality applies to jpeg and webp"),
        (lambda: client.model("nope"), 404, "unknown model"),
    ]:
        with pytest.raises(ServerError) as caught:
            call()
        assert caught.value.status == status and text in str(caught.value), str(caught.value)


def test_a_broken_model_answers_503_without_reloading_and_is_listed_failing(client, served):
    _server, handle = served
    for _ in range(3):
        with pytest.raises(ServerError) as caught:
            client.retarget("broken", "64x48")
        assert caught.value.status == 503 and "checksum differs" in str(caught.value)
        assert client.retarget("alpha", "64x48").size == (48, 64)
    assert handle.opened.count("broken") == 1  # the failure is remembered, not retried per request
    assert client.model("broken")["status"] == "failing"


def test_body_limits(served):
    server, _handle = served
    status, error = raw(server.url, "POST", "/v1/models/alpha/retarget?size=64x48", b"x" * (2**20 + 1))
    assert status == 413 and "1,048,576 bytes" in error["error"]
    chunks = iter([b"y" * 700_000, b"y" * 700_000])  # no Content-Length: counted while read
    status, error = raw(server.url, "POST", "/v1/models/alpha/retarget?size=64x48", chunks)
    assert status == 413
    status, error = raw(server.url, "POST", "/v1/models/alpha/retarget?size=64x48", b"tiny")
    assert status == 400 and "takes no request body" in error["error"]


def test_routes_health_and_methods(served):
    server, _handle = served
    assert raw(server.url, "GET", "/healthz") == (200, {"status": "ok"})
    assert raw(server.url, "GET", "/readyz")[1]["status"] == "ready"
    assert raw(server.url, "PUT", "/v1/models")[0] == 405
    assert raw(server.url, "GET", "/")[0] == 404
    # the routing header (the client sends it) must name the model of the path
    status, _ = raw(server.url, "GET", "/v1/models/alpha/retarget?size=64x48", headers={
        "serve_multiplexed_model_id": "alpha"})
    assert status == 200
    status, error = raw(server.url, "GET", "/v1/models/alpha/retarget?size=64x48", headers={
        "serve_multiplexed_model_id": "beta"})
    assert status == 400 and "header names 'beta' but the path names 'alpha'" in error["error"]


def test_a_slow_model_answers_504(catalog):
    server, _cache = replica_server(catalog, delay_s=5.0, timeout_s=0.3)
    try:
        started = time.monotonic()
        status, error = raw(server.url, "GET", "/v1/models/alpha/retarget?size=64x48")
        assert status == 504 and "did not answer within 0.3 s" in error["error"]
        assert time.monotonic() - started < 3
    finally:
        server.stop()


@pytest.mark.slow
def test_the_client_reconnects_when_the_server_closed_an_idle_connection(client):
    client.retarget("alpha", "64x48")
    connection = client._connection
    time.sleep(1.5)  # past uvicorn's keep-alive (1 s here): the server closes the connection
    assert client.retarget("alpha", "64x48").size == (48, 64)
    assert client._connection is not connection


def test_unreachable_servers_and_model_urls():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InganError, match="cannot reach ingan-serve at http://127.0.0.1"):
        ServeClient(f"http://127.0.0.1:{port}").models()
    assert split_model_url("http://h:8000/beach") == ("http://h:8000", "beach")
    assert split_model_url("https://h/ingan/beach/") == ("https://h/ingan", "beach")
    for bad in ("http://h:8000", "http://h:8000/", "http://h/beach?size=1x1"):
        with pytest.raises(InganError, match="does not name a model"):
            split_model_url(bad)
    assert is_model_url("HTTP://x/y") and not is_model_url("models/x.onnx")
    with pytest.raises(InganError, match="not an http"):
        ServeClient("ftp://h/")


def test_the_one_call_function(served):
    server, _handle = served
    served_image = retarget(f"{server.url}/gamma", "64x48", image_format="jpeg")
    assert served_image.media_type == "image/jpeg" and served_image.pixels().shape == (48, 64, 3)


# ---------------------------------------------------------------------------- ingan-run http://...
def run(*args):
    return CliRunner().invoke(ingan_run, [str(a) for a in args], catch_exceptions=False)


def test_ingan_run_writes_what_it_would_write_locally(served, served_models, tmp_path):
    server, _handle = served
    result = run(f"{server.url}/alpha", "--size", "64x48", "--scale", "1x0.5", "-o", tmp_path / "remote")
    assert result.exit_code == 0, result.output
    assert "alpha (onnxruntime fp32" in result.output and "retarget_64x48.png" in result.output
    local = run(served_models / "alpha.onnx", "--size", "64x48", "--scale", "1x0.5", "-o", tmp_path / "local", "-q")
    assert local.exit_code == 0, local.output
    for name in ("retarget_64x48.png", "retarget_26x40.png"):
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    result = run(f"{server.url}/alpha", "--size", "64x48", "--repeat", "3", "-o", tmp_path / "one.jpg")
    assert result.exit_code == 0 and "median round trip (3 runs)" in result.output
    assert (tmp_path / "one.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_ingan_run_refuses_what_needs_a_local_model(served, tmp_path):
    server, _handle = served
    for flags in (["--collage"], ["--device", "cpu"], ["--backend", "onnxruntime"], ["--sweep", "s.gif"]):
        result = run(f"{server.url}/alpha", *flags)
        assert result.exit_code == 2 and "not to a served model" in result.output, result.output
    out = tmp_path / "never"
    one_line_error(run(f"{server.url}/alpha", "--size", "64x48", "--size", "8x8", "-o", out),
                   "--size 8x8: size 8x8 is outside this model's range 16x16 .. 120x96")
    assert not out.exists()  # checked before any request
    one_line_error(run(f"{server.url}/nope", "--size", "64x48"), "answered 404: unknown model 'nope'")
    one_line_error(run(f"{server.url}/alpha", "--warp", "-0.5,0.5"), "exported without --warp")
    one_line_error(run(f"{server.url}/alpha", "--image", tmp_path / "x.png"), "takes no --image")


# ---------------------------------------------------------------------------- the replica's work
def test_a_model_evicted_under_a_request_is_loaded_again(catalog):
    pool = ModelPool(catalog, device="cpu", threads=1, allow_host_code=False)
    handed_out: list[LoadedModel] = []

    async def get_model(model_id):
        model = pool.open(model_id)
        if not handed_out:
            model.__del__()  # Ray's LRU evicted it between the hand-out and the run
        handed_out.append(model)
        return model

    pool.get_model = get_model
    job = protocol.parse_retarget(catalog.get("alpha"), "size=64x48", b"", MAX_PIXELS)
    reply = asyncio.run(pool.retarget(job))
    assert reply.status == 200 and len(handed_out) == 2
    assert dict(reply.headers)["X-Image-Size"] == "64x48"


def test_a_runner_closed_while_a_request_waits_for_it_refuses_cleanly(served_models):
    """Eviction closes a runner that another request may be about to run: that request gets the
    runner's 'closed' error (which the pool answers by loading the model again), never a crash."""
    import ingan.runtime

    runner = ingan.runtime.load(served_models / "alpha.onnx", threads=1)
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            runner.retarget((48, 64))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    with runner._lock:  # a request in flight holds the runner; another one queues behind it
        waiting = threading.Thread(target=request)
        waiting.start()
        time.sleep(0.2)  # it has passed the early closed check and waits for the lock
        runner._closed = True  # what close() does once the in-flight request releases the lock
        runner._close()
    waiting.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], InganError) and "closed" in str(outcome[0])
