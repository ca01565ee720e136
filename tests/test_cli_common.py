"""Shared CLI behaviour: SIGTERM inside a command cleans up unfinished atomic writes."""

from __future__ import annotations

import os
import signal

import pytest

from ingan.cli.common import user_errors
from ingan.fsutil import atomic_path


def test_sigterm_exits_143_and_removes_temporary_files(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        with user_errors(), atomic_path(tmp_path / "out.onnx") as tmp:
            tmp.write_bytes(b"half written")
            os.kill(os.getpid(), signal.SIGTERM)
    assert exited.value.code == 143
    assert list(tmp_path.iterdir()) == []  # neither the temporary file nor a partial output
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is restored
