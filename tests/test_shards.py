"""Partitions spread over retrieval replicas running as separate processes, the ring agreed
in the database (retrieval_service/membership.py): scoped and unscoped answers equal those
of a single replica; a replica killed with -9 is answered for at once and its partitions
move to the others when its heartbeat expires, and it serves again after restarting;
growing from 2 to 3 and shrinking back to 2 happen without restarting anyone, every query
answered with one replica's answer meanwhile, ending with each partition owned once.

The tests wait on what they can observe (health, the ring row, the snapshot manifests),
never on fixed sleeps."""

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
from shared.db.engine import Database
from shared.db.models import RetrievalRing
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
TTL_S = 2.0  # membership_ttl_s of the replicas: a killed one leaves after this
WAIT_S = 60.0  # the most any step may take on a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(what: str, done, timeout: float = WAIT_S, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = done()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(every)


class Replica:
    def __init__(self, ordinal: int, port: int, settings, workdir: Path) -> None:
        self.ordinal, self.port, self.settings, self.workdir = ordinal, port, settings, workdir
        self.proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"r{self.ordinal}.log"

    @property
    def index_dir(self) -> Path:
        return self.workdir / f"r{self.ordinal}" / "index"

    def start(self) -> Replica:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
        env.update(
            MEMLAKE_DATA_DIR=str(self.workdir / f"r{self.ordinal}"),
            MEMLAKE_DATABASE_URL=s.sqlalchemy_url(),
            MEMLAKE_REDIS_URL=s.redis_url,
            MEMLAKE_EMBEDDER="hash",
            MEMLAKE_RETRIEVAL_PORT=str(self.port),
            MEMLAKE_RETRIEVAL_METRICS_PORT="0",  # the OS picks: no race for a free port
            # No replica count anywhere: each one joins the ring through the database.
            MEMLAKE_REPLICA_ORDINAL=str(self.ordinal),
            MEMLAKE_REPLICA_ADDRESS=self.addr,
            MEMLAKE_MEMBERSHIP_HEARTBEAT_S="0.1",
            MEMLAKE_MEMBERSHIP_TTL_S=str(TTL_S),
            MEMLAKE_HANDOVER_GRACE_S="1.0",
            MEMLAKE_TAIL_POLL_INTERVAL_S="0.05",
            MEMLAKE_HEALTH_CHECK_INTERVAL_S="0.2",
            MEMLAKE_SNAPSHOT_INTERVAL_S="0.3",
            MEMLAKE_LOG_REQUESTS="false",
            MEMLAKE_SHUTDOWN_GRACE_S=str(WAIT_S),  # room for the handover on SIGTERM
            MEMLAKE_AUTH_HASH_N=str(s.auth_hash_n),
            PYTHONPATH=str(ROOT),
        )
        log = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_service"], env=env, stdout=log, stderr=log, cwd=ROOT
        )
        log.close()
        return self

    def wait_serving(self) -> Replica:
        with grpc.insecure_channel(self.addr, options=FAST_RECONNECT) as ch:
            stub = health_pb2_grpc.HealthStub(ch)

            def serving():
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                except grpc.RpcError:
                    return False
                return r.status == health_pb2.HealthCheckResponse.SERVING

            _until(f"replica {self.ordinal} SERVING", serving)
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(WAIT_S + 10)
        self.proc = None

    def client(self) -> MemlakeClient:
        return MemlakeClient(self.addr, api_key=KEY[0], timeout=20)

    def owned(self) -> set[tuple[str, str]]:
        if not (self.index_dir / "manifest.json").exists():
            return set()
        m = SnapshotStore(self.index_dir).read_manifest()
        return {part_key(n) for n in m["partitions"]}


def _search(c: MemlakeClient, u: str, q: str, seq: int) -> list:
    r = c.search(q, scope=scope(u) if u else None, min_seq=seq, top_k=8)
    return [(x.memory.id, x.score) for x in r.results]


TOL = 1e-4  # float32 sums in another order (a copy built by scope, not by the tail)


def _same(got: list, want: list) -> bool:
    """The same ranking as one replica's: each rank's score within TOL, and a different
    memory at a rank only where the two are tied within TOL (or tied with the last one
    kept, where top_k cut)."""
    if len(got) != len(want):
        return False
    ref = dict(want)
    for (gid, gs), (wid, ws) in zip(got, want, strict=True):
        if abs(gs - ws) > TOL:
            return False
        if gid != wid and abs(ref.get(gid, want[-1][1]) - ws) > TOL:
            return False
    return True


def _answers(c: MemlakeClient, seq: int) -> dict:
    out = {(u, q): _search(c, u, q, seq) for u in [*USERS, ""] for q in QUERIES}
    for u in ("user1", ""):
        ctx = c.context(scope=scope(u), intent="piano lesson", min_seq=seq)
        out[("ctx", u)] = sorted(ctx.rendered.splitlines())  # near-ties may swap lines
    return out


def _differences(got: dict, want: dict) -> list:
    return [
        (k, got[k], want[k])
        for k in want
        if (got[k] != want[k] if k[0] == "ctx" else not _same(got[k], want[k]))
    ]


def _write(ingest_addr: str, tag: str) -> int:
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
        return resp.seq


class Cluster:
    def __init__(self, settings, ingest_addr: str, ref_addr: str, replicas: list[Replica]):
        self.settings, self.ingest_addr, self.ref_addr = settings, ingest_addr, ref_addr
        self.replicas = replicas
        self.db = Database(settings.sqlalchemy_url())

    def ring(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(serving, target) members as the database has them."""
        with self.db.read() as s:
            row = s.get(RetrievalRing, 1)
            if row is None:
                return (), ()
            return tuple(map(int, row.serving.split(","))), tuple(map(int, row.target.split(",")))

    def wait_ring(self, members: tuple[int, ...]) -> None:
        """Until the serving ring is exactly members, with no move under way."""
        _until(f"the ring {members}", lambda: self.ring() == (members, members))

    def reference(self, seq: int) -> dict:
        with MemlakeClient(self.ref_addr, api_key=KEY[0], timeout=20) as c:
            return _answers(c, seq)

    def assert_like_one(self, replicas: list[Replica], seq: int) -> None:
        want = self.reference(seq)
        assert all(want[(u, QUERIES[0])] for u in USERS)
        for r in replicas:
            with r.client() as c:
                diff = _differences(_answers(c, seq), want)
                assert not diff, f"replica {r.ordinal} differs from one replica: {diff[:3]}"

    def assert_owned_once(self, replicas: list[Replica]) -> None:
        """Each partition in exactly one of these replicas' snapshots, the one the ring
        names (snapshots follow within a snapshot interval)."""
        ring = Ring(tuple(r.ordinal for r in replicas))
        want = [{k for k in _all_keys() if ring.owner(k) == r.ordinal} for r in replicas]
        last = []

        def settled():
            last[:] = [r.owned() for r in replicas]
            return last == want

        try:
            _until("each partition in its owner's snapshot only", settled)
        except BaseException:
            print("snapshots hold", last, "want", want)
            raise


class Load:
    """Queries the replicas that are up (in the Service's endpoints) in a loop while the
    ring moves, each answer compared with the single replica's for the same query."""

    def __init__(self, cluster: Cluster, seq: int) -> None:
        self.cluster = cluster
        self.up: set[int] = set()
        self.failures: list = []
        self.answered = 0
        self.lock = threading.Lock()  # held per query; a writer holds it to change `want`
        self._stop = threading.Event()
        self.rewant(seq)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rewant(self, seq: int) -> None:
        ref = self.cluster.reference(seq)
        self.seq, self.want = seq, {k: v for k, v in ref.items() if k[0] != "ctx"}

    def write(self, tag: str) -> int:
        with self.lock:
            seq = _write(self.cluster.ingest_addr, tag)
            self.rewant(seq)
        return seq

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            up = sorted(self.up)
            if not up:
                time.sleep(0.01)
                continue
            r = self.cluster.replicas[up[i % len(up)]]
            u = USERS[i % len(USERS)] if i % 3 else ""
            q = QUERIES[i % 2]
            i += 1
            with self.lock:
                try:
                    with r.client() as c:
                        got = _search(c, u, q, self.seq)
                except Exception as exc:  # noqa: BLE001 - collected and asserted on
                    self.failures.append((r.ordinal, u, q, repr(exc)))
                    continue
                if not _same(got, self.want[(u, q)]):
                    self.failures.append((r.ordinal, u, q, got, self.want[(u, q)]))
                self.answered += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def check(self, at_least: int) -> None:
        assert not self.failures, self.failures[:5]
        assert self.answered >= at_least


@pytest.fixture
def cluster(fresh_backend, tmp_path):
    backend, settings = fresh_backend
    ingest, _ = start("ingest", settings, port=0)
    KEY[0] = tenant_key(f"127.0.0.1:{ingest.port}", settings, "acme")
    replicas = [Replica(i, _free_port(), settings, tmp_path) for i in range(3)]
    # The reference: one replica holding every partition (in-process, its own data dir,
    # no membership).
    ref_settings = settings.model_copy(
        update={"data_dir": tmp_path / "ref", "database_url": settings.sqlalchemy_url()}
    )
    ref, _ = start("retrieval", ref_settings, port=0)
    c = Cluster(settings, f"127.0.0.1:{ingest.port}", f"127.0.0.1:{ref.port}", replicas)
    yield c
    for r in replicas:
        r.stop(signal.SIGKILL)
        if r.log.exists():  # shown when the test failed
            lines = r.log.read_text().splitlines()
            print(f"--- replica {r.ordinal}", *[x for x in lines if '"INFO"' not in x][-30:])
            print(*[x for x in lines if "ring epoch" in x or "handed" in x], sep="\n")
    c.db.dispose()
    ref.stop(1.0)
    ingest.stop(1.0)


def _all_keys() -> set[tuple[str, str]]:
    return {partition_key("acme", u, "") for u in USERS} | {partition_key("acme", "", "helper-bot")}


def test_three_replicas_answer_like_one_and_survive_kill_9(cluster):
    replicas = cluster.replicas
    seq = _write(cluster.ingest_addr, "a")
    for r in replicas:
        r.start()
    for r in replicas:
        r.wait_serving()
    cluster.wait_ring((0, 1, 2))
    cluster.assert_like_one(replicas, seq)

    # Kill -9 the owner of user1's partition: the others answer for it at once (built
    # from the database on demand), and once its heartbeat expires the ring drops it and
    # the two others own its partitions.
    victim = replicas[Ring((0, 1, 2)).owner(partition_key("acme", "user1", ""))]
    others = [r for r in replicas if r is not victim]
    victim.stop(signal.SIGKILL)
    seq = _write(cluster.ingest_addr, "b")
    cluster.assert_like_one(others[:1], seq)
    cluster.wait_ring(tuple(r.ordinal for r in others))
    seq = _write(cluster.ingest_addr, "c")
    cluster.assert_like_one(others, seq)
    cluster.assert_owned_once(others)

    # Restarted, it joins again, builds its partitions, and the ring takes it back.
    victim.start().wait_serving()
    cluster.wait_ring((0, 1, 2))
    seq = _write(cluster.ingest_addr, "d")
    cluster.assert_like_one(replicas, seq)
    cluster.assert_owned_once(replicas)


def test_growing_and_shrinking_without_restarts(cluster):
    replicas = cluster.replicas
    seq = _write(cluster.ingest_addr, "a")
    for r in replicas[:2]:
        r.start()
    for r in replicas[:2]:
        r.wait_serving()
    cluster.wait_ring((0, 1))
    cluster.assert_owned_once(replicas[:2])

    with Load(cluster, seq) as load:
        load.up |= {0, 1}
        # 2 -> 3: replicas 0 and 1 keep running; the new one builds what it wins, says so,
        # and only then does the ring route to it. A write lands during the move.
        replicas[2].start()
        load.write("b")
        replicas[2].wait_serving()
        load.up.add(2)  # SERVING: in the Service's endpoints (it forwards what it lacks)
        cluster.wait_ring((0, 1, 2))
        before = load.answered
        _until("queries on the new ring", lambda: load.answered >= before + 20)
        load.check(at_least=20)
    seq = load.seq
    cluster.assert_like_one(replicas, seq)
    cluster.assert_owned_once(replicas)

    with Load(cluster, seq) as load:
        load.up |= {0, 1, 2}
        # 3 -> 2: SIGTERM takes it out of the endpoints (NOT_SERVING) and it hands its
        # partitions over before it stops answering the others' forwards.
        load.up.discard(2)
        replicas[2].proc.send_signal(signal.SIGTERM)
        load.write("c")
        cluster.wait_ring((0, 1))
        assert replicas[2].proc.wait(WAIT_S) == 0
        before = load.answered
        _until("queries on the smaller ring", lambda: load.answered >= before + 20)
        load.check(at_least=20)
    assert "handed over" in replicas[2].log.read_text()
    cluster.assert_like_one(replicas[:2], load.seq)
    cluster.assert_owned_once(replicas[:2])
