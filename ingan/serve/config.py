"""The Ray Serve config file `ingan-serve --write-config` writes, for `serve run` / `serve deploy`.

Operators deploy the application the Ray way from it. The application's own settings are the
builder's `args` (MODELS are scanned by `ingan.serve.app:build_app` where the config is
deployed, so the paths must exist on the cluster); scaling and resources are Ray's own
per-deployment options, which operators may edit (Ray's options in `deployments` win over
the builder's). Every file written is first checked against Ray's own schema
(`ray.serve.schema.ServeDeploySchema`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ingan.errors import ConfigError, MissingDependencyError, first_line
from ingan.fsutil import atomic_path
from ingan.serve.options import ServeOptions

IMPORT_PATH = "ingan.serve.app:build_app"
HEADER = """\
# Ray Serve config for ingan-serve, written by `ingan-serve --write-config` (docs/serve.md).
# Deploy:  serve run {name}            (foreground; Ctrl-C stops it)
#          serve deploy {name}         (onto a running cluster: ray start --head first)
# args: the application (models are scanned where it is deployed: the paths must exist on
# every node); deployments: Ray's scaling and resources for each deployment.
"""


def serve_config(options: ServeOptions) -> dict[str, Any]:
    """The config document (a `ServeDeploySchema`) for one ingan application."""
    retargeter = {"name": "Retargeter", **options.retargeter_options()}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": options.host, "port": options.port, "request_timeout_s": options.proxy_timeout_s},
        "applications": [{
            "name": options.app_name,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "args": options.to_args(),
            "deployments": [retargeter],
        }],
    }


def check_config(document: Any) -> None:
    """Raise ConfigError unless Ray's own schema accepts the document."""
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        raise MissingDependencyError("ray[serve]", "serve", "Checking a Ray Serve config") from None
    try:
        ServeDeploySchema.model_validate(document)
    except Exception as exc:  # pydantic's ValidationError
        raise ConfigError(f"the Ray Serve config does not pass Ray's schema: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    """'where: what' of a pydantic error's first problem (its own first line only counts them)."""
    try:
        errors = exc.errors()  # type: ignore[attr-defined]
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{where}: {first['msg']}{more}"
    except (AttributeError, IndexError, KeyError, TypeError):
        return first_line(exc)


def write_config(options: ServeOptions, path: str | os.PathLike[str]) -> Path:
    """Write the YAML config atomically, after checking it against Ray's schema."""
    import yaml

    document = serve_config(options)
    check_config(document)
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(HEADER.format(name=target.name) + yaml.safe_dump(document, sort_keys=False))
    return target
