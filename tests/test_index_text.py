"""The text a memory is embedded and indexed by (shared/text.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memlake.v1 import memory_pb2 as pb
from shared.text import index_text


def test_dates_read_as_strftime_would_write_them():
    """The date cue is written without strftime; it must not change a stored text (a
    rebuilt index and the embedder's cache key on it)."""
    day = datetime(1999, 12, 25, 10, 30, tzinfo=UTC)
    for k in range(0, 400 * 31, 29):
        when = day + timedelta(days=k)
        assert index_text(pb.MEMORY_TYPE_EVENT, "x", {}, when) == f"{when.day} {when:%B %Y} x"
    turn = index_text(pb.MEMORY_TYPE_CONVERSATION, "hi", {"speaker": "Ann"}, day)
    assert turn == "[25 December 1999] Ann: hi"
    assert index_text(pb.MEMORY_TYPE_EVENT, "x", {}, None) == "x"
