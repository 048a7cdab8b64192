"""`memlake mcp`: the Model Context Protocol server, a thin adapter over the Python SDK.

One server process serves one agent: the memlake address, credentials and the scope (user,
agent, session) are fixed when it starts (flags or MEMLAKE_* variables), so a model never
chooses whose memory it reads. Transports: stdio (an agent spawns it) and streamable HTTP.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format

from memlake import memories
from memlake.client import (
    CONFLICT_STATUSES,
    POLICIES,
    RESOLUTIONS,
    TYPES,
    MemlakeClient,
    MemlakeError,
)
from memlake.v1 import memory_pb2 as pb

INSTRUCTIONS = """\
memlake is this agent's long-term memory: what it writes here survives the session.
At the start of a task call get_context with what the task is about. Store durable things as
you learn them: remember_background for stable profile attributes (name, language,
preferences, by key), remember_event for things that happened, remember_conversation_turn for
dialogue worth replaying, remember_reflection for patterns you have inferred (cite the memory
ids that support them), remember_skill for procedures that worked, and assert_fact for
subject-predicate-value statements that may change over time (a changed value becomes a new
version; contradictions may be queued as conflicts). Use search to look things up, and forget
to delete an item the user asks you to delete. All calls are scoped to one user/agent chosen
when this server was started."""


@dataclass
class McpConfig:
    addr: str = "127.0.0.1:50051"
    tenant: str = ""
    api_key: str = ""
    user: str = ""
    agent: str = ""
    session: str = ""
    timeout: float = 30.0


def connect(cfg: McpConfig) -> MemlakeClient:
    """A client with the configured credentials; without an api_key the SDK finds one
    (MEMLAKE_API_KEY, MEMLAKE_API_KEY_FILE, or a local server's bootstrap key)."""
    return MemlakeClient(
        cfg.addr, api_key=cfg.api_key or None, tenant=cfg.tenant, timeout=cfg.timeout
    )


def _dict(msg) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _memory(m: pb.Memory) -> dict[str, Any]:
    d = _dict(m)
    d.pop("scope", None)  # the scope is this server's, the model need not see it
    d["type"] = pb.MemoryType.Name(m.type).removeprefix("MEMORY_TYPE_")
    return d


def _when(s: str | None, field: str) -> datetime | None:
    if not s:
        return None
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} must be an ISO 8601 date or time, e.g. 2024-05-01") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


TypeName = Literal["background", "fact", "event", "conversation", "reflection", "skill"]


def build_server(cfg: McpConfig, client: MemlakeClient | None = None):
    """The MCP server with every memlake tool registered."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    c = client or connect(cfg)
    # Reads span every session of the user/agent; the session only picks the context's tail.
    sc = pb.Scope(user_id=cfg.user, agent_id=cfg.agent)
    ctx_scope = pb.Scope(user_id=cfg.user, agent_id=cfg.agent, session_id=cfg.session)
    src = pb.Source(kind="mcp", actor=cfg.agent or "mcp", session_id=cfg.session)
    server = MCPServer(name="memlake", instructions=INSTRUCTIONS, version="0.1.0")

    def tool():
        """server.tool(), with memlake's errors shown to the model as tool errors."""

        def register(fn):
            @functools.wraps(fn)
            def wrapped(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except MemlakeError as exc:
                    where = f" (field {exc.field})" if exc.field else ""
                    raise ToolError(f"{exc.code}: {exc.message}{where}") from None
                except ValueError as exc:
                    raise ToolError(f"INVALID_ARGUMENT: {exc}") from None

            return server.tool()(wrapped)

        return register

    # Read your own writes: searches wait until this connection's last write is indexed.
    last = {"seq": 0}

    def saw(seq: int) -> int:
        last["seq"] = max(last["seq"], seq)
        return seq

    def written(r) -> dict[str, Any]:
        saw(r.seq)
        return {
            "id": r.memory.id,
            "seq": r.seq,
            "outcome": pb.WriteOutcome.Name(r.outcome).removeprefix("WRITE_OUTCOME_"),
        }

    @tool()
    def remember_event(
        content: str, occurred_at: str | None = None, importance: float = 0.0
    ) -> dict[str, Any]:
        """Store something that happened (a meeting, a deployment, a decision).

        content: one self-contained sentence, e.g. "Met Bob at the Lisbon conference".
        occurred_at: when it happened, ISO 8601 (e.g. "2024-05-01" or
        "2024-05-01T14:00:00Z"); default now.
        importance: 0..1, how much it should weigh in later retrieval.
        Returns the new memory id and the write sequence number."""
        m = memories.event(
            content,
            occurred_at=_when(occurred_at, "occurred_at"),
            user=cfg.user,
            agent=cfg.agent,
            session=cfg.session,
            importance=importance,
            source=src,
        )
        return written(c.remember(m))

    @tool()
    def remember_background(key: str, content: str) -> dict[str, Any]:
        """Store a stable profile attribute of the user or agent, by key.

        key: a short snake_case name such as "name", "language", "answer_style".
        content: the attribute as a sentence, e.g. "Alice prefers answers in French".
        Writing an existing key replaces its value (the old one is kept as history).
        Background items are always included in get_context."""
        m = memories.background(key, content, user=cfg.user, agent=cfg.agent, source=src)
        return written(c.remember(m))

    @tool()
    def remember_conversation_turn(
        content: str, speaker: str, session_id: str | None = None
    ) -> dict[str, Any]:
        """Store one turn of a conversation worth replaying later.

        content: what was said. speaker: who said it ("user", "assistant" or a name).
        session_id: the conversation it belongs to (default: this server's session)."""
        session = session_id or cfg.session
        if not session:
            raise ValueError("session_id is required (this server was started without one)")
        m = memories.turn(
            content, session=session, speaker=speaker, user=cfg.user, agent=cfg.agent, source=src
        )
        return written(c.remember(m))

    @tool()
    def remember_reflection(
        key: str, content: str, confidence: float, evidence_memory_ids: list[str]
    ) -> dict[str, Any]:
        """Store a behavioural pattern you inferred about the user or agent.

        key: a short name for the pattern, e.g. "answer_style"; the same key updates it.
        content: the pattern, e.g. "Prefers short answers with code first".
        confidence: 0..1, how sure you are.
        evidence_memory_ids: ids of stored memories that support it (at least one; ids come
        from remember_* results or search)."""
        m = memories.reflection(
            key,
            content,
            confidence=confidence,
            evidence=evidence_memory_ids,
            user=cfg.user,
            agent=cfg.agent,
            source=src,
        )
        return written(c.remember(m))

    @tool()
    def remember_skill(
        name: str, description: str, steps: list[str], outcome_notes: str = ""
    ) -> dict[str, Any]:
        """Store a reusable procedure that worked, by name.

        name: e.g. "deploy_service". description: what it achieves and when to use it.
        steps: the ordered steps. outcome_notes: caveats learned when running it.
        The same name stores a new revision."""
        m = memories.skill(
            name,
            description,
            steps=steps,
            outcome_notes=outcome_notes,
            user=cfg.user,
            agent=cfg.agent,
            source=src,
        )
        return written(c.remember(m))

    @tool()
    def search(
        query: str,
        types: list[TypeName] | None = None,
        top_k: int = 10,
        include_history: bool = False,
    ) -> dict[str, Any]:
        """Find stored memories relevant to a question, best first.

        query: natural language, e.g. "where does alice live".
        types: restrict to these memory types (default all).
        top_k: how many results (1..200).
        include_history: also return replaced versions of facts and profile attributes.
        Each result has the memory (id, type, content, attributes) and a score; a fact
        marked conflicted is disputed."""
        r = c.search(
            query,
            scope=sc,
            types=[TYPES[t] for t in types or ()],
            top_k=top_k,
            include_history=include_history,
            min_seq=last["seq"],
        )
        return {
            "results": [
                {
                    "score": round(x.score, 4),
                    "conflicted": x.conflicted,
                    "memory": _memory(x.memory),
                }
                for x in r.results
            ]
        }

    @tool()
    def get_context(intent: str = "", token_budget: int = 1000) -> dict[str, Any]:
        """What to know before starting a task: profile attributes first, then the memories
        most relevant to the intent, then the active session's last turns, within a token
        budget. Call it at the start of a task.

        intent: what the task is about, e.g. "plan a trip to Lisbon".
        token_budget: upper bound on the size of the rendered text.
        Returns `rendered` (text ready to read) and the item ids."""
        r = c.context(
            scope=ctx_scope, intent=intent, token_budget=token_budget, min_seq=last["seq"]
        )
        return {
            "rendered": r.rendered,
            "token_count": r.token_count,
            "items": [
                {"id": it.memory.id, "reason": it.reason, "conflicted": it.conflicted}
                for it in r.items
            ],
        }

    @tool()
    def assert_fact(
        subject: str,
        predicate: str,
        value: str,
        valid_from: str | None = None,
        valid_to: str | None = None,
        confidence: float = 0.0,
        policy: Literal["supersede", "reject", "review"] | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Record a fact as subject / predicate / value, e.g. ("alice", "lives_in", "Paris").

        The fact is checked against what is already believed for (subject, predicate): the
        same value is a DUPLICATE; a different value is a conflict, decided by policy:
        supersede (the newer valid_from wins, the old version is kept as history), reject
        (an error naming the current value) or review (both kept, a conflict is queued; see
        list_conflicts). Default: the tenant's policy.
        valid_from / valid_to: ISO 8601 dates when the fact is true in the world (default
        open-ended). reason: why you assert it (kept in the audit log).
        Returns the outcome (CREATED, DUPLICATE, UPDATED, RECORDED_AS_HISTORY,
        CONFLICT_QUEUED), the stored version and the previous one."""
        r = c.assert_fact(
            subject,
            predicate,
            value,
            scope=sc,
            valid_from=_when(valid_from, "valid_from"),
            valid_to=_when(valid_to, "valid_to"),
            confidence=confidence,
            policy=POLICIES[policy] if policy else 0,
            source=src,
            reason=reason,
        )
        saw(r.seq)
        out: dict[str, Any] = {
            "outcome": pb.WriteOutcome.Name(r.outcome).removeprefix("WRITE_OUTCOME_"),
            "fact": _fact(r.fact),
        }
        if r.HasField("previous"):
            out["previous"] = _fact(r.previous)
        if r.conflict_id:
            out["conflict_id"] = r.conflict_id
        return out

    @tool()
    def fact_history(subject: str, predicate: str) -> dict[str, Any]:
        """Every version of a fact, oldest first, with its status (CURRENT, SUPERSEDED,
        CONFLICTED, RETRACTED), valid time, record time and whether it is still believed."""
        return {"versions": [_fact(f) for f in c.fact_history(subject, predicate, scope=sc)]}

    @tool()
    def list_conflicts(
        status: Literal["open", "resolved", "dismissed"] = "open",
    ) -> dict[str, Any]:
        """Fact conflicts waiting for a decision (status open), or decided ones.
        Each conflict lists the competing fact versions with their ids."""
        r = c.list_conflicts(scope=sc, status=CONFLICT_STATUSES[status], page_size=100)
        return {"conflicts": [_conflict(x) for x in r.conflicts]}

    @tool()
    def resolve_conflict(
        conflict_id: str,
        resolution: Literal["keep-one", "keep-both", "dismiss"],
        keep_fact_id: str = "",
        reason: str = "",
    ) -> dict[str, Any]:
        """Decide a queued fact conflict.

        keep-one: keep_fact_id becomes the believed version, the others are superseded;
        keep-both: both are true (e.g. two addresses); dismiss: not a real conflict.
        reason: why (kept in the audit log)."""
        r = c.resolve_conflict(
            conflict_id,
            RESOLUTIONS[resolution],
            keep_fact_id=keep_fact_id,
            actor=src.actor,
            reason=reason,
        )
        return _conflict(r.conflict)

    @tool()
    def get_by_key(type: Literal["background", "reflection", "skill"], key: str) -> dict[str, Any]:
        """Read the current profile attribute (background) or reflection by its key, or a
        skill by its name, exactly; e.g. type "skill", key "deploy_service" returns its
        steps. Fails with NOT_FOUND when there is none."""
        m = c.get_by_key(type, key, scope=sc)
        return {"memory": _memory(m)}

    @tool()
    def forget(memory_id: str) -> dict[str, Any]:
        """Delete one stored memory by id (from remember_* or search results). Use when the
        user asks for something to be forgotten; it is gone from search at once."""
        return {"forgotten": memory_id, "seq": saw(c.forget(memory_id))}

    server.memlake_client = c  # type: ignore[attr-defined]
    return server


def _fact(f) -> dict[str, Any]:
    d = _dict(f)
    d.pop("scope", None)
    d["status"] = pb.FactStatus.Name(f.status).removeprefix("FACT_STATUS_")
    d["believed"] = not f.HasField("record_end_time")
    return d


def _conflict(x) -> dict[str, Any]:
    from memlake.v1 import versioning_service_pb2 as vpb

    d = _dict(x)
    d["kind"] = vpb.ConflictKind.Name(x.kind).removeprefix("CONFLICT_KIND_")
    d["status"] = vpb.ConflictStatus.Name(x.status).removeprefix("CONFLICT_STATUS_")
    d["facts"] = [_fact(f) for f in x.facts]
    return d


def serve(
    cfg: McpConfig, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765
) -> None:
    if transport != "stdio" and not _loopback(host):
        # Whoever reaches the port acts with this server's key: only this machine may.
        raise SystemExit(
            f"memlake mcp: refusing to listen on {host}: MCP over HTTP carries this server's "
            "API key and has no authentication of its own, so it binds a loopback address "
            "only (127.0.0.1, ::1, localhost)"
        )
    server = build_server(cfg)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
