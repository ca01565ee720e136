"""The serving path never imports torch: every serve module, a replica's load-run-encode, the client."""

from __future__ import annotations

import pytest
import os
import subprocess
import sys

import ingan


@pytest.mark.slow
def test_serving_never_imports_torch(served_models):
    code = (
        "import asyncio, sys\n"
        "import ingan.serve.app, ingan.serve.cli, ingan.serve.config, ingan.serve.remote, ingan.serve.server\n"
        "from ingan.serve import protocol\n"
        "from ingan.serve.catalog import scan\n"
        "from ingan.serve.replica import ModelPool\n"
        f"catalog = scan([{str(served_models)!r}])\n"
        "pool = ModelPool(catalog, 'cpu', 1, False)\n"
        "async def get_model(model_id):\n"
        "    return pool.open(model_id)\n"
        "pool.get_model = get_model\n"
        "job = protocol.parse_retarget(catalog.get('alpha'), 'size=64x48&format=webp', b'', 10**6)\n"
        "assert asyncio.run(pool.retarget(job)).status == 200\n"
        "print('torch' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(ingan.__file__)))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_the_client_needs_neither_ray_nor_a_model_runtime():
    code = ("import sys\n"
            "import ingan.serve.client, ingan.serve.remote\n"
            "print(sorted(m for m in ('ray', 'torch', 'onnxruntime') if m in sys.modules))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(ingan.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
