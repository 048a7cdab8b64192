"""No global stall on Postgres: writers share no lock; the change-log tailer never skips a
row that commits late; lock waits and statements end with the call's deadline."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select, text

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import IndexManager
from shared import changelog
from shared.db.engine import Database
from shared.db.models import MemoryRecord
from shared.embedding import HashEmbedder, to_bytes
from shared.settings import Settings
from tests.conftest import drop_postgres_database, postgres_database
from tests.helpers import background, event, expect_error


@pytest.fixture
def pg_db():
    url = postgres_database()
    db = Database(url)
    db.upgrade()
    yield db
    db.dispose()
    drop_postgres_database(url)


def _write(s, tenant: str, content: str) -> tuple[int, int]:
    """One memory and its change-log row in the caller's transaction: (id, seq)."""
    vec = HashEmbedder().embed_one(content)
    rec = MemoryRecord(
        tenant=tenant,
        type=pb.MEMORY_TYPE_EVENT,
        content=content,
        etag="e",
        embedding=to_bytes(vec),
        embed_model=HashEmbedder.name,
    )
    s.add(rec)
    s.flush()
    return rec.id, changelog.append(s, tenant, [rec.id])


def _index(db: Database) -> IndexManager:
    index = IndexManager(db, HashEmbedder.dim, embed_model=HashEmbedder.name)
    index.load_all()
    return index


def test_tailer_waits_for_a_slow_earlier_transaction(pg_db):
    index = _index(pg_db)
    slow = pg_db._write()
    slow.begin()
    slow_id, slow_seq = _write(slow, "t", "slow writer")  # allocated first, not committed
    with pg_db.write() as s:
        fast_id, fast_seq = _write(s, "t", "fast writer")  # committed first
    assert fast_seq > slow_seq
    index.catch_up()
    assert index.applied_seq < slow_seq, "the tailer went past a row still in flight"
    assert fast_id not in index.where
    slow.commit()
    slow.close()
    index.catch_up()
    assert index.applied_seq == fast_seq
    assert slow_id in index.where and fast_id in index.where


def test_tailer_passes_a_rolled_back_gap(pg_db):
    index = _index(pg_db)
    gone = pg_db._write()
    gone.begin()
    _, gone_seq = _write(gone, "t", "rolled back")
    with pg_db.write() as s:
        kept_id, kept_seq = _write(s, "t", "kept")
    index.catch_up()
    assert index.applied_seq < gone_seq
    gone.rollback()
    gone.close()
    index.catch_up()
    assert index.applied_seq == kept_seq and kept_id in index.where


def test_full_load_waits_for_writers_in_flight(pg_db):
    slow = pg_db._write()
    slow.begin()
    slow_id, _ = _write(slow, "t", "in flight during load")
    with pg_db.write() as s:
        _write(s, "t", "committed before load")
    threading.Timer(0.3, lambda: (slow.commit(), slow.close())).start()
    index = _index(pg_db)  # must not start its catch-up after the in-flight row
    index.catch_up()
    assert slow_id in index.where


def test_sessions_carry_timeouts(pg_db):
    with pg_db.read() as s:
        values = {
            name: s.scalar(text(f"SHOW {name}"))
            for name in ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")
        }
    assert values == {
        "lock_timeout": "2s",
        "statement_timeout": "30s",
        "idle_in_transaction_session_timeout": "10s",
    }


def _hold_locks(suite, tenant: str, seconds: float) -> threading.Thread:
    """A session that takes the old global write lock and row-locks one tenant's rows,
    then sits idle for `seconds` (as a psql session or a dropped client would)."""
    ready = threading.Event()

    def run():
        db = Database(suite.settings.database_url)
        with db.engine.connect() as conn, conn.begin():
            conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(7311002)"))
            conn.execute(
                select(MemoryRecord.id).where(MemoryRecord.tenant == tenant).with_for_update()
            )
            ready.set()
            time.sleep(seconds)
        db.dispose()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    return t


def _pg_suite(suite):
    if suite.backend != "postgres":
        pytest.skip("SQLite admits one writer at a time by design")
    return suite


def test_a_held_lock_on_one_tenant_does_not_stall_another(suite):
    _pg_suite(suite)
    a, b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    with suite.client(a) as ca, suite.client(b) as cb:
        ca.remember(background("city", "lives in Oslo"))
        holder = _hold_locks(suite, a, 4.0)
        t0 = time.monotonic()
        for i in range(5):
            cb.remember(event(f"tenant b keeps writing {i}"))
            cb.remember(background("city", f"lives in Bergen {i}"))
        assert time.monotonic() - t0 < 3.0, "another tenant's writes waited on the held lock"
        # The locked tenant's own write of that key fails once its lock wait ends.
        t0 = time.monotonic()
        with expect_error("ABORTED"):
            ca.remember(background("city", "lives in Paris"))
        assert time.monotonic() - t0 < 3.5
        holder.join()


def test_work_stops_with_the_callers_deadline(suite):
    _pg_suite(suite)
    tenant = f"d{uuid.uuid4().hex[:8]}"
    with suite.client(tenant) as c:
        c.remember(background("city", "lives in Oslo"))
        holder = _hold_locks(suite, tenant, 2.5)
        fast = suite.client(tenant)
        fast.timeout = 0.5
        t0 = time.monotonic()
        with pytest.raises(Exception) as info:  # noqa: B017 - the code is checked below
            fast.remember(background("city", "lives in Lima"))
        fast.close()
        assert info.value.code == "DEADLINE_EXCEEDED"
        assert time.monotonic() - t0 < 1.0
        holder.join()
        time.sleep(0.5)
        values = [m.content for m in c.list(types=[pb.MEMORY_TYPE_BACKGROUND]).memories]
        assert values == ["lives in Oslo"], "the write went on after its caller gave up"


def test_settings_reach_the_engine():
    s = Settings(db_lock_timeout_s=0.5, database_url="postgresql+psycopg://x@127.0.0.1/x")
    from shared.runtime import guards_from

    assert guards_from(s).lock_timeout_s == 0.5
