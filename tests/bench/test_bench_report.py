"""The JSON schema (v1), its validator, Markdown, the plot, and compare."""

from __future__ import annotations

import copy
import json

import pytest

from ingan.bench import SCHEMA_VERSION, report
from ingan.bench.stats import SUMMARY_FIELDS


def ok_cells(rep):
    return [c for c in rep["cells"] if c["status"] == "ok"]


def test_tiny_report_is_valid_and_plausible(tiny_report):
    assert report.validate_report(tiny_report) == []
    assert tiny_report["schema"] == "ingan-bench" and tiny_report["schema_version"] == SCHEMA_VERSION
    env = tiny_report["environment"]
    assert env["cpu"]["model"] and env["packages"]["onnxruntime"] and "sha" in env["git"]
    cells = ok_cells(tiny_report)
    # 2 ONNX files x ort-cpu x 2 sizes + the checkpoint on torch-fp32 (CPU) x 2 sizes
    assert sorted((c["model"], c["backend"]) for c in cells) == sorted(
        [("model.onnx", "ort-cpu")] * 2 + [("model_fp16.onnx", "ort-cpu")] * 2 + [("ckpt.pt", "torch-fp32")] * 2)
    for cell in cells:
        assert cell["timer"] == "wall-clock" and cell["device_kind"] == "cpu" and cell["iterations"] == 3
        assert cell["primary_metric"] == "latency_ms" and cell["metrics"]["gpu_compute_ms"] is None
        for name in ("latency_ms", "host_latency_ms"):
            m = cell["metrics"][name]
            assert m["count"] == 3
            assert 0 < m["min"] <= m["median"] <= m["p90"] <= m["p95"] <= m["p99"] <= m["max"] < 10_000
            assert m["min"] <= m["mean"] <= m["max"] and m["std"] >= 0
        # the whole request includes the backend call
        assert cell["metrics"]["host_latency_ms"]["min"] >= cell["metrics"]["latency_ms"]["min"]
        assert cell["throughput"]["images_per_s"] == pytest.approx(3 / cell["total_host_walltime_s"], rel=1e-3)
        mp = cell["size"]["width"] * cell["size"]["height"] / 1e6
        assert cell["throughput"]["megapixels_per_s"] == pytest.approx(cell["throughput"]["images_per_s"] * mp,
                                                                       rel=1e-3)
        cold = cell["cold_start"]
        assert cold["load_s"] > 0 and cold["first_request_s"] > 0
        assert cold["total_s"] == pytest.approx(cold["load_s"] + cold["first_request_s"], abs=2e-6)
        assert cell["cost"]["gflop"] > 0 and cell["cost"]["achieved_tflops"] > 0
        assert cell["cost"]["peak_tflops"] is None  # CPU: unknown unless --peak-tflops
        assert cell["memory"]["host_peak_rss_mib"] > 0 and cell["memory"]["device_peak_mib"] is None
    onnx_cell = next(c for c in cells if c["model"] == "model.onnx" and c["size"]["width"] == 52)
    pt_cell = next(c for c in cells if c["model"] == "ckpt.pt" and c["size"]["width"] == 52)
    assert onnx_cell["cost"]["entry_executed"] is False and pt_cell["cost"]["entry_executed"] is True
    assert pt_cell["cost"]["gflop"] == pytest.approx(onnx_cell["cost"]["gflop"] + pt_cell["cost"]["entry_gflop"])


def test_json_round_trip(tiny_report, tmp_path):
    path = report.write_json(tiny_report, tmp_path / "r.json")
    assert report.load_report(path) == json.loads(json.dumps(tiny_report))


def _broken(rep, edit):
    data = copy.deepcopy(rep)
    edit(data)
    return report.validate_report(data)


def test_validator_finds_problems(tiny_report):
    first_ok = next(i for i, c in enumerate(tiny_report["cells"]) if c["status"] == "ok")

    def cell(data):
        return data["cells"][first_ok]

    assert _broken(tiny_report, lambda d: d.pop("environment")) == ["report.environment: missing"]
    assert _broken(tiny_report, lambda d: d.update(schema="other"))[0].startswith("schema: expected")
    assert "newer" in _broken(tiny_report, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))[0]
    assert _broken(tiny_report, lambda d: cell(d).update(status="great")) == [
        f"cells[{first_ok}].status: expected one of ok, skipped, failed, got 'great'"]
    assert _broken(tiny_report, lambda d: cell(d)["metrics"]["latency_ms"].pop("p99")) == [
        f"cells[{first_ok}].metrics.latency_ms.p99: missing"]
    assert _broken(tiny_report, lambda d: cell(d)["metrics"].update(host_latency_ms=None)) == [
        f"cells[{first_ok}].metrics.host_latency_ms: required for an ok cell"]
    assert _broken(tiny_report, lambda d: cell(d).update(cuda_graphs="no")) == [
        f"cells[{first_ok}].cuda_graphs: expected bool, got str"]
    assert _broken(tiny_report, lambda d: cell(d).update(iterations=True)) == [
        f"cells[{first_ok}].iterations: expected int, got bool"]
    assert _broken(tiny_report, lambda d: cell(d).update(primary_metric="gpu_compute_ms")) == [
        f"cells[{first_ok}].primary_metric: 'gpu_compute_ms' has no summary"]
    assert _broken(tiny_report, lambda d: cell(d)["metrics"]["latency_ms"].update(median=-5)) == [
        f"cells[{first_ok}].metrics.latency_ms.median: must be a finite number >= 0, got -5"]
    assert _broken(tiny_report, lambda d: cell(d)["throughput"].update(images_per_s=float("nan")))[0].endswith(
        "images_per_s: must be a finite number >= 0, got nan")
    assert _broken(tiny_report, lambda d: d["cells"].append(copy.deepcopy(cell(d))))[0].endswith("appears twice (one cell per key)")
    assert "not a valid version" in _broken(tiny_report, lambda d: d.update(schema_version=0))[0]
    assert report.validate_report([]) == ["report: not a JSON object"]
    with pytest.raises(report.ReportError, match="not a valid ingan-bench report"):
        report.check_report({"schema": "ingan-bench", "schema_version": 1}, "x.json")


def test_every_summary_has_the_trtexec_fields(tiny_report):
    for cell in ok_cells(tiny_report):
        for name in report.METRIC_NAMES:
            summary = cell["metrics"][name]
            assert summary is None or list(summary) == list(SUMMARY_FIELDS)


def test_load_report_errors(tmp_path):
    with pytest.raises(report.ReportError, match="does not exist"):
        report.load_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(report.ReportError, match="is not a JSON report; pass the bench.json"):
        report.load_report(bad)
    binary = tmp_path / "bench.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(report.ReportError, match="is not a JSON report"):
        report.load_report(binary)
    with pytest.raises(report.ReportError, match="is a folder, not a report"):
        report.load_report(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(report.ReportError, match="schema"):
        report.load_report(other)


def test_markdown_and_plot(tiny_report, tmp_path):
    text = report.markdown(tiny_report)
    assert "| model | backend | prec | graphs | size |" in text
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    assert "latency med (p99) ms" in header and "GPU compute" not in header  # no GPU-only columns on a CPU
    assert "host RSS MiB" in header and "dev MiB" not in header
    rows = [line for line in text.splitlines() if line.startswith(("| model.onnx", "| model_fp16.onnx", "| ckpt.pt"))]
    assert len(rows) == len(ok_cells(tiny_report))
    png = report.plot(tiny_report, tmp_path / "p.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _with_medians(rep, factor):
    data = copy.deepcopy(rep)
    for cell in ok_cells(data):
        for summary in cell["metrics"].values():
            if summary:
                for key in ("min", "mean", "median", "p90", "p95", "p99", "max"):
                    summary[key] *= factor
        cell["throughput"]["images_per_s"] /= factor
    return data


def test_compare_ratios(tiny_report):
    slower = _with_medians(tiny_report, 2.0)
    slower["cells"] = slower["cells"][1:]  # one cell only in A
    rows = report.compare_rows(tiny_report, slower)
    assert rows[0]["only_in"] == "a" and rows[0]["ratio"] is None
    matched = [r for r in rows if r["ratio"] is not None]
    assert matched and all(r["ratio"] == pytest.approx(2.0) for r in matched)
    assert all(r["ratio"] == pytest.approx(0.5) for r in report.compare_rows(tiny_report, slower, "throughput")
               if r["ratio"] is not None)
    text = report.compare_text(tiny_report, slower, "primary", "a.json", "b.json")
    assert "geometric mean of B/A: 2" in text and "only in A" in text
    with pytest.raises(Exception, match="unknown metric"):
        report.compare_rows(tiny_report, slower, "speed")
