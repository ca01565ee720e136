"""The graph's I/O contract has one home, ingan/contract.py (issue 18).

Two source checks (AST, so lazy imports and nested code are seen too):

1. No module but ingan/contract.py defines the contract's names (SIZE_INPUT, ..., graph_feed),
   so nothing can drift from it under the same name.
2. The modules that build, feed or describe graphs (ingan/export, ingan/runtime,
   ingan/bench/probes, ingan/metadata.py) contain no string literal *equal* to an I/O name.
   Exact equality is what makes this robust: a message mentions a name inside a longer text
   (never equal to it), while a literal that is exactly "size" or "output" can only be a
   tensor name used as a key, an argument or in a comparison, which must come from the
   contract. The one exception is `register_buffer("image", ...)`: a torch module attribute
   (the baked training image), not a graph input. Other packages use "size" and "image" for
   other things (HTTP query parameters, JSON report keys, checkpoint fields) and feed no graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from ingan import contract

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "ingan" / "contract.py"
CONTRACT_NAMES = {"SIZE_INPUT", "IMAGE_INPUT", "HOMOGRAPHY_INPUT", "OUTPUT_NAME", "INPUT_NAMES", "OPTIONAL_INPUTS",
                  "input_names", "graph_feed"}
IO_NAMES = {contract.SIZE_INPUT, contract.IMAGE_INPUT, contract.HOMOGRAPHY_INPUT, contract.OUTPUT_NAME}
GRAPH_FACING = sorted([*(ROOT / "ingan" / "export").rglob("*.py"), *(ROOT / "ingan" / "runtime").rglob("*.py"),
                       *(ROOT / "ingan" / "bench" / "probes").rglob("*.py"), ROOT / "ingan" / "metadata.py"])
ALL_SOURCES = sorted([*(ROOT / "ingan").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def definitions(tree: ast.Module) -> list[tuple[str, int]]:
    """(name, line) of every contract name assigned anywhere or defined as a module-level function."""
    found = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        while targets:  # the names bound: x = ..., obj.x = ..., (x, y) = ...; not feed[X] = ...
            target = targets.pop()
            if isinstance(target, (ast.Tuple, ast.List)):
                targets += target.elts
            elif isinstance(target, ast.Starred):
                targets.append(target.value)
            elif isinstance(target, (ast.Name, ast.Attribute)):
                name = target.id if isinstance(target, ast.Name) else target.attr
                if name in CONTRACT_NAMES:
                    found.append((name, node.lineno))
    for node in tree.body:  # methods may share a name (ExportSpec.input_names delegates to the contract)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in CONTRACT_NAMES:
            found.append((node.name, node.lineno))
    return found


def io_literals(tree: ast.Module) -> list[tuple[str, int]]:
    """(literal, line) of every string constant equal to an I/O name, but register_buffer's name."""
    buffer_names = {id(node.args[0]) for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register_buffer" and node.args}
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in IO_NAMES and id(node) not in buffer_names]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_io_names_are_defined_only_in_the_contract():
    assert {name for name, _ in definitions(_tree(HOME))} == CONTRACT_NAMES
    found = [f"{path.relative_to(ROOT)}:{line} defines {name}"
             for path in ALL_SOURCES if path != HOME for name, line in definitions(_tree(path))]
    assert found == [], "define the graph's I/O names only in ingan/contract.py: " + "; ".join(found)


def test_graph_facing_modules_take_io_names_from_the_contract():
    assert len(GRAPH_FACING) > 20  # the globs found the packages
    found = [f"{path.relative_to(ROOT)}:{line} {value!r}"
             for path in GRAPH_FACING for value, line in io_literals(_tree(path))]
    assert found == [], "use ingan.contract's names, not literals: " + "; ".join(found)


def test_the_checks_find_what_they_forbid():
    tree = ast.parse(
        'OUTPUT_NAME = "output"\n'
        "class Spec:\n"
        "    def input_names(self):\n"  # a method: allowed
        '        return ["size"]\n'
        "def graph_feed(size):\n"
        '    feed = {"size": size}\n'
        "    feed[OUTPUT_NAME], (a, self.SIZE_INPUT) = 1, (2, 3)\n"
        '    self.register_buffer("image", None)\n'
        '    raise ValueError("the size input is bad")\n'  # a message: allowed
        '    return feed.get("homography")\n'
    )
    assert sorted(definitions(tree)) == [("OUTPUT_NAME", 1), ("SIZE_INPUT", 7), ("graph_feed", 5)]
    assert sorted(io_literals(tree)) == [("homography", 10), ("output", 1), ("size", 4), ("size", 6)]


def test_contract_matches_its_documentation():
    doc = (ROOT / "docs" / "onnx-contract.md").read_text(encoding="utf-8")
    for name in IO_NAMES:
        assert f"| `{name}` |" in doc, name
    assert set(contract.INPUT_NAMES) == IO_NAMES - {contract.OUTPUT_NAME}
    assert set(contract.OPTIONAL_INPUTS) == {contract.IMAGE_INPUT, contract.HOMOGRAPHY_INPUT}


def test_input_names_and_feed():
    assert contract.input_names(False, False) == ["size"]
    assert contract.input_names(True, True) == ["size", "image", "homography"]
    assert contract.input_names(False, True) == ["size", "homography"]
    image, homography = np.zeros((1, 3, 8, 8), np.float32), np.eye(3, dtype=np.float32)[None]
    feed = contract.graph_feed((np.int64(17), 33), image, homography)
    assert list(feed) == ["size", "image", "homography"]
    assert feed["size"].dtype == np.int64 and feed["size"].tolist() == [17, 33]
    assert feed["image"] is image and feed["homography"] is homography
    assert list(contract.graph_feed((8, 8))) == ["size"]
