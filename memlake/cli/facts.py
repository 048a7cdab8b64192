"""`memlake fact ...`: versioned facts, conflicts and their audit."""

from __future__ import annotations

import sys

from memlake.cli.format import _audit_line, _conflict_lines, _dt, _fact_line, _scope
from memlake.client import (
    CONFLICT_STATUSES,
    POLICIES,
    RESOLUTIONS,
    MemlakeClient,
)
from memlake.v1 import memory_pb2 as pb


def _fact_cmd(c: MemlakeClient, a) -> int:
    sc = _scope(a) if hasattr(a, "user") else None
    if a.fact_cmd == "assert":
        r = c.assert_fact(
            a.subject,
            a.predicate,
            a.value,
            scope=sc,
            valid_from=_dt(a.valid_from),
            valid_to=_dt(a.valid_to),
            policy=POLICIES[a.policy] if a.policy else 0,
            confidence=a.confidence,
            source=pb.Source(kind="cli", actor=a.actor),
            reason=a.reason,
            request_id=a.request_id,
        )
        line = pb.WriteOutcome.Name(r.outcome).removeprefix("WRITE_OUTCOME_")
        if r.conflict_id:
            line += f" (conflict {r.conflict_id})"
        print(line)
        print(_fact_line(r.fact))
        if r.HasField("previous"):
            print("previous:", _fact_line(r.previous))
    elif a.fact_cmd == "get":
        r = c.get_fact(a.subject, a.predicate, scope=sc)
        print(_fact_line(r.fact))
        for f in r.conflicting:
            print("conflicting:", _fact_line(f))
    elif a.fact_cmd == "history":
        for f in c.fact_history(a.subject, a.predicate, scope=sc):
            print(_fact_line(f, history=True))
    elif a.fact_cmd == "asof":
        f = c.fact_as_of(
            a.subject,
            a.predicate,
            scope=sc,
            valid_time=_dt(a.valid_time),
            record_time=_dt(a.record_time),
        )
        print(_fact_line(f))
    elif a.fact_cmd == "list":
        for f in c.list_facts_all(scope=sc, subject=a.subject, include_history=a.history):
            print(_fact_line(f))
    elif a.fact_cmd == "retract":
        r = c.retract_fact(a.subject, a.predicate, scope=sc, actor=a.actor, reason=a.reason)
        print(_fact_line(r.fact))
    elif a.fact_cmd == "conflicts":
        token = ""
        while True:
            r = c.list_conflicts(scope=sc, status=CONFLICT_STATUSES[a.status], page_token=token)
            for x in r.conflicts:
                print("\n".join(_conflict_lines(x)))
            token = r.next_page_token
            if not token:
                break
    elif a.fact_cmd == "resolve":
        r = c.resolve_conflict(
            a.conflict_id,
            RESOLUTIONS[a.resolution],
            keep_fact_id=a.keep,
            actor=a.actor,
            reason=a.reason,
        )
        print("\n".join(_conflict_lines(r.conflict)))
    elif a.fact_cmd == "alias":
        subject = c.add_subject_alias(a.alias, a.subject, scope=sc, actor=a.actor, reason=a.reason)
        print(f"{a.alias!r} now names subject {subject!r}")
    elif a.fact_cmd == "audit":
        for n, e in enumerate(
            c.list_audit_events_all(scope=sc, subject=a.subject, predicate=a.predicate)
        ):
            if n >= a.limit:
                break
            print(_audit_line(e))
    elif a.fact_cmd == "policy":
        if a.policy:
            value = 0 if a.policy == "default" else POLICIES[a.policy]
            r = c.set_conflict_policy(value, actor=a.actor, reason=a.reason)
        else:
            r = c.get_conflict_policy()
        name = pb.ConflictPolicy.Name(r.policy).removeprefix("CONFLICT_POLICY_")
        print(f"{name} ({'tenant default' if r.tenant_default else 'server default'})")
    else:
        print(
            "usage: memlake fact {assert,get,history,asof,list,retract,conflicts,resolve,"
            "alias,audit,policy} ...",
            file=sys.stderr,
        )
        return 2
    return 0
