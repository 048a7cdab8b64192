"""Subject aliases: another name for a subject, merging its keys."""

from __future__ import annotations

from sqlalchemy import exists, select

from shared.db.models import (
    FactKey,
    SubjectAlias,
)
from shared.db.types import utcnow
from shared.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from versioning_service import audit
from versioning_service.facts.base import StoreBase
from versioning_service.versions import (
    Tx,
    norm,
)


class Aliases(StoreBase):
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
