"""The conflict review queue and the tenant's default conflict policy."""

from __future__ import annotations

from sqlalchemy import select

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from shared.db.models import (
    FactConflict,
    FactKey,
    FactVersion,
    TenantSetting,
)
from shared.db.types import utcnow
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from versioning_service import audit, conflicts
from versioning_service.facts.base import StoreBase
from versioning_service.facts.model import Page, policy_name, status_name
from versioning_service.versions import (
    Tx,
)


class Review(StoreBase):
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
