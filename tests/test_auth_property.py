"""Property: no call returns or changes what its key's grants forbid.

Hypothesis draws a key's grants and a list of calls over every kind of RPC (reads by id and
by key, lists, search, context with and without a session, fact reads, writes of each type,
forget, fact writes, key minting, export and erasure, request_ids the admin used replayed
by the narrower key).
An oracle written here, independently of shared.auth, says what the grants allow; every
memory a call returns must be allowed and of the caller's tenant, every refused write must
change nothing, every allowed write must not be refused for permission."""

from __future__ import annotations

import os
import uuid
from collections import Counter

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlake.client import MemlakeClient, MemlakeError, grant, scope
from memlake.v1 import memory_pb2 as pb
from tests.helpers import background, event, reflection, skill, turn

EXAMPLES = int(os.environ.get("MEMLAKE_PROPERTY_EXAMPLES", "200"))
USERS = ["u1", "u2", ""]
AGENTS = ["a1", "a2", ""]
SESSIONS = ["s1", "s2"]
TYPES = {
    "background": pb.MEMORY_TYPE_BACKGROUND,
    "fact": pb.MEMORY_TYPE_FACT,
    "event": pb.MEMORY_TYPE_EVENT,
    "conversation": pb.MEMORY_TYPE_CONVERSATION,
    "reflection": pb.MEMORY_TYPE_REFLECTION,
    "skill": pb.MEMORY_TYPE_SKILL,
}
KEYED = ("background", "reflection", "skill")
CALLS: Counter = Counter()


def allowed(grants: list[dict], perm: str, type_: int, user: str, agent: str, session: str):
    for g in grants:
        if perm not in g["perm"]:
            continue
        if g["types"] and type_ not in g["types"]:
            continue
        if g["users"] and user not in g["users"]:
            continue
        if g["agents"] and agent not in g["agents"]:
            continue
        if g["sessions"] and session not in g["sessions"]:
            continue
        return True
    return False


def may_read_in(grants: list[dict], type_: int, user: str, agent: str) -> bool:
    """Some read grant allows this type, user and agent in at least one session."""
    return any(allowed([{**g, "sessions": []}], "read", type_, user, agent, "") for g in grants)


def _memory(kind: str, user: str, agent: str, session: str, text: str, evidence: str):
    if kind == "background":
        m = background(f"k{uuid.uuid4().hex[:6]}", text, user=user)
    elif kind == "event":
        m = event(text, user=user)
    elif kind == "conversation":
        m = turn(text, session=session, user=user)
    elif kind == "reflection":
        m = reflection(f"r{uuid.uuid4().hex[:6]}", text, 0.7, [evidence], user=user)
    elif kind == "skill":
        m = skill(f"s{uuid.uuid4().hex[:6]}", ["step"], text, user=user)
    else:
        m = pb.Memory(type=pb.MEMORY_TYPE_FACT, content=text)
        m.fact.subject, m.fact.predicate, m.fact.value = user or agent, "likes", text
    m.scope.CopyFrom(scope(user, agent, session if kind == "conversation" else m.scope.session_id))
    return m


@pytest.fixture(scope="module")
def world(suite):
    """A tenant with memories of every type across scopes, and another tenant beside it."""
    admin = suite.client()
    other = suite.client()
    seqs = []
    ids = {}
    keyed = []
    first = admin.remember(event("seed evidence", user="u1"))
    for kind in TYPES:
        for user in USERS:
            for agent in AGENTS:
                if not (user or agent):
                    continue
                m = _memory(
                    kind, user, agent, "s1", f"zebra {kind} {user} {agent}", first.memory.id
                )
                r = admin.remember(m)
                ids[r.memory.id] = (r.memory.type, user, agent, r.memory.scope.session_id)
                seqs.append(r.seq)
                if kind in KEYED:
                    key = getattr(m, kind).name if kind == "skill" else getattr(m, kind).key
                    keyed.append((kind, key, user, agent, r.memory.scope.session_id))
    o = other.remember(event("zebra of the other tenant", user="u1"))
    seqs.append(o.seq)
    yield admin, ids, max(seqs), o.memory.id, keyed
    print(f"\nauth property calls ({suite.backend}): {dict(sorted(CALLS.items()))}")
    CALLS.clear()
    admin.close()
    other.close()


grant_st = st.fixed_dictionaries(
    {
        "users": st.lists(st.sampled_from(USERS), max_size=2, unique=True),
        "agents": st.lists(st.sampled_from(AGENTS), max_size=2, unique=True),
        "sessions": st.lists(st.sampled_from(SESSIONS), max_size=1, unique=True),
        "types": st.lists(st.sampled_from(list(TYPES.values())), max_size=3, unique=True),
        "perm": st.lists(st.sampled_from(["read", "write"]), min_size=1, max_size=2, unique=True),
    }
)
scope_st = st.tuples(
    st.sampled_from(USERS), st.sampled_from(AGENTS), st.sampled_from(["", *SESSIONS])
)
call_st = st.one_of(
    st.tuples(st.just("get"), st.integers(0, 10_000)),
    st.tuples(st.just("list"), scope_st),
    st.tuples(st.just("search"), scope_st),
    st.tuples(st.just("context"), scope_st),
    st.tuples(
        st.just("remember"),
        st.sampled_from(list(TYPES)),
        scope_st,
        st.sampled_from(["one", "batch", "stream"]),
    ),
    st.tuples(st.just("forget"), st.integers(0, 10_000)),
    st.tuples(st.just("fact_read"), scope_st, st.sampled_from(["get", "history", "asof"])),
    st.tuples(st.just("fact_list"), scope_st),
    st.tuples(st.just("fact_write"), scope_st, st.sampled_from(["assert", "retract", "alias"])),
    st.tuples(st.just("admin"), st.sampled_from(["policy", "keys", "access", "tenant"])),
    st.tuples(st.just("mint"), grant_st),
    st.tuples(st.just("by_key"), st.integers(0, 10_000), st.booleans()),
    st.tuples(
        st.just("session_context"),
        st.tuples(st.sampled_from(USERS), st.sampled_from(AGENTS), st.sampled_from(SESSIONS)),
        st.sampled_from(["", "zebra"]),
        st.booleans(),
    ),
    st.tuples(st.just("privacy"), st.sampled_from(["export", "erase"]), st.sampled_from(USERS)),
    st.tuples(st.just("replay"), st.sampled_from(["event", "fact"]), scope_st, st.booleans()),
)


def _proto_grant(g: dict):
    return grant(
        users=g["users"],
        agents=g["agents"],
        sessions=g["sessions"],
        types=g["types"],
        read="read" in g["perm"],
        write="write" in g["perm"],
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(grants=st.lists(grant_st, min_size=1, max_size=3), calls=st.lists(call_st, max_size=8))
def test_no_call_exceeds_its_grant(suite, world, grants, calls):
    admin, ids, seq, foreign_id, keyed = world
    key = admin.create_api_key(grants=[_proto_grant(g) for g in grants], ttl_seconds=600)
    id_list = sorted(ids) + [foreign_id]

    def check_memories(mems) -> None:
        for m in mems:
            assert m.id != foreign_id, "another tenant's memory leaked"
            s = m.scope
            assert allowed(grants, "read", m.type, s.user_id, s.agent_id, s.session_id), (
                f"returned {pb.MemoryType.Name(m.type)} of {s.user_id}/{s.agent_id}/{s.session_id}"
                f" outside {grants}"
            )

    with MemlakeClient(suite.addr, api_key=key.secret, timeout=20) as c:
        for call in calls:
            kind = call[0]
            CALLS[kind] += 1
            if kind in ("get", "forget"):
                mid = id_list[call[1] % len(id_list)]
                if mid not in ids and mid != foreign_id:
                    continue
                try:
                    before = admin.get(mid) if mid in ids else None
                except MemlakeError:
                    continue  # forgotten by an earlier example
                meta = ids.get(mid)
                perm = "read" if kind == "get" else "write"
                ok = meta is not None and allowed(grants, perm, *meta)
                try:
                    if kind == "get":
                        check_memories([c.get(mid)])
                    else:
                        c.forget(mid)
                    assert ok, f"{kind} {mid} succeeded outside the grant"
                except MemlakeError as exc:
                    if meta is None:
                        assert exc.code == "NOT_FOUND"
                    elif not ok:
                        assert exc.code == "PERMISSION_DENIED", exc
                        if before is not None:
                            assert admin.get(mid).etag == before.etag  # unchanged
                    else:
                        assert exc.code in ("FAILED_PRECONDITION", "NOT_FOUND"), exc
            elif kind == "list":
                u, a, s = call[1]
                check_memories(c.list(scope=scope(u, a, s), page_size=200).memories)
            elif kind == "search":
                u, a, s = call[1]
                r = c.search("zebra", scope=scope(u, a, s), top_k=50, min_seq=seq)
                check_memories([x.memory for x in r.results])
            elif kind == "context":
                u, a, s = call[1]
                r = c.context(scope=scope(u, a, s), intent="zebra", token_budget=4000)
                check_memories([x.memory for x in r.items])
            elif kind == "remember":
                t, (u, a, s), how = call[1], call[2], call[3]
                if not (u or a):
                    continue
                CALLS[f"remember_{how}"] += 1
                m = _memory(t, u, a, s or "s1", f"zebra new {t}", id_list[0])
                ms = m.scope
                ok = allowed(grants, "write", m.type, ms.user_id, ms.agent_id, ms.session_id)
                if how == "one":
                    try:
                        r = c.remember(m)
                        res = (r.memory, None)
                    except MemlakeError as exc:
                        res = (None, exc.code)
                else:
                    call_ = c.remember_batch if how == "batch" else c.stream_remember
                    item = call_([m]).results[0]
                    code = grpc.StatusCode.OK.value[0] if not item.HasField("error") else None
                    names = {sc.value[0]: sc.name for sc in grpc.StatusCode}
                    res = (
                        (item.memory, None) if code is not None else (None, names[item.error.code])
                    )
                if res[0] is not None:
                    assert ok, "a write outside the grant succeeded"
                    ids[res[0].id] = (m.type, ms.user_id, ms.agent_id, ms.session_id)
                elif ok:
                    # REFLECTION evidence may have been forgotten meanwhile.
                    assert res[1] != "PERMISSION_DENIED", res
                else:
                    assert res[1] == "PERMISSION_DENIED", res
            elif kind in ("fact_read", "fact_write"):
                (u, a, _), how = call[1], call[2]
                CALLS[f"{kind}_{how}"] += 1
                perm = "read" if kind == "fact_read" else "write"
                ok = allowed(grants, perm, pb.MEMORY_TYPE_FACT, u, a, "")
                subj, sc = u or a or "x", scope(u, a)
                try:
                    if how == "history":
                        c.fact_history(subj, "likes", scope=sc)
                    elif how == "get":
                        c.get_fact(subj, "likes", scope=sc)
                    elif how == "asof":
                        c.fact_as_of(subj, "likes", scope=sc)
                    elif how == "assert":
                        c.assert_fact(subj, "likes", "zebra tea", scope=sc)
                    elif how == "retract":
                        c.retract_fact(subj, "likes", scope=sc)
                    else:
                        c.add_subject_alias(f"{subj}-alias", subj, scope=sc)
                    assert ok, f"{kind} succeeded outside the grant"
                except MemlakeError as exc:
                    if ok:
                        assert exc.code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"), exc
                    else:
                        assert exc.code == "PERMISSION_DENIED", exc
            elif kind == "fact_list":
                u, a, _ = call[1]
                for f in c.list_facts(scope=scope(u, a), page_size=200).facts:
                    fs = f.scope
                    assert allowed(grants, "read", pb.MEMORY_TYPE_FACT, fs.user_id, fs.agent_id, "")
                for cf in c.list_conflicts(scope=scope(u, a)).conflicts:
                    for f in cf.facts:
                        fs = f.scope
                        assert allowed(
                            grants, "read", pb.MEMORY_TYPE_FACT, fs.user_id, fs.agent_id, ""
                        )
                for e in c.list_audit_events(scope=scope(u, a)).events:
                    es = e.scope
                    assert allowed(grants, "read", pb.MEMORY_TYPE_FACT, es.user_id, es.agent_id, "")
            elif kind == "admin":
                # A MEMBER key administers nothing.
                CALLS[f"admin_{call[1]}"] += 1
                with pytest.raises(MemlakeError) as e:
                    if call[1] == "policy":
                        c.set_conflict_policy(pb.CONFLICT_POLICY_REJECT)
                    elif call[1] == "keys":
                        c.list_api_keys()
                    elif call[1] == "access":
                        c.list_access_events()
                    else:
                        c.create_tenant(f"x{uuid.uuid4().hex[:8]}")
                assert e.value.code == "PERMISSION_DENIED"
            elif kind == "by_key":
                pool = keyed
                if call[2]:  # an item near the key's first grant, so edges are often hit
                    pool = [x for x in keyed if _near(grants[0], TYPES[x[0]], x[2], x[3])] or keyed
                t, k, u, a, s = pool[call[1] % len(pool)]
                type_ = TYPES[t]
                try:
                    exists = admin.get_by_key(t, k, scope=scope(u, a)).id
                except MemlakeError:
                    exists = None  # forgotten by an earlier example
                try:
                    got = c.get_by_key(t, k, scope=scope(u, a))
                    check_memories([got])
                    assert got.id == exists
                except MemlakeError as exc:
                    if allowed(grants, "read", type_, u, a, s):
                        assert exists is None and exc.code == "NOT_FOUND", exc
                    elif may_read_in(grants, type_, u, a):
                        assert exc.code == "NOT_FOUND", exc  # another session: looks absent
                    else:
                        assert exc.code == "PERMISSION_DENIED", exc
            elif kind == "session_context":
                (u, a, s), intent = call[1], call[2]
                if call[3]:  # a scope the key's first grant names, so the tail is often seen
                    g0 = grants[0]
                    u = g0["users"][0] if g0["users"] else u
                    a = g0["agents"][0] if g0["agents"] else a
                    s = g0["sessions"][0] if g0["sessions"] else s
                r = c.context(scope=scope(u, a, s), intent=intent, token_budget=4000)
                check_memories([x.memory for x in r.items])
                tail = {x.memory.id for x in r.items if x.reason == "session_tail"}
                CALLS["session_context_tail_items"] += len(tail)
                if not intent:
                    # The session's turns this key may read, and only those: the admin's
                    # tail narrowed by the oracle.
                    full = admin.context(scope=scope(u, a, s), token_budget=4000).items
                    want = {
                        x.memory.id
                        for x in full
                        if x.reason == "session_tail"
                        and allowed(grants, "read", x.memory.type, u, a, s)
                    }
                    assert tail == want, (tail, want, grants)
            elif kind == "privacy":
                CALLS[f"privacy_{call[1]}"] += 1
                # ExportSubject and EraseSubject are for ADMIN keys only.
                with pytest.raises(MemlakeError) as e:
                    if call[1] == "export":
                        list(c.export_subject(user_id=call[2] or "u1"))
                    else:
                        c.erase_subject(user_id=call[2] or "u1")
                assert e.value.code == "PERMISSION_DENIED"
            elif kind == "replay":
                # A request_id the admin used, replayed by this narrower key.
                t, (u, a, s) = call[1], call[2]
                if call[3]:
                    u = grants[0]["users"][0] if grants[0]["users"] else u
                    a = grants[0]["agents"][0] if grants[0]["agents"] else a
                if not (u or a):
                    continue
                CALLS[f"replay_{t}"] += 1
                rid = f"rid-{uuid.uuid4().hex}"
                ok = allowed(grants, "write", TYPES[t], u, a, "")
                readable = allowed(grants, "read", TYPES[t], u, a, "")
                try:
                    if t == "event":
                        m = _memory("event", u, a, "", "zebra replayed", "")
                        first = admin.remember(m, request_id=rid)
                        again = c.remember(m, request_id=rid)
                        assert again.memory.id == first.memory.id  # replayed, not rewritten
                    else:
                        subj, old = u or a, f"old{uuid.uuid4().hex[:8]}"
                        admin.assert_fact(subj, "replays", old, scope=scope(u, a))
                        kw = {"scope": scope(u, a), "request_id": rid}
                        first = admin.assert_fact(subj, "replays", "new", **kw)
                        again = c.assert_fact(subj, "replays", "new", **kw)
                        assert again.fact.id == first.fact.id
                        assert (old in str(again)) == readable, (again, grants)
                    assert ok, "a replay outside the grant succeeded"
                except MemlakeError as exc:
                    assert not ok and exc.code == "PERMISSION_DENIED", exc
            elif kind == "mint":
                g = call[1]
                covered = any(_covers(p, g) for p in grants)
                try:
                    child = c.create_api_key(grants=[_proto_grant(g)], ttl_seconds=60)
                    assert covered, f"minted {g} beyond {grants}"
                    assert child.key.parent_key_id == key.key.key_id
                except MemlakeError as exc:
                    assert not covered and exc.code == "PERMISSION_DENIED", exc
    admin.revoke_api_key(key.key.key_id)


def _near(g: dict, type_: int, user: str, agent: str) -> bool:
    """The grant names this type, user and agent (or leaves them open); sessions aside."""
    return (
        (not g["types"] or type_ in g["types"])
        and (not g["users"] or user in g["users"])
        and (not g["agents"] or agent in g["agents"])
    )


def _covers(p: dict, c: dict) -> bool:
    def sub(mine, theirs):
        return not mine or (bool(theirs) and set(theirs) <= set(mine))

    return (
        set(c["perm"]) <= set(p["perm"])
        and sub(p["types"], c["types"])
        and sub(p["users"], c["users"])
        and sub(p["agents"], c["agents"])
        and sub(p["sessions"], c["sessions"])
    )
