"""Asserting and retracting facts: duplicate, conflict and policy decisions, and the
semantic check of free-text facts."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exists, select

from memlake.v1 import memory_pb2 as pb
from shared.db.models import (
    FactKey,
    FactVersion,
)
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from shared.idempotency import Replay, prior_response
from versioning_service import audit, conflicts
from versioning_service.convert import fact_to_proto
from versioning_service.facts.base import StoreBase
from versioning_service.facts.model import (
    REJECT,
    REVIEW,
    SUPERSEDE,
    AssertResult,
    FactIn,
    _Vector,
    policy_name,
    status_name,
    validate,
)
from versioning_service.versions import (
    CONFLICTED,
    CURRENT,
    RETRACTED,
    SUBJECT_LOCK_PREDICATE,
    SUPERSEDED,
    Tx,
    believed,
    contains,
    earliest,
    free_text_predicate,
    iso,
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


class Assertions(StoreBase):
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
