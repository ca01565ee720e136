"""Assertions shared by the CLI tests (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations


def one_line_error(result, text: str) -> None:
    """Exit 1 and exactly one error line, the last one, containing `text`; no traceback.

    Progress lines may precede it: the error is what a user must see.
    """
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and text in errors[0], result.output
    assert "Traceback" not in result.output


def usage_error(result, text: str) -> None:
    """Exit 2 with click's usage lines and one 'Error: ...' line containing `text`; no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Usage: ") and lines[-1].startswith("Error: ") and text in lines[-1], result.output
    assert "Traceback" not in result.output
