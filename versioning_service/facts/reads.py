"""Reads: the current value, history, as-of (bi-temporal) and lists of facts and audit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from shared.db.models import (
    FactKey,
    FactVersion,
)
from shared.db.types import utcnow
from shared.errors import InvalidArgument, NotFound
from versioning_service import audit, conflicts
from versioning_service.facts.base import StoreBase
from versioning_service.facts.model import Page
from versioning_service.versions import (
    CONFLICTED,
    CURRENT,
    RETRACTED,
    iso,
    live,
    norm_predicate,
)


class Reads(StoreBase):
    def current(self, tenant, user_id, agent_id, subject, predicate):
        """(fact, conflicting, keys): the current version, or while the key is conflicted
        one side of it, and the other sides (on this key or, for a semantic conflict,
        another)."""
        with self.db.read() as s:
            key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
            versions = live(s, key.id)
            cur = next((v for v in versions if v.status == CURRENT), None)
            mine = [v for v in versions if v.status == CONFLICTED]
            if cur is None and not mine:
                raise NotFound(f"fact {subject!r} {predicate!r} has no current version")
            others: list[FactVersion] = []
            if mine:
                mids = {v.memory_id for v in mine}
                for c in conflicts.open_conflicts(s, tenant, user_id, agent_id):
                    if conflicts.member_memory_ids(s, c) & mids:
                        others += [v for v in conflicts.live_members(s, c) if v.key_id != key.id]
            if cur is None:
                cur = max(mine, key=lambda v: (v.valid_from, v.record_time, v.id))
            conflicting = [v for v in mine if v is not cur]
            seen = {v.id for v in conflicting} | {cur.id}
            for v in others:
                if v.id not in seen:
                    seen.add(v.id)
                    conflicting.append(v)
            keys = self._keys(s, {v.key_id for v in [cur, *conflicting]})
            return cur, conflicting, keys

    def history(self, tenant, user_id, agent_id, subject, predicate):
        with self.db.read() as s:
            key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
            rows = list(
                s.scalars(
                    select(FactVersion)
                    .where(FactVersion.key_id == key.id)
                    .order_by(FactVersion.record_time, FactVersion.id)
                )
            )
            return rows, key

    def as_of(
        self,
        tenant: str,
        user_id: str,
        agent_id: str,
        subject: str,
        predicate: str,
        valid_time: datetime | None,
        record_time: datetime | None,
    ) -> tuple[FactVersion, FactKey]:
        """What was true at valid time T, as memlake believed it at record time R (each
        defaults to now): among the versions believed at R, not retracted, whose valid
        interval contains T; CURRENT/SUPERSEDED before CONFLICTED, then the latest
        valid_from."""
        now = utcnow()
        t, r = valid_time or now, record_time or now
        with self.db.read() as s:
            key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
            rows = list(
                s.scalars(
                    select(FactVersion).where(
                        FactVersion.key_id == key.id,
                        FactVersion.record_time <= r,
                        (FactVersion.record_end_time.is_(None)) | (FactVersion.record_end_time > r),
                        FactVersion.status != RETRACTED,
                        FactVersion.valid_from <= t,
                        (FactVersion.valid_to.is_(None)) | (FactVersion.valid_to > t),
                    )
                )
            )
            if not rows:
                raise NotFound(
                    f"nothing was believed true for {subject!r} {predicate!r} at valid time "
                    f"{iso(t)} as of record time {iso(r)}"
                )
            best = min(
                rows,
                key=lambda v: (
                    v.status == CONFLICTED,
                    -v.valid_from.timestamp(),
                    -v.record_time.timestamp(),
                    -v.id,
                ),
            )
            return best, key

    def list_facts(
        self,
        tenant: str,
        user_id: str,
        agent_id: str,
        subject: str,
        include_history: bool,
        after: int,
        limit: int,
    ) -> Page:
        with self.db.read() as s:
            q = (
                select(FactVersion)
                .join(FactKey, FactKey.id == FactVersion.key_id)
                .where(FactVersion.tenant == tenant, FactVersion.id > after)
            )
            if user_id:
                q = q.where(FactKey.user_id == user_id)
            if agent_id:
                q = q.where(FactKey.agent_id == agent_id)
            if subject.strip():
                subj = self.resolve_subject(s, tenant, user_id, agent_id, subject)
                q = q.where(FactKey.subject_norm == subj)
            if not include_history:
                q = q.where(
                    FactVersion.record_end_time.is_(None),
                    FactVersion.status.in_((CURRENT, CONFLICTED)),
                )
            rows = list(s.scalars(q.order_by(FactVersion.id).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            keys = self._keys(s, {v.key_id for v in rows})
            return Page(rows, keys, rows[-1].id if more and rows else None)

    def list_audit(
        self,
        tenant: str,
        user_id: str,
        agent_id: str,
        subject: str,
        predicate: str,
        after: int,
        limit: int,
    ) -> audit.AuditPage:
        with self.db.read() as s:
            subj = pred = None
            if subject.strip():
                subj = self.resolve_subject(s, tenant, user_id, agent_id, subject)
                if predicate.strip():
                    pred = norm_predicate(predicate)
            elif predicate.strip():
                raise InvalidArgument("subject", "is required when predicate is given")
            return audit.list_events(
                s,
                tenant,
                user_id=user_id,
                agent_id=agent_id,
                subject_norm=subj,
                predicate_norm=pred,
                after=after,
                limit=limit,
            )
