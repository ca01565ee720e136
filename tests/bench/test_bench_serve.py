"""ingan-bench serve: request plans, summaries, the report (schema, Markdown, plot) and the command
against a real replica answering HTTP without Ray (servetest.replica_server)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ingan.bench import serve_load, serve_report
from ingan.bench.cli import main
from ingan.bench.serve_load import LoadOptions, Sample
from ingan.errors import ConfigError, InganError
from ingan.serve.catalog import scan
from servetest import replica_server

MODELS = [{"id": "a", "status": "available", "min_size": "16x16", "max_size": "120x96"},
          {"id": "b", "status": "available", "min_size": "32x24", "max_size": "64x48"},
          {"id": "c", "status": "unavailable"},
          {"id": "d", "status": "available", "image_input": True, "min_size": "8x8", "max_size": "9x9"}]


def test_plans_are_reproducible_and_inside_each_models_range():
    options = LoadOptions(clients=3, requests_per_client=50, seed=7)
    usable = serve_load.choose_models(MODELS, None)
    assert [m["id"] for m in usable] == ["a", "b"]  # unavailable and upload-only models are left out
    plans = serve_load.plan_requests(usable, options)
    assert plans == serve_load.plan_requests(usable, options) and len(plans) == 3
    assert plans != serve_load.plan_requests(usable, LoadOptions(clients=3, requests_per_client=50, seed=8))
    for model_id, (h, w) in (r for plan in plans for r in plan):
        assert (16 <= h <= 96 and 16 <= w <= 120) if model_id == "a" else (24 <= h <= 48 and 32 <= w <= 64)
    fixed = serve_load.plan_requests(usable, LoadOptions(clients=1, requests_per_client=20, sizes=((40, 50),)))
    assert {size for _model, size in fixed[0]} == {(40, 50)}
    with pytest.raises(ConfigError, match="only 2 available"):
        serve_load.choose_models(MODELS, 3)
    with pytest.raises(InganError, match="no available model"):
        serve_load.choose_models(MODELS[2:], None)


def samples() -> list[Sample]:
    rows = [Sample(0, "a", (48, 64), 0.01 * i, 10.0 + i, 200, cold=i < 3, load_ms=5.0 if i < 3 else None,
                   server_ms=8.0 + i) for i in range(20)]
    rows.append(Sample(1, "b", (48, 64), 0.3, 2.0, 400, error="size 8x8 is outside the range"))
    return rows


def report() -> dict:
    overhead = {"model": "a", "model_file": "/m/a.onnx", "size": "256x256", "requests": 3, "direct_backend": "onnxruntime",
                "direct_device": "CPUExecutionProvider", "direct_threads": 1}
    for key, values in (("served_ms", [12, 13, 14]), ("direct_ms", [8, 9, 10]), ("server_total_ms", [10, 11, 12]),
                        ("server_retarget_ms", [8, 8, 9]), ("server_encode_ms", [1, 1, 2])):
        overhead[key] = serve_load.Summary.of(values).to_dict()
    overhead.update(overhead_p50_ms=4.0, paired_overhead_p50_ms=4.0)
    return serve_report.build_report(
        created="2026-12-04T00:00:00+00:00", command=["ingan-bench", "serve"], elapsed_s=3.0,
        settings=serve_load.options_dict(LoadOptions()), environment={"cpu": {"model": "x", "logical_cores": 2},
                                                                      "load_average_start": [1.0, 1.0, 1.0]},
        server={"url": "http://h:1", "models": [{"id": "a"}], "scaling": "1 replica(s) x 3 models each"},
        load=serve_load.summarize_load(samples(), 2.0), overhead=overhead, samples=serve_load.sample_rows(samples()))


def test_summaries_count_errors_and_cold_requests():
    load = serve_load.summarize_load(samples(), 2.0)
    assert (load["requests"], load["ok"], load["errors"], load["cold_requests"]) == (21, 20, {"400": 1}, 3)
    assert load["throughput_rps"] == 10.0 and load["latency_ms"]["max"] == 29.0
    assert load["cold_latency_ms"]["count"] == 3 and load["model_load_ms"]["median"] == 5.0
    assert load["per_model"]["b"] == {"requests": 1, "cold": 0, "errors": 1}
    assert load["error_examples"] == ["size 8x8 is outside the range"]


def test_the_report_validates_renders_and_plots(tmp_path):
    data = report()
    assert serve_report.validate(data) == []
    paths = serve_report.write_outputs(data, tmp_path / "out", name="serve")
    assert json.loads(paths["json"].read_text())["schema"] == "ingan-bench-serve"
    text = paths["markdown"].read_text()
    assert "| 21 | 20 | 1 |" in text and "**Overhead p50: 4.00 ms**" in text and "Errors by status" in text
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = report()
    broken["load"]["latency_ms"]["p99"] = -1
    broken["samples"][0] = [0, 1]
    problems = serve_report.validate(broken)
    assert "load.latency_ms.p99: must be a finite number >= 0" in problems
    assert any(p.startswith("samples[0]") for p in problems)
    assert serve_report.validate({"schema": "ingan-bench"}) == ["schema: expected 'ingan-bench-serve', got 'ingan-bench'"]


@pytest.fixture(scope="module")
def server(default_export):
    out, _ = default_export
    running, _cache = replica_server(scan([out / "model.onnx"]), max_pixels=20_000)
    yield running, out / "model.onnx"
    running.stop()


def run(*args):
    return CliRunner().invoke(main, ["serve", *map(str, args)], catch_exceptions=False)


def test_against_a_running_server(server, tmp_path):
    running, model_file = server
    result = run(running.url, "--clients", "2", "--requests", "5", "--direct", model_file, "--overhead-size", "64x48",
                 "--overhead-requests", "5", "-o", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert "PASSED: 10/10 requests answered" in result.output and "HTTP overhead p50" in result.output
    data = json.loads((tmp_path / "serve.json").read_text())
    assert serve_report.validate(data) == [] and data["load"]["ok"] == 10 and data["overhead"]["requests"] == 5
    assert data["overhead"]["size"] == "64x48" and len(data["samples"]) == 10
    assert (tmp_path / "serve.md").is_file() and (tmp_path / "serve.png").is_file()


def test_failed_requests_make_the_run_fail(server, tmp_path):
    running, _model_file = server
    result = run(running.url, "--clients", "1", "--requests", "3", "--sizes", "8x8", "-o", tmp_path, "-q")
    assert result.exit_code == 1 and "errors by status {'400': 3}" in result.output
    assert "no HTTP overhead measured: pass --direct" in result.output


def test_an_overhead_size_outside_the_range_is_refused_before_any_request(server, tmp_path):
    running, model_file = server
    result = run(running.url, "--direct", model_file, "-o", tmp_path)  # 256x256 > 120x96
    assert result.exit_code == 1 and "--overhead-size 256x256 is outside the range of model 'model'" in result.output
    assert not (tmp_path / "serve.json").exists()


def test_a_url_and_models_together_are_a_usage_error(tmp_path):
    result = run("http://127.0.0.1:1", tmp_path)
    assert result.exit_code == 2 and "not both" in result.output
