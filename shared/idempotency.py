"""request_id idempotency: a retry gets the response stored for its first attempt."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from shared.db.models import IdempotencyKey
from shared.errors import AlreadyExists, FailedPrecondition


@dataclass
class Replay:
    """A request_id seen before: the serialized response it got."""

    data: bytes


def fingerprint(request: Message) -> str:
    """Identifies a request's content, so a reused request_id with other content is refused."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()[:32]


def prior_response(s: Session, tenant: str, request_id: str, fp: str) -> bytes | None:
    """The stored response for (tenant, request_id), or None if it was not seen before.
    An emptied response (what it wrote was forgotten) is FAILED_PRECONDITION."""
    prior = s.get(IdempotencyKey, (tenant, request_id))
    if prior is None:
        return None
    if prior.fingerprint != fp:
        raise AlreadyExists(
            f"request_id {request_id!r} was already used for a different request",
            reason="REQUEST_ID_REUSED",
        )
    if not prior.response:
        raise FailedPrecondition(
            f"request_id {request_id!r} wrote a memory that has since been forgotten",
            reason="REQUEST_FORGOTTEN",
        )
    return prior.response
