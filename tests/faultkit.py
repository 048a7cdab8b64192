"""Crash and dependency faults, shared by tests/test_faults.py (a few rounds) and
bench/faults.py (make bench-faults, 20 rounds): the three services as separate processes
on Postgres and a Redis this code starts itself (never the machine's shared one)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, func, select

from bench.common import Server, tenant_api_key
from memlake.client import MemlakeClient, MemlakeError, scope
from memlake.v1 import memory_pb2 as pb
from shared.db.models import FactVersion, MemoryRecord

RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "UNKNOWN"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A redis-server on a free port in a temp dir, that this process may stop and start."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="memlake-redis-"))
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Cluster:
    """versioning, ingest and retrieval as three processes."""

    db_url: str
    redis_url: str
    root: Path
    servers: dict[str, Server] = field(default_factory=dict)

    def start(self) -> None:
        env = {
            "MEMLAKE_DATABASE_URL": self.db_url,
            "MEMLAKE_REDIS_URL": self.redis_url,
            "MEMLAKE_EMBEDDER": "hash",
            "MEMLAKE_AUTH_HASH_N": "1024",
            "MEMLAKE_TAIL_POLL_INTERVAL_S": "0.05",
            "MEMLAKE_SNAPSHOT_INTERVAL_S": "1",
            "MEMLAKE_SHUTDOWN_GRACE_S": "2",
        }
        v = self.servers["versioning"] = Server(self.root / "versioning", env, "versioning")
        v.wait_serving()
        env_i = {**env, "MEMLAKE_VERSIONING_ADDR": v.addr}
        self.servers["ingest"] = Server(self.root / "ingest", env_i, "ingest")
        self.servers["retrieval"] = Server(self.root / "retrieval", env, "retrieval")
        for s in self.servers.values():
            s.wait_serving()

    def operator_key(self) -> str:
        for s in self.servers.values():
            if s.key_file.exists():
                return s.key_file.read_text().strip()
        raise RuntimeError("no bootstrap key file")

    def client(self, key: str, timeout: float = 3.0) -> MemlakeClient:
        s = self.servers
        return MemlakeClient(
            s["ingest"].addr,
            api_key=key,
            retrieval_addr=s["retrieval"].addr,
            versioning_addr=s["versioning"].addr,
            timeout=timeout,
        )

    def crash(self, name: str) -> float:
        """kill -9 one service and start it again on its port; seconds until SERVING."""
        s = self.servers[name]
        s.kill9()
        t0 = time.monotonic()
        s.restart()
        s.wait_serving()
        return time.monotonic() - t0

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def _item(i: int, user: str) -> tuple[str, pb.Memory]:
    """Every third write is a FACT (through ingest to versioning), the rest EVENTs; each
    carries a unique marker so it can be counted in the database and found in the index."""
    marker = f"mark{uuid.uuid4().hex[:12]}"
    if i % 3 == 2:
        m = pb.Memory(type=pb.MEMORY_TYPE_FACT, content=f"fact {marker}", scope=scope(user))
        m.fact.subject, m.fact.predicate, m.fact.value = f"thing {marker}", "state", marker
    else:
        m = pb.Memory(type=pb.MEMORY_TYPE_EVENT, content=f"event {marker}", scope=scope(user))
        m.occur_time.GetCurrentTime()
        m.event.SetInParent()
    return marker, m


@dataclass
class StreamResult:
    acked: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # rid -> (id, seq, mk)
    attempts: int = 0
    retried: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def write_stream(cluster: Cluster, key: str, user: str, stop: threading.Event, out: StreamResult):
    """Writes until stopped; each item is retried by its request_id until acknowledged."""
    c = cluster.client(key)
    i = 0
    while not stop.is_set():
        rid = f"{user}-{i}"
        marker, m = _item(i, user)
        while True:
            out.attempts += 1
            try:
                r = c.remember(m, request_id=rid)
                out.acked[rid] = (r.memory.id, r.seq, marker)
                break
            except MemlakeError as exc:
                out.errors[exc.code] = out.errors.get(exc.code, 0) + 1
                if exc.code not in RETRYABLE:
                    raise
                out.retried += 1
                time.sleep(0.1)
        i += 1
    c.close()


@dataclass
class RoundReport:
    killed: str
    restart_s: float
    acked: int
    attempts: int
    retried: int
    lost: int
    duplicates: int
    index_mismatch: int
    errors: dict[str, int]


def verify(cluster: Cluster, key: str, tenant: str, user: str, res: StreamResult) -> tuple:
    """(lost, duplicates, index mismatches) for what the stream had acknowledged."""
    eng = create_engine(cluster.db_url)
    lost = dups = 0
    stored = {}  # marker -> the memory's text as stored (a FACT's is rewritten)
    with eng.connect() as conn:
        for _mid, _seq, marker in res.acked.values():
            texts = conn.scalars(
                select(MemoryRecord.content).where(
                    MemoryRecord.tenant == tenant, MemoryRecord.content.contains(marker)
                )
            ).all()
            if not texts:
                lost += 1
            elif len(texts) > 1:
                dups += 1
            stored[marker] = texts[0] if texts else marker
            fv = conn.scalar(
                select(func.count())
                .select_from(FactVersion)
                .where(FactVersion.tenant == tenant, FactVersion.value == marker)
            )
            if fv > 1:
                dups += 1
        db_ids = set(
            conn.scalars(
                select(MemoryRecord.id).where(
                    MemoryRecord.tenant == tenant, MemoryRecord.user_id == user
                )
            )
        )
    eng.dispose()
    top = max((seq for _, seq, _ in res.acked.values()), default=0)
    mismatch = 0
    with cluster.client(key, timeout=30) as c:
        c.search("warm up", scope=scope(user), top_k=1, min_seq=top)
        # Every acknowledged write is found in the index under its own id, and the index
        # holds nothing the database does not.
        # Searched by its own stored text: the test embedder hashes words into 256 buckets,
        # so the marker alone can collide with a word of its memory and score cosine ~0,
        # where the lexical gate (ranking.py) takes its word match away.
        for mid, _seq, marker in res.acked.values():
            got = c.search(stored[marker], scope=scope(user), top_k=10).results
            if mid not in {g.memory.id for g in got} or int(mid) not in db_ids:
                mismatch += 1
    return lost, dups, mismatch


def kill_rounds(db_url: str, rounds: int, write_s: float = 1.0, log=print) -> list[RoundReport]:
    """Each round: for each service, a write stream runs while it is killed with -9 and
    started again; then every acknowledged write is checked in Postgres and the index."""
    redis = OwnRedis()
    root = Path(tempfile.mkdtemp(prefix="memlake-faults-"))
    cluster = Cluster(db_url, redis.url, root)
    reports = []
    try:
        cluster.start()
        tenant = f"f{uuid.uuid4().hex[:8]}"
        key = tenant_api_key(cluster.servers["ingest"].addr, cluster.operator_key(), tenant)
        for rnd in range(rounds):
            for name in ("ingest", "versioning", "retrieval"):
                user = f"r{rnd}-{name}"
                res, stop = StreamResult(), threading.Event()
                t = threading.Thread(target=write_stream, args=(cluster, key, user, stop, res))
                t.start()
                time.sleep(write_s)
                took = cluster.crash(name)
                time.sleep(write_s)
                stop.set()
                t.join(60)
                lost, dups, mism = verify(cluster, key, tenant, user, res)
                rep = RoundReport(
                    name,
                    round(took, 2),
                    len(res.acked),
                    res.attempts,
                    res.retried,
                    lost,
                    dups,
                    mism,
                    res.errors,
                )
                log(rep)
                reports.append(rep)
    finally:
        cluster.stop()
        redis.close()
        shutil.rmtree(root, ignore_errors=True)
    return reports
