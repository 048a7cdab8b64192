"""The derived search index: partitions by scope, built by tailing the change log.

A partition holds the rows of one (tenant, user) or (tenant, agent) scope: vectors, a
BM25 index and the columns that filters need, so a scoped query touches only its own rows
and filters are exact (a mask applied before ranking, never after).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from memlake.v1 import memory_pb2 as pb
from retrieval_service.lexical import BM25
from shared import changelog
from shared.convert import record_to_proto
from shared.db.engine import Database
from shared.db.models import MemoryRecord
from shared.embedding import from_bytes

log = logging.getLogger("memlake.index")
INF = float("inf")


def partition_key(tenant: str, user_id: str, agent_id: str) -> tuple[str, str]:
    if user_id:
        return (tenant, "u:" + user_id)
    if agent_id:
        return (tenant, "a:" + agent_id)
    return (tenant, "")


@dataclass
class Filters:
    types: frozenset[int] = frozenset()
    user_id: str = ""
    agent_id: str = ""
    session_id: str = ""
    start: float = -INF
    end: float = INF
    include_history: bool = False


class Partition:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.lock = threading.Lock()
        self.n = 0
        cap = 64
        self.ids = np.zeros(cap, dtype=np.int64)
        self.types = np.zeros(cap, dtype=np.int8)
        self.when = np.zeros(cap, dtype=np.float64)  # occur_time, else create_time
        self.expire = np.full(cap, INF)
        self.current = np.zeros(cap, dtype=bool)
        self.alive = np.zeros(cap, dtype=bool)
        self.conflicted = np.zeros(cap, dtype=bool)
        self.importance = np.zeros(cap, dtype=np.float32)
        self.confidence = np.ones(cap, dtype=np.float32)
        self.vectors = np.zeros((cap, dim), dtype=np.float32)
        self.sessions: list[str] = [""] * cap
        self.agents: list[str] = [""] * cap
        self.users: list[str] = [""] * cap
        self.docs: list[bytes] = [b""] * cap  # serialized memlake.v1.Memory
        self.row_of: dict[int, int] = {}
        self.free: list[int] = []
        self.bm25 = BM25()

    def _grow(self) -> None:
        cap = len(self.ids) * 2
        for name in (
            "ids",
            "types",
            "when",
            "current",
            "alive",
            "conflicted",
            "importance",
            "confidence",
        ):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        exp = np.full(cap, INF)
        exp[: len(self.expire)] = self.expire
        self.expire = exp
        vec = np.zeros((cap, self.dim), dtype=np.float32)
        vec[: len(self.vectors)] = self.vectors
        self.vectors = vec
        for name in ("sessions", "agents", "users", "docs"):
            lst = getattr(self, name)
            lst.extend([lst[0][:0]] * (cap - len(lst)))

    def put(self, rec: MemoryRecord, vec: np.ndarray) -> None:
        with self.lock:
            row = self.row_of.get(rec.id)
            if row is None:
                if self.free:
                    row = self.free.pop()
                else:
                    if self.n == len(self.ids):
                        self._grow()
                    row = self.n
                    self.n += 1
                self.row_of[rec.id] = row
            self.ids[row] = rec.id
            self.types[row] = rec.type
            t = rec.occur_time or rec.create_time
            self.when[row] = t.timestamp()
            self.expire[row] = rec.expire_time.timestamp() if rec.expire_time else INF
            self.current[row] = rec.current
            self.alive[row] = True
            self.conflicted[row] = (
                bool(rec.conflicted) or rec.fact_status == pb.FACT_STATUS_CONFLICTED
            )
            self.importance[row] = rec.importance
            conf = (rec.attributes or {}).get("confidence")
            self.confidence[row] = float(conf) if conf else 1.0
            self.vectors[row] = vec
            self.sessions[row] = rec.session_id
            self.agents[row] = rec.agent_id
            self.users[row] = rec.user_id
            self.docs[row] = record_to_proto(rec).SerializeToString()
            self.bm25.add(row, _lexical_text(rec))

    def remove(self, memory_id: int) -> bool:
        with self.lock:
            row = self.row_of.pop(memory_id, None)
            if row is None:
                return False
            self.alive[row] = False
            self.bm25.remove(row)
            self.docs[row] = b""
            self.free.append(row)
            return True

    def mask(self, f: Filters, now: float) -> np.ndarray:
        n = self.n
        m = self.alive[:n] & (self.expire[:n] > now)
        if not f.include_history:
            m &= self.current[:n]
        if f.types:
            m &= np.isin(self.types[:n], list(f.types))
        if f.start > -INF:
            m &= self.when[:n] >= f.start
        if f.end < INF:
            m &= self.when[:n] < f.end
        if f.session_id:
            m &= np.fromiter((s == f.session_id for s in self.sessions[:n]), bool, n)
        if f.agent_id:
            m &= np.fromiter((a == f.agent_id for a in self.agents[:n]), bool, n)
        if f.user_id:
            m &= np.fromiter((u == f.user_id for u in self.users[:n]), bool, n)
        return m


def _lexical_text(rec: MemoryRecord) -> str:
    extra = ""
    a = rec.attributes or {}
    if rec.type == pb.MEMORY_TYPE_CONVERSATION:
        extra = a.get("speaker", "")
    elif rec.type == pb.MEMORY_TYPE_SKILL:
        extra = a.get("name", "") + " " + " ".join(a.get("steps", []))
    elif rec.type in (pb.MEMORY_TYPE_BACKGROUND, pb.MEMORY_TYPE_REFLECTION):
        extra = a.get("key", "")
    return f"{rec.content} {extra}"


class IndexManager:
    """Applies the change log in sequence order to the partitions."""

    def __init__(self, db: Database, dim: int, poll_interval: float = 0.2) -> None:
        self.db = db
        self.dim = dim
        self.poll_interval = poll_interval
        self.partitions: dict[tuple[str, str], Partition] = {}
        self.where: dict[int, tuple[str, str]] = {}
        self.applied_seq = 0
        self.ready = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._apply_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- building -------------------------------------------------------------------------

    def load_all(self) -> None:
        """Builds every partition from the database alone, then marks the index ready."""
        with self.db.read() as s:
            start_seq = changelog.last_seq(s)
        last_id = 0
        while True:
            with self.db.read() as s:
                recs = list(
                    s.scalars(
                        select(MemoryRecord)
                        .where(MemoryRecord.id > last_id)
                        .order_by(MemoryRecord.id)
                        .limit(5000)
                    )
                )
            if not recs:
                break
            for rec in recs:
                self._put(rec)
            last_id = recs[-1].id
        with self._cond:
            self.applied_seq = max(self.applied_seq, start_seq)
            self.ready = True
            self._cond.notify_all()
        self.catch_up()

    def _partition(self, key: tuple[str, str]) -> Partition:
        p = self.partitions.get(key)
        if p is None:
            p = self.partitions.setdefault(key, Partition(self.dim))
        return p

    def _put(self, rec: MemoryRecord) -> None:
        if rec.embedding is None:
            return
        vec = from_bytes(rec.embedding)
        if vec.shape[0] != self.dim:
            log.warning(
                "memory %s has a %d-d vector, index is %d-d", rec.id, vec.shape[0], self.dim
            )
            return
        key = partition_key(rec.tenant, rec.user_id, rec.agent_id)
        self._partition(key).put(rec, vec)
        self.where[rec.id] = key

    def _remove(self, memory_id: int) -> None:
        key = self.where.pop(memory_id, None)
        if key is not None:
            self.partitions[key].remove(memory_id)

    def catch_up(self) -> int:
        """Applies every change after applied_seq; returns the number applied."""
        applied = 0
        with self._apply_lock:
            while True:
                with self.db.read() as s:
                    entries = changelog.read_after(s, self.applied_seq)
                    ids = {e.memory_id for e in entries if e.op == "put"}
                    recs = (
                        {
                            r.id: r
                            for r in s.scalars(select(MemoryRecord).where(MemoryRecord.id.in_(ids)))
                        }
                        if ids
                        else {}
                    )
                if not entries:
                    return applied
                for e in entries:
                    rec = recs.get(e.memory_id) if e.op == "put" else None
                    if rec is not None:
                        self._put(rec)
                    else:
                        self._remove(e.memory_id)
                with self._cond:
                    self.applied_seq = entries[-1].seq
                    self._cond.notify_all()
                applied += len(entries)

    # -- tailing --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-tail", daemon=True)
        self._thread.start()

    def wake(self, seq: int | None = None) -> None:
        if seq is None or seq > self.applied_seq:
            self._wake.set()

    def _run(self) -> None:
        try:
            self.load_all()
        except Exception:  # noqa: BLE001 - retried below; health stays NOT_SERVING
            log.exception("initial index load failed")
        while not self._stop.is_set():
            try:
                if not self.ready:
                    self.load_all()
                else:
                    self.catch_up()
            except Exception:  # noqa: BLE001 - database hiccup: retry after a pause
                log.exception("change-log tail failed")
                self._stop.wait(1.0)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Blocks until applied_seq >= seq or timeout; True if reached."""
        if seq <= self.applied_seq and self.ready:
            return True
        self.wake(seq)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.ready and self.applied_seq >= seq):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
                self._wake.set()
        return True

    def partitions_for(self, tenant: str, user_id: str, agent_id: str) -> Iterable[Partition]:
        if user_id:
            p = self.partitions.get(partition_key(tenant, user_id, ""))
            return [p] if p is not None else []
        return [p for k, p in list(self.partitions.items()) if k[0] == tenant]

    def check_ready(self) -> None:
        if not self.ready:
            raise RuntimeError("index is still loading")
