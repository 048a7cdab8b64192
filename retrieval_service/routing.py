"""Serving partitions owned by other replicas: forwarding and fan-out.

- A scoped query (a user's partition) that reaches a replica that does not own it (in
  the serving ring, membership.py) is forwarded to the owner in one hop, with the
  caller's metadata unchanged plus the partition key (x-memlake-partition), the owner's
  ordinal (x-memlake-owner) and a mark that it was forwarded (the owner answers, never
  forwards again, even when the ring has moved on since). If the owner cannot be
  reached or is still loading, this replica builds the partition from the database by
  scope and answers.
- An unscoped query fans out: ranking.search runs over this replica's own partitions plus
  one stand-in per peer whose candidates come from ShardService.SearchCandidates, so the
  ranking (normalised over all candidates) is exactly what one replica would compute.
  Every replica reports every partition it holds; while ownership moves two may hold one,
  and the coordinator keeps one copy (each is caught up to the query's min_seq). A peer
  that cannot be reached is replaced by building its partitions of the tenant here.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

import grpc
import numpy as np
from sqlalchemy import select

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import retrieval_service_pb2_grpc as rpb_grpc
from memlake.v1 import shard_service_pb2 as spb
from memlake.v1 import shard_service_pb2_grpc as spb_grpc
from retrieval_service.index import Candidates, Filters, IndexManager, partition_key
from retrieval_service.ownership import (
    FORWARDED_HEADER,
    OWNER_HEADER,
    PARTITION_HEADER,
    View,
    partition_header,
)
from shared.auth.identity import caller
from shared.convert import record_to_proto
from shared.db.models import MemoryRecord
from shared.errors import DeadlineExceeded, InvalidArgument

log = logging.getLogger("memlake.routing")
_OURS = (PARTITION_HEADER, OWNER_HEADER, FORWARDED_HEADER)
_DROP = ("user-agent", "content-type", "te", "grpc-accept-encoding", "grpc-encoding")
DEFAULT_TIMEOUT_S = 10.0
# A peer that refuses, drops or cancels the call (down, restarting, draining) is treated
# as unreachable: this replica answers for it.
# A restarted peer is reachable again within a second (gRPC's default reconnect backoff
# grows to two minutes, and a call meanwhile fails at once as if the peer were down).
PEER = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)


def forwardable(metadata) -> list[tuple[str, str]]:
    """The caller's metadata as received, minus transport headers and our routing ones."""
    return [
        (k, v)
        for k, v in metadata or ()
        if not k.startswith((":", "grpc-")) and k not in _DROP and k not in _OURS
    ]


def _forwarded(context) -> bool:
    return any(k == FORWARDED_HEADER for k, _ in context.invocation_metadata() or ())


def _timeout(context) -> float:
    left = context.time_remaining()
    return DEFAULT_TIMEOUT_S if left is None else max(min(left, DEFAULT_TIMEOUT_S * 3), 0.0)


class Router:
    def __init__(self, index: IndexManager, db) -> None:
        self.index, self.db = index, db
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    @property
    def ring(self) -> View:
        """The rings as this replica last read them (they change while it runs)."""
        return self.index.ring

    def channel(self, ordinal: int, view: View | None = None) -> grpc.Channel | None:
        """A channel to the replica of this ordinal; None when its address is unknown."""
        address = (view or self.ring).addresses.get(ordinal)
        if not address:
            return None
        with self._lock:
            ch = self._channels.get(address)
            if ch is None:
                ch = self._channels[address] = grpc.insecure_channel(address, options=PEER)
            return ch

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()

    # -- scoped: forward to the owner ---------------------------------------------------------

    def forward(self, method: str, request, context, tenant: str, f: Filters):
        """The owner's response to a scoped request this replica does not own; None when
        this replica should answer (it owns the partition, the call was forwarded to it,
        the query is unscoped, or the owner cannot be reached)."""
        view = self.ring
        if not view.sharded or not f.user_id:
            return None
        if _forwarded(context):
            if not self.index.ready:  # the sender answers itself instead of waiting
                context.abort(grpc.StatusCode.UNAVAILABLE, "this replica's index is loading")
            return None
        key = partition_key(tenant, f.user_id, "")
        owner = view.owner(key)
        if owner == view.ordinal:
            return None
        channel = self.channel(owner, view)
        if channel is None:
            log.warning("no address for replica %d; answering here", owner)
            return None
        md = forwardable(context.invocation_metadata()) + [
            (PARTITION_HEADER, partition_header(key)),
            (OWNER_HEADER, str(owner)),
            (FORWARDED_HEADER, str(view.ordinal)),
        ]
        stub = rpb_grpc.RetrievalServiceStub(channel)
        try:
            return getattr(stub, method)(request, metadata=md, timeout=_timeout(context))
        except grpc.RpcError as e:
            if e.code() in UNREACHABLE:
                log.warning("owner %d of %s unreachable; answering here", owner, key)
                return None
            context.abort(e.code(), e.details() or "")

    # -- unscoped: fan out --------------------------------------------------------------------

    def fans_out(self, f: Filters) -> bool:
        return self.ring.sharded and not f.user_id

    def view(self, context, min_seq: int) -> FanOut:
        return FanOut(self, context, min_seq)

    def borrow_owned_by(self, ordinal: int, tenant: str, view: View) -> list:
        """Builds here the partitions of tenant that ordinal owns (it cannot be reached)."""
        keys = {k for k in self.index.discover() if k[0] == tenant}
        keys = {k for k in keys if view.owner(k) == ordinal}
        out = []
        for k in sorted(keys):
            p = self.index.partition(k)
            if p is not None:
                out.append((k, p))
        return out

    def doc(self, tenant: str, memory_id: int) -> bytes:
        with self.db.read() as s:
            rec = s.scalar(
                select(MemoryRecord).where(
                    MemoryRecord.tenant == tenant, MemoryRecord.id == memory_id
                )
            )
            return record_to_proto(rec).SerializeToString() if rec is not None else b""


class FanOut:
    """Stands in for the IndexManager in ranking.search: this replica's partitions, then
    one stand-in per peer. The first stand-in asked for candidates calls every peer at
    once (with the arguments search passes) and sorts their partitions out."""

    def __init__(self, router: Router, context, min_seq: int) -> None:
        self.router, self.context, self.min_seq = router, context, min_seq
        self.index = router.index
        self.view = router.ring  # one view for the whole query
        self._results: dict[int, Candidates | None] | None = None
        self._stand_ins: list[_Peer] = []
        self._local_keys: set[tuple[str, str]] = set()
        self._tenant = ""

    @property
    def applied_seq(self) -> int:
        return self.index.applied_seq

    def partitions_for(self, tenant: str, user_id: str, agent_id: str):
        self._tenant = tenant
        local = list(self.index.partitions_for(tenant, user_id, agent_id))
        mine = {id(p) for p in local}
        self._local_keys = {
            k for k, p in list(self.index.partitions.items()) if k[0] == tenant and id(p) in mine
        }
        self._stand_ins = [_Peer(self, i) for i in self.view.peers()]
        return local + self._stand_ins

    def _gather(self, f: Filters, now: float, qvec: np.ndarray, query: str, want: int) -> None:
        req = spb.SearchCandidatesRequest(
            types=sorted(f.types),
            user_id=f.user_id,
            agent_id=f.agent_id,
            session_id=f.session_id,
            start_time=f.start,
            end_time=f.end,
            include_history=f.include_history,
            query_vector=np.asarray(qvec, np.float32).tobytes(),
            query=query,
            want=want,
            now=now,
            min_seq=self.min_seq,
        )
        md = forwardable(self.context.invocation_metadata())
        timeout = _timeout(self.context)
        calls: dict[int, Future | None] = {}
        for peer in self._stand_ins:
            channel = self.router.channel(peer.ordinal, self.view)
            stub = spb_grpc.ShardServiceStub(channel) if channel is not None else None
            calls[peer.ordinal] = (
                stub.SearchCandidates.future(req, metadata=md, timeout=timeout) if stub else None
            )
        seen = set(self._local_keys)
        for peer in self._stand_ins:
            try:
                call = calls[peer.ordinal]
                if call is None:
                    raise _NoAddress()
                resp = call.result()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise DeadlineExceeded(
                        f"replica {peer.ordinal} did not answer within the deadline",
                        reason="REPLICA_DEADLINE",
                    ) from e
                if e.code() not in UNREACHABLE:
                    self.context.abort(e.code(), e.details() or "")
                if peer.ordinal not in self.view.serving.members:
                    continue  # joining (or loading): it owns nothing queries are routed by
                log.warning("replica %d unreachable; building its partitions here", peer.ordinal)
                for key, p in self.router.borrow_owned_by(peer.ordinal, self._tenant, self.view):
                    if key not in seen:
                        seen.add(key)
                        c = p.candidates(f, now, qvec, query, want)
                        if c is not None:
                            peer.add_local(p, c)
                continue
            for pc in resp.partitions:
                key = (pc.tenant, pc.key)
                if key not in seen:
                    seen.add(key)
                    peer.add_remote(pc)
        self._results = {}
        for peer in self._stand_ins:
            peer.seal()


class _NoAddress(grpc.RpcError):
    """A serving member without an address row: as unreachable as one that is down."""

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "no address"


class _Peer:
    """Looks like a Partition to ranking.search: the candidates of a peer's partitions
    (or of partitions built here in its place), concatenated."""

    def __init__(self, fan: FanOut, ordinal: int) -> None:
        self.fan, self.ordinal = fan, ordinal
        self._parts: list[dict] = []
        self._cands: Candidates | None = None
        self._speakers: list[str] = []
        self._names: set[str] = set()

    def add_remote(self, pc) -> None:
        def col(raw, dt):
            return np.frombuffer(raw, dtype=dt)

        self._parts.append(
            {
                "ids": col(pc.ids, np.int64),
                "dense": col(pc.dense, np.float32),
                "lexical": col(pc.lexical, np.float32),
                "types": col(pc.types, np.int8),
                "has_time": col(pc.has_time, bool),
                "day": col(pc.day, np.int32),
                "when": col(pc.when, np.float64),
                "importance": col(pc.importance, np.float32),
                "confidence": col(pc.confidence, np.float32),
                "conflicted": col(pc.conflicted, bool),
                "asks": col(pc.asks, bool),
                "exact": pc.exact,
                "speakers": list(pc.speakers),
                "names": set(pc.speaker_names),
                "doc": None,
            }
        )

    def add_local(self, p, c: Candidates) -> None:
        part = pack(p, c)
        part["doc"] = (p, c.rows)
        self._parts.append(part)

    def seal(self) -> None:
        if not self._parts:
            return
        parts = self._parts

        def cat(name):
            return np.concatenate([x[name] for x in parts])

        for name in ("ids", "types", "has_time", "day", "when", "importance", "confidence"):
            setattr(self, name, cat(name))
        self.conflicted = cat("conflicted")
        self._asks = cat("asks")
        n = len(self.ids)
        self._cands = Candidates(
            np.arange(n), cat("dense"), cat("lexical"), all(x["exact"] for x in parts)
        )
        self._speakers = [s for x in parts for s in x["speakers"]]
        self._names = set().union(*(x["names"] for x in parts))
        self._local_docs = {}
        off = 0
        for x in parts:
            if x["doc"] is not None:
                p, rows = x["doc"]
                for i, r in enumerate(rows):
                    self._local_docs[off + i] = (p, int(r))
            off += len(x["ids"])

    def candidates(self, f, now, qvec, query, want) -> Candidates | None:
        if self.fan._results is None:
            self.fan._gather(f, now, qvec, query, want)
        return self._cands

    def speaker_names(self) -> set[str]:
        return self._names

    def spoken_by(self, name: str, rows: np.ndarray) -> np.ndarray:
        return np.array([self._speakers[r] == name for r in rows], dtype=bool)

    def asks(self, rows: np.ndarray) -> np.ndarray:
        return self._asks[rows]

    def doc(self, row: int) -> bytes:
        local = self._local_docs.get(row)
        if local is not None:
            return local[0].doc(local[1])
        return self.fan.router.doc(self.fan._tenant, int(self.ids[row]))


def pack(p, c: Candidates) -> dict:
    rows = c.rows
    with p.lock:
        return {
            "ids": p.ids[rows].copy(),
            "dense": np.asarray(c.dense, np.float32),
            "lexical": np.asarray(c.lexical, np.float32),
            "types": p.types[rows].copy(),
            "has_time": p.has_time[rows].copy(),
            "day": p.day[rows].copy(),
            "when": p.when[rows].copy(),
            "importance": p.importance[rows].copy(),
            "confidence": p.confidence[rows].copy(),
            "conflicted": p.conflicted[rows].copy(),
            "asks": np.asarray(p.asks(rows), dtype=bool),
            "exact": c.exact,
            "speakers": [p.speakers[int(r)] for r in rows],
            "names": p.speaker_names(),
            "doc": None,
        }


class ShardServicer(spb_grpc.ShardServiceServicer):
    """A peer's side of the fan-out: candidates from the partitions this replica owns."""

    def __init__(self, retrieval) -> None:
        self.retrieval = retrieval  # the RetrievalServicer: tenant and waiting rules
        self.index: IndexManager = retrieval.index

    def SearchCandidates(self, request, context):
        tenant = self.retrieval._tenant(context)
        if not self.index.ready:  # the coordinator builds this replica's share instead
            context.abort(grpc.StatusCode.UNAVAILABLE, "this replica's index is loading")
        self.retrieval._wait(request.min_seq, context)
        f = Filters(
            types=frozenset(request.types),
            user_id=request.user_id,
            agent_id=request.agent_id,
            session_id=request.session_id,
            start=request.start_time,
            end=request.end_time,
            include_history=request.include_history,
            access=caller().readable(),  # the caller's grants, checked here again
        )
        if len(request.query_vector) != 4 * self.index.dim:
            raise InvalidArgument(
                "query_vector", f"must be {self.index.dim} float32 values (little-endian)"
            )
        for i, t in enumerate(request.types):
            if t not in pb.MemoryType.values() or t == pb.MEMORY_TYPE_UNSPECIFIED:
                raise InvalidArgument(f"types[{i}]", f"unknown memory type {t}")
        qvec = np.frombuffer(request.query_vector, dtype=np.float32)
        if not np.isfinite(qvec).all():
            raise InvalidArgument("query_vector", "must hold finite numbers")
        now = request.now or time.time()
        resp = spb.SearchCandidatesResponse(index_seq=self.index.applied_seq)
        local = list(self.index.partitions_for(tenant, request.user_id, request.agent_id))
        keys = {id(p): k for k, p in list(self.index.partitions.items()) if k[0] == tenant}
        for p in local:
            c = p.candidates(f, now, qvec, request.query, request.want)
            if c is None:
                continue
            x = pack(p, c)
            tenant_, key = keys.get(id(p), (tenant, ""))
            resp.partitions.add(
                tenant=tenant_,
                key=key,
                exact=c.exact,
                ids=x["ids"].astype(np.int64).tobytes(),
                dense=x["dense"].tobytes(),
                lexical=x["lexical"].tobytes(),
                types=x["types"].astype(np.int8).tobytes(),
                has_time=x["has_time"].astype(bool).tobytes(),
                day=x["day"].astype(np.int32).tobytes(),
                when=x["when"].astype(np.float64).tobytes(),
                importance=x["importance"].astype(np.float32).tobytes(),
                confidence=x["confidence"].astype(np.float32).tobytes(),
                conflicted=x["conflicted"].astype(bool).tobytes(),
                asks=x["asks"].tobytes(),
                speakers=x["speakers"],
                # A key that may read only part of the partition learns only its speakers.
                speaker_names=sorted(
                    x["names"] if f.access is None else {n for n in x["speakers"] if n}
                ),
            )
        return resp
