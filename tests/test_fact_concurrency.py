"""Racing asserts on one key, from real threads over real gRPC, on Postgres (row locks on
fact_keys) and SQLite (BEGIN IMMEDIATE): no update is lost and the chain stays consistent."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from memlake.client import scope
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb

THREADS = 8
PER_THREAD = 12
U = scope("racer")


def dt(t) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def _race(suite, tenant: str, work) -> list:
    """Runs work(client, thread_index) on THREADS threads released together."""
    start = threading.Barrier(THREADS)
    results: list = [None] * THREADS
    errors: list = []

    def run(i: int) -> None:
        with suite.client(tenant) as c:
            start.wait()
            try:
                results[i] = work(c, i)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_racing_supersedes_form_one_consistent_chain(suite):
    tenant = f"race-{random.randrange(1 << 30)}"
    base = datetime(2000, 1, 1, tzinfo=UTC)
    hours = random.Random(7).sample(range(1, 100_000), THREADS * PER_THREAD)

    def work(c, i):
        out = []
        for j in range(PER_THREAD):
            # Even threads assert with explicit (shuffled, past) valid times, so arrivals are
            # out of order; odd threads assert "from now".
            vf = base + timedelta(hours=hours[i * PER_THREAD + j]) if i % 2 == 0 else None
            r = c.assert_fact("door", "color", f"c{i}-{j}", scope=U, valid_from=vf)
            out.append((f"c{i}-{j}", r.outcome))
        return out

    results = _race(suite, tenant, work)
    asserted = {v for rs in results for v, _ in rs}
    outcomes = [o for rs in results for _, o in rs]
    assert len(asserted) == THREADS * PER_THREAD
    assert pb.WRITE_OUTCOME_DUPLICATE not in outcomes

    with suite.client(tenant) as c:
        hist = c.fact_history("door", "color", scope=U)
        audit = list(c.list_audit_events_all(scope=U, subject="door"))
        cur = c.get_fact("door", "color", scope=U)
    # Every asserted value is in the history, each written once.
    firsts = {}
    for v in hist:
        firsts.setdefault(v.memory_id, v)
    assert {v.value for v in firsts.values()} == asserted
    assert len(firsts) == len(asserted)
    # Exactly one current believed version: the one with the latest valid_from, and it is
    # the last "from now" assertion to commit.
    live = [v for v in hist if not v.HasField("record_end_time")]
    assert [v.status for v in live].count(pb.FACT_STATUS_CURRENT) == 1
    current = next(v for v in live if v.status == pb.FACT_STATUS_CURRENT)
    assert current.id == cur.fact.id and not cur.conflicted
    assert dt(current.valid_from) == max(dt(v.valid_from) for v in live)
    assert all(v.status in (pb.FACT_STATUS_CURRENT, pb.FACT_STATUS_SUPERSEDED) for v in live)
    # Believed valid intervals do not overlap; one row per value is believed.
    assert len({v.memory_id for v in live}) == len(live)
    ivs = sorted(
        (dt(v.valid_from), dt(v.valid_to) if v.HasField("valid_to") else None)
        for v in live
        if not (v.HasField("valid_to") and v.valid_to == v.valid_from)
    )
    for (_, end), (start, _) in zip(ivs, ivs[1:], strict=False):
        assert end is not None and end <= start
    # Record time only goes forward: no row ends before it began, and each replaced row
    # ends exactly when its successor was recorded.
    for v in hist:
        if v.HasField("record_end_time"):
            assert dt(v.record_end_time) >= dt(v.record_time)
    # One audit event per assertion, in commit order.
    assert len([e for e in audit if e.action != "DUPLICATE"]) == len(asserted)
    ids = [int(e.id) for e in audit]
    assert ids == sorted(ids)


def test_racing_reviews_join_one_open_conflict(suite):
    tenant = f"race-{random.randrange(1 << 30)}"
    with suite.client(tenant) as c:
        c.assert_fact("lamp", "state", "on", scope=U)

    def work(c, i):
        return [
            c.assert_fact(
                "lamp", "state", f"s{i}-{j}", scope=U, policy=pb.CONFLICT_POLICY_REVIEW
            ).conflict_id
            for j in range(3)
        ]

    ids = {x for rs in _race(suite, tenant, work) for x in rs}
    assert len(ids) == 1
    with suite.client(tenant) as c:
        (conflict,) = c.list_conflicts(scope=U).conflicts
        assert conflict.id in ids and len(conflict.facts) == THREADS * 3 + 1
        got = c.get_fact("lamp", "state", scope=U)
        assert got.conflicted and len(got.conflicting) == THREADS * 3
        keep = next(f for f in conflict.facts if f.value == "s0-0")
        c.resolve_conflict(conflict.id, vpb.CONFLICT_RESOLUTION_KEEP_ONE, keep_fact_id=keep.id)
        got = c.get_fact("lamp", "state", scope=U)
        assert got.fact.value == "s0-0" and not got.conflicted
