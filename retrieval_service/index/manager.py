"""The index manager: which partitions this replica holds, the tailer that applies the
change log to them in sequence order, adoption of partitions from the database when
ownership moves, and the snapshot and start-up loops (snapshots.py writes the files)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import bindparam, select

from retrieval_service.index import adoption
from retrieval_service.index.candidates import Smoothing
from retrieval_service.index.partition import Partition, partition_key
from retrieval_service.index.storage import Arena, KeyMap, trim_heap
from retrieval_service.ownership import View
from shared import changelog
from shared.db.engine import Database
from shared.db.models import MemoryRecord
from shared.embedding import from_bytes

log = logging.getLogger("memlake.index")
CATCH_UP_ROWS = 2000  # change-log rows read per statement while catching up
_T = MemoryRecord.__table__
_RECORDS = select(_T).where(_T.c.id.in_(bindparam("ids", expanding=True)))  # built once
# At most this many small partitions are decoded at once: past it, the least recently
# used half is packed (a build or catch-up over many partitions stays within some 15 MB
# of decoded small partitions, instead of 14 KB for each it touched).
HOT_MAX = 1024
LOAD_ROWS = 1000  # memories read per statement by a build from the database


class IndexManager:
    """Applies the change log in sequence order to the partitions this replica owns (all of
    them unless a ring says otherwise), snapshots them incrementally to disk with the last
    applied sequence (retrieval_service/index/snapshots.py), and on start loads the snapshot
    lazily and catches up."""

    def __init__(
        self,
        db: Database,
        dim: int,
        *,
        embed_model: str,
        snapshot_dir: Path | None = None,
        poll_interval: float = 0.2,
        snapshot_interval: float = 30.0,
        ann_threshold: int = 20000,
        lexical_window: int = 1,
        smoothing: Smoothing | None = None,
        ring: View | None = None,
        borrowed_idle_s: float = 120.0,
        apply_gap_s: float = 0.0,
        pack_rows: int = 64,
        pack_idle_s: float = 10.0,
    ) -> None:
        self.db = db
        # Writes wake the tailer one by one; each round pays a transaction and its
        # statements whatever it applies. So a round starts at least apply_gap_s after the
        # last one ended, and applies what arrived meanwhile at once, unless a caller
        # waits for a sequence (wait_for: read-your-writes is never delayed).
        self.apply_gap_s = apply_gap_s
        self._urgent = threading.Event()
        self.ring = ring or View()  # swapped by membership.py when the rings change
        self._unowned_since: dict[tuple[str, str], float] = {}  # see adoption.release
        self.borrowed_idle_s = borrowed_idle_s
        self._dirty: set[tuple[str, str]] = set()  # changed since their last snapshot
        self._purge: set[tuple[str, str]] = set()  # ... by a removal
        self._touched: set[tuple[str, str]] | None = None  # ... by the running catch-up
        # Partitions held but not decoded: a list is (segment, offset, length) in the
        # loaded snapshot, not read yet (no ids in `where`); an int is a small partition
        # packed while it is not in use (snapshots.pack), its place in the arena (its ids
        # are in `where`). A tiny partition decoded took about 14 KB of Python objects and
        # arrays; packed, its content and some 60 bytes a row.
        self._stored: dict[tuple[str, str], list | int] = {}
        self._arena = Arena()
        self.pack_rows = pack_rows  # partitions of at most this many rows are packed ...
        self.pack_idle_s = pack_idle_s  # ... once unused (no query, no write) this long
        self._hot: dict[tuple[str, str], float] = {}  # small decoded partitions: last use
        self._packed_at = 0.0
        self._manifest_parts: dict[str, list] = {}  # the last manifest's entries
        self._load_lock = threading.RLock()
        self._snapshot_lock = threading.Lock()  # one snapshot round at a time
        self._used: dict[tuple[str, str], float] = {}  # borrowed partitions: last use
        self._store = None
        if snapshot_dir is not None:
            from retrieval_service.index.snapshots import SnapshotStore

            self._store = SnapshotStore(snapshot_dir)
        self.smoothing = smoothing or Smoothing()
        self.dim = dim
        self.embed_model = embed_model
        self.snapshot_dir = snapshot_dir
        self.poll_interval = poll_interval
        self.snapshot_interval = snapshot_interval
        self.ann_threshold = ann_threshold
        self.lexical_window = lexical_window
        self.partitions: dict[tuple[str, str], Partition] = {}
        self.where = KeyMap()  # memory id -> partition key
        self.applied_seq = 0
        self.snapshot_seq = -1
        # A removal (Forget, erasure, expiry) was applied: snapshot soon, so the previous
        # snapshot on disk stops holding the removed content.
        self.removed_since_snapshot = False
        self.erase_snapshot_delay_s = 1.0
        self.ready = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._apply_lock = threading.Lock()
        self._cursor = changelog.ChangeCursor()  # never passes a row still in flight
        self._thread: threading.Thread | None = None
        faiss.omp_set_num_threads(1)  # single queries: threads only add overhead here

    # -- building -------------------------------------------------------------------------

    def _new_partition(self) -> Partition:
        return Partition(self.dim, self.ann_threshold, self.lexical_window, self.smoothing)

    def load_all(self) -> None:
        """Builds every partition from the database alone, then catches up with the log."""
        with self._apply_lock:
            self.partitions, self.where = {}, KeyMap()
            self._stored, self._manifest_parts, self._hot = {}, {}, {}
            self._arena = Arena()
            with self.db.read() as s:
                start_seq = changelog.stable_last_seq(s)
            last_id = 0
            while True:
                # Core rows (as catch-up reads), a batch at a time: ORM objects of 5000
                # memories held some 36 MB the allocator kept after the build.
                t = MemoryRecord.__table__
                with self.db.read() as s:
                    recs = list(
                        s.execute(
                            select(t).where(t.c.id > last_id).order_by(t.c.id).limit(LOAD_ROWS)
                        )
                    )
                if not recs:
                    break

                # A partition at a time, its turns in order (so each finds its context
                # already indexed); a small one is packed as soon as it is built, so few
                # are decoded at once and the memory they held is reused at once.
                def order(r):
                    key = partition_key(r.tenant, r.user_id, r.agent_id)
                    return (key, r.session_id, r.turn_index or 0, r.id)

                prev = None
                for rec in sorted(recs, key=order):
                    key = self.where.canonical(partition_key(rec.tenant, rec.user_id, rec.agent_id))
                    if prev is not None and key != prev:
                        self._pack([prev])
                    self._put(rec)
                    prev = key
                last_id = recs[-1].id
            self._pack(list(self._hot))  # built cold: kept packed until used
            self._compact()
            self._set_applied(start_seq)
        self._build_graphs()
        trim_heap()
        self.catch_up()
        self._mark_ready()

    def load_snapshot(self) -> bool:
        """Loads the last snapshot if there is a usable one (partitions lazily); False
        otherwise."""
        from retrieval_service.index import snapshots

        return snapshots.load(self)

    def save_snapshot(self, fail_after: int = -1) -> bool:
        """Writes the partitions changed since the last snapshot (see snapshots.py)."""
        from retrieval_service.index import snapshots

        return snapshots.save(self, fail_after)

    def _set_applied(self, seq: int) -> None:
        with self._cond:
            self.applied_seq = seq
            self._cond.notify_all()

    def _mark_ready(self) -> None:
        with self._cond:
            self.ready = True
            self._cond.notify_all()

    def _partition(self, key: tuple[str, str]) -> Partition:
        p = self.partitions.get(key)
        if p is None:
            # Under the load lock: a search or the background loader may be decoding this
            # partition (packed, or from the snapshot) right now. Checked without it, a new
            # empty one could replace it and drop every row it held (bench-faults saw an
            # acknowledged write missing from the index after a retrieval restart).
            with self._load_lock:
                p = self._load_stored(key)  # the decoded one, or None: not held at all
                if p is None:
                    p = self.partitions[key] = self._new_partition()
                    self._hot[key] = time.monotonic()
                    return p
        if key in self._hot:
            self._hot[key] = time.monotonic()
        return p

    # -- packing small partitions ---------------------------------------------------------

    def _packable(self, p: Partition) -> bool:
        return (
            p.ann is None
            and 0 < p.n_alive <= min(self.pack_rows, self.ann_threshold)
            and p.n <= 2 * self.pack_rows
        )

    def _pack(self, keys) -> int:
        """Packs these partitions (those small enough) into bytes (snapshots.pack); the
        next query or write decodes them again. The caller holds the apply lock (no
        write is under way); a query holding the decoded copy keeps reading it."""
        from retrieval_service.index import snapshots

        if self.pack_rows <= 0:
            self._hot.clear()
            return 0
        done = 0
        with self._load_lock:
            for key in keys:
                p = self.partitions.get(key)
                self._hot.pop(key, None)
                if p is None or not self._packable(p):
                    continue
                self._stored[key] = self._arena.put(snapshots.pack(p))
                del self.partitions[key]
                done += 1
        return done

    def pack_idle(self, idle_s: float | None = None) -> int:
        """Packs the small partitions unused for idle_s (default pack_idle_s); returns how
        many. The tail thread calls it between rounds."""
        idle_s = self.pack_idle_s if idle_s is None else idle_s
        now = time.monotonic()
        due = [k for k, t in list(self._hot.items()) if now - t >= idle_s]
        if not due:
            return 0
        with self._apply_lock:
            done = self._pack(due)
            if self._arena.wasteful():
                with self._load_lock:
                    self._stored.update(
                        self._arena.compact(
                            {k: e for k, e in self._stored.items() if isinstance(e, int)}
                        )
                    )
            return done

    def _forget_packed(self, key: tuple[str, str]) -> None:
        """Drops a held but undecoded partition, and its ids from `where`."""
        from retrieval_service.index import snapshots

        entry = self._stored.pop(key, None)
        if isinstance(entry, int):
            for mid in snapshots.packed_ids(self._arena.get(entry)).tolist():
                if self.where.get(mid) == key:
                    self.where.pop(mid)
            self._arena.free(entry)

    def held(self) -> set[tuple[str, str]]:
        """The keys of every partition held here: decoded, packed or in the snapshot."""
        with self._load_lock:
            return set(self.partitions) | set(self._stored)

    def packed_rows(self) -> int:
        """Rows held in packed partitions."""
        from retrieval_service.index import snapshots

        with self._load_lock:
            return sum(
                snapshots.packed_rows(self._arena.get(e))
                for e in self._stored.values()
                if isinstance(e, int)
            )

    # -- ownership ------------------------------------------------------------------------

    def owns(self, key: tuple[str, str]) -> bool:
        return self.ring.owns(key)

    def _holds(self, key: tuple[str, str]) -> bool:
        """Owned, or borrowed (built here to answer for an owner that could not)."""
        return key in self.partitions or key in self._stored or self.ring.owns(key)

    def _load_stored(self, key: tuple[str, str]) -> Partition | None:
        """Decodes one held partition: packed, or in the loaded snapshot (first use)."""
        from retrieval_service.index import snapshots

        with self._load_lock:
            p = self.partitions.get(key)
            if p is not None:
                return p
            entry = self._stored.get(key)
            if entry is None:
                return None
            packed = isinstance(entry, int)
            p = snapshots.decode(
                self._arena.get(entry) if packed else self._store.read(entry),
                self.dim,
                self.ann_threshold,
                self.lexical_window,
                self.smoothing,
            )
            if not packed:  # a packed partition's ids are in `where` already
                for mid in p.row_of:
                    self.where[mid] = key
            self.partitions[key] = p
            del self._stored[key]
            if packed:
                self._arena.free(entry)
            if self.pack_rows > 0 and self._packable(p):
                self._hot[key] = time.monotonic()
        if p.needs_ann():
            p.build_ann()
        return p

    def _absorb(self, key: tuple[str, str]) -> None:
        """Reads one partition of the loaded snapshot: a packed one is kept packed (its
        bytes copied out of the segment, its ids put in `where`), any other is decoded."""
        from retrieval_service.index import snapshots

        with self._load_lock:
            entry = self._stored.get(key)
            if not isinstance(entry, list):
                return
            buf = self._store.read(entry)
            if self.pack_rows > 0 and snapshots.is_packed(buf):
                for mid in snapshots.packed_ids(buf).tolist():
                    self.where[mid] = key
                self._stored[key] = self._arena.put(buf)
                return
        self._load_stored(key)

    def _load_rest(self) -> None:
        """Loads the snapshot's remaining partitions in the background."""
        for key in [k for k, e in list(self._stored.items()) if isinstance(e, list)]:
            if self._stop.is_set():
                return
            try:
                self._absorb(key)
            except Exception:  # noqa: BLE001 - a query will load (or fail on) it later
                log.exception("loading index partition %s failed", key)

    def start_loader(self) -> None:
        if self._stored:
            threading.Thread(target=self._load_rest, name="index-load", daemon=True).start()

    def _vector(self, rec: MemoryRecord) -> np.ndarray | None:
        if rec.embedding is None:
            return None
        vec = from_bytes(rec.embedding)
        return vec if vec.shape[0] == self.dim else None

    def discover(self) -> set[tuple[str, str]]:
        """Every partition key the database has memories for."""
        return adoption.discover(self)

    def adopt(self, keys: Iterable[tuple[str, str]], held: bool = False) -> int:
        """Builds partitions from the database by scope (see adoption.py)."""
        return adoption.adopt(self, keys, held)

    def set_view(self, view: View) -> None:
        """The rings changed: holds from now on what view says (the tail applies new rows
        by it at once); rehome builds what is missing, release drops the rest later."""
        self.ring = view

    def rehome(self) -> int:
        return adoption.rehome(self)

    def release(self, grace_s: float) -> int:
        return adoption.release(self, grace_s)

    @staticmethod
    def _records_for(s, rows, want) -> dict[int, MemoryRecord]:
        ids = {
            r.memory_id
            for r in rows
            if r.op == "put"
            and r.tenant is not None
            and want(partition_key(r.tenant, r.user_id, r.agent_id))
        }
        if not ids:
            return {}
        # Core rows (read by attribute like records), not ORM objects: a third of the cost.
        return {r.id: r for r in s.execute(_RECORDS, {"ids": list(ids)})}

    def partition(self, key: tuple[str, str], borrow: bool = True) -> Partition | None:
        """The partition for a scoped query: loaded, or loaded now from the snapshot, or
        (not owned here, borrow) built now from the database and kept for a while."""
        p = self.partitions.get(key)
        if p is None:  # packed or not read yet (under the load lock, see _partition)
            p = self._load_stored(key)
        if p is None and borrow and not self.ring.owns(key):
            self.adopt([key])
            p = self._load_stored(key)  # decoded, or adopted small: packed
            if p is not None:  # borrowed: kept while it is used
                self._used[key] = time.monotonic()
        elif p is not None and key in self._used:
            self._used[key] = time.monotonic()
        if p is not None and key in self._hot:
            self._hot[key] = time.monotonic()
        # A partition this replica stopped owning answers stale forwards until
        # adoption.release drops it; using it does not make it borrowed.
        return p

    def _drop_idle_borrowed(self) -> None:
        now = time.monotonic()  # borrowed partitions are the ones in _used
        idle = [
            k
            for k, t in list(self._used.items())
            if now - t > self.borrowed_idle_s and not self.ring.owns(k)
        ]
        if not idle:
            return
        with self._apply_lock, self._load_lock:
            for k in idle:
                p = self.partitions.pop(k, None)
                self._forget_packed(k)
                self._hot.pop(k, None)
                self._used.pop(k, None)
                self._dirty.discard(k)
                if p is not None:
                    for mid in p.row_of:
                        self.where.pop(mid, None)

    def _put(self, rec: MemoryRecord) -> None:
        if rec.embedding is None:
            return
        vec = from_bytes(rec.embedding)
        if vec.shape[0] != self.dim:
            log.warning("memory %s: %d-d vector, index is %d-d", rec.id, vec.shape[0], self.dim)
            return
        # One key object per partition (its dict entries share it), not one per write.
        key = self.where.canonical(partition_key(rec.tenant, rec.user_id, rec.agent_id))
        if not self._holds(key):
            return  # another replica's
        self._partition(key).put(rec, vec)
        with self._load_lock:  # a snapshot partition being decoded adds its ids too
            self.where[rec.id] = key
        self._changed(key)
        self._pack_if_crowded()

    def _changed(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        if self._touched is not None:
            self._touched.add(key)

    def _pack_if_crowded(self) -> None:
        """Past HOT_MAX decoded small partitions, packs the least recently used half."""
        if len(self._hot) > HOT_MAX:
            hot = self._hot
            self._pack(sorted(hot, key=lambda k: hot.get(k, 0.0))[: len(hot) // 2])

    def _put_many(self, recs: list[MemoryRecord]) -> None:
        """_put of each record in order: a partition's new rows are appended together."""
        if len(recs) < 2:
            for rec in recs:
                self._put(rec)
            return
        groups: dict[tuple[str, str], list] = {}
        held: dict[tuple[str, str], bool] = {}
        order = []  # (record, key) in seq order
        for rec in recs:
            if rec.embedding is None:
                continue
            key = self.where.canonical(partition_key(rec.tenant, rec.user_id, rec.agent_id))
            if key not in held:
                held[key] = self._holds(key)
            if held[key]:  # else another replica's
                groups.setdefault(key, []).append(rec)
                order.append((rec, key))
        # A memory that moved between partitions (never today) must leave the old one.
        # (Ids are looked up and set in seq order: ascending ids keep the map's fast path.)
        if any(self.where.get(r.id, k) != k for r, k in order):
            for rec, _ in order:
                self._put(rec)
            return
        done = set()
        for key, group in groups.items():
            vecs = np.frombuffer(b"".join(r.embedding for r in group), dtype="<f4")
            if len(vecs) != len(group) * self.dim:  # some row of another dimension
                for rec in group:
                    self._put(rec)
                continue
            self._partition(key).put_many(group, vecs.reshape(len(group), self.dim))
            done.add(key)
            self._changed(key)
        with self._load_lock:  # a snapshot partition being decoded adds its ids too
            for rec, key in order:
                if key in done:
                    self.where[rec.id] = key
        self._pack_if_crowded()

    def _remove(self, memory_id: int) -> None:
        with self._load_lock:
            key = self.where.pop(memory_id, None)
        unread = [k for k, e in list(self._stored.items()) if isinstance(e, list)]
        if key is None and unread:  # maybe in a partition not loaded yet
            for k in unread:
                self._absorb(k)
            with self._load_lock:
                key = self.where.pop(memory_id, None)
        if key is not None:
            p = self._partition(key)
            p.remove(memory_id)
            if p.n_alive == 0:  # nothing left of the scope, not even its name
                del self.partitions[key]
                self._hot.pop(key, None)
            self.removed_since_snapshot = True
            self._purge.add(key)  # its old snapshot segment must go (snapshots.py)
            self._changed(key)

    def _compact(self, keys=None) -> None:
        """Replaces partitions (all, or those in keys) that are a quarter tombstones (under
        the apply lock)."""
        items = (
            list(self.partitions.items())
            if keys is None
            else [(k, self.partitions[k]) for k in keys if k in self.partitions]
        )
        for key, p in items:
            if p.needs_compaction():
                self.partitions[key] = p.compact()
                self._dirty.add(key)

    def _build_graphs(self, keys=None) -> None:
        """Builds graphs for partitions (all, or those in keys) that grew past the
        threshold. Outside the apply lock: a build takes minutes at 1M memories, and
        build_ann takes in rows that arrive meanwhile."""
        parts = (
            list(self.partitions.values())
            if keys is None
            else [self.partitions[k] for k in keys if k in self.partitions]
        )
        for p in parts:
            if p.needs_ann():
                p.build_ann()

    def catch_up(self) -> int:
        """Applies every change after applied_seq; returns the number applied."""
        applied = 0
        with self._apply_lock:
            self._touched = set()  # the partitions this catch-up changes
            while True:
                with self.db.read() as s:
                    # Each row with its memory's scope: rows of partitions another replica
                    # owns are skipped without loading their memories.
                    entries = self._cursor.read(
                        s,
                        self.applied_seq,
                        CATCH_UP_ROWS,
                        fetch=changelog.read_after_with_scope,
                    )
                    recs = self._records_for(s, entries, self._holds)
                if not entries:
                    break
                puts: list[MemoryRecord] = []  # a run of puts, applied together
                for e in entries:
                    rec = recs.get(e.memory_id) if e.op == "put" else None
                    if rec is not None:
                        puts.append(rec)
                        continue
                    if e.op != "put" or e.tenant is None:  # removed, or no longer exists
                        self._put_many(puts)
                        puts = []
                        self._remove(e.memory_id)
                self._put_many(puts)
                self._set_applied(entries[-1].seq)
                applied += len(entries)
                if len(entries) < CATCH_UP_ROWS and not self._cursor.waiting:
                    # Caught up with what was visible; a later commit wakes the tailer
                    # again, so no second read (each costs a transaction) to find nothing.
                    break
            touched, self._touched = self._touched, None
            if applied:
                self._compact(touched)  # only these can have changed
        if applied:
            self._build_graphs(touched)
        return applied

    # -- tailing --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-tail", daemon=True)
        self._thread.start()
        threading.Thread(target=self._snapshot_loop, name="index-snapshot", daemon=True).start()

    def wake(self, seq: int | None = None) -> None:
        if seq is None or seq > self.applied_seq:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._urgent.clear()
            try:
                if not self.ready:
                    if self.load_snapshot():
                        self.start_loader()  # the rest of the partitions, in the background
                    else:
                        self.load_all()
                else:
                    self.catch_up()
                    self._drop_idle_borrowed()
                    if time.monotonic() - self._packed_at >= min(1.0, self.pack_idle_s):
                        self.pack_idle()
                        self._packed_at = time.monotonic()
            except Exception:  # noqa: BLE001 - database hiccup: retry after a pause
                log.exception("index tail failed")
                self._stop.wait(1.0)
            ended = time.monotonic()
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            gap = ended + self.apply_gap_s - time.monotonic()
            if gap > 0 and self.ready:
                self._urgent.wait(gap)  # more writes arrive meanwhile: one round for all

    def _snapshot_loop(self) -> None:
        """Snapshots on their own thread, so the tail thread keeps applying meanwhile:
        every snapshot_interval, and soon after a removal (a forgotten memory must leave
        the snapshot files too)."""
        last = time.monotonic()
        step = min(self.snapshot_interval, self.erase_snapshot_delay_s / 4, 0.25)
        while not self._stop.wait(step):
            since = time.monotonic() - last
            if since < self.snapshot_interval and not (
                self.removed_since_snapshot and since > self.erase_snapshot_delay_s
            ):
                continue
            try:
                self.save_snapshot()
            except Exception:  # noqa: BLE001 - a missed snapshot only slows the next start
                log.exception("index snapshot failed")
            last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.save_snapshot()
        except Exception:  # noqa: BLE001 - a missing snapshot only slows the next start
            log.exception("final index snapshot failed")
        if self._store is not None:
            self._store.close()

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Blocks until applied_seq >= seq or timeout; True if reached."""
        if self.ready and seq <= self.applied_seq:
            return True
        self._urgent.set()
        self.wake(seq)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.ready and self.applied_seq >= seq):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
                self._urgent.set()
                self._wake.set()
        return True

    def partitions_for(self, tenant: str, user_id: str, agent_id: str) -> Iterable[Partition]:
        """A user's partition; otherwise every partition of the tenant this replica holds
        (other replicas answer for theirs: see routing.py)."""
        if user_id:
            p = self.partition(partition_key(tenant, user_id, ""))
            return [p] if p is not None else []
        for k in [k for k in list(self._stored) if k[0] == tenant]:
            self._load_stored(k)
        # Every partition held here, owned or not: during an ownership move a coordinator
        # keeps one copy of each (routing.FanOut), and every copy is caught up alike.
        now = time.monotonic()
        out = []
        for k, p in list(self.partitions.items()):
            if k[0] == tenant:
                out.append(p)
                if k in self._hot:  # in use: not packed while the query maps them to keys
                    self._hot[k] = now
        return out

    def check_ready(self) -> None:
        if not self.ready:
            raise RuntimeError("index is still loading")

    def stats(self) -> dict:
        return {
            "applied_seq": self.applied_seq,
            "partitions": len(self.partitions) + len(self._stored),
            "rows": sum(p.n_alive for p in self.partitions.values()) + self.packed_rows(),
            "packed_partitions": self._arena.entries,
            "packed_bytes": self._arena.nbytes(),
            "ann_partitions": sum(1 for p in self.partitions.values() if p.ann is not None),
        }


def smoothing_from(settings) -> Smoothing:
    return Smoothing(
        dense_next=settings.rank_dense_next,
        lexical_prev=settings.rank_lexical_prev,
        window_weight=settings.rank_window_weight,
        outcome=settings.rank_outcome,
    )


def build_from_settings(
    settings, embedder_name: str, dim: int, db: Database | None = None, ring: View | None = None
) -> IndexManager:
    return IndexManager(
        db or Database(settings.sqlalchemy_url()),
        dim,
        embed_model=embedder_name,
        snapshot_dir=settings.index_dir(),
        poll_interval=settings.tail_poll_interval_s,
        snapshot_interval=settings.snapshot_interval_s,
        ann_threshold=settings.ann_threshold,
        lexical_window=settings.lexical_window,
        smoothing=smoothing_from(settings),
        ring=ring,
        borrowed_idle_s=settings.borrowed_idle_s,
        apply_gap_s=settings.tail_apply_gap_s,
        pack_rows=settings.index_pack_rows,
        pack_idle_s=settings.index_pack_idle_s,
    )


def rebuild(settings, embedder_name: str, dim: int) -> IndexManager:
    """Rebuilds every partition from the database alone and writes a fresh snapshot."""
    index = build_from_settings(settings, embedder_name, dim)
    index.load_all()
    index.snapshot_seq = -1
    index.save_snapshot()
    return index
