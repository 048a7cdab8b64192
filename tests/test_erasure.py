"""EraseSubject and Forget leave nothing behind: every store is scanned for the erased
subject's ids and for marker strings written in its content (tests/scan.py lists them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from memlake.client import MemlakeClient, grant, scope
from memlake.v1 import memory_pb2 as pb
from shared.privacy.erase import Eraser
from tests.helpers import background, event, expect_error, reflection, skill, turn
from tests.scan import scan_all


def _m() -> str:
    return "zq" + uuid.uuid4().hex[:12]


def populate(client, user: str, agent: str = "") -> dict:
    """Writes one of everything for a user (and agent): returns its markers and ids."""
    mk = {name: _m() for name in ("event", "bg1", "bg2", "turn", "skill", "refl", "fact", "fv2")}
    session = "sess-" + uuid.uuid4().hex[:8]
    sc = scope(user, agent)
    seq = 0
    e = event(f"visited the {mk['event']} museum", user=user)
    e.scope.agent_id = agent
    r = client.remember(e, request_id=f"req-{mk['event']}")
    ev_id, seq = r.memory.id, r.seq
    for k in ("bg1", "bg2"):  # two revisions of one keyed item
        b = background("nickname", f"called {mk[k]}", user=user)
        b.scope.agent_id = agent
        seq = max(seq, client.remember(b, request_id=f"req-{mk[k]}").seq)
    for i, words in enumerate(["hi there", f"my secret word is {mk['turn']}"]):
        t = turn(words, session, user=user)
        t.scope.agent_id = agent
        seq = max(seq, client.remember(t, request_id=f"req-t{i}-{mk['turn']}").seq)
    s = skill("deploy", [f"run {mk['skill']}"], user=user)
    s.scope.agent_id = agent
    seq = max(seq, client.remember(s).seq)
    rf = reflection("style", f"likes {mk['refl']}", 0.7, [ev_id], user=user)
    rf.scope.agent_id = agent
    seq = max(seq, client.remember(rf).seq)
    f1 = client.assert_fact(
        user, "lives_in", mk["fact"], scope=sc, request_id=f"req-{mk['fact']}", reason=mk["fact"]
    )
    f2 = client.assert_fact(user, "lives_in", mk["fv2"], scope=sc, policy=pb.CONFLICT_POLICY_REVIEW)
    client.add_subject_alias(f"al-{mk['fact']}", user, scope=sc)
    seq = max(seq, f1.seq, f2.seq)
    # The session tail is cached (read once).
    ctx = client.context(scope=scope(user, agent, session), min_seq=seq)
    assert mk["turn"] in ctx.rendered
    return {"markers": list(mk.values()), "session": session, "seq": seq}


def assert_no_reads(client, user: str, markers: list[str], agent: str = "") -> None:
    sc = scope(user, agent)
    assert list(client.list_all(scope=sc, include_history=True)) == []
    for m in markers:
        for ms in (0, 1):
            res = client.search(m, scope=sc, include_history=True, min_seq=ms).results
            assert not any(m in h.memory.content for h in res)
        assert m not in client.context(scope=sc, intent=m).rendered
    assert list(client.list_facts_all(scope=sc, include_history=True)) == []
    with expect_error("NOT_FOUND"):
        client.get_fact(user, "lives_in", scope=sc)
    for ev in client.list_audit_events_all():
        blob = ev.SerializeToString()
        assert not any(m.encode() in blob for m in markers) and user.encode() not in blob


@pytest.mark.parametrize("kind", ["user", "agent", "tenant"])
def test_erase_subject_leaves_nothing(suite, kind):
    with suite.client() as c, suite.client() as other_tenant:
        user = "eu-" + uuid.uuid4().hex[:10]
        agent = "ea-" + uuid.uuid4().hex[:10] if kind == "agent" else ""
        keep = "ku-" + uuid.uuid4().hex[:10]
        got = populate(c, user, agent)
        if kind != "tenant":  # a key for just this subject, used once
            g = grant(users=[user], read=True, write=True) if kind == "user" else None
            g = g or grant(agents=[agent], read=True, write=True)
            key = c.create_api_key(name=f"key of {agent or user}", grants=[g]).secret
            with MemlakeClient(suite.addr, api_key=key, timeout=20) as own:
                e = event(f"via own key {got['markers'][0]}", user=user)
                e.scope.agent_id = agent
                own.remember(e)
        kept = populate(other_tenant, keep)  # another tenant: untouched
        kept_same = populate(c, keep) if kind != "tenant" else None  # same tenant, other user
        if kind == "user":
            receipt = c.erase_subject(user_id=user)
        elif kind == "agent":
            receipt = c.erase_subject(agent_id=agent)
        else:
            receipt = c.erase_subject(tenant=True)
        counts = dict(receipt.counts)
        # event, background, 2 turns, skill, reflection, 2 facts (+ one via its own key)
        assert counts["memories"] == 8 + (kind != "tenant")
        assert counts["revisions"] >= 1 and counts["fact_versions"] >= 2
        assert counts["fact_keys"] >= 1 and counts["fact_conflicts"] == 1
        assert counts["idempotency_records"] >= 5 and counts["audit_redacted"] >= 2
        assert counts["cache_keys"] == 1 and counts["index_deletes"] >= 9
        if kind != "agent":
            assert counts["subject_aliases"] == 1
        if kind != "tenant":  # its key is revoked and no longer names it (scanned below)
            assert counts["api_keys_revoked"] == 1 and counts["access_events_redacted"] >= 9
        assert receipt.seq > 0 and receipt.job_id
        assert_no_reads(c, user, got["markers"], agent)
        # The audit keeps that an erasure happened, not what was erased.
        erased = [e for e in c.list_audit_events_all() if e.action == "ERASE"]
        assert erased and erased[-1].details["kind"] == kind
        needles = got["markers"] + [user, got["session"]] + ([agent] if agent else [])
        assert scan_all(suite, needles, min_seq=receipt.seq) == []
        # Others are untouched.
        for cl, k, info in ((other_tenant, keep, kept), (c, keep, kept_same)):
            if info is None:
                continue
            r = cl.search(info["markers"][0], scope=scope(k)).results
            assert r and info["markers"][0] in r[0].memory.content
            assert cl.get_fact(k, "lives_in", scope=scope(k)).fact.value
        # Idempotent: a rerun finds nothing left.
        again = c.erase_subject(
            user_id=user if kind == "user" else "",
            agent_id=agent,
            tenant=kind == "tenant",
        )
        assert sum(v for k2, v in again.counts.items()) == 0 and not again.resumed


def test_erasure_survives_a_crash_in_the_middle(suite, monkeypatch):
    rt = suite.runtime
    tenant = "t" + uuid.uuid4().hex[:12]
    with suite.client(tenant) as c:
        user = "cu-" + uuid.uuid4().hex[:10]
        got = populate(c, user)
        eraser = Eraser(rt.db, rt.cache, rt.notify)

        def crash(*a, **k):
            raise RuntimeError("power cut")

        monkeypatch.setattr(eraser, "_facts", crash)
        with pytest.raises(RuntimeError):
            eraser.erase(tenant, "user", user)
        monkeypatch.undo()
        # Half done: memories gone (and unreadable), facts still there, job running.
        assert list(c.list_all(scope=scope(user), include_history=True)) == []
        assert c.get_fact(user, "lives_in", scope=scope(user)).fact.value
        with rt.db.read() as s:
            state = s.execute(
                text("SELECT state, subject FROM erasure_jobs WHERE tenant = :t"), {"t": tenant}
            ).all()
        assert [tuple(r) for r in state] == [("running", user)]
        # A rerun (here through the RPC) finishes the job.
        receipt = c.erase_subject(user_id=user)
        assert receipt.resumed and receipt.counts["memories"] == 8
        assert receipt.counts["fact_versions"] >= 2
        assert_no_reads(c, user, got["markers"])
        assert scan_all(suite, got["markers"] + [user], min_seq=receipt.seq) == []
        with rt.db.read() as s:
            state = s.execute(
                text("SELECT state, subject FROM erasure_jobs WHERE tenant = :t"), {"t": tenant}
            ).all()
        assert [tuple(r) for r in state] == [("done", "")]


def test_audit_stays_append_only_outside_erasure(suite):
    """The database allows an audit UPDATE only as a redaction by a running job."""
    tenant = "t" + uuid.uuid4().hex[:12]
    with suite.client(tenant) as c:
        user = "au-" + uuid.uuid4().hex[:8]
        c.assert_fact(user, "likes", "tea", scope=scope(user))
    engine = suite.runtime.db.engine
    for sql in (
        "UPDATE audit_events SET reason = 'x' WHERE tenant = :t",
        "DELETE FROM audit_events WHERE tenant = :t",
        # A redaction naming a job that does not exist (or is done) is refused too.
        "UPDATE audit_events SET user_id = '', agent_id = '', fact_key = '', reason = '', "
        "details = '{}', redacted_by = 999999 WHERE tenant = :t",
    ):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql), {"t": tenant})


def test_forget_of_one_memory_leaves_nothing(suite):
    with suite.client() as c:
        user = "fu-" + uuid.uuid4().hex[:8]
        marker, keep = _m(), _m()
        session = "s-" + uuid.uuid4().hex[:6]
        c.remember(turn(f"before {keep}", session, user=user))
        rid = "req-" + uuid.uuid4().hex
        gone = c.remember(turn(f"the code is {marker}", session, user=user), request_id=rid)
        after = c.remember(turn("and after that", session, user=user))
        assert (
            marker in c.context(scope=scope(user, session_id=session), min_seq=after.seq).rendered
        )
        seq = c.forget(gone.memory.id)
        assert marker not in c.context(scope=scope(user, session_id=session)).rendered
        assert scan_all(suite, [marker], min_seq=seq) == []
        # The neighbours are still searchable; the retry of the forgotten write is refused.
        hits = c.search(keep, scope=scope(user), min_seq=seq).results
        assert hits and keep in hits[0].memory.content
        with expect_error("FAILED_PRECONDITION") as info:
            c.remember(turn(f"the code is {marker}", session, user=user), request_id=rid)
        assert info.value.reason == "REQUEST_FORGOTTEN"


def test_forget_of_a_fact_erases_its_versions(suite):
    with suite.client() as c:
        user = "ff-" + uuid.uuid4().hex[:8]
        m1, m2 = _m(), _m()
        sc = scope(user)
        f1 = c.assert_fact("car", "model", m1, scope=sc, request_id=uuid.uuid4().hex, reason=m1)
        c.assert_fact("car", "model", m2, scope=sc)
        c.retract_fact("car", "model", scope=sc, reason="sold it")
        hist = c.search(m1, scope=sc, include_history=True, min_seq=f1.seq + 3).results
        assert any(m1 in h.memory.content for h in hist)  # RetractFact keeps history
        c.assert_fact("car", "colour", "red", scope=sc)  # another key: stays
        seq = c.forget(f1.fact.memory_id)
        assert c.fact_history("car", "colour", scope=sc)
        with expect_error("NOT_FOUND"):
            c.fact_history("car", "model", scope=sc)
        for m in (m1, m2):
            assert not c.search(m, scope=sc, include_history=True).results or all(
                m not in h.memory.content
                for h in c.search(m, scope=sc, include_history=True).results
            )
        assert scan_all(suite, [m1, m2], min_seq=seq) == []


def test_hidden_parameters_keep_content_out_of_errors_and_logs(suite, caplog):
    """A failing statement's error (and so every log line made from it) has no values."""
    from sqlalchemy import insert

    from shared.db.models import MemoryRecord

    marker = _m()
    db = suite.runtime.db
    with pytest.raises(Exception) as info, db.write() as s:
        row = dict(tenant="t", type=3, content=marker, etag="e", attributes={}, source={})
        s.execute(insert(MemoryRecord).values(id=1, **row))
        s.execute(insert(MemoryRecord).values(id=1, **row))  # duplicate primary key
    assert "parameters hidden" in str(info.value) and marker not in str(info.value)
    # Through an RPC: a BACKGROUND key longer than the column (Postgres refuses it; SQLite
    # stores it). Whatever the outcome, the content is in no log line.
    with suite.client() as c:
        b = background("k" * 600, f"secret {marker}")
        try:
            c.remember(b)
        except Exception:  # noqa: BLE001 - only the logs matter here
            pass
    assert marker not in caplog.text


def test_expired_items_are_never_read_and_are_swept(fresh_backend):
    import time
    from datetime import timedelta

    from tests.conftest import start_suite

    backend, settings = fresh_backend
    settings = settings.model_copy(update={"expiry_sweep_interval_s": 0.3})
    suite = start_suite(settings, backend)
    try:
        with suite.client() as c:
            marker, keep = _m(), _m()
            e = event(f"temporary {marker}", user="x1")
            expires = datetime.now(UTC) + timedelta(seconds=3)  # room for a loaded machine
            e.expire_time.FromDatetime(expires)
            r = c.remember(e)
            k = c.remember(event(f"lasting {keep}", user="x1"))
            hits = c.search(marker, scope=scope("x1"), min_seq=max(r.seq, k.seq)).results
            assert hits and hits[0].memory.id == r.memory.id
            assert c.get(r.memory.id).content
            time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
            # Expired: gone from every read at once, before any sweep needs to run.
            with expect_error("NOT_FOUND"):
                c.get(r.memory.id)
            assert r.memory.id not in [m.id for m in c.list_all(scope=scope("x1"))]
            assert all(
                h.memory.id != r.memory.id for h in c.search(marker, scope=scope("x1")).results
            )
            assert marker not in c.context(scope=scope("x1"), intent=marker).rendered
            # The sweeper deletes it everywhere.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with suite.runtime.db.read() as s:
                    n = s.execute(
                        text("SELECT count(*) FROM memories WHERE id = :i"), {"i": int(r.memory.id)}
                    ).scalar()
                if n == 0:
                    break
                time.sleep(0.1)
            assert n == 0
            deadline = time.monotonic() + 10  # the sweep ends by emptying SQLite's WAL
            while scan_all(suite, [marker], min_seq=r.seq + 1) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert scan_all(suite, [marker], min_seq=r.seq + 1) == []
            assert c.get(k.memory.id).content
    finally:
        suite.stop()


def test_erasure_finds_idempotency_rows_written_before_the_migration(suite):
    """Rows from before migration 0004 have no scope columns: their response is read."""
    from memlake.v1 import ingest_service_pb2 as ipb
    from shared.db.models import IdempotencyKey

    tenant = "t" + uuid.uuid4().hex[:12]
    with suite.client(tenant) as c:
        user, other, marker = "lu-" + uuid.uuid4().hex[:8], "lv-" + uuid.uuid4().hex[:8], _m()
        with suite.runtime.db.write() as s:
            for rid, u in (("old-1", user), ("old-2", other)):
                resp = ipb.RememberResponse(
                    memory=pb.Memory(content=f"{marker} {u}", scope=scope(u))
                )
                s.add(
                    IdempotencyKey(
                        tenant=tenant,
                        request_id=rid,
                        fingerprint="f",
                        response=resp.SerializeToString(),
                    )
                )
        receipt = c.erase_subject(user_id=user)
        assert receipt.counts["idempotency_records"] == 1
        with suite.runtime.db.read() as s:
            left = s.execute(
                text("SELECT request_id FROM idempotency_keys WHERE tenant = :t"), {"t": tenant}
            ).all()
        assert [r[0] for r in left] == ["old-2"]


def test_a_removed_row_leaves_the_hnsw_graph_at_the_next_compaction():
    """HNSW has no remove: the removed vector is blanked in the graph's storage (the
    partition's rows) at once, and a partition whose graph still links to the row is
    compacted (graph rebuilt without it) in the same change-log batch."""
    import numpy as np

    from retrieval_service.index import Partition
    from tests.test_index import _record

    rng = np.random.default_rng(0)
    p = Partition(8, ann_threshold=5)
    vecs = rng.standard_normal((12, 8)).astype(np.float32)
    for i in range(1, 13):
        p.put(_record(i, "u1", "s1"), vecs[i - 1])
    p.build_ann()
    assert p.ann.ntotal == 12 and not p.needs_compaction()
    gone = vecs[4]  # memory 5
    assert p.remove(5)
    rows = p.vector_rows(np.arange(p.n))
    assert not np.isclose(rows, gone, atol=1e-2).all(axis=1).any()  # blanked in the columns
    graph_rows = p.ann.reconstruct_n(0, p.ann.ntotal)  # the graph's storage: the same rows
    assert not np.isclose(graph_rows, gone, atol=1e-2).all(axis=1).any()
    assert p.needs_compaction()  # the graph still links to its row
    q = p.compact()
    stored = q.ann.reconstruct_n(0, q.ann.ntotal)

    def held(v):
        return np.isclose(stored, v, atol=0.05).all(axis=1).any()

    assert q.ann.ntotal == 11 and not held(gone)
    assert all(held(v) for i, v in enumerate(vecs) if i != 4)  # the check can find one
    assert not q.needs_compaction()


def test_rebuilt_indexes_keep_no_deleted_key_in_the_sqlite_file(tmp_path):
    """A deleted key can survive as a divider in an index's interior page, which SQLite's
    secure_delete does not zero (seen as an erased user id left in memlake.db). An erasure
    rebuilds the indexes (Database.rebuild_indexes); this shows the residue and its end."""
    import random

    from shared.db.engine import Database

    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    rnd = random.Random(7)
    keys = [f"eu-{rnd.getrandbits(40):010x}" for _ in range(20000)]
    with db.write() as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT, pad TEXT)"))
        s.execute(text("CREATE INDEX t_u ON t (u)"))
        s.execute(
            text("INSERT INTO t (u, pad) VALUES (:u, :p)"), [{"u": k, "p": "x" * 50} for k in keys]
        )
    gone = rnd.sample(keys, 2000)
    with db.write() as s:
        s.execute(text("DELETE FROM t WHERE u = :u"), [{"u": k} for k in gone])
    path = tmp_path / "r.db"

    def left() -> list[str]:
        assert db.truncate_wal()
        data = path.read_bytes()
        return [k for k in gone if k.encode() in data]

    assert left(), "no deleted key was left as a divider: the residue was not reproduced"
    db.rebuild_indexes()
    assert left() == []
    db.engine.dispose()
