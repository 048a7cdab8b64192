"""Fact versioning over a real gRPC channel, on SQLite and on Postgres + Redis: each
policy, out-of-order arrivals, duplicates, retraction, as-of, review and resolution,
aliases, idempotency, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_status import rpc_status
from sqlalchemy import text

from memlake.client import scope, ts
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from tests.helpers import expect_error

U = scope("u1")
SUPERSEDE, REJECT, REVIEW = (
    pb.CONFLICT_POLICY_SUPERSEDE,
    pb.CONFLICT_POLICY_REJECT,
    pb.CONFLICT_POLICY_REVIEW,
)
CURRENT, SUPERSEDED, CONFLICTED, RETRACTED = (
    pb.FACT_STATUS_CURRENT,
    pb.FACT_STATUS_SUPERSEDED,
    pb.FACT_STATUS_CONFLICTED,
    pb.FACT_STATUS_RETRACTED,
)


def day(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def dt(t) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def believed(history):
    return [v for v in history if not v.HasField("record_end_time") and v.status != RETRACTED]


def chain(history):
    """(value, status, valid_from year, valid_to year or None) of believed versions."""
    return [
        (
            v.value,
            v.status,
            dt(v.valid_from).year,
            dt(v.valid_to).year if v.HasField("valid_to") else None,
        )
        for v in sorted(believed(history), key=lambda v: dt(v.valid_from))
    ]


def assert_no_overlap(history):
    vs = [
        v
        for v in believed(history)
        if v.status != CONFLICTED and (not v.HasField("valid_to") or v.valid_to != v.valid_from)
    ]
    vs.sort(key=lambda v: dt(v.valid_from))
    for a, b in zip(vs, vs[1:], strict=False):
        assert a.HasField("valid_to") and dt(a.valid_to) <= dt(b.valid_from), (a, b)


def test_supersede_later_valid_from_wins(client):
    r1 = client.assert_fact("Ada", "lives_in", "Paris", scope=U, valid_from=day(2020))
    assert r1.outcome == pb.WRITE_OUTCOME_CREATED and r1.fact.status == CURRENT
    assert r1.fact.key == "ada|lives_in" and r1.seq > 0
    r2 = client.assert_fact("ada", "lives in", "Berlin", scope=U, valid_from=day(2022))
    assert r2.outcome == pb.WRITE_OUTCOME_UPDATED
    assert r2.previous.value == "Paris" and r2.previous.id == r1.fact.id
    cur = client.get_fact("ADA", "lives_in", scope=U)
    assert cur.fact.value == "Berlin" and not cur.conflicted
    hist = client.fact_history("ada", "lives_in", scope=U)
    assert chain(hist) == [("Paris", SUPERSEDED, 2020, 2022), ("Berlin", CURRENT, 2022, None)]
    # The original Paris row is kept, its record time ended when Berlin arrived.
    orig = next(v for v in hist if v.id == r1.fact.id)
    assert orig.status == CURRENT and orig.record_end_time == r2.fact.record_time
    assert client.fact_as_of("ada", "lives_in", scope=U, valid_time=day(2021)).value == "Paris"
    assert client.fact_as_of("ada", "lives_in", scope=U, valid_time=day(2023)).value == "Berlin"
    # Without a valid_from the assertion is valid from now and supersedes.
    r3 = client.assert_fact("ada", "lives_in", "Rome", scope=U)
    assert r3.outcome == pb.WRITE_OUTCOME_UPDATED and r3.previous.value == "Berlin"
    assert_no_overlap(client.fact_history("ada", "lives_in", scope=U))


def test_out_of_order_arrivals_are_recorded_as_history(client):
    client.assert_fact("bo", "employer", "Initech", scope=U, valid_from=day(2022))
    r = client.assert_fact("bo", "employer", "Globex", scope=U, valid_from=day(2018))
    assert r.outcome == pb.WRITE_OUTCOME_RECORDED_AS_HISTORY and r.fact.status == SUPERSEDED
    assert dt(r.fact.valid_to) == day(2022) and r.previous.value == "Initech"
    # One that falls between two believed versions closes the earlier one.
    r = client.assert_fact("bo", "employer", "Hooli", scope=U, valid_from=day(2020))
    assert r.outcome == pb.WRITE_OUTCOME_RECORDED_AS_HISTORY
    hist = client.fact_history("bo", "employer", scope=U)
    assert chain(hist) == [
        ("Globex", SUPERSEDED, 2018, 2020),
        ("Hooli", SUPERSEDED, 2020, 2022),
        ("Initech", CURRENT, 2022, None),
    ]
    assert_no_overlap(hist)
    assert client.get_fact("bo", "employer", scope=U).fact.value == "Initech"
    for year, value in [(2019, "Globex"), (2021, "Hooli"), (2023, "Initech")]:
        assert client.fact_as_of("bo", "employer", scope=U, valid_time=day(year)).value == value
    with expect_error("NOT_FOUND"):
        client.fact_as_of("bo", "employer", scope=U, valid_time=day(2017))
    # An explicitly bounded past interval that overlaps nothing is history, not a conflict,
    # even under REJECT.
    r = client.assert_fact(
        "bo", "employer", "Acme", scope=U, valid_from=day(2010), valid_to=day(2012), policy=REJECT
    )
    assert r.outcome == pb.WRITE_OUTCOME_RECORDED_AS_HISTORY
    assert dt(r.fact.valid_to) == day(2012)


def test_duplicates_add_sources_not_versions(client):
    src1 = pb.Source(kind="user", actor="alice", session_id="s1", message_id="m1")
    src2 = pb.Source(kind="document", actor="importer", document_uri="file:///hr.pdf")
    r1 = client.assert_fact("cy", "role", "Engineer", scope=U, source=src1)
    r2 = client.assert_fact(" CY ", "Role", "  engineer ", scope=U, source=src2)
    assert r2.outcome == pb.WRITE_OUTCOME_DUPLICATE and r2.fact.id == r1.fact.id
    assert r2.seq == 0
    assert [s.actor for s in r2.fact.sources] == ["alice", "importer"]
    hist = client.fact_history("cy", "role", scope=U)
    assert len(hist) == 1 and hist[0].sources[1].document_uri == "file:///hr.pdf"
    # A duplicate of a historical value at its own valid time is a duplicate of that version.
    client.assert_fact("cy", "role", "Manager", scope=U)
    old = client.fact_as_of("cy", "role", scope=U, valid_time=dt(r1.fact.valid_from))
    r3 = client.assert_fact("cy", "role", "engineer", scope=U, valid_from=dt(old.valid_from))
    assert r3.outcome == pb.WRITE_OUTCOME_DUPLICATE and r3.fact.value == "Engineer"
    actions = [e.action for e in client.list_audit_events_all(scope=U, subject="cy")]
    assert actions == ["ASSERT", "DUPLICATE", "SUPERSEDE", "DUPLICATE"]


def test_reject_policy_fails_with_the_current_version_in_details(client):
    r1 = client.assert_fact("dee", "city", "Oslo", scope=U, policy=REJECT)
    assert r1.outcome == pb.WRITE_OUTCOME_CREATED  # nothing to conflict with
    req = vpb.AssertFactRequest(
        scope=U,
        subject="dee",
        predicate="city",
        value="Bergen",
        policy=REJECT,
        source=pb.Source(actor="bot-7"),
        reason="user said so",
    )
    with pytest.raises(grpc.RpcError) as info:
        client.versioning.AssertFact(req, metadata=client.metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(info.value)
    facts = []
    for d in status.details:
        f = vpb.Fact()
        if d.Unpack(f):
            facts.append(f)
    assert [(f.id, f.value, f.status) for f in facts] == [(r1.fact.id, "Oslo", CURRENT)]
    # Nothing changed, the same value is still a duplicate, and the refusal is audited.
    assert client.get_fact("dee", "city", scope=U).fact.value == "Oslo"
    assert len(client.fact_history("dee", "city", scope=U)) == 1
    assert client.assert_fact("dee", "city", "oslo", scope=U, policy=REJECT).outcome == (
        pb.WRITE_OUTCOME_DUPLICATE
    )
    ev = [e for e in client.list_audit_events_all(scope=U, subject="dee") if e.action == "REJECT"]
    assert len(ev) == 1
    assert (ev[0].actor, ev[0].reason, ev[0].fact_id) == ("bot-7", "user said so", r1.fact.id)
    assert ev[0].details["value"] == "Bergen" and ev[0].details["policy"] == "REJECT"


def test_reject_surfaces_from_remember_too(client):
    def fact(value: str) -> pb.Memory:
        m = pb.Memory(type=pb.MEMORY_TYPE_FACT, content=f"Eve drives a {value}", scope=U)
        m.fact.subject, m.fact.predicate, m.fact.value = "eve", "car", value
        return m

    r = client.remember(fact("Volvo"), request_id="eve-car-1")
    assert r.outcome == pb.WRITE_OUTCOME_CREATED and r.memory.fact.status == CURRENT
    again = client.remember(fact("Volvo"), request_id="eve-car-1")
    assert again.memory.id == r.memory.id and again.seq == r.seq
    req = ipb.RememberRequest(memory=fact("Saab"), conflict_policy=REJECT)
    with pytest.raises(grpc.RpcError) as info:
        client.ingest.Remember(req, metadata=client.metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = rpc_status.from_call(info.value).details
    f = vpb.Fact()
    assert any(d.Unpack(f) for d in details) and f.value == "Volvo"
    with expect_error("FAILED_PRECONDITION"):
        client.remember(fact("Saab"), conflict_policy=REJECT)
    assert client.get_fact("eve", "car", scope=U).fact.value == "Volvo"


def test_review_queues_a_conflict_and_keep_one_resolves_it(client):
    r1 = client.assert_fact("fay", "diet", "vegetarian", scope=U, valid_from=day(2020))
    r2 = client.assert_fact(
        "fay", "diet", "pescatarian", scope=U, valid_from=day(2023), policy=REVIEW
    )
    assert r2.outcome == pb.WRITE_OUTCOME_CONFLICT_QUEUED and r2.conflict_id
    assert r2.fact.status == CONFLICTED
    got = client.get_fact("fay", "diet", scope=U)
    assert got.conflicted
    assert {got.fact.value, *[f.value for f in got.conflicting]} == {"vegetarian", "pescatarian"}
    open_ = client.list_conflicts(scope=U).conflicts
    assert [c.id for c in open_] == [r2.conflict_id]
    c = open_[0]
    assert c.kind == vpb.CONFLICT_KIND_VALUE and c.status == vpb.CONFLICT_STATUS_OPEN
    assert sorted(f.value for f in c.facts) == ["pescatarian", "vegetarian"]
    assert all(f.status == CONFLICTED for f in c.facts)
    # Search shows both sides, each marked conflicted; so does the context block.
    res = client.search("fay diet", scope=U, types=[pb.MEMORY_TYPE_FACT], min_seq=r2.seq)
    assert sorted((x.memory.fact.value, x.conflicted) for x in res.results) == [
        ("pescatarian", True),
        ("vegetarian", True),
    ]
    ctx = client.context(scope=U, intent="what does fay eat", token_budget=400, min_seq=r2.seq)
    facts = [i for i in ctx.items if i.memory.type == pb.MEMORY_TYPE_FACT]
    assert len(facts) == 2 and all(i.conflicted for i in facts)
    assert "CONFLICTED" in ctx.rendered

    with expect_error("INVALID_ARGUMENT", "keep_fact_id"):
        client.resolve_conflict(c.id, vpb.CONFLICT_RESOLUTION_KEEP_ONE, keep_fact_id="999999")
    with expect_error("INVALID_ARGUMENT", "resolution"):
        client.resolve_conflict(c.id, vpb.CONFLICT_RESOLUTION_DISMISS)
    keep = next(f for f in c.facts if f.value == "pescatarian")
    done = client.resolve_conflict(
        c.id,
        vpb.CONFLICT_RESOLUTION_KEEP_ONE,
        keep_fact_id=keep.id,
        actor="reviewer-1",
        reason="asked Fay",
    )
    rc = done.conflict
    assert rc.status == vpb.CONFLICT_STATUS_RESOLVED
    assert rc.resolution == vpb.CONFLICT_RESOLUTION_KEEP_ONE
    assert (rc.resolved_by, rc.resolution_reason) == ("reviewer-1", "asked Fay")
    assert rc.HasField("resolve_time") and done.seq > r2.seq
    got = client.get_fact("fay", "diet", scope=U)
    assert got.fact.value == "pescatarian" and got.fact.status == CURRENT and not got.conflicted
    hist = client.fact_history("fay", "diet", scope=U)
    assert chain(hist) == [
        ("vegetarian", SUPERSEDED, 2020, 2023),
        ("pescatarian", CURRENT, 2023, None),
    ]
    assert any(v.id == r1.fact.id and v.HasField("record_end_time") for v in hist)
    assert client.list_conflicts(scope=U).conflicts == []
    resolved = client.list_conflicts(scope=U, status=vpb.CONFLICT_STATUS_RESOLVED).conflicts
    assert [x.id for x in resolved] == [c.id]
    with expect_error("FAILED_PRECONDITION"):
        client.resolve_conflict(c.id, vpb.CONFLICT_RESOLUTION_KEEP_BOTH)
    res = client.search("fay diet", scope=U, types=[pb.MEMORY_TYPE_FACT], min_seq=done.seq)
    assert [(x.memory.fact.value, x.conflicted) for x in res.results] == [("pescatarian", False)]
    res = client.search(
        "fay diet",
        scope=U,
        types=[pb.MEMORY_TYPE_FACT],
        min_seq=done.seq,
        include_history=True,
    )
    assert sorted(x.memory.fact.value for x in res.results) == ["pescatarian", "vegetarian"]
    ev = [e for e in client.list_audit_events_all(scope=U, subject="fay")]
    assert [e.action for e in ev] == ["ASSERT", "CONFLICT", "RESOLVE"]
    assert ev[-1].actor == "reviewer-1" and ev[-1].reason == "asked Fay"
    assert ev[-1].details["resolution"] == "KEEP_ONE"


def test_keep_both_orders_by_valid_time(client):
    client.assert_fact("gus", "team", "Payments", scope=U, valid_from=day(2019))
    r = client.assert_fact("gus", "team", "Search", scope=U, valid_from=day(2021), policy=REVIEW)
    # A third value joins the same open conflict.
    r3 = client.assert_fact("gus", "team", "Ads", scope=U, valid_from=day(2020), policy=REVIEW)
    assert r3.conflict_id == r.conflict_id
    c = client.list_conflicts(scope=U).conflicts[0]
    assert len(c.facts) == 3
    done = client.resolve_conflict(c.id, vpb.CONFLICT_RESOLUTION_KEEP_BOTH, actor="lead")
    assert done.conflict.status == vpb.CONFLICT_STATUS_RESOLVED
    hist = client.fact_history("gus", "team", scope=U)
    assert chain(hist) == [
        ("Payments", SUPERSEDED, 2019, 2020),
        ("Ads", SUPERSEDED, 2020, 2021),
        ("Search", CURRENT, 2021, None),
    ]
    assert_no_overlap(hist)
    assert client.fact_as_of("gus", "team", scope=U, valid_time=day(2020, 6)).value == "Ads"


def test_a_later_supersede_settles_an_open_conflict(client):
    client.assert_fact("hal", "status", "active", scope=U, valid_from=day(2020))
    r = client.assert_fact(
        "hal", "status", "on leave", scope=U, valid_from=day(2021), policy=REVIEW
    )
    r2 = client.assert_fact("hal", "status", "retired", scope=U, valid_from=day(2024))
    assert r2.outcome == pb.WRITE_OUTCOME_UPDATED
    got = client.get_fact("hal", "status", scope=U)
    assert got.fact.value == "retired" and not got.conflicted
    c = client.list_conflicts(scope=U, status=vpb.CONFLICT_STATUS_RESOLVED).conflicts
    assert [x.id for x in c] == [r.conflict_id]
    assert "superseded" in c[0].resolution_reason
    hist = client.fact_history("hal", "status", scope=U)
    assert all(v.status != CONFLICTED for v in believed(hist))
    assert chain(hist)[-1] == ("retired", CURRENT, 2024, None)


def test_tenant_default_policy(client):
    p = client.get_conflict_policy()
    assert p.policy == SUPERSEDE and not p.tenant_default
    s = client.set_conflict_policy(REVIEW, actor="admin", reason="strict tenant")
    assert s.policy == REVIEW and s.tenant_default
    client.assert_fact("ivy", "phone", "555-0100", scope=U)
    r = client.assert_fact("ivy", "phone", "555-0199", scope=U)
    assert r.outcome == pb.WRITE_OUTCOME_CONFLICT_QUEUED
    # The request's own policy wins over the tenant's.
    r = client.assert_fact("ivy", "email", "a@x.org", scope=U)
    with expect_error("FAILED_PRECONDITION"):
        client.assert_fact("ivy", "email", "b@x.org", scope=U, policy=REJECT)
    client.set_conflict_policy(REJECT)
    with expect_error("FAILED_PRECONDITION"):
        client.assert_fact("ivy", "email", "c@x.org", scope=U)
    back = client.set_conflict_policy(pb.CONFLICT_POLICY_UNSPECIFIED)
    assert back.policy == SUPERSEDE and not back.tenant_default
    assert client.assert_fact("ivy", "email", "d@x.org", scope=U).outcome == (
        pb.WRITE_OUTCOME_UPDATED
    )
    pol = [e for e in client.list_audit_events_all() if e.action == "POLICY"]
    assert [e.details["policy"] for e in pol] == ["REVIEW", "REJECT", "SERVER_DEFAULT"]
    assert pol[0].actor == "admin" and pol[0].reason == "strict tenant"


def test_retraction(client):
    r1 = client.assert_fact("jo", "title", "CTO", scope=U, valid_from=day(2019))
    r2 = client.assert_fact("jo", "title", "CEO", scope=U, valid_from=day(2022))
    rr = client.retract_fact("jo", "title", scope=U, reason="wrong person", actor="ops")
    assert rr.fact.status == RETRACTED and rr.fact.value == "CEO" and rr.seq > r2.seq
    with expect_error("NOT_FOUND"):
        client.get_fact("jo", "title", scope=U)
    with expect_error("NOT_FOUND"):
        client.fact_as_of("jo", "title", scope=U)
    with expect_error("NOT_FOUND"):
        client.retract_fact("jo", "title", scope=U)
    # History stays: the earlier title was true then, and before the retraction memlake
    # believed CEO.
    assert client.fact_as_of("jo", "title", scope=U, valid_time=day(2020)).value == "CTO"
    before = dt(rr.fact.record_time) - timedelta(microseconds=1)
    assert client.fact_as_of("jo", "title", scope=U, record_time=before).value == "CEO"
    hist = client.fact_history("jo", "title", scope=U)
    assert [v.status for v in hist if v.value == "CEO"] == [CURRENT, RETRACTED]
    assert next(v for v in hist if v.id == r2.fact.id).record_end_time == rr.fact.record_time
    res = client.search("jo title", scope=U, types=[pb.MEMORY_TYPE_FACT], min_seq=rr.seq)
    assert res.results == []
    got = client.get(r2.fact.memory_id)
    assert not got.current and got.fact.status == RETRACTED
    # Asserting again starts a new current value.
    r3 = client.assert_fact("jo", "title", "CFO", scope=U)
    assert r3.outcome == pb.WRITE_OUTCOME_CREATED
    assert client.get_fact("jo", "title", scope=U).fact.value == "CFO"
    ev = [e for e in client.list_audit_events_all(scope=U, subject="jo") if e.action == "RETRACT"]
    assert len(ev) == 1 and (ev[0].actor, ev[0].reason) == ("ops", "wrong person")
    assert ev[0].details["value"] == "CEO"
    assert r1.fact.id


def test_as_of_at_several_valid_and_record_times(client):
    k = ("kit", "address")
    a = client.assert_fact(*k, "1 Elm St", scope=U, valid_from=day(2020))
    b = client.assert_fact(*k, "9 Oak Ave", scope=U, valid_from=day(2022))
    c = client.assert_fact(*k, "5 Pine Rd", scope=U, valid_from=day(2021))  # arrives late
    d = client.retract_fact(*k, scope=U)
    r1, r2, r3, r4 = (dt(x.fact.record_time) for x in (a, b, c, d))
    assert r1 < r2 < r3 < r4

    def at(t, r):
        try:
            return client.fact_as_of(*k, scope=U, valid_time=t, record_time=r).value
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "code", "") == "NOT_FOUND", exc
            return None

    just_before_r1 = r1 - timedelta(microseconds=1)
    expected = {
        # (T, R): value
        (day(2023), just_before_r1): None,
        (day(2019), r1): None,
        (day(2021, 6), r1): "1 Elm St",
        (day(2023), r1): "1 Elm St",
        (day(2021, 6), r2): "1 Elm St",
        (day(2023), r2): "9 Oak Ave",
        (day(2020, 6), r3): "1 Elm St",
        (day(2021, 6), r3): "5 Pine Rd",
        (day(2023), r3): "9 Oak Ave",
        (day(2023), r4): None,
        (day(2021, 6), r4): "5 Pine Rd",
        (day(2020, 6), None): "1 Elm St",
        (None, r3): "9 Oak Ave",
        (None, None): None,
    }
    got = {tr: at(*tr) for tr in expected}
    assert got == expected


def test_audit_trail_is_complete_paged_and_append_only(suite, client):
    client.assert_fact("lee", "city", "Lima", scope=U, source=pb.Source(actor="agent-a"))
    client.assert_fact(
        "lee", "city", "Quito", scope=U, source=pb.Source(actor="agent-b"), reason="moved"
    )
    client.assert_fact("lee", "city", "quito", scope=U, source=pb.Source(actor="agent-c"))
    client.assert_fact("lee", "city", "Cusco", scope=U, valid_from=day(2001))
    client.retract_fact("lee", "city", scope=U, actor="agent-d", reason="stale")
    client.assert_fact("lee", "age", "40", scope=U)
    client.assert_fact("mo", "city", "Cali", scope=U)
    events = list(
        client.list_audit_events_all(scope=U, subject="lee", predicate="city", page_size=2)
    )
    assert [e.action for e in events] == [
        "ASSERT",
        "SUPERSEDE",
        "DUPLICATE",
        "RECORD_HISTORY",
        "RETRACT",
    ]
    assert [e.actor for e in events][:3] == ["agent-a", "agent-b", "agent-c"]
    assert events[1].reason == "moved" and events[4].reason == "stale"
    assert events[1].details["previous_value"] == "Lima" and events[1].details["value"] == "Quito"
    assert all(e.fact_key == "lee|city" and e.scope.user_id == "u1" for e in events)
    times = [dt(e.time) for e in events]
    assert times == sorted(times)
    assert len(list(client.list_audit_events_all(scope=U, subject="lee"))) == 6
    assert len(list(client.list_audit_events_all(scope=U))) == 7
    with expect_error("INVALID_ARGUMENT", "subject"):
        client.list_audit_events(predicate="city")
    # The database itself refuses to rewrite history.
    db = suite.runtime.db
    for stmt in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text(stmt))


def test_subject_aliases(client):
    assert client.add_subject_alias("Bob", "Robert", scope=U, actor="crm") == "robert"
    assert client.add_subject_alias("bob", "ROBERT", scope=U) == "robert"  # idempotent
    assert client.add_subject_alias("Bobby", "bob", scope=U) == "robert"  # via an alias
    r1 = client.assert_fact("Bob", "employer", "Umbrella", scope=U)
    assert r1.fact.key == "robert|employer"
    r2 = client.assert_fact("bobby", "employer", "umbrella", scope=U)
    assert r2.outcome == pb.WRITE_OUTCOME_DUPLICATE
    assert client.get_fact("Robert", "employer", scope=U).fact.id == r1.fact.id
    with expect_error("ALREADY_EXISTS"):
        client.add_subject_alias("bob", "roberta", scope=U)
    client.assert_fact("rob", "employer", "Cyberdyne", scope=U)
    with expect_error("FAILED_PRECONDITION"):
        client.add_subject_alias("rob", "robert", scope=U)
    with expect_error("INVALID_ARGUMENT", "alias"):
        client.add_subject_alias("robert", "bob", scope=U)
    # Aliases are per scope.
    assert client.assert_fact("bob", "employer", "X", scope=scope("u2")).fact.key == (
        "bob|employer"
    )
    ev = [e for e in client.list_audit_events_all(scope=U, subject="robert")]
    assert [e.action for e in ev] == ["ALIAS", "ALIAS", "ASSERT", "DUPLICATE"]
    assert ev[0].actor == "crm" and ev[0].details["alias"] == "bob"


def test_request_id_makes_assert_and_retract_idempotent(client):
    r1 = client.assert_fact("nia", "plan", "Pro", scope=U, request_id="a-1")
    r2 = client.assert_fact("nia", "plan", "Pro", scope=U, request_id="a-1")
    assert r1 == r2
    r3 = client.assert_fact("nia", "plan", "Team", scope=U, request_id="a-2")
    r4 = client.assert_fact("nia", "plan", "Team", scope=U, request_id="a-2")
    assert r3 == r4 and r3.outcome == pb.WRITE_OUTCOME_UPDATED
    assert len(client.fact_history("nia", "plan", scope=U)) == 3
    with expect_error("ALREADY_EXISTS"):
        client.assert_fact("nia", "plan", "Free", scope=U, request_id="a-1")
    x1 = client.retract_fact("nia", "plan", scope=U, request_id="r-1")
    x2 = client.retract_fact("nia", "plan", scope=U, request_id="r-1")
    assert x1 == x2


def test_list_facts_by_scope_and_subject(client):
    for i in range(5):
        client.assert_fact("oz", f"attr_{i}", f"v{i}", scope=U)
    client.assert_fact("oz", "attr_0", "v0b", scope=U)
    client.assert_fact("pat", "attr_0", "w", scope=U)
    client.assert_fact("oz", "attr_0", "other user", scope=scope("u2"))
    cur = list(client.list_facts_all(scope=U, subject="OZ", page_size=2))
    assert sorted(f.value for f in cur) == ["v0b", "v1", "v2", "v3", "v4"]
    assert all(f.status == CURRENT and f.scope.user_id == "u1" for f in cur)
    assert len(list(client.list_facts_all(scope=U))) == 6
    assert len(list(client.list_facts_all())) == 7
    hist = list(client.list_facts_all(scope=U, subject="oz", include_history=True))
    # 5 first versions, v0 closed (a copy), v0b
    assert {f.value for f in hist} >= {"v0", "v0b"} and len(hist) == 7
    with expect_error("INVALID_ARGUMENT", "page_token"):
        client.list_facts(scope=U, page_token="nope")


def test_bad_fact_input_names_the_field(client):
    with expect_error("INVALID_ARGUMENT", "valid_to"):
        client.assert_fact("q", "p", "v", scope=U, valid_from=day(2022), valid_to=day(2021))
    with expect_error("INVALID_ARGUMENT", "valid_to"):
        client.assert_fact("q", "p", "v", scope=U, valid_to=day(2001))  # before "now"
    with expect_error("INVALID_ARGUMENT", "predicate"):
        client.assert_fact("q", "~abc", "v", scope=U)
    with expect_error("INVALID_ARGUMENT", "subject"):
        client.assert_fact(" ", "p", "v", scope=U)
    with expect_error("INVALID_ARGUMENT", "policy"):
        client.assert_fact("q", "p", "v", scope=U, policy=42)
    with expect_error("INVALID_ARGUMENT", "conflict_id"):
        client.resolve_conflict("abc", vpb.CONFLICT_RESOLUTION_KEEP_BOTH)
    with expect_error("NOT_FOUND"):
        client.resolve_conflict("987654", vpb.CONFLICT_RESOLUTION_KEEP_BOTH)
    with expect_error("INVALID_ARGUMENT", "keep_fact_id"):
        client.resolve_conflict("1", vpb.CONFLICT_RESOLUTION_KEEP_ONE)
    with expect_error("INVALID_ARGUMENT", "resolution"):
        client.resolve_conflict("1", vpb.CONFLICT_RESOLUTION_UNSPECIFIED)
    with expect_error("INVALID_ARGUMENT", "key.subject"):
        client.fact_as_of("", "p", scope=U)
    assert ts(None) is None


def test_retracting_a_conflicted_key_closes_its_conflict(client):
    client.assert_fact("rex", "owner", "Sam", scope=U)
    r = client.assert_fact("rex", "owner", "Kim", scope=U, policy=REVIEW)
    rr = client.retract_fact("rex", "owner", scope=U, actor="ops", reason="dog was adopted")
    assert rr.fact.status == RETRACTED
    with expect_error("NOT_FOUND"):
        client.get_fact("rex", "owner", scope=U)
    assert client.list_conflicts(scope=U).conflicts == []
    (c,) = client.list_conflicts(scope=U, status=vpb.CONFLICT_STATUS_RESOLVED).conflicts
    assert c.id == r.conflict_id and c.resolved_by == "ops"
    assert "retracted" in c.resolution_reason
    assert {f.status for f in c.facts} == {RETRACTED}
    res = client.search("rex owner", scope=U, types=[pb.MEMORY_TYPE_FACT], min_seq=rr.seq)
    assert res.results == []
    actions = [e.action for e in client.list_audit_events_all(scope=U, subject="rex")]
    assert actions == ["ASSERT", "CONFLICT", "RETRACT", "RETRACT", "RESOLVE"]
