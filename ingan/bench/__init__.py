"""`ingan-bench`: latency, throughput and cost of exported models, reported the way trtexec does.

    ingan-bench model.onnx model.plan ckpt.pt --size 640x360,1280x720

Layout: `stats` (trtexec-exact percentiles), `cost` (analytic FLOPs and device peaks),
`models` (backends, model files, availability, the cells and their records), `memory` (device
and host memory readings), `probes` (one probe per backend: load, first request, timed steps),
`timing` (settings and the measurement loop), `env` (the environment block), `report` (JSON
schema v1, Markdown, the PNG plot), `suite` (the library entry point) and `cli`. Importing
this package never imports torch, TensorRT or ONNX Runtime; each is imported only when a
model needs it.
Field meanings and their trtexec counterparts: docs/bench.md.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION"]

SCHEMA = "ingan-bench"
SCHEMA_VERSION = 1
