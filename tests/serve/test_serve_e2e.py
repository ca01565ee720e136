"""ingan-serve end to end, over real HTTP, on a local Ray cluster (2 CPUs, no dashboard, a small
object store): three tiny generators, at most two per replica, one replica, and a broken model.

One server for the whole module (starting Ray takes most of the time); the last test stops it
with Ctrl-C (SIGINT) and checks that it shuts down cleanly.
"""

from __future__ import annotations

import http.client
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import ingan
from ingan.metadata import ModelMetadata, sidecar_path
from ingan.runtime.cli import main as ingan_run
from ingan.serve.client import ServeClient, ServerError

pytestmark = pytest.mark.slow  # ~40 s: one Ray cluster, started once

START_TIMEOUT_S = 240
MAX_PIXELS = 5000  # 64x48 and 80x40 fit; 120x96 is inside the models' range but over this


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    stdout: list[str]
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_models, tmp_path_factory):
    port = _free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(ingan.__file__)))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingan.serve", str(served_models), "--replicas", "1", "--models-per-replica", "2",
             "--num-cpus", "2", "--object-store-mib", "100", "--port", str(port), "--max-pixels", str(MAX_PIXELS),
             "--max-body-mib", "1", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    stdout: list[str] = []
    try:
        while True:
            line = lines.get(timeout=START_TIMEOUT_S)
            if line is None:
                pytest.fail(f"ingan-serve exited ({process.wait()}) before serving:\n{''.join(stdout)}"
                            f"{log.read_text()[-3000:]}")
            stdout.append(line)
            if line.startswith("serving "):
                break
    except queue.Empty:
        process.kill()
        pytest.fail(f"ingan-serve did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    yield Server(f"http://127.0.0.1:{port}", port, process, stdout, log)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def client(server):
    with ServeClient(server.url, timeout=120) as connection:
        yield connection


def local_png(model: Path, size: str, tmp_path: Path) -> bytes:
    """What `ingan-run MODEL --size SIZE -o x.png` writes (ONNX Runtime on the CPU, as the server)."""
    out = tmp_path / f"{model.stem}_{size}.png"
    result = CliRunner().invoke(ingan_run, [str(model), "--size", size, "-o", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def raw(server: Server, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def files(folder: Path) -> dict[str, Path]:
    return {"alpha": folder / "alpha.onnx", "beta": folder / "beta.onnx", "gamma": folder / "gamma" / "model.onnx"}


def test_start_lists_every_model(server, client, served_models):
    assert "4 model(s), 4 available:" in "".join(server.stdout)
    listed = {m["id"]: m for m in client.models()}
    assert sorted(listed) == ["alpha", "beta", "broken", "gamma"]
    for model_id, path in files(served_models).items():
        meta = ModelMetadata.read(sidecar_path(path))
        assert listed[model_id]["min_size"] == f"{meta.min_size[1]}x{meta.min_size[0]}"
        assert listed[model_id]["max_size"] == f"{meta.max_size[1]}x{meta.max_size[0]}"
        assert listed[model_id]["version"] == meta.artifact_sha256[:12]
    assert client.ready()


def test_every_answer_has_its_size_and_ingan_runs_bytes(client, served_models, tmp_path):
    outputs = {}
    for model_id, path in files(served_models).items():
        for size in ("64x48", "80x40"):
            served = client.retarget(model_id, size)
            assert served.media_type == "image/png" and served.model_id == model_id
            width, height = (int(v) for v in size.split("x"))
            assert served.pixels().shape == (height, width, 3) and served.size == (height, width)
            assert served.data == local_png(path, size, tmp_path), (model_id, size)
            assert served.latency_ms > 0 and "retarget" in served.timings
            outputs[model_id, size] = served.data
    # three different models, not one answering for all
    assert len({outputs[m, "64x48"] for m in ("alpha", "beta", "gamma")}) == 3


def test_eviction_happens_and_later_answers_stay_correct(client, served_models, tmp_path):
    # one replica holding at most two models: alpha, beta, gamma evicts alpha
    sequence = [client.retarget(model_id, "64x48") for model_id in ("alpha", "beta", "gamma", "alpha")]
    assert sequence[-1].cold, "alpha should have been evicted by gamma and loaded again"
    assert sequence[-1].timings["load"] > 0
    assert sequence[-1].data == local_png(files(served_models)["alpha"], "64x48", tmp_path)
    again = client.retarget("alpha", "64x48")
    assert not again.cold and again.data == sequence[-1].data


def test_the_routing_header_is_optional_but_must_agree(server, client):
    expected = client.retarget("gamma", "64x48").data  # the client sends serve_multiplexed_model_id
    code, headers, body = raw(server, "GET", "/v1/models/gamma/retarget?size=64x48")  # curl without it
    assert code == 200 and body == expected and headers["x-model-id"] == "gamma"
    code, _headers, body = raw(server, "GET", "/v1/models/gamma/retarget?size=64x48",
                               headers={"serve_multiplexed_model_id": "alpha"})
    assert code == 400 and b"the path names 'gamma'" in body


@pytest.mark.parametrize("method, path, status, text", [
    ("GET", "/v1/models/nosuch/retarget?size=64x48", 404, "unknown model 'nosuch'"),
    ("GET", "/v1/models/nosuch", 404, "unknown model"),
    ("GET", "/v2/everything", 404, "no such route"),
    ("GET", "/v1/models/alpha/retarget?size=8x8", 400, "outside the range of model 'alpha'"),
    ("GET", "/v1/models/alpha/retarget?size=64", 400, "is not a size"),
    ("GET", "/v1/models/alpha/retarget?scale=0x1", 400, "must be positive"),
    ("GET", "/v1/models/alpha/retarget?size=64x48&format=gif", 400, "use png, jpeg or webp"),
    ("GET", "/v1/models/alpha/retarget?size=64x48&colour=red", 400, "unknown parameter 'colour'"),
    ("GET", "/v1/models/alpha/retarget?size=120x96", 413, "over this server's limit of 5,000"),
    ("DELETE", "/v1/models/alpha/retarget", 405, "use GET or POST"),
    ("GET", "/v1/models/broken/retarget?size=64x48", 503, "model 'broken' cannot be loaded"),
])
def test_bad_requests_get_their_status_and_nothing_else_breaks(server, client, method, path, status, text):
    code, headers, body = raw(server, method, path)
    assert code == status, body
    assert headers["content-type"] == "application/json"
    error = __import__("json").loads(body)
    assert error["status"] == status and text in error["error"] and "\n" not in error["error"]
    if status == 400 and "range" in text:
        assert error["allowed"] == {"min": "16x16", "max": "120x96"}
    assert client.retarget("alpha", "64x48").size == (48, 64)  # the others keep answering


def test_body_limit_and_a_corrupt_model_beside_healthy_ones(server, client):
    code, _headers, body = raw(server, "POST", "/v1/models/alpha/retarget?size=64x48", b"x" * (2 * 2**20))
    assert code == 413 and b"over this server's limit" in body
    for _ in range(2):  # the broken one answers 503 every time, the others 200
        with pytest.raises(ServerError) as failure:
            client.retarget("broken", "64x48")
        assert failure.value.status == 503 and "checksum" in str(failure.value)
        for model_id in ("alpha", "beta", "gamma"):
            assert client.retarget(model_id, "64x48").size == (48, 64)
    assert client.model("broken")["status"] == "failing"
    assert client.ready()


def test_ingan_run_against_the_server(server, served_models, tmp_path):
    out = tmp_path / "remote.png"
    result = CliRunner().invoke(ingan_run, [f"{server.url}/beta", "--size", "80x40", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "80x40" in result.output and "server" in result.output
    assert out.read_bytes() == local_png(files(served_models)["beta"], "80x40", tmp_path)
    result = CliRunner().invoke(ingan_run, [f"{server.url}/beta", "--size", "8x8"])
    assert result.exit_code == 1 and "outside this model's range" in result.output


def test_ctrl_c_stops_the_server_cleanly(server):
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=90) == 0
    log = server.log.read_text()
    assert "stopping (Ctrl-C)" in log and "stopped" in log and "Traceback" not in log
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
