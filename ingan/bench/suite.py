"""ingan-bench as a library: models in, a validated report (and its files) out.

    from ingan.bench.suite import BenchOptions, run_benchmark, write_outputs
    report = run_benchmark(["model.onnx", "ckpt.pt"], BenchOptions(sizes=[(360, 640)]))
    write_outputs(report, "bench-out")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ingan.bench import env as env_mod
from ingan.bench import report as report_mod
from ingan.bench import timing
from ingan.bench.models import (
    Availability,
    bench_backends,
    inspect_model,
    label_models,
    parse_backends,
    plan_cells,
)
from ingan.errors import ConfigError, OptionError
from ingan.sizes import format_range, format_size
from ingan.fsutil import atomic_path, ensure_output_dir


@dataclass(frozen=True)
class BenchOptions:
    sizes: Sequence[tuple[int, int]] = ((360, 640), (720, 1280))  # (height, width)
    backends: Sequence[str] | None = None  # None: every backend available for each model
    device: str = "auto"  # auto | cpu | cuda (cuda:N is mapped to "cuda" by the CLI, see ingan-bench --device)
    cuda_graphs: str = "both"  # both | on | off
    settings: timing.Settings = field(default_factory=timing.Settings)
    peak_tflops: float | None = None
    time_budget_s: float | None = None  # stop starting cells after this many seconds
    allow_host_code: bool = False
    any_size: bool = False  # PyTorch on CUDA: also sizes outside the checkpoint's trained range
    threads: int = 0  # CPU threads per request for the CPU backends (0: the library's default)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device '{self.device}'; use auto, cpu or cuda")
        if self.cuda_graphs not in ("both", "on", "off"):
            raise ConfigError(f"--cuda-graphs must be both, on or off, not '{self.cuda_graphs}'")
        if not self.sizes:
            raise ConfigError("give at least one size")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ConfigError("--peak-tflops must be positive")


def run_benchmark(model_paths: Sequence[str | Path], options: BenchOptions,
                  progress: Callable[[str], None] | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """Check every model first (InganError on a bad one), then measure every cell."""
    started = time.perf_counter()
    deadline = started + options.time_budget_s if options.time_budget_s is not None else None
    backends = parse_backends(list(options.backends) if options.backends is not None else None)
    unique: dict[Path, str | Path] = {}
    for path in model_paths:  # the same file twice would give two cells with one key
        unique.setdefault(Path(path).resolve(), path)
    models = [inspect_model(p) for p in unique.values()]
    label_models(models)
    table = bench_backends()
    for backend in backends or []:
        cls = table[backend][0]
        if not any(m.runner == cls.backend for m in models):
            suffixes = "/".join(cls.suffixes)
            raise ConfigError(f"--backends {backend} runs {cls.backend} models ({suffixes}) and none was given; "
                              f"add such a model or drop {backend}")
    avail = Availability(device=options.device)
    sizes = list(dict.fromkeys((int(h), int(w)) for h, w in options.sizes))
    check_sizes_fit(models, sizes, options.any_size)
    cells, skipped = plan_cells(models, sizes, backends, options.cuda_graphs, avail, options.any_size,
                                options.threads)
    if options.device == "cuda" and not any(c.device == "cuda" for c in cells):
        reasons = list(dict.fromkeys(s["reason"] for s in skipped if table[s["backend"]][1].device != "cpu"))
        raise ConfigError("--device cuda: no CUDA backend can run these models here ("
                          + ("; ".join(reasons) if reasons else "no CUDA GPU or GPU runtime found") + ")")
    any_cuda = any(c.device == "cuda" for c in cells)
    environment = env_mod.environment(with_gpu=any_cuda or options.device != "cpu")
    gpu_name = env_mod.gpu_name(environment)
    records = timing.run_cells(cells, options.settings, deadline=deadline, gpu_name=gpu_name,
                               peak_override=options.peak_tflops, allow_host_code=options.allow_host_code,
                               progress=progress)
    settings = {**options.settings.to_dict(), "device": options.device, "cuda_graphs": options.cuda_graphs,
                "backends": list(backends) if backends else "all available",
                "sizes": [f"{w}x{h}" for h, w in sizes], "peak_tflops_override": options.peak_tflops,
                "time_budget_s": options.time_budget_s, "any_size": options.any_size, "threads": options.threads}
    report = report_mod.build_report(settings=settings, environment=environment,
                                     models=[m.to_dict() for m in models], cells=records + skipped,
                                     command=command, created=env_mod.utc_now(),
                                     elapsed_s=time.perf_counter() - started)
    return report_mod.check_report(report)


def check_sizes_fit(models: Sequence[Any], sizes: Sequence[tuple[int, int]], any_size: bool = False) -> None:
    """Refuse, before any cell runs, a size that no given model accepts (a run of skipped
    cells would otherwise take seconds to say nothing). A size that fits some models only
    runs on those; the others' cells are reported as skipped."""
    for size in sizes:
        if any(m.metadata.size_in_range(size) or (any_size and m.kind == "pytorch") for m in models):
            continue
        ranges = "; ".join(f"{m.label}: {format_range(m.metadata.min_size, m.metadata.max_size)}" for m in models)
        raise OptionError(f"--size {format_size(size)} is outside the range of every model given ({ranges}); "
                          "pick sizes inside a model's range")


def default_out_dir(base: Path | None = None) -> Path:
    """A new time-stamped folder under `base` (default: the current directory)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = (base or Path.cwd()) / f"bench-{stamp}"
    candidate, n = root, 1
    while candidate.exists():
        n += 1
        candidate = root.with_name(f"{root.name}-{n}")
    return candidate


def write_outputs(report: dict[str, Any], out_dir: str | Path, name: str = "bench",
                  plot: bool = True) -> dict[str, Path | None]:
    """Write NAME.json, NAME.md and NAME.png (None when matplotlib is missing) into `out_dir`."""
    folder = ensure_output_dir(out_dir)
    paths: dict[str, Path | None] = {}
    paths["json"] = report_mod.write_json(report, folder / f"{name}.json")
    md = folder / f"{name}.md"
    with atomic_path(md) as tmp:
        tmp.write_text(report_mod.markdown(report))
    paths["markdown"] = md
    paths["plot"] = report_mod.plot(report, folder / f"{name}.png") if plot else None
    return paths
