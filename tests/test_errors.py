"""The one-line error conventions."""

from __future__ import annotations

from ingan.errors import first_line


def test_first_line_keeps_short_messages_whole():
    assert first_line(ValueError("bad thing\nsecond line")) == "bad thing"
    assert first_line(ValueError("")) == "ValueError"


def test_first_line_shortens_at_a_word_and_says_so():
    text = "word " * 100
    short = first_line(ValueError(text), 60)
    assert short.endswith(" ...") and len(short) <= 64
    assert short[:-4].split(" ")[-1] == "word"  # never a cut word
    assert first_line(ValueError("x" * 500), 60) == "x" * 60 + " ..."  # no space to cut at: marked
