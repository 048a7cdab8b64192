"""What a caller who may write a scope but not read it gets back: its own write, and no
value already stored there (in answers, idempotent replays and error messages)."""

from __future__ import annotations

from memlake.v1 import memory_pb2 as pb
from shared.auth.grants import READ
from shared.auth.identity import caller
from shared.errors import MemlakeError


def reads_facts(user_id: str, agent_id: str) -> bool:
    """Whether the caller may read the FACTs of this scope."""
    return caller().can(READ, pb.MEMORY_TYPE_FACT, user_id, agent_id)


def blank_fact(f) -> None:
    """Clears a memlake.v1.Fact's stored value (its id, key, status and times stay)."""
    f.ClearField("value")
    f.ClearField("typed_value")
    del f.sources[:]


def writer_error(exc: MemlakeError, message: str) -> MemlakeError:
    """The same status and reason, without the message or details that carry stored data."""
    out = MemlakeError(message, field=exc.field, reason=exc.reason)
    out.code_name = exc.code_name
    return out
