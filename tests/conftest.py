"""Fixtures: an all-in-one server over a real gRPC channel, on SQLite (always) and on
Postgres + Redis (where they answer). Tests isolate themselves by tenant."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from memlake.client import MemlakeClient
from shared.launch import start
from shared.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "MEMLAKE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MEMLAKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE = os.environ.get("MEMLAKE_TEST_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, exc: Exception):
    msg = f"{what} not reachable ({type(exc).__name__}: {exc}); set MEMLAKE_TEST_*_URL"
    if REQUIRE:
        pytest.fail(msg)
    pytest.skip(msg)


def postgres_database() -> str:
    """Creates a fresh database for this test run; returns its URL."""
    name = f"memlake_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001
        _unavailable("PostgreSQL", exc)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Redis", exc)
    return REDIS_URL


def settings_for(backend: str, data_dir: Path, database_url: str = "", **kw) -> Settings:
    base = dict(
        data_dir=data_dir,
        embedder="hash",
        tail_poll_interval_s=0.05,
        health_check_interval_s=0.5,
        log_requests=False,
        shutdown_grace_s=2.0,
        auth_hash_n=1024,  # the default (16384) is slower on purpose; tests make many keys
    )
    if backend == "postgres":
        base.update(database_url=database_url, redis_url=redis_url())
    base.update(kw)
    return Settings(**base)


@dataclass
class Suite:
    backend: str
    settings: Settings
    running: object
    runtime: object

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, tenant: str | None = None, **kw) -> MemlakeClient:
        """A client with a fresh ADMIN key of tenant (created if new; random by default)."""
        key = tenant_key(self.addr, self.settings, tenant or f"t{uuid.uuid4().hex[:12]}")
        return MemlakeClient(self.addr, api_key=key, timeout=20, **kw)

    def operator(self) -> MemlakeClient:
        return MemlakeClient(self.addr, api_key=bootstrap_key(self.settings), timeout=20)

    def wait_serving(self, timeout: float = 20.0) -> None:
        import time

        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""))
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.05)
        raise TimeoutError("suite never became SERVING")

    def stop(self) -> None:
        self.running.stop(1.0)


def bootstrap_key(settings: Settings) -> str:
    return settings.key_file().read_text().strip()


def tenant_key(addr: str, settings: Settings, tenant: str) -> str:
    """An ADMIN key of tenant (creating the tenant if it is new), made with the bootstrap
    key that the server wrote to its data directory."""
    with MemlakeClient(addr, api_key=bootstrap_key(settings), timeout=20) as op:
        return op.tenant_admin_key(tenant, name="test")


def start_suite(settings: Settings, backend: str) -> Suite:
    running, rt = start("all", settings, port=0)
    suite = Suite(backend, settings, running, rt)
    suite.wait_serving()
    return suite


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def suite(request, tmp_path_factory):
    """One all-in-one server per backend for the whole run."""
    backend = request.param
    data = tmp_path_factory.mktemp(f"suite-{backend}")
    db_url = postgres_database() if backend == "postgres" else ""
    s = start_suite(settings_for(backend, data, db_url), backend)
    yield s
    s.stop()
    if db_url:
        drop_postgres_database(db_url)


@pytest.fixture
def client(suite):
    with suite.client() as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_backend(request, tmp_path):
    """(backend, settings) for a test that starts and stops its own servers."""
    backend = request.param
    db_url = postgres_database() if backend == "postgres" else ""
    yield backend, settings_for(backend, tmp_path / "data", db_url)
    if db_url:
        drop_postgres_database(db_url)
