"""Per-type validation and write semantics. No grpc here: errors are shared.errors."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from shared import changelog
from shared.auth.sql import granted_sql
from shared.cache import Cache, safe
from shared.convert import record_to_proto
from shared.db.bulk import insert_rows
from shared.db.engine import Database, lock_key
from shared.db.models import ChangeLogEntry, IdempotencyKey, MemoryRecord
from shared.db.types import utcnow
from shared.embedding import Embedder, to_bytes
from shared.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    MemlakeError,
    NotFound,
)
from shared.idempotency import Replay, prior_response
from shared.privacy import stores
from shared.privacy.erase import Eraser
from shared.tails import refill_session_tail, session_tail_key
from shared.text import index_text

log = logging.getLogger("memlake.ingest")
CONV = pb.MEMORY_TYPE_CONVERSATION
# Types whose write is a plain append (no key to look up, no version to replace).
APPEND_TYPES = (pb.MEMORY_TYPE_EVENT, pb.MEMORY_TYPE_CONVERSATION)

MAX_CONTENT_CHARS = 32_000
KEYED = {
    pb.MEMORY_TYPE_BACKGROUND: "key",
    pb.MEMORY_TYPE_REFLECTION: "key",
    pb.MEMORY_TYPE_SKILL: "name",
}


@dataclass
class MemoryIn:
    """A validated-shape write request, independent of protobuf."""

    type: int
    content: str
    user_id: str = ""
    agent_id: str = ""
    session_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    importance: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)
    occur_time: datetime | None = None
    expire_time: datetime | None = None
    request_id: str = ""
    # Hash of the whole request, so a reused request_id with other content is refused.
    fingerprint: str = ""
    # The writer's read grants (shared.auth): REFLECTION evidence must be among what it
    # may read, else it looks absent. None: no restriction.
    readable: tuple | None = None
    # occur_time was not given: the turn takes its write time, so time order = turn order.
    auto_time: bool = False
    # A client-supplied embedding (checked and normalised); the content is then not embedded.
    vector: np.ndarray | None = None


@dataclass
class WriteResult:
    record: MemoryRecord
    seq: int
    outcome: int
    response: Any = None  # the servicer's protobuf response, built once


def validate(item: MemoryIn, prefix: str = "memory") -> None:
    """Raises InvalidArgument naming the first bad field."""
    if item.type not in KEYED and item.type not in (
        pb.MEMORY_TYPE_EVENT,
        pb.MEMORY_TYPE_CONVERSATION,
        pb.MEMORY_TYPE_FACT,
    ):
        raise InvalidArgument(f"{prefix}.type", "must be one of the six memory types")
    if not item.content.strip():
        raise InvalidArgument(f"{prefix}.content", "must not be empty")
    if len(item.content) > MAX_CONTENT_CHARS:
        raise InvalidArgument(f"{prefix}.content", f"longer than {MAX_CONTENT_CHARS} characters")
    if not 0.0 <= item.importance <= 1.0:
        raise InvalidArgument(f"{prefix}.importance", "must be within [0, 1]")
    for name in ("user_id", "agent_id", "session_id"):
        if len(getattr(item, name)) > 256:
            raise InvalidArgument(f"{prefix}.scope.{name}", "longer than 256 characters")
    if item.expire_time and item.occur_time and item.expire_time <= item.occur_time:
        raise InvalidArgument(f"{prefix}.expire_time", "must be after occur_time")
    a = item.attributes
    t = item.type
    if t == pb.MEMORY_TYPE_BACKGROUND and not str(a.get("key", "")).strip():
        raise InvalidArgument(f"{prefix}.background.key", "is required for BACKGROUND")
    if t == pb.MEMORY_TYPE_EVENT and item.occur_time is None:
        raise InvalidArgument(f"{prefix}.occur_time", "is required for EVENT")
    if t == pb.MEMORY_TYPE_CONVERSATION and not item.session_id:
        raise InvalidArgument(f"{prefix}.scope.session_id", "is required for CONVERSATION")
    if t == pb.MEMORY_TYPE_REFLECTION:
        if not str(a.get("key", "")).strip():
            raise InvalidArgument(f"{prefix}.reflection.key", "is required for REFLECTION")
        conf = float(a.get("confidence", 0.0))
        if not 0.0 < conf <= 1.0:
            raise InvalidArgument(f"{prefix}.reflection.confidence", "must be within (0, 1]")
        ev = a.get("evidence_memory_ids") or []
        if not ev:
            raise InvalidArgument(
                f"{prefix}.reflection.evidence_memory_ids", "at least one evidence link is required"
            )
        for i, mid in enumerate(ev):
            if not str(mid).isdigit():
                raise InvalidArgument(
                    f"{prefix}.reflection.evidence_memory_ids[{i}]", "is not a memory id"
                )
    if t == pb.MEMORY_TYPE_SKILL:
        if not str(a.get("name", "")).strip():
            raise InvalidArgument(f"{prefix}.skill.name", "is required for SKILL")
        steps = a.get("steps") or []
        if not steps or any(not str(s).strip() for s in steps):
            raise InvalidArgument(
                f"{prefix}.skill.steps", "at least one non-empty step is required"
            )
    if t == pb.MEMORY_TYPE_FACT:
        if not str(a.get("subject", "")).strip():
            raise InvalidArgument(f"{prefix}.fact.subject", "is required for FACT")
        if not str(a.get("value", "")).strip():
            raise InvalidArgument(f"{prefix}.fact.value", "is required for FACT")


def mix_window(
    own: tuple[np.ndarray, float], previous: list[tuple[np.ndarray, float]]
) -> np.ndarray:
    """A turn's dense vector: the mean of its own embedding and its window's. The window's
    is the normalised mean of the own embeddings of the previous turns and itself, each
    weighted by its length in words (as mean pooling over the window's text would weigh
    them). Its inner product with a query is the mean of the two cosines."""
    if not previous:
        return own[0]
    vecs, weights = zip(*previous, own, strict=True)
    window = np.average(np.asarray(vecs), axis=0, weights=np.asarray(weights))
    window /= max(float(np.linalg.norm(window)), 1e-12)
    return ((own[0] + window) / 2).astype(np.float32)


def _words(text: str) -> float:
    return float(max(len(text.split()), 1))


def _session(item: MemoryIn) -> tuple[str, str, str]:
    return (item.user_id, item.agent_id, item.session_id)


def _text(item: MemoryIn) -> str:
    return index_text(item.type, item.content, item.attributes, item.occur_time)


def _same(rec: MemoryRecord, item: MemoryIn) -> bool:
    return (
        rec.content == item.content
        and (rec.attributes or {}) == item.attributes
        and abs(rec.importance - (item.importance or 0.5)) < 1e-6
        and rec.expire_time == item.expire_time
    )


# A new memory row: the columns every row of a write shares, and each row's own (both
# write paths, bulk and item by item, build rows here).
ROW_COLUMNS = ("type", "user_id", "agent_id", "session_id", "content", "attributes",
               "importance", "source", "occur_time", "expire_time", "etag", "embedding",
               "turn_index")  # fmt: skip
ETAG = ROW_COLUMNS.index("etag")
KEY_COLUMNS = ("request_id", "fingerprint", "response", "user_id", "agent_id", "memory_id")
MEMORIES = MemoryRecord.__table__


def _shared_columns(tenant: str, now: datetime, model: str) -> dict[str, Any]:
    return dict(tenant=tenant, create_time=now, update_time=now, embed_model=model,
                current=True, revision=1, conflicted=False)  # fmt: skip


def _row(item: MemoryIn, vec: np.ndarray, now: datetime, turn: int | None = None) -> tuple:
    """The ROW_COLUMNS of a new memory. A turn without a time takes the write's."""
    return (
        item.type, item.user_id, item.agent_id, item.session_id, item.content,
        item.attributes, item.importance or 0.5, item.source,
        item.occur_time or (now if item.type == CONV else None), item.expire_time,
        uuid.uuid4().hex[:16], to_bytes(vec), turn,
    )  # fmt: skip


class IngestDomain:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        cache: Cache,
        notify: Callable[[int], None],
        *,
        tail_size: int = 20,
        tail_ttl_s: int = 86400,
        dense_window: int = 2,
    ) -> None:
        self.db = db
        self.dense_window = dense_window
        self.embedder = embedder
        self.cache = cache
        self.notify = notify
        self.tail_size = tail_size
        self.tail_ttl_s = tail_ttl_s
        self.eraser = Eraser(db, cache, notify)

    # -- writes ---------------------------------------------------------------------------

    def remember_many(
        self, tenant: str, items: list[MemoryIn], encode: Callable[[WriteResult], bytes]
    ) -> list[WriteResult | MemlakeError]:
        """Each item is atomic on its own (a savepoint); the batch commits once.
        `encode` turns a result into the bytes stored against its request_id."""
        results: list[WriteResult | MemlakeError | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            try:
                validate(item)
                if item.type == pb.MEMORY_TYPE_FACT:
                    raise InvalidArgument("memory.type", "FACT items go through AssertFact")
                if item.type == pb.MEMORY_TYPE_CONVERSATION and item.occur_time is None:
                    item.occur_time = utcnow()  # for the embedded text; reset at write
                    item.auto_time = True
                todo.append(i)
            except MemlakeError as exc:
                results[i] = exc
        if not todo:
            return results  # type: ignore[return-value]
        vec_of = self._vectors(tenant, items, todo)
        replays: dict[int, bytes] = {}
        with self.db.write() as s:
            todo = self._append_bulk(s, tenant, items, todo, vec_of, results, replays, encode)
            for i in todo:
                item = items[i]
                try:
                    with s.begin_nested():
                        if item.request_id:
                            prior = prior_response(s, tenant, item.request_id, item.fingerprint)
                            if prior is not None:
                                replays[i] = prior
                                continue
                        res = self._write_one(s, tenant, item, vec_of[i])
                        if item.request_id:
                            s.add(
                                IdempotencyKey(
                                    tenant=tenant,
                                    request_id=item.request_id,
                                    fingerprint=item.fingerprint,
                                    response=encode(res),
                                    user_id=item.user_id,
                                    agent_id=item.agent_id,
                                    memory_id=res.record.id,
                                )
                            )
                            s.flush()
                        results[i] = res
                except MemlakeError as exc:
                    results[i] = exc
                except IntegrityError as exc:
                    # A concurrent retry with the same request_id won: answer as it did.
                    prior = (
                        prior_response(s, tenant, item.request_id, item.fingerprint)
                        if item.request_id
                        else None
                    )
                    if prior is not None:
                        replays[i] = prior
                    else:
                        log.warning("write conflict: %s", type(exc.orig).__name__)
                        results[i] = Aborted("a concurrent write conflicted with this one; retry")
        for i, data in replays.items():
            results[i] = Replay(data)  # type: ignore[assignment]
        top = max((r.seq for r in results if isinstance(r, WriteResult)), default=0)
        if top:
            self.notify(top)
            self._update_tails(tenant, [r for r in results if isinstance(r, WriteResult)])
        return results  # type: ignore[return-value]

    def _append_bulk(
        self, s: Session, tenant: str, items, todo, vec_of, results, replays, encode
    ) -> list[int]:
        """Writes the plain appends of a batch (EVENT and CONVERSATION items, each
        request_id once) in a few statements instead of a savepoint and a flush each;
        returns the items left for the item-by-item path (keyed types, a request_id
        repeated within the batch, or all of them when a concurrent write got in the way).
        Validation has already passed, so these items cannot fail one by one."""
        seen: set[str] = set()
        bulk, rest = [], []
        for i in todo:
            rid = items[i].request_id
            if items[i].type in APPEND_TYPES and not (rid and rid in seen):
                bulk.append(i)
                seen.add(rid)
            else:
                rest.append(i)
        if len(bulk) < 2:
            return todo
        try:
            with s.begin_nested():
                done = self._write_appends(s, tenant, items, bulk, vec_of, encode)
        except IntegrityError:
            return todo  # a concurrent retry with a request_id: sort it out item by item
        for i, res in done.items():
            if isinstance(res, Replay):
                replays[i] = res.data
            else:
                results[i] = res
        return rest

    def _write_appends(self, s: Session, tenant: str, items, bulk, vec_of, encode) -> dict:
        out: dict[int, WriteResult | Replay | MemlakeError] = {}
        rids = [items[i].request_id for i in bulk if items[i].request_id]
        prior = {}
        for c in range(0, len(rids), 500):
            for k in s.scalars(
                select(IdempotencyKey).where(
                    IdempotencyKey.tenant == tenant,
                    IdempotencyKey.request_id.in_(rids[c : c + 500]),
                )
            ):
                prior[k.request_id] = k
        new = []
        for i in bulk:
            k = prior.get(items[i].request_id) if items[i].request_id else None
            if k is None:
                new.append(i)
            elif k.fingerprint != items[i].fingerprint:
                out[i] = AlreadyExists(
                    f"request_id {items[i].request_id!r} was already used for a different request",
                    reason="REQUEST_ID_REUSED",
                )
            else:
                out[i] = Replay(k.response)
        if not new:
            return out
        next_turn = {}
        for key in {_session(items[i]) for i in new if items[i].type == CONV}:
            last = s.scalar(
                select(func.max(MemoryRecord.turn_index)).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.user_id == key[0],
                    MemoryRecord.agent_id == key[1],
                    MemoryRecord.session_id == key[2],
                    MemoryRecord.turn_index.is_not(None),
                )
            )
            next_turn[key] = 0 if last is None else last + 1
        now = utcnow()
        same = _shared_columns(tenant, now, self.embedder.name)
        rows = []
        for i in new:
            item = items[i]
            turn = None
            if item.type == CONV:
                turn = next_turn[_session(item)]
                next_turn[_session(item)] = turn + 1
            rows.append(_row(item, vec_of[i], now, turn))
        # Driver-level multi-row statements (shared/db/bulk.py); ids matched back by the
        # unique etag.
        conn = s.connection()
        got = dict(insert_rows(conn, MEMORIES, same, ROW_COLUMNS, rows, ("etag", "id")))
        ids = [got[r[ETAG]] for r in rows]
        seqs = changelog.append_each(s, tenant, ids)
        keys = []
        for i, row, mid, seq in zip(new, rows, ids, seqs, strict=True):
            rec = SimpleNamespace(id=mid, key=None, fact_status=None, **same)
            rec.__dict__.update(zip(ROW_COLUMNS, row, strict=True))
            res = WriteResult(rec, seq, pb.WRITE_OUTCOME_CREATED)  # type: ignore[arg-type]
            out[i] = res
            item = items[i]
            if item.request_id:
                keys.append(
                    (item.request_id, item.fingerprint, encode(res), item.user_id,
                     item.agent_id, mid)
                )  # fmt: skip
        if keys:
            insert_rows(conn, IdempotencyKey.__table__, {"tenant": tenant, "create_time": now},
                        KEY_COLUMNS, keys)  # fmt: skip
        return out

    def embed_ahead(self, items: list[MemoryIn]) -> None:
        """Embeds the items' own texts now, so the embedder's cache holds them when they
        are written (StreamRemember embeds the next chunk while it writes this one)."""
        texts = []
        for item in items:
            if item.type == pb.MEMORY_TYPE_CONVERSATION and item.occur_time is None:
                continue  # its date is the write time: not known yet
            texts.append(_text(item))
        if texts:
            self.embedder.embed(texts)

    def _vectors(self, tenant: str, items: list[MemoryIn], todo: list[int]) -> dict:
        """One embedding batch of each item's own text. A turn's vector is then the mean
        of its own embedding and its window's: the normalised mean of the own embeddings
        of the turn and the `dense_window` turns before it in the session (turns written
        earlier are embedded again from their text, which the embedder's cache usually
        holds). The window costs no model run: every turn is embedded once."""
        given = {i: items[i].vector for i in todo if items[i].vector is not None}
        embed = [i for i in todo if i not in given]
        conv = [i for i in embed if items[i].type == pb.MEMORY_TYPE_CONVERSATION]
        if not self.dense_window:
            conv = []
        history = self._recent_turns(tenant, {_session(items[i]) for i in conv})
        earlier = [t for turns in history.values() for t in turns]
        texts = [_text(items[i]) for i in embed]
        vecs = self.embedder.embed(texts + earlier)
        out = {i: vecs[n] for n, i in enumerate(embed)}
        mine = {i: (vecs[n], _words(texts[n])) for n, i in enumerate(embed)}
        out.update(given)  # used as they are
        own: dict[tuple[str, str, str], list[tuple[np.ndarray, float]]] = {}
        n = len(embed)
        for key, turns in history.items():
            own[key] = [(vecs[n + j], _words(t)) for j, t in enumerate(turns)]
            n += len(turns)
        for i in conv:
            prev = own.setdefault(_session(items[i]), [])
            out[i] = mix_window(mine[i], prev[len(prev) - self.dense_window :])
            prev.append(mine[i])
        return out

    def _recent_turns(self, tenant: str, sessions: set[tuple[str, str, str]]) -> dict:
        """The index texts of the last `dense_window` turns of each session, in order."""
        out: dict[tuple[str, str, str], list[str]] = {}
        if not sessions:
            return out
        with self.db.read() as s:
            for user, agent, session in sessions:
                rows = s.execute(
                    select(
                        MemoryRecord.type,
                        MemoryRecord.content,
                        MemoryRecord.attributes,
                        MemoryRecord.occur_time,
                    )
                    .where(
                        MemoryRecord.tenant == tenant,
                        MemoryRecord.user_id == user,
                        MemoryRecord.agent_id == agent,
                        MemoryRecord.session_id == session,
                        MemoryRecord.turn_index.is_not(None),
                    )
                    .order_by(MemoryRecord.turn_index.desc())
                    .limit(self.dense_window)
                ).all()
                out[(user, agent, session)] = [
                    index_text(t, c, a or {}, when) for t, c, a, when in reversed(rows)
                ]
        return out

    def _write_one(self, s: Session, tenant: str, item: MemoryIn, vec) -> WriteResult:
        now = utcnow()
        rec = MemoryRecord(
            **_shared_columns(tenant, now, self.embedder.name),
            **dict(zip(ROW_COLUMNS, _row(item, vec, now), strict=True)),
        )
        outcome = pb.WRITE_OUTCOME_CREATED
        changed = []
        if item.type in KEYED:
            rec.key = str(item.attributes[KEYED[item.type]]).strip()
            lock_key(s, tenant, item.type, item.user_id, item.agent_id, rec.key)
            if item.type == pb.MEMORY_TYPE_REFLECTION:
                self._check_evidence(s, tenant, item)
            prev = s.scalar(
                select(MemoryRecord).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.type == item.type,
                    MemoryRecord.user_id == item.user_id,
                    MemoryRecord.agent_id == item.agent_id,
                    MemoryRecord.key == rec.key,
                    MemoryRecord.current.is_(True),
                )
            )
            if prev is not None:
                if _same(prev, item):
                    return WriteResult(
                        prev, self._last_seq_of(s, prev.id), pb.WRITE_OUTCOME_DUPLICATE
                    )
                prev.current = False
                prev.update_time = now
                s.flush()
                rec.revision = prev.revision + 1
                changed.append(prev)
                outcome = pb.WRITE_OUTCOME_UPDATED
        elif item.type == pb.MEMORY_TYPE_CONVERSATION:
            # One writer per session at a time: turn numbers follow commit order.
            lock_key(s, tenant, "turn", item.user_id, item.agent_id, item.session_id)
            last = s.scalar(
                select(func.max(MemoryRecord.turn_index)).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.user_id == item.user_id,
                    MemoryRecord.agent_id == item.agent_id,
                    MemoryRecord.session_id == item.session_id,
                    MemoryRecord.turn_index.is_not(None),
                )
            )
            rec.turn_index = 0 if last is None else last + 1
            if item.auto_time:  # now that this writer holds the session (SQLite: the db)
                rec.occur_time = utcnow()
            if rec.occur_time is None:
                rec.occur_time = now
        s.add(rec)
        s.flush()
        seq = changelog.append(s, tenant, [c.id for c in changed] + [rec.id])
        return WriteResult(rec, seq, outcome)

    def _check_evidence(self, s: Session, tenant: str, item: MemoryIn) -> None:
        ids = [int(x) for x in item.attributes.get("evidence_memory_ids", [])]
        found = set(
            s.scalars(
                select(MemoryRecord.id).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.id.in_(ids),
                    granted_sql(item.readable),
                )
            )
        )
        for i, mid in enumerate(ids):
            if mid not in found:
                raise InvalidArgument(
                    f"memory.reflection.evidence_memory_ids[{i}]", f"no memory with id {mid}"
                )

    def _reembed_after(self, s: Session, tenant: str, gone: MemoryRecord) -> int:
        """The turns after a forgotten one carried its words in their window vectors:
        embed them again without it. Returns the change seq, or 0 if none changed."""
        same = (
            MemoryRecord.tenant == tenant,
            MemoryRecord.user_id == gone.user_id,
            MemoryRecord.agent_id == gone.agent_id,
            MemoryRecord.session_id == gone.session_id,
            MemoryRecord.turn_index.is_not(None),
        )
        after = list(
            s.scalars(
                select(MemoryRecord)
                .where(*same, MemoryRecord.turn_index > gone.turn_index)
                .order_by(MemoryRecord.turn_index)
                .limit(self.dense_window)
            )
        )
        if not after or not self.dense_window:
            return 0
        before = s.execute(
            select(
                MemoryRecord.type,
                MemoryRecord.content,
                MemoryRecord.attributes,
                MemoryRecord.occur_time,
            )
            .where(*same, MemoryRecord.turn_index < gone.turn_index)
            .order_by(MemoryRecord.turn_index.desc())
            .limit(self.dense_window)
        ).all()
        earlier = [index_text(t, c, a or {}, when) for t, c, a, when in reversed(before)]
        texts = [index_text(r.type, r.content, r.attributes, r.occur_time) for r in after]
        vecs = self.embedder.embed(earlier + texts)
        prev = [(vecs[j], _words(t)) for j, t in enumerate(earlier)]
        for j, r in enumerate(after):
            v = (vecs[len(earlier) + j], _words(texts[j]))
            r.embedding = to_bytes(mix_window(v, prev[len(prev) - self.dense_window :]))
            r.etag = uuid.uuid4().hex[:16]
            prev.append(v)
        s.flush()
        return changelog.append(s, tenant, [r.id for r in after])

    @staticmethod
    def _last_seq_of(s: Session, memory_id: int) -> int:
        return s.scalar(
            select(func.coalesce(func.max(ChangeLogEntry.seq), 0)).where(
                ChangeLogEntry.memory_id == memory_id
            )
        )

    def _update_tails(self, tenant: str, results: list[WriteResult]) -> None:
        """Keeps each written session's hot tail in the cache: appended to when cached, else
        loaded from the database (which already holds these turns)."""
        loaded: set[str] = set()
        for r in results:
            rec = r.record
            if rec.type != pb.MEMORY_TYPE_CONVERSATION or r.outcome != pb.WRITE_OUTCOME_CREATED:
                continue
            key = session_tail_key(tenant, rec.user_id, rec.agent_id, rec.session_id)
            if key in loaded:
                continue
            data = record_to_proto(rec).SerializeToString()
            if safe(self.cache.push_turn, key, data, self.tail_size, self.tail_ttl_s) is False:
                loaded.add(key)
                refill_session_tail(
                    self.cache, self.db, tenant, rec.user_id, rec.agent_id, rec.session_id,
                    self.tail_size, self.tail_ttl_s,
                )  # fmt: skip

    # -- forget ---------------------------------------------------------------------------

    def forget(self, tenant: str, memory_id: int) -> int:
        """Deletes a memory. Forgetting the current revision of a keyed item (BACKGROUND,
        REFLECTION, SKILL) forgets every revision, so no older value resurfaces. Forgetting
        a FACT memory erases its fact key: every version, its conflicts, its records; its
        audit rows are redacted. The stored responses of the requests that wrote what is
        forgotten are emptied, and the session's cached tail is dropped before returning."""
        with self.db.write() as s:
            rec = s.scalar(
                select(MemoryRecord).where(
                    MemoryRecord.tenant == tenant, MemoryRecord.id == memory_id
                )
            )
            if rec is None:
                raise NotFound(f"no memory with id {memory_id}")
            if rec.type == pb.MEMORY_TYPE_FACT:
                _, seq = self.eraser.forget_fact(s, tenant, rec)
                tail = None
            else:
                ids = [rec.id]
                if rec.key is not None and rec.current:
                    ids = list(
                        s.scalars(
                            select(MemoryRecord.id).where(
                                MemoryRecord.tenant == tenant,
                                MemoryRecord.type == rec.type,
                                MemoryRecord.user_id == rec.user_id,
                                MemoryRecord.agent_id == rec.agent_id,
                                MemoryRecord.key == rec.key,
                            )
                        )
                    )
                stores.redact_idempotency(s, tenant, memory_ids=ids)
                _, seq = stores.delete_memories(s, tenant, ids)
                if rec.type == pb.MEMORY_TYPE_CONVERSATION and rec.turn_index is not None:
                    seq = self._reembed_after(s, tenant, rec) or seq
                tail = (
                    session_tail_key(tenant, rec.user_id, rec.agent_id, rec.session_id)
                    if rec.type == pb.MEMORY_TYPE_CONVERSATION
                    else None
                )
        if tail:
            safe(self.cache.delete, tail)
        self.notify(seq)
        self.db.truncate_wal()  # SQLite: the deleted page images leave the WAL too
        return seq
