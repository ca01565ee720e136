"""Every install hint names an extra that exists and brings the missing package."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from ingan.extras import OPTIONAL, install_hint, missing

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["optional-dependencies"]


def _distributions(extra: str, table: dict[str, list[str]], seen: frozenset[str] = frozenset()) -> set[str]:
    """Distribution names an extra installs, following ingan[...] self-references."""
    names: set[str] = set()
    for requirement in table[extra]:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(\[([^\]]+)\])?", requirement)
        assert match, requirement
        name = match.group(1).lower()
        if name == "ingan":
            for inner in match.group(3).split(","):
                assert inner.strip() in table, f"extra {extra} refers to a missing extra {inner}"
                if inner.strip() not in seen:
                    names |= _distributions(inner.strip(), table, seen | {extra})
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("module", sorted(OPTIONAL), ids=lambda m: f"module={m}")
def test_each_hint_names_an_extra_that_brings_the_module(module):
    table = _extras()
    entry = OPTIONAL[module]
    assert entry.extra in table, f"{module}: extra '{entry.extra}' is not in pyproject.toml"
    assert entry.distribution in _distributions(entry.extra, table), (module, entry.extra)
    assert f"ingan[{entry.extra}]" in install_hint(module)
    assert f"ingan[{entry.extra}]" in str(missing(module, "Doing X"))


def test_serving_extras_never_pull_torch():
    table = _extras()
    for extra in ("onnx", "gpu-lean", "gpu", "serve"):
        assert "torch" not in _distributions(extra, table), extra


def test_every_hint_in_the_code_names_an_existing_extra():
    """No message anywhere in ingan/ sends users to an extra that does not exist."""
    table = _extras()
    for path in (ROOT / "ingan").rglob("*.py"):
        for extra in re.findall(r"ingan\[([a-z0-9,-]+)\]", path.read_text()):
            for name in extra.split(","):
                assert name in table, f"{path.relative_to(ROOT)} names ingan[{name}], which pyproject.toml lacks"


def test_the_gpu_hint_says_it_needs_nvidias_index():
    assert "--extra-index-url https://pypi.nvidia.com" in install_hint("tensorrt")
    assert "--extra-index-url" not in install_hint("tensorrt_lean")
