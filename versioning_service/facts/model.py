"""A fact store's inputs and outputs (FactIn, AssertResult, Page), request checks and
policy names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memlake.v1 import memory_pb2 as pb
from shared.db.models import (
    FactKey,
    FactVersion,
)
from shared.embedding import Embedder
from shared.errors import InvalidArgument
from versioning_service.versions import (
    FREE_TEXT_PREFIX,
)

SUPERSEDE, REJECT, REVIEW = (
    pb.CONFLICT_POLICY_SUPERSEDE,
    pb.CONFLICT_POLICY_REJECT,
    pb.CONFLICT_POLICY_REVIEW,
)
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure


def parse_policy(name: str) -> int:
    """ "SUPERSEDE" / "reject" / "CONFLICT_POLICY_REVIEW" -> enum value."""
    n = name.strip().upper().removeprefix("CONFLICT_POLICY_")
    try:
        value = pb.ConflictPolicy.Value(f"CONFLICT_POLICY_{n}")
    except ValueError:
        raise ValueError(
            f"unknown conflict policy {name!r}; use SUPERSEDE, REJECT or REVIEW"
        ) from None
    if not value:
        raise ValueError("the default conflict policy must be SUPERSEDE, REJECT or REVIEW")
    return value


def status_name(value: int) -> str:
    return pb.FactStatus.Name(value).removeprefix("FACT_STATUS_")


def policy_name(value: int) -> str:
    return pb.ConflictPolicy.Name(value).removeprefix("CONFLICT_POLICY_")


@dataclass
class FactIn:
    user_id: str
    agent_id: str
    subject: str
    predicate: str
    value: str
    typed_value: Any = None
    confidence: float = 1.0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: dict[str, Any] | None = None
    actor: str = ""
    reason: str = ""
    importance: float = 0.5


@dataclass
class AssertResult:
    version: FactVersion
    outcome: int
    previous: FactVersion | None
    key: FactKey
    seq: int = 0
    conflict_id: int | None = None


@dataclass
class Page:
    rows: list
    keys: dict[int, FactKey]
    next_after: int | None


class _Vector:
    """A fact's embedding, computed at most once and only when needed."""

    def __init__(self, embedder: Embedder, text: str) -> None:
        self.embedder, self.text, self.vec = embedder, text, None

    def get(self):
        if self.vec is None:
            self.vec = self.embedder.embed_one(self.text)
        return self.vec


def validate(f: FactIn) -> None:
    if not f.subject.strip():
        raise InvalidArgument("subject", "is required")
    if not f.value.strip():
        raise InvalidArgument("value", "is required")
    if not 0.0 <= f.confidence <= 1.0:
        raise InvalidArgument("confidence", "must be within [0, 1]")
    if f.valid_from and f.valid_to and f.valid_to <= f.valid_from:
        raise InvalidArgument("valid_to", "must be after valid_from")
    if len(f.subject) > 512:
        raise InvalidArgument("subject", "is at most 512 characters")
    if len(f.predicate) > 256:
        raise InvalidArgument("predicate", "is at most 256 characters")
    if f.predicate.strip().startswith(FREE_TEXT_PREFIX):
        raise InvalidArgument(
            "predicate", f"must not start with {FREE_TEXT_PREFIX!r} (free-text fact keys)"
        )


def page_limit(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE, MAX_PAGE)
