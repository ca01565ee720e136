"""Weight-free retarget quality: patch-distribution metrics against the training image.

    from ingan.quality.metrics import score
    result = score(output, reference)          # HxWx3 uint8 arrays -> QualityScore
    result.swd, result.coherence, result.completeness, result.bds

    from ingan.quality.evaluate import evaluate   # what `ingan-eval` runs
    report = evaluate("ckpt.pt", [(320, 768), (320, 192)], "quality/")

No metric here downloads network weights. Definitions and citations: docs/quality.md.
Importing this package imports nothing heavy; `metrics` and `evaluate` need torch
(pip install 'ingan[train]').
"""

from __future__ import annotations

__all__ = ["baselines", "evaluate", "metrics"]
