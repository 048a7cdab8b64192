"""Partitions spread over retrieval replicas running as separate processes: scoped and
unscoped answers equal those of a single replica, a replica killed with -9 is answered for
while down and serves again after restarting, and growing from 2 to 3 replicas keeps every
query answered and ends with each partition owned by exactly one replica."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memlake.client import MemlakeClient, scope
from retrieval_service.index import partition_key
from retrieval_service.index.snapshots import SnapshotStore, part_key
from retrieval_service.ownership import Ring
from shared.launch import start
from tests.conftest import tenant_key
from tests.helpers import event, turn

ROOT = Path(__file__).resolve().parent.parent
KEY = [""]  # the tenant's API key, made by the cluster fixture
USERS = [f"user{i}" for i in range(7)]
QUERIES = ["harbour walk", "piano lesson tomorrow"]
# Poll a starting server without gRPC's growing reconnect backoff (1 s, 1.6 s, ...).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
]
WORDS = ["harbour walk", "piano lesson", "coffee", "team meeting", "river", "garden"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, ordinal: int, ports: list[int], settings, workdir: Path) -> None:
        self.ordinal, self.ports, self.settings, self.workdir = ordinal, ports, settings, workdir
        self.port = ports[ordinal]
        self.proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def index_dir(self) -> Path:
        return self.workdir / f"r{self.ordinal}" / "index"

    def start(self, count: int) -> Replica:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
        env.update(
            MEMLAKE_DATA_DIR=str(self.workdir / f"r{self.ordinal}"),
            MEMLAKE_DATABASE_URL=s.sqlalchemy_url(),
            MEMLAKE_REDIS_URL=s.redis_url,
            MEMLAKE_EMBEDDER="hash",
            MEMLAKE_RETRIEVAL_PORT=str(self.port),
            MEMLAKE_RETRIEVAL_METRICS_PORT="0",  # the OS picks: no race for a free port
            MEMLAKE_REPLICA_PEERS=",".join(f"127.0.0.1:{p}" for p in self.ports[:count]),
            MEMLAKE_REPLICA_ORDINAL=str(self.ordinal),
            MEMLAKE_TAIL_POLL_INTERVAL_S="0.05",
            MEMLAKE_HEALTH_CHECK_INTERVAL_S="0.2",
            MEMLAKE_SNAPSHOT_INTERVAL_S="0.5",
            MEMLAKE_LOG_REQUESTS="false",
            MEMLAKE_SHUTDOWN_GRACE_S="2",
            MEMLAKE_AUTH_HASH_N=str(s.auth_hash_n),
            PYTHONPATH=str(ROOT),
        )
        log = open(self.workdir / f"r{self.ordinal}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_service"], env=env, stdout=log, stderr=log, cwd=ROOT
        )
        log.close()
        return self

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addr, options=FAST_RECONNECT) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, (self.workdir / f"r{self.ordinal}.log").read_text()
                try:
                    r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"replica {self.ordinal} never became SERVING")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def client(self) -> MemlakeClient:
        return MemlakeClient(self.addr, api_key=KEY[0], timeout=20)

    def owned(self) -> set[tuple[str, str]]:
        m = SnapshotStore(self.index_dir).read_manifest()
        return {part_key(n) for n in m["partitions"]}


def _answers(c: MemlakeClient, seq: int) -> dict:
    out = {}
    for u in [*USERS, ""]:
        for q in QUERIES:
            r = c.search(q, scope=scope(u) if u else None, min_seq=seq, top_k=8)
            out[(u, q)] = [(x.memory.id, round(x.score, 4)) for x in r.results]
    for u in ("user1", ""):
        ctx = c.context(scope=scope(u), intent="piano lesson", min_seq=seq)
        out[("ctx", u)] = ctx.rendered
    return out


def _write(ingest_addr: str, tag: str) -> int:
    seq = 0
    with MemlakeClient(ingest_addr, api_key=KEY[0], timeout=20) as c:
        items = []
        for i, u in enumerate(USERS):
            items.append(event(f"{WORDS[i % 6]} with {u} {tag}", user=u))
            items.append(turn(f"{WORDS[(i + 1) % 6]} tomorrow {tag}", session="s" + tag, user=u))
        agent_item = event(f"agent note about the harbour walk {tag}", user="")
        agent_item.scope.agent_id = "helper-bot"
        items.append(agent_item)
        resp = c.stream_remember(items)
        assert resp.failed == 0
        seq = resp.seq
    return seq


@pytest.fixture
def cluster(fresh_backend, tmp_path):
    backend, settings = fresh_backend
    ingest, _ = start("ingest", settings, port=0)
    KEY[0] = tenant_key(f"127.0.0.1:{ingest.port}", settings, "acme")
    ports = [_free_port() for _ in range(3)]
    replicas = [Replica(i, ports, settings, tmp_path) for i in range(3)]
    # The reference: one replica holding every partition (in-process, its own data dir).
    ref_settings = settings.model_copy(
        update={"data_dir": tmp_path / "ref", "database_url": settings.sqlalchemy_url()}
    )
    ref, _ = start("retrieval", ref_settings, port=0)
    yield settings, f"127.0.0.1:{ingest.port}", f"127.0.0.1:{ref.port}", replicas
    for r in replicas:
        r.stop(signal.SIGKILL)
    ref.stop(1.0)
    ingest.stop(1.0)


def _all_keys() -> set[tuple[str, str]]:
    return {partition_key("acme", u, "") for u in USERS} | {partition_key("acme", "", "helper-bot")}


def test_three_replicas_answer_like_one_and_survive_kill_9(cluster):
    settings, ingest_addr, ref_addr, replicas = cluster
    seq = _write(ingest_addr, "a")
    for r in replicas:
        r.start(3)
    for r in replicas:
        r.wait_serving()
    with MemlakeClient(ref_addr, api_key=KEY[0], timeout=20) as c:
        want = _answers(c, seq)
    assert all(want[(u, q)] for u in USERS for q in QUERIES[:1])
    for r in replicas:
        with r.client() as c:
            assert _answers(c, seq) == want, f"replica {r.ordinal} differs from one replica"

    # Kill -9 the owner of user1's partition: the others answer for it meanwhile (built
    # from the database), and after a restart it catches up and serves again.
    ring = Ring(0, 3, tuple(r.addr for r in replicas))
    victim = replicas[ring.owner(partition_key("acme", "user1", ""))]
    other = replicas[(victim.ordinal + 1) % 3]
    victim.stop(signal.SIGKILL)
    seq = _write(ingest_addr, "b")
    with MemlakeClient(ref_addr, api_key=KEY[0], timeout=20) as c:
        want = _answers(c, seq)
    with other.client() as c:
        assert _answers(c, seq) == want
    victim.start(3).wait_serving()
    seq = _write(ingest_addr, "c")
    with MemlakeClient(ref_addr, api_key=KEY[0], timeout=20) as c:
        want = _answers(c, seq)
    for r in replicas:
        with r.client() as c:
            assert _answers(c, seq) == want
    _assert_owned_once(replicas, 3)


def _assert_owned_once(replicas, count: int) -> None:
    """Each partition in exactly one replica's snapshot, the one the ring names."""
    deadline = time.monotonic() + 10
    while True:
        owned = [r.owned() if (r.index_dir / "manifest.json").exists() else set() for r in replicas]
        union = set().union(*owned)
        if union == _all_keys() and sum(map(len, owned)) == len(union):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"ownership not settled: {owned}")
        time.sleep(0.2)
    ring = Ring(0, count, tuple(r.addr for r in replicas[:count]))
    for r, keys in zip(replicas, owned, strict=True):
        assert all(ring.owner(k) == r.ordinal for k in keys)


def test_growing_from_two_to_three_replicas_answers_every_query(cluster):
    settings, ingest_addr, ref_addr, replicas = cluster
    seq = _write(ingest_addr, "a")
    for r in replicas[:2]:
        r.start(2)
    for r in replicas[:2]:
        r.wait_serving()

    down: set[int] = {2}  # a replica not yet ready is out of the Service's endpoints
    failures, answered, stop = [], [0], threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            up = [r for r in replicas if r.proc is not None and r.ordinal not in down]
            r = up[i % len(up)]
            u = USERS[i % len(USERS)] if i % 4 else ""
            i += 1
            try:
                with r.client() as c:
                    c.search("harbour walk", scope=scope(u) if u else None, top_k=5)
                answered[0] += 1
            except Exception as exc:  # noqa: BLE001 - collected and asserted on
                failures.append((r.ordinal, u, repr(exc)))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        replicas[2].start(3).wait_serving()  # the new owner builds its partitions by scope
        down.discard(2)
        seq = _write(ingest_addr, "b")
        for r in replicas[:2]:  # a rolling restart tells the others the new count
            down.add(r.ordinal)
            time.sleep(0.5)  # out of the endpoints before SIGTERM, like a preStop delay
            r.stop()
            r.start(3).wait_serving()
            down.discard(r.ordinal)
        seq = _write(ingest_addr, "c")
    finally:
        stop.set()
        t.join(30)
    assert not failures, failures[:5]
    assert answered[0] > 10
    with MemlakeClient(ref_addr, api_key=KEY[0], timeout=20) as c:
        want = _answers(c, seq)
    for r in replicas:
        with r.client() as c:
            assert _answers(c, seq) == want
    _assert_owned_once(replicas, 3)
