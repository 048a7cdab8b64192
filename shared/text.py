"""The text a memory is embedded and indexed by: its content plus the cues its type carries
(speaker and date for a turn, key or name for keyed items). One definition for ingest and
index, so a rebuilt index matches the live one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from memlake.v1 import memory_pb2 as pb

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


def _date(dt: datetime | None) -> str:
    """'7 May 2023' (as f"{dt.day} {dt:%B %Y}" in the C locale, without strftime's cost:
    every memory written and indexed passes here)."""
    return f"{dt.day} {_MONTHS[dt.month - 1]} {dt.year}" if dt else ""


def speaker_of(attributes: dict[str, Any]) -> str:
    a = attributes or {}
    return a.get("speaker") or a.get("role") or ""


def index_text(type_: int, content: str, attributes: dict[str, Any], when: datetime | None) -> str:
    a = attributes or {}
    if type_ == pb.MEMORY_TYPE_CONVERSATION:
        who = speaker_of(a)
        date = f"[{_date(when)}] " if when else ""
        return f"{date}{who}: {content}" if who else f"{date}{content}"
    if type_ == pb.MEMORY_TYPE_EVENT:
        return f"{_date(when)} {content}".strip()
    if type_ == pb.MEMORY_TYPE_SKILL:
        steps = " ".join(a.get("steps", []))
        return f"{a.get('name', '')}: {content} {steps}".strip()
    if type_ in (pb.MEMORY_TYPE_BACKGROUND, pb.MEMORY_TYPE_REFLECTION):
        return f"{a.get('key', '')}: {content}"
    return content
