"""Builders for each memory type, taking plain Python values (datetimes, lists).

from memlake import memories
c.remember(memories.event("Deployed v2", user="alice", occurred_at=datetime.now(UTC)))
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from memlake.v1 import memory_pb2 as pb


def _base(
    type_: int,
    content: str,
    user: str,
    agent: str,
    session: str,
    importance: float,
    source: pb.Source | None,
    expires_at: datetime | None,
) -> pb.Memory:
    m = pb.Memory(
        type=type_,
        content=content,
        scope=pb.Scope(user_id=user, agent_id=agent, session_id=session),
        importance=importance,
    )
    if source is not None:
        m.source.CopyFrom(source)
    if expires_at is not None:
        m.expire_time.FromDatetime(_utc(expires_at))
    return m


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def event(
    content: str,
    *,
    occurred_at: datetime | None = None,
    user: str = "",
    agent: str = "",
    session: str = "",
    kind: str = "",
    location: str = "",
    participants: Sequence[str] = (),
    importance: float = 0.0,
    source: pb.Source | None = None,
    expires_at: datetime | None = None,
) -> pb.Memory:
    """Something that happened; occurred_at defaults to now (the server requires one)."""
    m = _base(pb.MEMORY_TYPE_EVENT, content, user, agent, session, importance, source, expires_at)
    m.occur_time.FromDatetime(_utc(occurred_at or datetime.now(UTC)))
    m.event.kind, m.event.location = kind, location
    m.event.participants.extend(participants)
    return m


def background(
    key: str,
    content: str,
    *,
    user: str = "",
    agent: str = "",
    importance: float = 0.0,
    source: pb.Source | None = None,
) -> pb.Memory:
    """A profile attribute; a later write with the same key replaces it (history kept)."""
    m = _base(pb.MEMORY_TYPE_BACKGROUND, content, user, agent, "", importance, source, None)
    m.background.key = key
    return m


def turn(
    content: str,
    *,
    session: str,
    speaker: str = "",
    role: str = "",
    user: str = "",
    agent: str = "",
    occurred_at: datetime | None = None,
    importance: float = 0.0,
    source: pb.Source | None = None,
) -> pb.Memory:
    """One conversation turn of a session."""
    m = _base(pb.MEMORY_TYPE_CONVERSATION, content, user, agent, session, importance, source, None)
    m.conversation.speaker, m.conversation.role = speaker, role
    if occurred_at is not None:
        m.occur_time.FromDatetime(_utc(occurred_at))
    return m


def reflection(
    key: str,
    content: str,
    *,
    confidence: float,
    evidence: Sequence[str],
    user: str = "",
    agent: str = "",
    importance: float = 0.0,
    source: pb.Source | None = None,
) -> pb.Memory:
    """A learned pattern with the ids of the memories that support it (at least one)."""
    m = _base(pb.MEMORY_TYPE_REFLECTION, content, user, agent, "", importance, source, None)
    m.reflection.key, m.reflection.confidence = key, confidence
    m.reflection.evidence_memory_ids.extend(evidence)
    return m


def skill(
    name: str,
    content: str,
    *,
    steps: Sequence[str],
    inputs: Sequence[str] = (),
    outcome_notes: str = "",
    user: str = "",
    agent: str = "",
    importance: float = 0.0,
    source: pb.Source | None = None,
) -> pb.Memory:
    """A named procedure; a later write with the same name is a new revision."""
    m = _base(pb.MEMORY_TYPE_SKILL, content, user, agent, "", importance, source, None)
    m.skill.name, m.skill.outcome_notes = name, outcome_notes
    m.skill.steps.extend(steps)
    m.skill.inputs.extend(inputs)
    return m
