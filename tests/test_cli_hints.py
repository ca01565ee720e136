"""Every hint names an option that exists on the command that prints it.

Walks the string literals of ingan/ (f-string parts included) for `--flag` mentions. A hint
that names its command (`ingan-export --min-size`) must name one of that command's options;
otherwise the flag must exist on the command the module belongs to (its package's CLI), and a
module shared by several commands (ingan/model, ingan/fsutil, ...) must name flags that every
command has, or name the command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "ingan-train": "ingan.train.cli",
    "ingan-export": "ingan.export.cli",
    "ingan-run": "ingan.runtime.cli",
    "ingan-bench": "ingan.bench.cli",
    "ingan-eval": "ingan.quality.cli",
    "ingan-demo": "ingan.demo",
    "ingan.train.calibrate": "ingan.train.calibrate",
}
HOME = {"train": "ingan-train", "fleet": "ingan-train", "export": "ingan-export", "runtime": "ingan-run", "bench": "ingan-bench",
        "quality": "ingan-eval", "demo.py": "ingan-demo"}
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
NAMED = re.compile(r"(ingan-[a-z]+|ingan\.train\.calibrate)((?:\s+[^\s;,()]+)*?)\s+(--[a-z][a-z0-9-]*)")


def _options(command: click.Command) -> set[str]:
    found = {"--help"}
    for param in command.params:
        for name in (*param.opts, *param.secondary_opts):
            found.add(name)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= _options(sub)
    return found


@pytest.fixture(scope="module")
def options() -> dict[str, set[str]]:
    import importlib

    table = {name: _options(importlib.import_module(module).main) for name, module in COMMANDS.items()}
    try:
        table["ingan-serve"] = _options(importlib.import_module("ingan.serve.cli").main)
    except ImportError:
        pass
    return table


MESSAGE_CALLS = {"notice", "fail", "UsageError", "BadParameter", "ClickException", "warning", "echo", "write",
                 "secho", "info"}


def _literals(path: Path) -> list[tuple[int, str]]:
    """The text of every message: literals inside `raise ...` and inside calls that print to a user."""
    tree = ast.parse(path.read_text())
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            roots.append(node.exc)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in MESSAGE_CALLS:
                roots.append(node)
    out = []
    # Arguments of str.replace(...) are text being edited, not words shown to anyone.
    edited = {id(arg) for root in roots for node in ast.walk(root) if isinstance(node, ast.Call)
              and getattr(node.func, "attr", "") == "replace" for arg in node.args}
    for root in roots:
        for node in ast.walk(root):
            if id(node) in edited:
                continue
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                out.append((node.lineno, text))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((node.lineno, node.value))
    return out


def _home(path: Path) -> str | None:
    parts = path.relative_to(ROOT / "ingan").parts
    if parts[:2] == ("train", "calibrate.py"):
        return "ingan.train.calibrate"
    if parts[:2] == ("serve", "remote.py"):
        return "ingan-run"  # ingan-run http://HOST:PORT/MODEL
    return HOME.get(parts[0]) or ("ingan-serve" if parts[0] == "serve" else None)


def _defined_options(path: Path) -> set[str]:
    """Flags that `path` itself declares in click.option(...) calls."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "option":
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
    return found


def reached_by(flag: str) -> set[str]:
    """Commands a shared module's message can reach. --device: the commands that hand a user's
    device to torch (the demo and calibrate pick theirs; ingan-serve never loads torch); --out:
    the commands that write files (ingan-serve writes none); everything else: all."""
    if flag == "--device":
        return {"ingan-train", "ingan-export", "ingan-run", "ingan-bench", "ingan-eval"}
    if flag in ("--out", "-o"):
        return set(COMMANDS)
    return set(COMMANDS) | {"ingan-serve"}


def test_every_flag_named_in_a_message_exists(options):
    defined = {path: _defined_options(path) for path in (ROOT / "ingan").rglob("*.py")}
    problems = []
    for path in sorted((ROOT / "ingan").rglob("*.py")):
        home = _home(path)
        for line, text in _literals(path):
            if "--" not in text:
                continue
            # Another program's command in backticks (`ray start --head`) names its own flags.
            text = re.sub(r"`(?!ingan)[^`]*`", "", text)
            named = {m.group(3): m.group(1) for m in NAMED.finditer(text)}
            for flag in FLAG.findall(text):
                command = named.get(flag)
                if command is not None:
                    if command in options and flag not in options[command]:
                        problems.append(f"{path.relative_to(ROOT)}:{line}: {command} has no {flag}")
                elif home is not None:
                    if home in options and flag not in options[home]:
                        problems.append(f"{path.relative_to(ROOT)}:{line}: {home} has no {flag}")
                elif flag in defined.get(path, set()):
                    continue  # a shared helper that defines this option (ingan/cli/common.py)
                else:
                    lacking = [c for c, opts in options.items() if flag not in opts and c in reached_by(flag)]
                    if lacking:
                        problems.append(f"{path.relative_to(ROOT)}:{line}: shared message names {flag}, which "
                                        f"{', '.join(lacking)} lack(s); name the command")
    assert not problems, "\n".join(problems)
