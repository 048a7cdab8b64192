"""Engine, sessions and migrations; the same code on SQLite and Postgres."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from shared import deadline
from shared.db.watchdog import Watchdog
from shared.errors import DeadlineExceeded, Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_MS = 30000
# A pooled Postgres connection is pinged on checkout unless it was returned this recently
# (seconds): under load every statement would otherwise cost two round trips, and a
# connection that answered a moment ago is as likely alive as one just pinged.
PING_IDLE_S = 1.0


@dataclass(frozen=True)
class Guards:
    """Postgres limits (seconds): lock waits, statements without a call deadline, idle
    transactions, and waiting for a pooled connection."""

    lock_timeout_s: float = 2.0
    statement_timeout_s: float = 30.0
    idle_in_transaction_s: float = 10.0
    pool_timeout_s: float = 5.0


def make_engine(url: str, *, immediate: bool = True, guards: Guards | None = None) -> Engine:
    """Postgres: a pooled engine whose sessions carry lock, statement and idle timeouts
    and TCP keepalives. SQLite: WAL, and with immediate=True every transaction takes the
    write lock at BEGIN (read-then-write never fails on lock upgrade). Both hide statement
    parameters (memory content) from error messages and logs."""
    g = guards or Guards()
    if not url.startswith("sqlite"):
        ms = lambda s: int(s * 1000)  # noqa: E731
        options = (
            f"-c lock_timeout={ms(g.lock_timeout_s)}"
            f" -c statement_timeout={ms(g.statement_timeout_s)}"
            f" -c idle_in_transaction_session_timeout={ms(g.idle_in_transaction_s)}"
        )
        engine = create_engine(
            url,
            pool_size=10,
            max_overflow=20,
            pool_timeout=g.pool_timeout_s,
            hide_parameters=True,
            connect_args={
                "options": options,
                "connect_timeout": 2,  # the least libpq takes; the watchdog bounds the rest
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 2,
                "tcp_user_timeout": 5000,
            },
        )
        dog = Watchdog(default_budget_s=g.statement_timeout_s + 5)

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_conn, record, _proxy):
            # Watched from here to checkin; the ping replaces pool_pre_ping, which would
            # run before anything watches it.
            dog.watch(dbapi_conn)
            at, kills = record.info.get("returned", (-PING_IDLE_S, -1))
            if time.monotonic() - at < PING_IDLE_S and kills == dog.killed:
                return  # answered a moment ago: a ping would cost a round trip for nothing
            try:
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True  # the ping leaves no transaction open
                cur = dbapi_conn.cursor()
                cur.execute("SELECT 1")
                cur.close()
                dbapi_conn.autocommit = autocommit
            except Exception as exc:
                dog.unwatch(dbapi_conn)
                raise DisconnectionError(str(exc)) from exc

        @event.listens_for(engine, "checkin")
        def _checkin(dbapi_conn, record):
            if dbapi_conn is not None:
                dog.unwatch(dbapi_conn)
                # (the watchdog shut no socket since: it could have been this one's)
                record.info["returned"] = (time.monotonic(), dog.killed)

        @event.listens_for(engine, "invalidate")
        def _invalidate(_dbapi_conn, record, _exc):
            record.info.pop("returned", None)  # a new connection is pinged first

        return engine
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        # Deleted rows are overwritten with zeros in the file (Forget and erasure).
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Wait for the write lock no longer than the call's deadline.
        left = deadline.remaining()
        busy = SQLITE_BUSY_MS if left is None else max(1, min(SQLITE_BUSY_MS, int(left * 1000)))
        conn.exec_driver_sql(f"PRAGMA busy_timeout={busy}")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WriterQueue:
    """A first-come, first-served lock. SQLite admits one writer; left to BEGIN IMMEDIATE,
    waiting writers poll with sleeps of up to 100 ms, so the lock sits free while they
    sleep and a writer can lose many rounds (seconds of tail latency under load). The
    writers of one process queue here instead and each is woken as the one before it
    commits; other processes still meet SQLite's busy timeout."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mu:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(max(timeout, 0.0)):
            return True
        with self._mu:
            if turn.is_set():  # handed over just as the wait ended
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mu:
            if self._waiting:
                self._waiting.popleft().set()  # the lock passes straight to the next
            else:
                self._held = False


_WRITERS: dict[str, WriterQueue] = {}
_WRITERS_MU = threading.Lock()


def _writer_queue(url: str) -> WriterQueue:
    with _WRITERS_MU:
        return _WRITERS.setdefault(url, WriterQueue())


class Database:
    """Write and read sessions over one database URL."""

    def __init__(self, url: str, guards: Guards | None = None) -> None:
        self.url = url
        self.guards = guards or Guards()
        self.engine = make_engine(url, immediate=True, guards=self.guards)
        self.dialect = self.engine.dialect.name
        self.read_engine = (
            make_engine(url, immediate=False) if self.dialect == "sqlite" else self.engine
        )
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._writers = _writer_queue(url) if self.dialect == "sqlite" else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction; commits on success, rolls back on error."""
        left = deadline.check("the database write")
        q = self._writers
        if q is not None and not q.acquire(SQLITE_BUSY_MS / 1000 if left is None else left):
            if left is None:
                raise Unavailable("the database write lock was not free within 30 s")
            raise DeadlineExceeded("the deadline passed waiting for the database write lock")
        try:
            with self._write() as session, session.begin():
                _timed_connection(session, "write")
                self._bound(session)
                yield session
        finally:
            if q is not None:
                q.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        deadline.check("the database read")
        with self._read() as session, session.begin():
            _timed_connection(session, "read")
            self._bound(session)
            yield session

    def _bound(self, session: Session) -> None:
        """Postgres: no statement or lock wait outlives the call's deadline."""
        left = deadline.remaining()
        if self.dialect != "postgresql" or left is None:
            return
        g = self.guards
        stmt = max(1, int(min(left, g.statement_timeout_s) * 1000))
        lock = max(1, int(min(left, g.lock_timeout_s) * 1000))
        session.execute(
            text(
                "SELECT set_config('statement_timeout', :s, true),"
                " set_config('lock_timeout', :l, true)"
            ),
            {"s": str(stmt), "l": str(lock)},
        )

    def scalars_now(self, stmt, params: dict | None = None) -> list:
        """One read statement with the fewest round trips: on Postgres outside a
        transaction (no BEGIN/COMMIT); on SQLite a plain read on a pooled connection (no
        ORM session: a third of a search's database time went to the session)."""
        deadline.check("the database read")
        if self.dialect != "postgresql":
            with self.read_engine.connect() as conn:
                return list(conn.scalars(stmt, params))
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return list(conn.scalars(stmt, params))

    def truncate_wal(self) -> bool:
        """SQLite: copies the write-ahead log into the database file and empties it, so
        the page images of deleted rows leave the WAL file too. Best effort: False when a
        reader still needs the log (the next checkpoint does it). No-op elsewhere."""
        if self.dialect != "sqlite":
            return True
        try:
            raw = self.engine.raw_connection()  # outside any transaction
            try:
                cur = raw.cursor()
                busy, _, _ = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                cur.close()
            finally:
                raw.close()
        except Exception:  # noqa: BLE001 - best effort; the next checkpoint does it
            return False
        return busy == 0

    def rebuild_indexes(self) -> None:
        """SQLite: rebuilds every index (REINDEX). A deleted key can live on as a divider
        key in an index's interior page, which secure_delete does not zero; an erasure calls
        this so the erased subject's ids leave the database file. Takes the write lock for
        as long as it runs (about a second per million index entries). No-op elsewhere."""
        if self.dialect != "sqlite":
            return
        with self.write() as s:
            s.execute(text("REINDEX"))

    def upgrade(self) -> None:
        upgrade(self.engine)

    def ping(self) -> None:
        """Postgres: on a connection of its own, so a busy pool (every connection taken by
        calls) is not mistaken for an unreachable database."""
        if self.dialect != "postgresql":
            ping(self.read_engine)
            return
        if self._ping_engine is None:
            self._ping_engine = create_engine(
                self.url, poolclass=NullPool, connect_args={"connect_timeout": 2}
            )
        ping(self._ping_engine)

    _ping_engine: Engine | None = None

    # The health monitor's verdict: while the database is known to be unreachable (two
    # checks in a row failed; one slow answer on a busy machine is not an outage), callers
    # that can do without it (cached credentials, index-only search) do not wait for it.
    unreachable: bool = False
    _failed_checks: int = 0

    def mark(self, ok: bool) -> None:
        self._failed_checks = 0 if ok else self._failed_checks + 1
        self.unreachable = self._failed_checks >= 2

    def dispose(self) -> None:
        if self._ping_engine is not None:
            self._ping_engine.dispose()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def lock_key(session: Session, *parts: object) -> None:
    """Serialises the writers of one item (a keyed memory, a session's turns) until commit,
    and nothing else. Postgres: a transaction advisory lock on a hash of the parts, bounded
    by lock_timeout. SQLite: a no-op, since BEGIN IMMEDIATE already admits one writer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = "\x1f".join(str(p) for p in parts)
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def _timed_connection(session: Session, engine: str) -> None:
    """Takes the session's connection now, timing the wait for the pool."""
    from shared.metrics import DB_POOL_WAIT

    t0 = time.perf_counter()
    session.connection()
    DB_POOL_WAIT.labels(engine).observe(time.perf_counter() - t0)


def upgrade(engine: Engine) -> None:
    """Bring the schema to head (idempotent; serialised across processes on Postgres)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Another process may be migrating: wait for it however long it takes.
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(7311001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
