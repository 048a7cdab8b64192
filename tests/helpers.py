from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memlake.client import MemlakeError, scope, ts
from memlake.v1 import memory_pb2 as pb


def event(content: str, user: str = "u1", when: datetime | None = None, **kw) -> pb.Memory:
    m = pb.Memory(type=pb.MEMORY_TYPE_EVENT, content=content, scope=scope(user), **kw)
    m.occur_time.CopyFrom(ts(when or datetime.now(UTC)))
    m.event.SetInParent()
    return m


def background(key: str, content: str, user: str = "u1") -> pb.Memory:
    m = pb.Memory(type=pb.MEMORY_TYPE_BACKGROUND, content=content, scope=scope(user))
    m.background.key = key
    return m


def turn(content: str, session: str, user: str = "u1", speaker: str = "user") -> pb.Memory:
    m = pb.Memory(
        type=pb.MEMORY_TYPE_CONVERSATION, content=content, scope=scope(user, session_id=session)
    )
    m.conversation.speaker = speaker
    return m


def skill(name: str, steps: list[str], content: str = "", user: str = "u1") -> pb.Memory:
    m = pb.Memory(type=pb.MEMORY_TYPE_SKILL, content=content or f"how to {name}", scope=scope(user))
    m.skill.name = name
    m.skill.steps.extend(steps)
    return m


def reflection(
    key: str, content: str, confidence: float, evidence: list[str], user: str = "u1"
) -> pb.Memory:
    m = pb.Memory(type=pb.MEMORY_TYPE_REFLECTION, content=content, scope=scope(user))
    m.reflection.key = key
    m.reflection.confidence = confidence
    m.reflection.evidence_memory_ids.extend(evidence)
    return m


def expect_error(code: str, field: str | None = None):
    """Context manager: the call fails with this status code (and names this field)."""

    class _Ctx:
        def __enter__(self):
            self._raises = pytest.raises(MemlakeError)
            self.info = self._raises.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._raises.__exit__(*exc)
            err = self.info.value
            assert err.code == code, f"expected {code}, got {err.code}: {err.message}"
            if field is not None:
                assert err.field == field, f"expected field {field!r}, got {err.field!r}"
            return handled

    return _Ctx()


def ranking_index(items, dim: int, t0: datetime):
    """An in-process index (no services) of items (type, content, vector, attributes); ids
    from 1, created a minute apart from t0, each conversation turn its own session."""
    from retrieval_service.index import IndexManager
    from shared.db.models import MemoryRecord
    from shared.embedding import to_bytes

    index = IndexManager(None, dim, embed_model="test", ann_threshold=10**9)
    for i, (type_, content, vec, attrs) in enumerate(items):
        conv = type_ == pb.MEMORY_TYPE_CONVERSATION
        rec = MemoryRecord(
            id=i + 1, tenant="t", type=type_, user_id="u", agent_id="",
            session_id=f"s{i}" if conv else "", content=content, attributes=attrs,
            importance=0.5, source={}, create_time=t0 + timedelta(minutes=i),
            occur_time=None, expire_time=None, turn_index=0 if conv else None, etag="e",
            current=True, revision=1, conflicted=False,
        )  # fmt: skip
        rec.embedding = to_bytes(np.asarray(vec, dtype=np.float32))
        index._put(rec)
    return index


def both_paths(p, f, qvec, query: str, want: int = 20):
    """A partition's candidates on the graph path and on the exact path, and where each
    graph candidate stands among the exact ones (every graph candidate is one)."""
    p.ann_threshold = 500
    g = p.candidates(f, 0.0, qvec, query, want=want)
    p.ann_threshold = 10**9
    e = p.candidates(f, 0.0, qvec, query, want=want)
    assert g is not None and not g.exact and e.exact
    at = np.searchsorted(e.rows, g.rows)
    assert np.array_equal(e.rows[at], g.rows)  # graph candidates are rows exact sees
    return g, e, at
