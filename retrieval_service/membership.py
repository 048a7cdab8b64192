"""Retrieval replicas agreeing, through the database, on which of them own partitions.

Each replica keeps a row in retrieval_members (ordinal, address, heartbeat, the ring
epoch it is ready for, leaving) and renews its heartbeat every heartbeat_s. One row of
retrieval_ring holds two rings:

- the target ring: the live members (heartbeat younger than ttl_s, not leaving). When the
  live set differs from it, any member proposes a new target at the next epoch (a
  compare-and-set on the epoch, so one proposal wins);
- the serving ring: the one queries are routed by. A member in the target builds the
  partitions it owns there from the database by scope, catches up with the change log,
  then reports ready_epoch = the target's epoch. Once every target member is live and
  ready for it, any member makes the target the serving ring (compare-and-set again).

A replica holds what it owns in either ring, so the old owner keeps serving a partition
until the new owner is ready, and drops it handover_grace_s after the serving ring moved
on (peers still routing by the previous ring reach it meanwhile, and it answers). A
leaving replica (SIGTERM) marks itself leaving and waits until the serving ring no
longer names it; one killed outright leaves when its heartbeat expires, and until the
others are ready its partitions are built on demand by whoever a query reaches.

The database and not DNS: a headless Service's records say which pods are up, not which
have caught up on what they own, and every replica would see them change at a different
moment; the table gives one ordered version (the epoch) and a ready flag, and works the
same on the embedded SQLite file shared by processes on one machine. Heartbeats are the
replicas' wall clocks (kept in step by NTP on Kubernetes nodes; ttl_s is seconds).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from retrieval_service.ownership import Ring, View
from shared.db.engine import Database
from shared.db.models import RetrievalMember, RetrievalRing

log = logging.getLogger("memlake.membership")
RING_ROW = 1


def _members(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _text(members) -> str:
    return ",".join(str(m) for m in sorted(members))


class Membership:
    def __init__(
        self,
        db: Database,
        ordinal: int,
        address: str,
        *,
        heartbeat_s: float = 1.0,
        ttl_s: float = 10.0,
        grace_s: float = 5.0,
    ) -> None:
        self.db, self.ordinal, self.address = db, ordinal, address
        self.heartbeat_s, self.ttl_s, self.grace_s = heartbeat_s, ttl_s, grace_s
        self.incarnation = secrets.token_hex(8)
        self.view = View(ordinal, Ring((ordinal,)), Ring((ordinal,)), {ordinal: address}, True)
        self.ready_epoch = 0  # the target epoch whose partitions this replica holds
        self.leaving = False
        self.index = None
        self._homed: tuple[int, int] | None = None  # (target epoch, serving epoch) rehomed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the rows -----------------------------------------------------------------------------

    def _beat(self) -> None:
        """Renews this replica's row (re-creates it if it is gone)."""
        values = dict(
            address=self.address,
            incarnation=self.incarnation,
            heartbeat=time.time(),
            ready_epoch=self.ready_epoch,
            leaving=self.leaving,
        )
        with self.db.write() as s:
            done = s.execute(
                update(RetrievalMember)
                .where(RetrievalMember.ordinal == self.ordinal)
                .values(**values)
            ).rowcount
        if not done:
            try:
                with self.db.write() as s:
                    s.add(RetrievalMember(ordinal=self.ordinal, **values))
            except IntegrityError:  # another process of this ordinal: the next beat wins
                pass

    def _read(self):
        with self.db.read() as s:
            ring = s.get(RetrievalRing, RING_ROW)
            members = list(s.scalars(select(RetrievalMember)))
            s.expunge_all()
        return ring, members

    def step(self) -> View:
        """One look at the table: propose or commit a ring if due, then the view."""
        ring, members = self._read()
        now = time.time()
        live = {m.ordinal: m for m in members if now - m.heartbeat < self.ttl_s}
        wanted = tuple(sorted(o for o, m in live.items() if not m.leaving))
        if ring is None:
            # The first replica ever: the ring is whoever is up (each builds its share).
            try:
                with self.db.write() as s:
                    t = _text(wanted or (self.ordinal,))
                    s.add(
                        RetrievalRing(
                            id=RING_ROW, serving_epoch=1, serving=t, target_epoch=1, target=t
                        )
                    )
            except IntegrityError:
                pass  # another replica created it first
            ring, members = self._read()
        target = _members(ring.target)
        if wanted and wanted != target:
            with self.db.write() as s:
                moved = s.execute(
                    update(RetrievalRing)
                    .where(
                        RetrievalRing.id == RING_ROW,
                        RetrievalRing.target_epoch == ring.target_epoch,
                    )
                    .values(target_epoch=ring.target_epoch + 1, target=_text(wanted))
                ).rowcount
            if moved:
                log.info("ring epoch %d proposed: %s", ring.target_epoch + 1, _text(wanted))
            ring, members = self._read()
        elif ring.target_epoch > ring.serving_epoch and all(
            o in live and live[o].ready_epoch == ring.target_epoch for o in target
        ):
            with self.db.write() as s:
                moved = s.execute(
                    update(RetrievalRing)
                    .where(
                        RetrievalRing.id == RING_ROW,
                        RetrievalRing.target_epoch == ring.target_epoch,
                        RetrievalRing.serving_epoch < ring.target_epoch,
                    )
                    .values(serving_epoch=ring.target_epoch, serving=ring.target)
                ).rowcount
            if moved:
                log.info("ring epoch %d serving: %s", ring.target_epoch, ring.target)
            ring, members = self._read()
        self.view = View(
            self.ordinal,
            Ring(_members(ring.serving), ring.serving_epoch),
            Ring(_members(ring.target), ring.target_epoch),
            {m.ordinal: m.address for m in members},
            True,
        )
        return self.view

    # -- running ------------------------------------------------------------------------------

    def join(self) -> View:
        """Registers this replica (not ready) and returns the rings as they are."""
        self._beat()
        return self.step()

    def start(self, index) -> None:
        """Heartbeats on one thread; watching the rings and moving partitions on another
        (a long build must not delay the heartbeat)."""
        self.index = index
        for name, fn in (("membership-beat", self._beat_loop), ("membership", self._watch)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._beat()
            except Exception as exc:  # noqa: BLE001 - the database is away: the next beat
                log.warning("membership heartbeat failed: %s", type(exc).__name__)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow(self.step())
            except Exception as exc:  # noqa: BLE001 - the database is away: the next round
                log.warning("membership round failed: %s: %s", type(exc).__name__, exc)
            self._wake.wait(self.heartbeat_s)
            self._wake.clear()

    def _follow(self, view: View) -> None:
        """Holds what view says: builds what is missing (once the index has loaded), then
        reports ready for the target epoch; drops what is no longer held after the grace.
        A leaving replica keeps its view: it answers stale forwards from what it holds until
        it exits, and its last snapshot keeps its partitions (consistent, since it applied
        the log to them to the end), so a restart loads them instead of building them."""
        if self.leaving:
            return
        index = self.index
        index.set_view(view)
        if not index.ready:
            return
        epochs = (view.target.epoch, view.serving.epoch)
        if self._homed != epochs:
            built = index.rehome()
            index.catch_up()  # caught up with the log before saying so
            self._homed = epochs
            if built:
                log.info("ring epoch %d: %d partitions built here", view.target.epoch, built)
        if self.ordinal in view.target.members and self.ready_epoch != view.target.epoch:
            self.ready_epoch = view.target.epoch
            self._beat()
            self._wake.set()  # look again at once: this may complete the target
        index.release(self.grace_s)

    def leave(self, timeout: float) -> bool:
        """Marks this replica leaving and waits (up to timeout) until the serving ring no
        longer names it, then a grace for peers still routing by the old ring. True when
        the others took over; False when there was nobody to hand over to or time ran out."""
        t0 = time.monotonic()
        end = t0 + timeout
        self.leaving = True
        try:
            self._beat()
        except Exception:  # noqa: BLE001 - the heartbeat expires instead
            log.exception("could not mark this replica leaving")
            return False
        self._wake.set()
        while time.monotonic() < end:
            view = self.view
            if self.ordinal not in view.serving.members:
                log.info("partitions handed over in %.1f s", time.monotonic() - t0)
                self._stop.wait(max(0.0, min(self.grace_s, end - time.monotonic())))
                return True
            others = [m for m in view.target.members if m != self.ordinal]
            if not others and view.target.epoch == view.serving.epoch:
                _, members = self._read()
                now = time.time()
                if not any(
                    m.ordinal != self.ordinal and not m.leaving and now - m.heartbeat < self.ttl_s
                    for m in members
                ):
                    return False  # the last replica: nobody to hand over to
            time.sleep(min(self.heartbeat_s, 0.2))
        log.warning("partitions not handed over within %.1f s", timeout)
        return False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        if self.leaving:
            try:
                with self.db.write() as s:
                    s.execute(
                        delete(RetrievalMember).where(
                            RetrievalMember.ordinal == self.ordinal,
                            RetrievalMember.incarnation == self.incarnation,
                        )
                    )
            except Exception:  # noqa: BLE001 - its heartbeat expires instead
                log.exception("could not remove this replica's membership row")


def membership_from_settings(s, db: Database) -> Membership | None:
    from retrieval_service.ownership import identity_from_settings

    ident = identity_from_settings(s)
    if ident is None:
        return None
    return Membership(
        db,
        *ident,
        heartbeat_s=s.membership_heartbeat_s,
        ttl_s=s.membership_ttl_s,
        grace_s=s.handover_grace_s,
    )
