"""Backends declare what they are; the registry and every table derive from the declarations.

A backend is one file: a `Runner` subclass (ingan/runtime/base.py) that declares its name,
aliases, model-file suffixes, the sidecar kind it reads, its pip extra, its devices, the
options it takes and how `ingan-bench` can time it. Defining the class registers it; the
built-in backends are the modules of ingan/runtime/backends/, imported on first use (light
by contract: a backend imports its heavy package only when a model is opened). `load()`,
`ingan-run --backend`, the bench's backend table and the quality code all read this registry,
so adding a backend means adding a file (docs/runtime.md, "Adding a backend").
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingan.errors import ConfigError

if TYPE_CHECKING:
    from ingan.runtime.base import Runner


@dataclass(frozen=True)
class LoadOptions:
    """How to open a model; a backend refuses the options it does not declare in `takes`."""

    device: str | None = None  # auto | cpu | cuda | cuda:N (None: the backend's default)
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers, in priority order
    allow_host_code: bool = False  # TensorRT: load version-compatible plans (they embed host code)
    cuda_graphs: int = 0  # TensorRT: keep CUDA graphs for this many recent sizes
    threads: int = 0  # CPU threads per request (0: the library's default)

    def given(self) -> dict[str, object]:
        """The options set to something other than their default, by name."""
        return {name: value for name, value in vars(self).items()
                if name != "device" and value != getattr(LoadOptions, name, None) and value not in ((), 0, False)}


@dataclass(frozen=True)
class BenchVariant:
    """One way `ingan-bench` times a backend (a column of its backend table)."""

    name: str  # the ingan-bench backend name, e.g. "ort-cpu"
    device: str  # cuda | cpu | auto (CUDA where there is one, else the CPU)
    description: str
    graphs: bool = False  # CUDA graphs are a dimension of it
    provider: str | None = None  # ONNX Runtime execution provider it pins
    precision: str | None = None  # a fixed precision (PyTorch fp16/bf16); None: the model file's own
    probe: str = "runner"  # runner: wall clock through the Runner contract; tensorrt / pytorch: CUDA events


_RUNNERS: dict[str, type[Runner]] = {}
_BUILTINS_LOADED = False


def register(cls: type[Runner]) -> type[Runner]:
    """Add a runner class (called by `Runner.__init_subclass__` for every class that declares
    `backend`). Its name, aliases and suffixes must not clash with another backend's."""
    name = cls.backend
    if not name or not name.replace("-", "").replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"{cls.__name__}.backend must be a lower-case name, got {name!r}")
    for other in _RUNNERS.values():
        if other.__qualname__ == cls.__qualname__ and other.__module__ == cls.__module__:
            continue  # the same class defined again (a module reloaded)
        if other.backend == name:
            raise ValueError(f"backend name {name!r} is taken by {other.__name__}")
        clash = (set(other.aliases) | {other.backend}) & set(cls.aliases)
        if clash:
            raise ValueError(f"{cls.__name__} aliases {sorted(clash)} are taken by {other.__name__}")
        shared = set(other.suffixes) & set(cls.suffixes)
        if shared:
            raise ValueError(f"{cls.__name__} suffixes {sorted(shared)} are taken by {other.__name__}")
    _RUNNERS[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a backend (tests that declare a toy runner clean up with this)."""
    _RUNNERS.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import ingan.runtime.backends as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def runners() -> dict[str, type[Runner]]:
    """Every registered backend by name, in the order of their declared `rank`."""
    _load_builtins()
    return dict(sorted(_RUNNERS.items(), key=lambda item: (item[1].rank, item[0])))


def backend_names() -> list[str]:
    return list(runners())


def runner_class(name: str) -> type[Runner]:
    """The runner for a backend name or alias; ConfigError naming the choices otherwise."""
    table = runners()
    key = name.strip().lower()
    for cls in table.values():
        if key == cls.backend or key in cls.aliases:
            return cls
    raise ConfigError(f"unknown backend '{name}'; use {', '.join(table)}")


def suffix_table() -> dict[str, str]:
    """Model-file suffix -> backend name."""
    return {suffix: cls.backend for cls in runners().values() for suffix in cls.suffixes}


def backend_for(path: str | os.PathLike[str], backend: str | None = None) -> str:
    """The backend name for a model file: by suffix, unless `backend` names one (which must
    be able to open that suffix)."""
    suffix = Path(path).suffix.lower()
    by_suffix = suffix_table()
    if backend is not None:
        cls = runner_class(backend)
        owner = by_suffix.get(suffix)
        if owner is not None and owner != cls.backend:
            raise ConfigError(f"backend {cls.backend} cannot run a '{suffix}' file (it is for the {owner} backend)")
        return cls.backend
    if suffix not in by_suffix:
        raise ConfigError(
            f"cannot tell the model type of '{Path(path).name}' from its suffix; rename it to one of "
            f"{', '.join(by_suffix)}, or name the backend (ingan-run --backend, ingan.runtime.load(backend=...))"
        )
    return by_suffix[suffix]


def bench_variants() -> dict[str, tuple[type[Runner], BenchVariant]]:
    """Every ingan-bench backend name -> (runner class, variant), in registry order."""
    table: dict[str, tuple[type[Runner], BenchVariant]] = {}
    for cls in runners().values():
        for variant in cls.bench_variant_list():
            if variant.name in table:
                raise ValueError(f"bench variant {variant.name!r} is declared twice")
            table[variant.name] = (cls, variant)
    return table


def backend_choice() -> Any:
    """A `click.Choice` of the registered backend names, read when the command runs or shows
    its help (click freezes a plain choice list when the command is defined): a backend
    declared later (a plug-in, a test's toy runner) is offered too."""
    import click

    class BackendChoice(click.Choice):  # type: ignore[type-arg]
        @property  # type: ignore[override]
        def choices(self) -> tuple[str, ...]:
            return tuple(backend_names())

        @choices.setter
        def choices(self, value: Any) -> None:  # click's __init__ assigns it; the registry decides
            pass

    return BackendChoice((), case_sensitive=False)
