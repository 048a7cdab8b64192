"""Engine, sessions and migrations; the same code on SQLite and Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """Postgres: a pooled engine. SQLite: WAL, and with immediate=True every transaction
    takes the write lock at BEGIN (read-then-write never fails on lock upgrade). Both hide
    statement parameters (memory content) from error messages and logs."""
    if not url.startswith("sqlite"):
        return create_engine(
            url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True
        )
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
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Write and read sessions over one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url, immediate=True)
        self.dialect = self.engine.dialect.name
        self.read_engine = (
            make_engine(url, immediate=False) if self.dialect == "sqlite" else self.engine
        )
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction; commits on success, rolls back on error."""
        with self._write() as session, session.begin():
            _timed_connection(session, "write")
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            _timed_connection(session, "read")
            yield session

    def scalars_now(self, stmt) -> list:
        """One read statement with the fewest round trips: on Postgres outside a
        transaction (no BEGIN/COMMIT); on SQLite a plain read."""
        if self.dialect != "postgresql":
            with self.read() as s:
                return list(s.scalars(stmt))
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return list(conn.scalars(stmt))

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

    def upgrade(self) -> None:
        upgrade(self.engine)

    def ping(self) -> None:
        ping(self.read_engine)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


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
            conn.execute(text("SELECT pg_advisory_xact_lock(7311001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
