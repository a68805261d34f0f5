"""The attempt's files: bounded tails of output, the last line of stderr."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.execution.files import last_line, read_tail


@settings(deadline=None)  # it touches the disk; timing is not the point
@given(text=st.text(), limit=st.integers(min_value=0, max_value=64))
def test_a_tail_is_a_bounded_suffix_of_the_text(text: str, limit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.log"
        path.write_bytes(text.encode())
        tail = read_tail(str(path), limit)
    assert len(tail.encode()) <= limit
    assert text.endswith(tail)
    assert len(tail.encode()) > limit - 4 or tail == text  # at most a cut character is dropped


def test_a_missing_file_has_an_empty_tail(tmp_path: Path) -> None:
    assert read_tail(str(tmp_path / "none"), 100) == ""


def test_last_line_skips_blank_lines_and_shortens_long_ones() -> None:
    assert last_line("first\nsecond error  \n\n  \n") == "second error"
    assert last_line("") == ""
    long = last_line("x" * 2000)
    assert len(long) == 500 and long.endswith("...")
