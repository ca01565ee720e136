"""No module uses another module's private names (issue 18: "no private name imported across
packages"; the TensorRT session's modules were split so that none has to).

A private name is one with a leading underscore (dunders aside). The check reads the source
(AST), so it sees every import, lazy ones inside functions included: `from ingan.x import _y`,
and `_y` reached through a module bound by `import ingan.x [as m]` or `from ingan import x`.
Tests may reach into internals; the package and the benchmark scripts may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "ingan").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])
# Same-package uses that predate the rule, as (importing file, module, name). An entry must
# still be true (the test fails on a stale one): drop it when the name is made public.
KNOWN: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.AST) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def private_uses(path: Path) -> list[tuple[str, str, int]]:
    """(module, private name, line) for each private name of another ingan module that `path` uses."""
    here = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: dict[str, str] = {}  # local name -> the ingan module it is bound to
    uses: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ingan":
                    aliases[alias.asname or "ingan"] = alias.name if alias.asname else "ingan"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ingan":
            for alias in node.names:
                if _private(alias.name) and node.module != here:
                    uses.append((node.module, alias.name, node.lineno))
                elif _is_module(f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        parts = _dotted(node)
        if not parts or parts[0] not in aliases or not _private(parts[-1]):
            continue
        module = ".".join([aliases[parts[0]], *parts[1:-1]])
        if _is_module(module) and module != here:
            uses.append((module, parts[-1], node.lineno))
    return uses


def test_no_private_name_is_used_across_modules():
    found = {(str(path.relative_to(ROOT)), module, name, line)
             for path in SOURCES for module, name, line in private_uses(path)}
    unexpected = sorted(use for use in found if use[:3] not in KNOWN)
    assert unexpected == [], "private names used across modules (make them public, or move the code): " + "; ".join(
        f"{file}:{line} uses {module}.{name}" for file, module, name, line in unexpected)
    stale = KNOWN - {use[:3] for use in found}
    assert stale == set(), f"KNOWN lists uses that are gone: {sorted(stale)}"


def test_the_check_sees_each_kind_of_use(monkeypatch):
    """The walker finds a private import, a lazy one, and one through a module alias."""
    sample = ROOT / "ingan" / "runtime" / "_private_use_sample.py"
    source = (
        "from ingan.runtime.cuda import _x\n"
        "import ingan.runtime.trt_graphs as graphs\n"
        "from ingan.runtime import trt_io\n"
        "def f():\n"
        "    from ingan.runtime.trt_helpers import _y, errors_text\n"
        "    return graphs._z, trt_io._w, trt_io.shapes_of, ingan_local._v\n"
    )
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    uses = sorted((module, name) for module, name, _line in private_uses(sample))
    assert uses == [("ingan.runtime.cuda", "_x"), ("ingan.runtime.trt_graphs", "_z"),
                    ("ingan.runtime.trt_helpers", "_y"), ("ingan.runtime.trt_io", "_w")]
