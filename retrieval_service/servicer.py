"""protobuf <-> domain for RetrievalService. Never calls another service."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import and_, bindparam, func, or_, select

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import retrieval_service_pb2 as rpb
from memlake.v1 import retrieval_service_pb2_grpc as rpb_grpc
from retrieval_service.context import Candidate, assemble
from retrieval_service.index import Filters, IndexManager
from retrieval_service.lexical import without_owner
from retrieval_service.ranking import DEFAULT, RankConfig, search
from shared import changelog
from shared.auth.grants import READ
from shared.auth.identity import caller
from shared.auth.sql import granted_sql
from shared.batching import urgent
from shared.cache import Cache, safe
from shared.convert import (
    decode_page_token,
    encode_page_token,
    record_to_proto,
    token_int,
    token_time,
    ts_to_dt,
)
from shared.db.engine import Database
from shared.db.models import MemoryRecord
from shared.db.types import utcnow
from shared.embedding import Embedder
from shared.errors import DeadlineExceeded, InvalidArgument, NotFound, OutOfRange
from shared.metrics import CACHE_LOOKUPS
from shared.tails import refill_session_tail, session_tail_key
from shared.tenancy import check_scope_tenant
from shared.vectors import client_vector

MAX_WAIT_S = 10.0
KEYED_TYPES = (pb.MEMORY_TYPE_BACKGROUND, pb.MEMORY_TYPE_REFLECTION, pb.MEMORY_TYPE_SKILL)


def _not_expired():
    return or_(MemoryRecord.expire_time.is_(None), MemoryRecord.expire_time > utcnow())


_T = MemoryRecord.__table__
# Built once: building it per call (ORM attributes, coercions) cost about as much Python
# as running it, and every search and GetContext runs it.
_LIVE = select(_T.c.id).where(
    _T.c.tenant == bindparam("tenant"),
    _T.c.id.in_(bindparam("ids", expanding=True)),
    or_(_T.c.expire_time.is_(None), _T.c.expire_time > bindparam("now")),
)


def _types(values, field: str) -> frozenset[int]:
    for i, t in enumerate(values):
        if t not in pb.MemoryType.values() or t == pb.MEMORY_TYPE_UNSPECIFIED:
            raise InvalidArgument(f"{field}[{i}]", f"unknown memory type {t}")
    return frozenset(values)


def _range(tr, field: str) -> tuple[float, float]:
    start = ts_to_dt(tr.start_time, has=tr.HasField("start_time"))
    end = ts_to_dt(tr.end_time, has=tr.HasField("end_time"))
    if start and end and end <= start:
        raise InvalidArgument(f"{field}.end_time", "must be after start_time")
    return (start.timestamp() if start else float("-inf"), end.timestamp() if end else float("inf"))


class RetrievalServicer(rpb_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        db: Database,
        index: IndexManager,
        embedder: Embedder,
        cache: Cache,
        tail_size: int = 20,
        tail_ttl_s: int = 86400,
        rank: RankConfig = DEFAULT,
        tail_first: int = 3,
        router=None,
    ) -> None:
        self.tail_first = tail_first
        self.rank = rank
        self.router = router  # routing.Router when partitions are spread over replicas
        self.db, self.index, self.embedder, self.cache = db, index, embedder, cache
        self.tail_size, self.tail_ttl_s = tail_size, tail_ttl_s

    def _tenant(self, context) -> str:
        return caller().tenant

    def _wait(self, min_seq: int, context) -> None:
        if min_seq < 0:
            raise InvalidArgument("min_seq", "must not be negative")
        if not min_seq and self.index.ready:
            return
        if min_seq > self.index.applied_seq:
            with self.db.read() as s:
                top = changelog.last_seq(s)
            if min_seq > top:  # no write has returned this seq: waiting would not help
                raise OutOfRange(f"no write has sequence number {min_seq} yet (last {top})")
        remaining = context.time_remaining()
        timeout = min(remaining, MAX_WAIT_S) if remaining is not None else MAX_WAIT_S
        if not self.index.wait_for(min_seq, max(timeout - 0.01, 0)):
            raise DeadlineExceeded(
                f"index has applied seq {self.index.applied_seq}, not yet {min_seq}",
                reason="INDEX_BEHIND",
            )

    def _live(self, tenant: str, ids) -> set[int]:
        """Which of these memories still exist and have not expired: one query. The index
        may lag a Forget, an erasure or an expiry; what a read returns never does."""
        ids = {int(i) for i in ids}
        if not ids:
            return set()
        if self.db.unreachable:
            # A known database outage (the health monitor's verdict): answer from the
            # index alone rather than not at all. No Forget can commit meanwhile; one
            # committed just before the outage and not yet applied by the index (normally
            # under the 0.2 s tail poll) could show until the database is back.
            return ids
        return set(
            self.db.scalars_now(_LIVE, {"tenant": tenant, "ids": list(ids), "now": utcnow()})
        )

    def _search_live(
        self,
        tenant,
        qvec,
        query,
        f: Filters,
        top_k: int,
        context=None,
        min_seq: int = 0,
        min_score: float | None = None,
    ) -> list:
        """The index's top_k, re-checked against the database; when some are gone, asks
        the index for more so a search still returns top_k when that many exist."""
        extra = 0
        while True:
            hits = self._search(context, min_seq, tenant, qvec, query, f, top_k + extra, min_score)
            live = self._live(tenant, (h.memory_id for h in hits))
            kept = [h for h in hits if h.memory_id in live]
            if len(kept) >= top_k or len(hits) < top_k + extra or extra >= 4096:
                return kept[:top_k]
            extra = max(2 * extra, len(hits) - len(kept))

    # -- by id and listing (the database) ----------------------------------------------------

    def GetMemory(self, request, context):
        tenant = self._tenant(context)
        if not request.id.isdigit():
            raise InvalidArgument("id", "is not a memory id")
        with self.db.read() as s:
            rec = s.scalar(
                select(MemoryRecord).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.id == int(request.id),
                    _not_expired(),
                )
            )
            if rec is None:
                raise NotFound(f"no memory with id {request.id}")
            caller().require(
                READ,
                rec.type,
                rec.user_id,
                rec.agent_id,
                rec.session_id,
                f"memory {rec.id}",
                name_scope=False,
            )
            return rpb.GetMemoryResponse(memory=record_to_proto(rec))

    def GetMemoryByKey(self, request, context):
        tenant = self._tenant(context)
        check_scope_tenant(request.scope.tenant, tenant)
        if request.type not in KEYED_TYPES:
            raise InvalidArgument("type", "must be BACKGROUND, REFLECTION or SKILL")
        key = request.key.strip()
        if not key:
            raise InvalidArgument("key", "is required")
        who, sc = caller(), request.scope
        if not who.may_read_in(request.type, sc.user_id, sc.agent_id):
            who.require(READ, request.type, sc.user_id, sc.agent_id)  # names what was asked
        now = datetime.now(UTC)
        with self.db.read() as s:
            rec = s.scalar(
                select(MemoryRecord).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.type == request.type,
                    MemoryRecord.user_id == request.scope.user_id,
                    MemoryRecord.agent_id == request.scope.agent_id,
                    MemoryRecord.key == key,
                    MemoryRecord.current.is_(True),
                    or_(MemoryRecord.expire_time.is_(None), MemoryRecord.expire_time > now),
                )
            )
            # An item of a session outside the grant looks absent, as it does to a search.
            if rec is None or not who.can(
                READ, rec.type, rec.user_id, rec.agent_id, rec.session_id
            ):
                what = "name" if request.type == pb.MEMORY_TYPE_SKILL else "key"
                raise NotFound(f"no current {pb.MemoryType.Name(request.type)} with {what} {key!r}")
            return rpb.GetMemoryByKeyResponse(memory=record_to_proto(rec))

    def ListMemories(self, request, context):
        tenant = self._tenant(context)
        check_scope_tenant(request.scope.tenant, tenant)
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or 50, 1000)
        types = _types(request.types, "types")
        start, end = _range(request.time_range, "time_range")
        when = func.coalesce(MemoryRecord.occur_time, MemoryRecord.create_time)
        q = select(MemoryRecord).where(MemoryRecord.tenant == tenant, _not_expired())
        sc = request.scope
        for col, val in (
            (MemoryRecord.user_id, sc.user_id),
            (MemoryRecord.agent_id, sc.agent_id),
            (MemoryRecord.session_id, sc.session_id),
        ):
            if val:
                q = q.where(col == val)
        if types:
            q = q.where(MemoryRecord.type.in_(types))
        if not request.include_history:
            q = q.where(MemoryRecord.current.is_(True))
        q = q.where(granted_sql(caller().readable()))
        if start > float("-inf"):
            q = q.where(when >= ts_to_dt(request.time_range.start_time))
        if end < float("inf"):
            q = q.where(when < ts_to_dt(request.time_range.end_time))
        if request.page_token:
            tok = decode_page_token(request.page_token)
            t_after, id_after = token_time(tok, "t"), token_int(tok, "id")
            q = q.where(or_(when > t_after, and_(when == t_after, MemoryRecord.id > id_after)))
        q = q.order_by(when, MemoryRecord.id).limit(size + 1)
        with self.db.read() as s:
            recs = list(s.scalars(q))
        resp = rpb.ListMemoriesResponse()
        for rec in recs[:size]:
            resp.memories.append(record_to_proto(rec))
        if len(recs) > size:
            last = recs[size - 1]
            t = last.occur_time or last.create_time
            resp.next_page_token = encode_page_token({"t": t.isoformat(), "id": last.id})
        return resp

    # -- search and context (the index) ------------------------------------------------------

    def _forward(self, method: str, request, context, tenant: str, f: Filters):
        if self.router is None:
            return None
        return self.router.forward(method, request, context, tenant, f)

    def _search(
        self, context, min_seq: int, tenant, qvec, query, f: Filters, top_k: int, min_score=None
    ):
        """ranking.search over this replica's index, or over every replica's partitions
        for an unscoped query when partitions are spread over replicas."""
        source = self.index
        if self.router is not None and context is not None and self.router.fans_out(f):
            source = self.router.view(context, min_seq)
        return search(source, tenant, qvec, query, f, top_k, self.rank, min_score)

    def _filters(self, request, tenant: str) -> Filters:
        check_scope_tenant(request.scope.tenant, tenant)
        start, end = (
            _range(request.time_range, "time_range")
            if hasattr(request, "time_range")
            else (float("-inf"), float("inf"))
        )
        return Filters(
            types=_types(request.types, "types"),
            user_id=request.scope.user_id,
            agent_id=request.scope.agent_id,
            session_id=request.scope.session_id,
            start=start,
            end=end,
            include_history=getattr(request, "include_history", False),
            access=caller().readable(),
        )

    def SearchMemories(self, request, context):
        tenant = self._tenant(context)
        given = request.HasField("vector")
        if not given and not request.query.strip():
            raise InvalidArgument("query", "must not be empty")
        if not 0 <= request.top_k <= 200:
            raise InvalidArgument("top_k", "must be within [0, 200]")
        if given:
            qvec = client_vector(request.vector, "vector", self.embedder.name, self.embedder.dim)
        min_score = request.min_score if request.HasField("min_score") else None
        if min_score is not None and not math.isfinite(min_score):
            raise InvalidArgument("min_score", "must be a finite number")
        f = self._filters(request, tenant)
        forwarded = self._forward("SearchMemories", request, context, tenant, f)
        if forwarded is not None:
            return forwarded
        self._wait(request.min_seq, context)
        query = without_owner(request.query, f.user_id or f.agent_id)
        if not given:
            with urgent():
                qvec = self.embedder.embed_one(query)
        hits = self._search_live(
            tenant, qvec, query, f, request.top_k or 10, context, request.min_seq, min_score
        )
        resp = rpb.SearchMemoriesResponse(index_seq=self.index.applied_seq)
        for h, m in _materialized(hits):
            r = resp.results.add(score=h.score, conflicted=h.conflicted)
            r.memory.CopyFrom(m)
            r.parts.dense, r.parts.lexical = h.dense, h.lexical
            r.parts.recency, r.parts.importance = h.recency, h.importance
            r.parts.confidence = h.confidence
        return resp

    def GetContext(self, request, context):
        tenant = self._tenant(context)
        if request.token_budget < 0:
            raise InvalidArgument("token_budget", "must not be negative")
        budget = request.token_budget or 1000
        f = self._filters(request, tenant)
        forwarded = self._forward("GetContext", request, context, tenant, f)
        if forwarded is not None:
            return forwarded
        self._wait(request.min_seq, context)
        cands: list[Candidate] = []
        intent = without_owner(request.intent, f.user_id or f.agent_id)
        with urgent():
            qvec = self.embedder.embed_one(intent or "profile")
        # BACKGROUND first: every current item of the user/agent, in key order.
        bg = Filters(
            types=frozenset([pb.MEMORY_TYPE_BACKGROUND]),
            user_id=f.user_id,
            agent_id=f.agent_id,
            access=f.access,
        )
        bg_hits = self._search(context, request.min_seq, tenant, qvec, intent, bg, 200)
        bgs = sorted((m for _, m in _materialized(bg_hits)), key=lambda m: m.background.key)
        cands += [Candidate(m, 1.0, "background") for m in bgs]
        if request.intent.strip():
            types = (f.types or frozenset(pb.MemoryType.values())) - {
                pb.MEMORY_TYPE_BACKGROUND,
                pb.MEMORY_TYPE_UNSPECIFIED,
            }
            rel = Filters(
                types=frozenset(types), user_id=f.user_id, agent_id=f.agent_id, access=f.access
            )
            hits = self._search(context, request.min_seq, tenant, qvec, intent, rel, 50)
            cands += [
                Candidate(m, h.score, "relevant", h.conflicted) for h, m in _materialized(hits)
            ]
        if f.session_id:
            who = caller()
            tail = [
                m
                for m in self._session_tail(tenant, f)
                if who.can(READ, m.type, m.scope.user_id, m.scope.agent_id, m.scope.session_id)
            ][::-1]
            # The newest turns go before the relevant items, so they always fit.
            k = self.tail_first
            cands[len(bgs) : len(bgs)] = [Candidate(m, 0.0, "session_tail") for m in tail[:k]]
            cands += [Candidate(m, 0.0, "session_tail") for m in tail[k:]]
        live = self._live(tenant, (c.memory.id for c in cands))
        if any(int(c.memory.id) not in live for c in cands if c.reason == "session_tail"):
            # A cached tail holding a forgotten turn (another process forgot it): reload.
            safe(self.cache.delete, session_tail_key(tenant, f.user_id, f.agent_id, f.session_id))
        cands = [c for c in cands if int(c.memory.id) in live]
        chosen, rendered, tokens = assemble(cands, budget)
        resp = rpb.GetContextResponse(
            rendered=rendered, token_count=tokens, index_seq=self.index.applied_seq
        )
        for c, cost in chosen:
            it = resp.items.add(
                score=c.score, tokens=cost, reason=c.reason, conflicted=c.conflicted
            )
            it.memory.CopyFrom(c.memory)
        return resp

    def _session_tail(self, tenant: str, f: Filters) -> list[pb.Memory]:
        """The last turns of the session from the cache; on a miss, from the database."""
        key = session_tail_key(tenant, f.user_id, f.agent_id, f.session_id)
        cached = safe(self.cache.get_tail, key)
        CACHE_LOOKUPS.labels("session_tail", "miss" if cached is None else "hit").inc()
        if cached is not None:
            return [pb.Memory.FromString(b) for b in cached]
        return refill_session_tail(
            self.cache, self.db, tenant, f.user_id, f.agent_id, f.session_id,
            self.tail_size, self.tail_ttl_s,
        )  # fmt: skip


def _materialized(hits):
    """(hit, memory) for each hit whose document is still there: a Forget applied by the
    index between ranking and reading the document blanks it (such a hit is dropped)."""
    for h in hits:
        m = h.memory()
        if m.id:
            yield h, m
