"""Every `ingan-serve` setting in one frozen dataclass, and the Ray Serve arguments it becomes.

The same `ServeOptions` drives `ingan-serve` (which starts the app itself) and the YAML
config it writes for `serve run` / `serve deploy`: there the application settings travel
as the builder's `args` (`to_args` / `from_args`) and the scaling and resources as Ray's
own per-deployment options (`retargeter_options`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ingan.errors import ConfigError

DEFAULT_MAX_PIXELS = 3840 * 2160  # one 4K UHD frame
DEFAULT_MAX_BODY_BYTES = 20 * 2**20
# HTTP keeps answering this long after a request's own timeout before Ray's proxy gives up,
# so a slow request gets our 504 with a JSON reason rather than the proxy's bare one.
PROXY_TIMEOUT_MARGIN_S = 10.0
# The builder `args` of a config file: the settings that shape the application itself.
APP_FIELDS = ("models", "models_per_replica", "gpus_per_replica", "cpus_per_replica", "threads", "max_pixels",
              "max_body_bytes", "timeout_s", "allow_host_code")


@dataclass(frozen=True)
class ServeOptions:
    """Settings of one ingan-serve application (flags in brackets; docs/serve.md)."""

    models: tuple[str, ...]  # MODELS, as absolute paths
    models_per_replica: int = 3  # [--models-per-replica] Ray's multiplexing LRU size
    replicas: int = 1  # [--replicas] fixed replica count, unless autoscaling
    min_replicas: int | None = None  # [--min-replicas] autoscaling lower bound
    max_replicas: int | None = None  # [--max-replicas] set: autoscale between min and max
    target_ongoing_requests: float = 2.0  # [--target-ongoing-requests] autoscaling target per replica
    cpus_per_replica: float = 1.0  # [--cpus-per-replica]
    gpus_per_replica: float = 0.0  # [--gpus-per-replica] fractions share a GPU
    threads: int = 0  # [--threads] ONNX Runtime threads per model; 0: the replica's CPU share
    max_pixels: int = DEFAULT_MAX_PIXELS  # [--max-pixels] larger requests answer 413
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # [--max-body-mib] larger bodies answer 413
    timeout_s: float = 60.0  # [--timeout] per request; slower ones answer 504
    allow_host_code: bool = False  # [--allow-host-code] version-compatible TensorRT plans
    host: str = "127.0.0.1"  # [--host]
    port: int = 8000  # [--port]
    app_name: str = "ingan"

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ConfigError(problem)

    def problem(self) -> str | None:
        """The first setting that cannot work, as a message naming the flag and the fix."""
        if not self.models:
            return "no MODELS given; pass exported model files (.onnx, .plan) or folders of them"
        if self.models_per_replica < 1:
            return f"--models-per-replica must be at least 1, got {self.models_per_replica}"
        if self.replicas < 1:
            return f"--replicas must be at least 1, got {self.replicas}"
        if self.max_replicas is None and self.min_replicas is not None:
            return "--min-replicas needs --max-replicas (autoscaling runs between the two)"
        if self.max_replicas is not None:
            low = self.min_replicas if self.min_replicas is not None else 1
            if low < 0 or self.max_replicas < max(low, 1):
                return (f"autoscaling needs 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got "
                        f"{low}..{self.max_replicas}")
        for name, value, low in (("--target-ongoing-requests", self.target_ongoing_requests, 0.0),
                                 ("--cpus-per-replica", self.cpus_per_replica, 0.0),
                                 ("--timeout", self.timeout_s, 0.0)):
            if not (math.isfinite(value) and value > low):
                return f"{name} must be a positive number, got {value}"
        if not (math.isfinite(self.gpus_per_replica) and self.gpus_per_replica >= 0):
            return f"--gpus-per-replica must be 0 or more (fractions share a GPU), got {self.gpus_per_replica}"
        if self.gpus_per_replica > 1 and self.gpus_per_replica != int(self.gpus_per_replica):
            return f"--gpus-per-replica above 1 must be a whole number, got {self.gpus_per_replica}"
        if self.threads < 0:
            return f"--threads must be 0 (automatic) or more, got {self.threads}"
        if self.max_pixels < 1:
            return f"--max-pixels must be at least 1, got {self.max_pixels}"
        if self.max_body_bytes < 0:
            return f"--max-body-mib must be 0 or more, got {self.max_body_bytes / 2**20:g}"
        if not 1 <= self.port <= 65535:
            return f"--port must be in 1..65535, got {self.port}"
        return None

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    @property
    def model_threads(self) -> int:
        """ONNX Runtime intra-op threads per model: --threads, else the replica's CPU share."""
        return self.threads or max(1, int(self.cpus_per_replica))

    @property
    def fixed_cpus(self) -> float:
        """CPUs the Retargeter replicas reserve at start (the autoscaling minimum)."""
        count = (self.min_replicas or 0) if self.autoscaling else self.replicas
        return count * self.cpus_per_replica

    def retargeter_options(self) -> dict[str, Any]:
        """Ray Serve deployment options of the Retargeter (what a config's `deployments` holds)."""
        options: dict[str, Any] = {"ray_actor_options": {"num_cpus": self.cpus_per_replica,
                                                         "num_gpus": self.gpus_per_replica}}
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas if self.min_replicas is not None else 1,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    @property
    def proxy_timeout_s(self) -> float:
        return self.timeout_s + PROXY_TIMEOUT_MARGIN_S

    def to_args(self) -> dict[str, Any]:
        """The application settings as plain data: a config file's builder `args`."""
        data = asdict(self)
        return {name: list(data[name]) if name == "models" else data[name] for name in APP_FIELDS}

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> "ServeOptions":
        """Options from a config file's `args` (unknown or mistyped keys are refused by name)."""
        if not isinstance(args, Mapping):
            raise ConfigError(f"the application's args must be a mapping of settings, got {type(args).__name__}")
        unknown = sorted(set(args) - set(APP_FIELDS))
        if unknown:
            raise ConfigError(f"unknown ingan-serve setting(s) {', '.join(unknown)} in the application's args; "
                              f"known: {', '.join(APP_FIELDS)}")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in args.items():
            kind = types[name]
            if name == "models":
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
                        isinstance(v, str) for v in value):
                    raise ConfigError("args.models must be a list of model files or folders")
                values[name] = tuple(value)
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"args.{name} must be true or false, got {value!r}")
                values[name] = value
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"args.{name} must be a whole number, got {value!r}")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"args.{name} must be a number, got {value!r}")
                values[name] = float(value)
        if "models" not in values:
            raise ConfigError("args.models is missing: list the model files or folders to serve")
        return cls(**values)
