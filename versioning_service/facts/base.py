"""What every fact-store operation shares: the database, the key lookup and lock, one
write transaction with retries, and the idempotent response."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from shared import changelog
from shared.db.engine import Database
from shared.db.models import (
    FactKey,
    FactVersion,
    IdempotencyKey,
    SubjectAlias,
    TenantSetting,
)
from shared.db.types import utcnow
from shared.embedding import Embedder
from shared.errors import AlreadyExists, InvalidArgument, NotFound
from versioning_service.facts.model import _RETRY_SQLSTATES, SUPERSEDE
from versioning_service.versions import (
    CONFLICTED,
    SUBJECT_LOCK_PREDICATE,
    Tx,
    last_record_time,
    norm,
    norm_predicate,
)


class StoreBase:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        notify: Callable[[int], None],
        *,
        default_policy: int = SUPERSEDE,
        semantic_threshold: float = 0.7,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.notify = notify
        self.default_policy = default_policy
        self.semantic_threshold = semantic_threshold

    # -- keys -----------------------------------------------------------------------------

    @staticmethod
    def resolve_subject(s: Session, tenant: str, user_id: str, agent_id: str, subject: str) -> str:
        n = norm(subject)
        alias = s.get(SubjectAlias, (tenant, user_id, agent_id, n))
        return alias.subject_norm if alias else n

    def find_key(
        self, s: Session, tenant: str, user_id: str, agent_id: str, subject: str, predicate: str
    ) -> FactKey | None:
        subj = self.resolve_subject(s, tenant, user_id, agent_id, subject)
        return s.scalar(
            select(FactKey).where(
                FactKey.tenant == tenant,
                FactKey.user_id == user_id,
                FactKey.agent_id == agent_id,
                FactKey.subject_norm == subj,
                FactKey.predicate_norm == norm_predicate(predicate),
            )
        )

    @staticmethod
    def lock_key(
        s: Session, tenant: str, user_id: str, agent_id: str, subj: str, pred: str
    ) -> FactKey:
        """Gets or creates the key row and locks it for this transaction."""
        where = (
            FactKey.tenant == tenant,
            FactKey.user_id == user_id,
            FactKey.agent_id == agent_id,
            FactKey.subject_norm == subj,
            FactKey.predicate_norm == pred,
        )
        for _ in range(3):
            key = s.scalar(
                select(FactKey)
                .where(*where)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if key is not None:
                return key
            try:
                with s.begin_nested():
                    key = FactKey(
                        tenant=tenant,
                        user_id=user_id,
                        agent_id=agent_id,
                        subject_norm=subj,
                        predicate_norm=pred,
                        conflicted=False,
                        lock_version=0,
                    )
                    s.add(key)
                    s.flush()
                return key
            except IntegrityError:
                continue  # a concurrent assert created it; lock theirs
        raise RuntimeError("could not create or lock the fact key")

    def _tx(
        self,
        s: Session,
        tenant: str,
        keys: list[FactKey],
        actor: str,
        reason: str,
        *,
        last: datetime | None | bool = False,
    ) -> Tx:
        """After the keys are locked: the record time of this change, never before one
        already written on these keys (last: that time, when the caller has read it)."""
        now = utcnow()
        if last is False:
            last = last_record_time(s, [k.id for k in keys])
        tx = Tx(s, tenant, max(now, last) if last else now, actor=actor, reason=reason)
        tx.keys.update({k.id: k for k in keys})
        return tx

    def _policy(self, s: Session, tenant: str, requested: int) -> int:
        if requested:
            return requested
        ts = s.get(TenantSetting, tenant)
        return ts.conflict_policy if ts is not None and ts.conflict_policy else self.default_policy

    @staticmethod
    def _remember_response(
        s: Session, tenant: str, request_id: str, fp: str, data: bytes, key: FactKey
    ):
        try:
            with s.begin_nested():
                s.add(
                    IdempotencyKey(
                        tenant=tenant,
                        request_id=request_id,
                        fingerprint=fp,
                        response=data,
                        user_id=key.user_id,
                        agent_id=key.agent_id,
                        fact_key_id=key.id,
                    )
                )
                s.flush()
        except IntegrityError as exc:
            raise AlreadyExists(
                f"request_id {request_id!r} is being used by a concurrent request",
                reason="REQUEST_ID_REUSED",
            ) from exc

    @staticmethod
    def _finish(tx: Tx) -> int:
        """Key flags and the change log: the last statements of a write."""
        for k in tx.keys.values() if tx.conflicts_changed else ():
            if k.predicate_norm == SUBJECT_LOCK_PREDICATE:
                continue
            k.conflicted = bool(
                tx.s.scalar(
                    select(
                        exists().where(
                            FactVersion.key_id == k.id,
                            FactVersion.record_end_time.is_(None),
                            FactVersion.status == CONFLICTED,
                        )
                    )
                )
            )
        if not tx.touched:
            return 0
        return changelog.append(tx.s, tx.tenant, sorted(tx.touched))

    def _retrying(self, fn):
        """Runs one write transaction, again if Postgres chose it as a deadlock victim."""
        for attempt in range(4):
            try:
                return fn()
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if attempt == 3 or code not in _RETRY_SQLSTATES:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- assert ---------------------------------------------------------------------------

    @staticmethod
    def _keys(s: Session, ids) -> dict[int, FactKey]:
        ids = list(ids)
        if not ids:
            return {}
        return {k.id: k for k in s.scalars(select(FactKey).where(FactKey.id.in_(ids)))}

    def _key_or_404(self, s, tenant, user_id, agent_id, subject, predicate) -> FactKey:
        if not subject.strip():
            raise InvalidArgument("key.subject", "is required")
        key = self.find_key(s, tenant, user_id, agent_id, subject, predicate)
        if key is None:
            raise NotFound(f"no fact for subject {subject!r} predicate {predicate!r}")
        return key
