"""Facts: assertion with conflict detection and policies, retraction, conflict resolution,
subject aliases, the tenant's default policy, and the reads (current, history, as-of,
list). No grpc.

A fact's key is (scope, subject, predicate) after normalisation (case, whitespace, and the
subject aliases registered for the scope). An assertion is compared with what is believed
for its key:

- same value as the version true at its valid_from: a DUPLICATE (its source is added);
- a different value over an overlapping valid interval: a conflict, decided by the policy
  (the request's, else the tenant's default, else the server's):
  SUPERSEDE: the later valid_from wins: the version it falls in is closed at its
  valid_from; an assertion older than a believed version is RECORDED_AS_HISTORY, valid
  until the next one begins;
  REJECT: FAILED_PRECONDITION with the current version in the error details;
  REVIEW: both kept as CONFLICTED, the key marked conflicted, a conflict queued.
- free-text facts (no predicate) each have their own key; a new one that is close in
  meaning (embedding cosine >= the measured threshold) to a believed fact of the same
  subject is a candidate conflict and is always queued for review (similarity is not proof).

Concurrency: every write locks its key row first (SELECT ... FOR UPDATE on Postgres;
SQLite serialises writers with BEGIN IMMEDIATE), then reads, then takes its record time,
so record times on a key only go forward and racing writers form one consistent chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from shared import changelog
from shared.db.engine import Database
from shared.db.models import (
    FactConflict,
    FactKey,
    FactVersion,
    IdempotencyKey,
    SubjectAlias,
    TenantSetting,
)
from shared.db.types import utcnow
from shared.embedding import Embedder
from shared.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shared.idempotency import Replay, prior_response
from versioning_service import audit, conflicts
from versioning_service.convert import fact_to_proto
from versioning_service.versions import (
    CONFLICTED,
    CURRENT,
    FREE_TEXT_PREFIX,
    RETRACTED,
    SUBJECT_LOCK_PREDICATE,
    SUPERSEDED,
    Tx,
    believed,
    contains,
    earliest,
    free_text_predicate,
    iso,
    last_record_time,
    live,
    new_version,
    nonempty,
    norm,
    norm_predicate,
    overlaps,
    retract,
    rewrite,
    statement_text,
)

SUPERSEDE, REJECT, REVIEW = (
    pb.CONFLICT_POLICY_SUPERSEDE,
    pb.CONFLICT_POLICY_REJECT,
    pb.CONFLICT_POLICY_REVIEW,
)
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure


def parse_policy(name: str) -> int:
    """ "SUPERSEDE" / "reject" / "CONFLICT_POLICY_REVIEW" -> enum value."""
    n = name.strip().upper().removeprefix("CONFLICT_POLICY_")
    try:
        value = pb.ConflictPolicy.Value(f"CONFLICT_POLICY_{n}")
    except ValueError:
        raise ValueError(
            f"unknown conflict policy {name!r}; use SUPERSEDE, REJECT or REVIEW"
        ) from None
    if not value:
        raise ValueError("the default conflict policy must be SUPERSEDE, REJECT or REVIEW")
    return value


def status_name(value: int) -> str:
    return pb.FactStatus.Name(value).removeprefix("FACT_STATUS_")


def policy_name(value: int) -> str:
    return pb.ConflictPolicy.Name(value).removeprefix("CONFLICT_POLICY_")


@dataclass
class FactIn:
    user_id: str
    agent_id: str
    subject: str
    predicate: str
    value: str
    typed_value: Any = None
    confidence: float = 1.0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: dict[str, Any] | None = None
    actor: str = ""
    reason: str = ""
    importance: float = 0.5


@dataclass
class AssertResult:
    version: FactVersion
    outcome: int
    previous: FactVersion | None
    key: FactKey
    seq: int = 0
    conflict_id: int | None = None


@dataclass
class Page:
    rows: list
    keys: dict[int, FactKey]
    next_after: int | None


class _Vector:
    """A fact's embedding, computed at most once and only when needed."""

    def __init__(self, embedder: Embedder, text: str) -> None:
        self.embedder, self.text, self.vec = embedder, text, None

    def get(self):
        if self.vec is None:
            self.vec = self.embedder.embed_one(self.text)
        return self.vec


def validate(f: FactIn) -> None:
    if not f.subject.strip():
        raise InvalidArgument("subject", "is required")
    if not f.value.strip():
        raise InvalidArgument("value", "is required")
    if not 0.0 <= f.confidence <= 1.0:
        raise InvalidArgument("confidence", "must be within [0, 1]")
    if f.valid_from and f.valid_to and f.valid_to <= f.valid_from:
        raise InvalidArgument("valid_to", "must be after valid_from")
    if len(f.subject) > 512:
        raise InvalidArgument("subject", "is at most 512 characters")
    if len(f.predicate) > 256:
        raise InvalidArgument("predicate", "is at most 256 characters")
    if f.predicate.strip().startswith(FREE_TEXT_PREFIX):
        raise InvalidArgument(
            "predicate", f"must not start with {FREE_TEXT_PREFIX!r} (free-text fact keys)"
        )


def page_limit(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE, MAX_PAGE)


class FactStore:
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

    def assert_fact(
        self,
        tenant: str,
        f: FactIn,
        *,
        policy: int = 0,
        request_id: str = "",
        fingerprint: str = "",
        encode: Callable[[AssertResult], bytes] | None = None,
    ) -> AssertResult | Replay:
        validate(f)
        if policy not in pb.ConflictPolicy.values():
            raise InvalidArgument("policy", f"unknown value {policy}")
        text = statement_text(f.subject, f.predicate, f.value)
        # Embedded outside the transaction, so no lock is held while the model runs, unless
        # the value is most likely a duplicate (which needs no vector): then only if the
        # transaction finds otherwise.
        vec = _Vector(self.embedder, text)
        if not self._likely_duplicate(tenant, f):
            vec.get()
        out: list = []

        def once():
            out.clear()
            with self.db.write() as s:
                out.append(self._assert_tx(s, tenant, f, policy, vec, request_id, fingerprint))
                res = out[0]
                if isinstance(res, AssertResult) and request_id and encode is not None:
                    self._remember_response(
                        s, tenant, request_id, fingerprint, encode(res), res.key
                    )
            return out[0]

        res = self._retrying(once)
        if isinstance(res, FailedPrecondition):
            raise res  # the REJECT audit row is committed
        if isinstance(res, AssertResult) and res.seq:
            self.notify(res.seq)
        return res

    def _likely_duplicate(self, tenant: str, f: FactIn) -> bool:
        """A believed version of the key already has this value (read, no lock)."""
        value_norm = norm(f.value)
        pred = free_text_predicate(value_norm) if not f.predicate.strip() else f.predicate
        with self.db.read() as s:
            key = self.find_key(s, tenant, f.user_id, f.agent_id, f.subject, pred)
            return key is not None and bool(
                s.scalar(
                    select(
                        exists().where(
                            FactVersion.key_id == key.id,
                            FactVersion.record_end_time.is_(None),
                            FactVersion.status != RETRACTED,
                            FactVersion.value_norm == value_norm,
                        )
                    )
                )
            )

    def _assert_tx(self, s, tenant, f: FactIn, policy, vec, request_id, fingerprint):
        value_norm = norm(f.value)
        free = not f.predicate.strip()
        subj = self.resolve_subject(s, tenant, f.user_id, f.agent_id, f.subject)
        if free:
            self.lock_key(s, tenant, f.user_id, f.agent_id, subj, SUBJECT_LOCK_PREDICATE)
            pred = free_text_predicate(value_norm)
        else:
            pred = norm_predicate(f.predicate)
        key = self.lock_key(s, tenant, f.user_id, f.agent_id, subj, pred)
        if request_id:
            prior = prior_response(s, tenant, request_id, fingerprint)
            if prior is not None:
                return Replay(prior)
        rows = believed(s, key.id)
        tx = self._tx(
            s,
            tenant,
            [key],
            f.actor or (f.source or {}).get("actor", ""),
            f.reason,
            last=max((v.record_time for v in rows), default=None),
        )
        versions = [v for v in rows if v.status != RETRACTED]
        res = self._decide(tx, key, f, value_norm, vec, policy, versions)
        if isinstance(res, FailedPrecondition):
            return res
        if free and res.version.status == CURRENT:
            self._semantic_check(tx, key, res, value_norm, vec)
        conflicts.settle(tx, f"superseded by fact #{res.version.id}")
        res.seq = self._finish(tx)
        return res

    def _decide(self, tx: Tx, key: FactKey, f: FactIn, value_norm: str, vec, policy: int, versions):
        s = tx.s
        vf = f.valid_from or tx.now
        vt = f.valid_to
        if vt is not None and vt <= vf:
            raise InvalidArgument("valid_to", "must be after valid_from")
        current = next((v for v in versions if v.status == CURRENT), None)

        # Same value as what is believed at valid_from: a duplicate.
        dup = next((v for v in versions if contains(v, vf) and v.value_norm == value_norm), None)
        if dup is None and f.valid_from is None:
            dup = next(
                (
                    v
                    for v in versions
                    if v.status in (CURRENT, CONFLICTED) and v.value_norm == value_norm
                ),
                None,
            )
        if dup is not None:
            if f.source and f.source not in (dup.sources or []):
                dup.sources = [*(dup.sources or []), f.source]
            audit.record(tx, "DUPLICATE", key, dup, {"value": f.value.strip(), "source": f.source})
            return AssertResult(dup, pb.WRITE_OUTCOME_DUPLICATE, current, key)

        def make(status, valid_to):
            return new_version(
                tx,
                key,
                subject=f.subject,
                predicate=f.predicate,
                value=f.value,
                typed_value=f.typed_value,
                confidence=f.confidence,
                valid_from=vf,
                valid_to=valid_to,
                status=status,
                source=f.source,
                importance=f.importance,
                vec=vec.get(),
                embed_model=self.embedder.name,
            )

        opposing = [v for v in versions if overlaps(v, vf, vt) and v.value_norm != value_norm]
        eff = self._policy(s, tx.tenant, policy) if opposing else SUPERSEDE
        base = {"value": f.value.strip(), "valid_from": iso(vf), "valid_to": iso(vt)}
        if opposing and eff == REJECT:
            shown = [current] if current is not None else opposing
            audit.record(
                tx,
                "REJECT",
                key,
                current or opposing[0],
                {
                    **base,
                    "policy": policy_name(eff),
                    "conflicts_with": [{"id": v.id, "value": v.value} for v in opposing],
                },
            )
            return FailedPrecondition(
                f"fact {key.subject_norm!r} {key.predicate_norm!r} is {shown[0].value!r}; "
                f"{f.value.strip()!r} conflicts with it and the policy is REJECT",
                reason="FACT_CONFLICT",
                details=[fact_to_proto(v, key, tx.tenant) for v in shown],
            )
        if opposing and eff == REVIEW:
            new = make(CONFLICTED, vt)
            members = [new] + [rewrite(tx, v, status=CONFLICTED) for v in opposing]
            c = conflicts.queue(tx, conflicts.VALUE, key, members)
            audit.record(
                tx,
                "CONFLICT",
                key,
                new,
                {
                    **base,
                    "policy": policy_name(eff),
                    "conflict_id": c.id,
                    "kind": "VALUE",
                    "conflicts_with": [{"id": v.id, "value": v.value} for v in opposing],
                },
            )
            return AssertResult(
                new, pb.WRITE_OUTCOME_CONFLICT_QUEUED, current, key, conflict_id=c.id
            )

        # SUPERSEDE, or no conflict at all: the later valid_from wins.
        closed = []
        for v in versions:
            if contains(v, vf):
                closed.append(v)
                rewrite(tx, v, status=SUPERSEDED, valid_to=vf)
        rest = [v for v in versions if v not in closed]
        later = [v for v in rest if nonempty(v) and v.valid_from > vf]
        if later:
            new = make(SUPERSEDED, earliest(vt, min(v.valid_from for v in later)))
            outcome, action = pb.WRITE_OUTCOME_RECORDED_AS_HISTORY, "RECORD_HISTORY"
        else:
            for v in rest:
                if v.status == CURRENT:
                    closed.append(v)
                    rewrite(tx, v, status=SUPERSEDED)
            new = make(CURRENT, vt)
            if any(v.status in (CURRENT, CONFLICTED) for v in closed):
                outcome, action = pb.WRITE_OUTCOME_UPDATED, "SUPERSEDE"
            else:
                outcome, action = pb.WRITE_OUTCOME_CREATED, "ASSERT"
        audit.record(
            tx,
            action,
            key,
            new,
            {
                **base,
                "policy": policy_name(eff) if opposing else None,
                "previous_id": current.id if current else None,
                "previous_value": current.value if current else None,
                "closed": [{"id": v.id, "value": v.value} for v in closed] or None,
            },
        )
        return AssertResult(new, outcome, current, key)

    def _semantic_check(self, tx: Tx, key: FactKey, res: AssertResult, value_norm: str, vec):
        s = tx.s
        cands = list(
            s.scalars(
                select(FactVersion)
                .join(FactKey, FactKey.id == FactVersion.key_id)
                .where(
                    FactKey.tenant == tx.tenant,
                    FactKey.user_id == key.user_id,
                    FactKey.agent_id == key.agent_id,
                    FactKey.subject_norm == key.subject_norm,
                    FactKey.id != key.id,
                    FactVersion.record_end_time.is_(None),
                    FactVersion.status.in_((CURRENT, CONFLICTED)),
                )
            )
        )
        near = conflicts.semantic_near(vec.get(), cands, value_norm, self.semantic_threshold)
        if not near:
            return
        tx.lock_keys(v.key_id for v, _ in near)
        fresh = {
            v.id: v
            for v in s.scalars(
                select(FactVersion)
                .where(
                    FactVersion.id.in_([v.id for v, _ in near]),
                    FactVersion.record_end_time.is_(None),
                )
                .execution_options(populate_existing=True)
            )
        }
        near = [(fresh[v.id], sim) for v, sim in near if v.id in fresh]
        if not near:
            return
        new = rewrite(tx, res.version, status=CONFLICTED)
        members = [new] + [rewrite(tx, v, status=CONFLICTED) for v, _ in near]
        c = conflicts.queue(tx, conflicts.SEMANTIC, key, members, similarity=near[0][1])
        audit.record(
            tx,
            "CONFLICT",
            key,
            new,
            {
                "value": new.value,
                "conflict_id": c.id,
                "kind": "SEMANTIC",
                "threshold": self.semantic_threshold,
                "conflicts_with": [
                    {"id": v.id, "value": v.value, "similarity": round(sim, 4)} for v, sim in near
                ],
            },
        )
        res.version, res.outcome, res.conflict_id = new, pb.WRITE_OUTCOME_CONFLICT_QUEUED, c.id

    # -- retract --------------------------------------------------------------------------

    def retract(
        self,
        tenant: str,
        user_id: str,
        agent_id: str,
        subject: str,
        predicate: str,
        *,
        actor: str = "",
        reason: str = "",
        request_id: str = "",
        fingerprint: str = "",
        encode: Callable[[tuple[FactVersion, FactKey, int]], bytes] | None = None,
    ) -> tuple[FactVersion, FactKey, int] | Replay:
        """Withdraws the key's current value (and any conflicted ones): their record time
        ends and a RETRACTED row records the retraction. History stays."""

        def once():
            with self.db.write() as s:
                key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
                key = self.lock_key(
                    s, tenant, user_id, agent_id, key.subject_norm, key.predicate_norm
                )
                if request_id:
                    prior = prior_response(s, tenant, request_id, fingerprint)
                    if prior is not None:
                        return Replay(prior)
                tx = self._tx(s, tenant, [key], actor, reason)
                targets = [v for v in live(s, key.id) if v.status in (CURRENT, CONFLICTED)]
                if not targets:
                    raise NotFound(f"fact {subject!r} {predicate!r} has no current value")
                markers = []
                for v in targets:
                    markers.append(retract(tx, v))
                    audit.record(
                        tx,
                        "RETRACT",
                        key,
                        markers[-1],
                        {
                            "value": v.value,
                            "retracted_id": v.id,
                            "status_was": status_name(v.status),
                        },
                    )
                conflicts.settle(tx, "a member was retracted")
                seq = self._finish(tx)
                out = (markers[0], key, seq)
                if request_id and encode is not None:
                    self._remember_response(s, tenant, request_id, fingerprint, encode(out), key)
                return out

        res = self._retrying(once)
        if not isinstance(res, Replay):
            self.notify(res[2])
        return res

    # -- conflicts ------------------------------------------------------------------------

    def list_conflicts(
        self, tenant: str, user_id: str, agent_id: str, status: int, after: int, limit: int
    ) -> Page:
        with self.db.read() as s:
            q = select(FactConflict).where(
                FactConflict.tenant == tenant,
                FactConflict.status == (status or conflicts.OPEN),
                FactConflict.id > after,
            )
            if user_id:
                q = q.where(FactConflict.user_id == user_id)
            if agent_id:
                q = q.where(FactConflict.agent_id == agent_id)
            rows = list(s.scalars(q.order_by(FactConflict.id).limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            out = [(c, conflicts.latest_rows(s, c)) for c in rows]
            keys = self._keys(s, {v.key_id for _, vs in out for v in vs})
            return Page(out, keys, rows[-1].id if more and rows else None)

    def resolve_conflict(
        self,
        tenant: str,
        conflict_id: str,
        resolution: int,
        keep_fact_id: str,
        *,
        actor: str = "",
        reason: str = "",
    ) -> tuple[FactConflict, list[FactVersion], dict[int, FactKey], int]:
        if not conflict_id.isdigit():
            raise InvalidArgument("conflict_id", f"{conflict_id!r} is not a conflict id")
        if resolution not in (conflicts.KEEP_ONE, conflicts.KEEP_BOTH, conflicts.DISMISS):
            raise InvalidArgument("resolution", "is required: KEEP_ONE, KEEP_BOTH or DISMISS")
        if resolution == conflicts.KEEP_ONE and not keep_fact_id:
            raise InvalidArgument("keep_fact_id", "is required for KEEP_ONE")
        if keep_fact_id and not keep_fact_id.isdigit():
            raise InvalidArgument("keep_fact_id", f"{keep_fact_id!r} is not a fact id")

        def once():
            with self.db.write() as s:
                c = s.scalar(
                    select(FactConflict).where(
                        FactConflict.tenant == tenant, FactConflict.id == int(conflict_id)
                    )
                )
                if c is None:
                    raise NotFound(f"no conflict with id {conflict_id}")
                key_ids = {v.key_id for v in conflicts.latest_rows(s, c)}
                locked = list(
                    s.scalars(
                        select(FactKey)
                        .where(FactKey.id.in_(key_ids))
                        .order_by(FactKey.id)
                        .with_for_update()
                        .execution_options(populate_existing=True)
                    )
                )
                tx = self._tx(s, tenant, locked, actor, reason)
                s.refresh(c)
                if c.status != conflicts.OPEN:
                    raise FailedPrecondition(
                        f"conflict {conflict_id} is already "
                        f"{vpb.ConflictStatus.Name(c.status).removeprefix('CONFLICT_STATUS_')}",
                        reason="CONFLICT_CLOSED",
                    )
                if resolution == conflicts.DISMISS and c.kind == conflicts.VALUE:
                    raise InvalidArgument(
                        "resolution",
                        "DISMISS is for semantic conflicts; a value conflict on one key needs "
                        "KEEP_ONE or KEEP_BOTH",
                    )
                members = conflicts.live_members(s, c)
                keep_mid = None
                if resolution == conflicts.KEEP_ONE:
                    kv = s.get(FactVersion, int(keep_fact_id))
                    keep_mid = kv.memory_id if kv is not None and kv.tenant == tenant else None
                    if keep_mid not in {v.memory_id for v in members}:
                        raise InvalidArgument(
                            "keep_fact_id", f"fact {keep_fact_id} is not one of the conflict's"
                        )
                before = {v.memory_id: v for v in members}
                conflicts.resolve(tx, c, resolution, keep_mid)
                conflicts.settle(tx, f"conflict #{c.id} was resolved")
                rows = conflicts.latest_rows(s, c)
                kept = next((v for v in rows if v.memory_id == keep_mid), None)
                audit.record(
                    tx,
                    "RESOLVE",
                    tx.keys[c.key_id] if c.key_id in tx.keys else s.get(FactKey, c.key_id),
                    kept,
                    {
                        "conflict_id": c.id,
                        "resolution": vpb.ConflictResolution.Name(resolution).removeprefix(
                            "CONFLICT_RESOLUTION_"
                        ),
                        "kept_value": kept.value if kept else None,
                        "facts": [
                            {
                                "id": v.id,
                                "value": v.value,
                                "status_was": status_name(before[v.memory_id].status)
                                if v.memory_id in before
                                else None,
                                "status": status_name(v.status),
                            }
                            for v in rows
                        ],
                    },
                )
                seq = self._finish(tx)
                return c, rows, self._keys(s, {v.key_id for v in rows}), seq

        res = self._retrying(once)
        if res[3]:
            self.notify(res[3])
        return res

    # -- aliases and the tenant's policy -------------------------------------------------

    def add_alias(
        self,
        tenant: str,
        user_id: str,
        agent_id: str,
        alias: str,
        subject: str,
        *,
        actor: str = "",
        reason: str = "",
    ) -> str:
        if not alias.strip():
            raise InvalidArgument("alias", "is required")
        if not subject.strip():
            raise InvalidArgument("subject", "is required")
        if len(alias) > 512 or len(subject) > 512:
            raise InvalidArgument("alias", "alias and subject are at most 512 characters")
        a = norm(alias)
        with self.db.write() as s:
            target = self.resolve_subject(s, tenant, user_id, agent_id, subject)
            if target == a:
                raise InvalidArgument("alias", "is the subject itself")
            existing = s.get(SubjectAlias, (tenant, user_id, agent_id, a))
            if existing is not None:
                if existing.subject_norm == target:
                    return target
                raise AlreadyExists(
                    f"{a!r} is already an alias of {existing.subject_norm!r}",
                    reason="ALIAS_EXISTS",
                )
            scope_where = (
                FactKey.tenant == tenant,
                FactKey.user_id == user_id,
                FactKey.agent_id == agent_id,
            )
            used = s.scalar(
                select(exists().where(*scope_where, FactKey.subject_norm == a))
            ) or s.scalar(
                select(
                    exists().where(
                        SubjectAlias.tenant == tenant,
                        SubjectAlias.user_id == user_id,
                        SubjectAlias.agent_id == agent_id,
                        SubjectAlias.subject_norm == a,
                    )
                )
            )
            if used:
                raise FailedPrecondition(
                    f"{a!r} is already a subject with facts or aliases of its own; register "
                    "an alias before asserting facts under it",
                    reason="ALIAS_SUBJECT_IN_USE",
                )
            s.add(
                SubjectAlias(
                    tenant=tenant,
                    user_id=user_id,
                    agent_id=agent_id,
                    alias_norm=a,
                    subject_norm=target,
                )
            )
            tx = Tx(s, tenant, utcnow(), actor=actor, reason=reason)
            audit.record(
                tx,
                "ALIAS",
                None,
                None,
                {"alias": a, "subject": target},
                user_id=user_id,
                agent_id=agent_id,
                fact_key=f"{target}|",
            )
        return target

    def get_policy(self, tenant: str) -> tuple[int, bool]:
        with self.db.read() as s:
            ts = s.get(TenantSetting, tenant)
            if ts is not None and ts.conflict_policy:
                return ts.conflict_policy, True
            return self.default_policy, False

    def set_policy(
        self, tenant: str, policy: int, *, actor: str = "", reason: str = ""
    ) -> tuple[int, bool]:
        if policy not in pb.ConflictPolicy.values():
            raise InvalidArgument("policy", f"unknown value {policy}")
        with self.db.write() as s:
            ts = s.get(TenantSetting, tenant)
            before = ts.conflict_policy if ts is not None else None
            if ts is None:
                ts = TenantSetting(tenant=tenant)
                s.add(ts)
            ts.conflict_policy = policy or None
            tx = Tx(s, tenant, utcnow(), actor=actor, reason=reason)
            audit.record(
                tx,
                "POLICY",
                None,
                None,
                {
                    "policy": policy_name(policy) if policy else "SERVER_DEFAULT",
                    "was": policy_name(before) if before else "SERVER_DEFAULT",
                },
            )
        return (policy, True) if policy else (self.default_policy, False)

    # -- reads ----------------------------------------------------------------------------

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
