"""Index operations at many partitions: snapshot time, the longest pause of the change-log
apply loop, write-to-searchable latency under steady writes, start-up to SERVING and
shutdown of a retrieval process, and resident bytes per memory.

Runs the retrieval service's own IndexManager in-process (a tail thread, snapshots on a
short interval) against a SQLite database filled directly (memories plus change-log rows,
as ingest writes them), then starts and stops `python -m retrieval_service` on the same
data for the process figures (which loads the MiniLM model, as a real start does). Vectors
are cheap: random unit 384-d float32 (the size of all-MiniLM-L6-v2's, stored under its
name), because embedding 100k+ texts takes too long here; snapshot, apply and start-up
costs do not depend on what the vectors mean.

    python bench/shards.py --tier 10k              # 10k partitions of 1-2 memories
    python bench/shards.py --tier 100k             # 100k partitions of 1-2 memories
    python bench/shards.py --tier 100x1k           # 100 partitions of 1k (100x10k: 1M)

The apply-loop pause: the longest time the tail thread (which applies the change log)
waited for the apply lock held by someone else (a snapshot), or spent taking a snapshot
itself (the code before incremental snapshots took them on the tail thread).
Write-to-searchable: the time
from a write's commit to the index having applied its seq, for writes at --rate per
second for --seconds, with snapshots every --snapshot-interval seconds meanwhile.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# MEMLAKE_BENCH_CODE: another checkout's code to measure (e.g. main, for "before").
CODE = os.environ.get("MEMLAKE_BENCH_CODE") or str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, CODE)

from bench.common import free_port, percentile, write_json  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from retrieval_service.index import IndexManager  # noqa: E402
from shared import changelog  # noqa: E402
from shared.db.engine import Database  # noqa: E402
from shared.db.models import ChangeLogEntry, MemoryRecord  # noqa: E402

DIM = 384
# The name the process's embedder gives its vectors (a snapshot written under another name is
# not loaded: the process would rebuild from the database). The vectors are random.
MODEL = "all-MiniLM-L6-v2"
TIERS = {
    "1k": (1_000, (1, 2)),
    "10k": (10_000, (1, 2)),
    "100k": (100_000, (1, 2)),
    "100x1k": (100, (1000, 1000)),
    "100x10k": (100, (10_000, 10_000)),
}
# Poll the starting process without gRPC's growing reconnect backoff (1 s, 1.6 s, ...).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
]
WORDS = "apple river mountain piano coffee garden rocket violin desert lantern harbour".split()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vec(rng: np.random.Generator) -> bytes:
    v = rng.standard_normal(DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype("<f4").tobytes()


def _row(rng, rnd, tenant: str, user: str, i: int) -> dict:
    now = datetime.now(UTC)
    return dict(
        tenant=tenant,
        type=pb.MEMORY_TYPE_EVENT,
        user_id=user,
        agent_id="",
        session_id="",
        content=" ".join(rnd.sample(WORDS, 4)) + f" note {i}",
        attributes={},
        importance=0.5,
        source={},
        create_time=now,
        update_time=now,
        occur_time=now,
        current=True,
        revision=1,
        etag=f"e{i}",
        embedding=_vec(rng),
        embed_model=MODEL,
        conflicted=False,
    )


def fill(db: Database, partitions: int, per: tuple[int, int]) -> int:
    """Inserts the memories and their change-log rows; returns the count."""
    rng, rnd = np.random.default_rng(7), random.Random(7)
    batch, n = [], 0
    from sqlalchemy import insert

    def flush():
        with db.write() as s:
            res = s.execute(insert(MemoryRecord).returning(MemoryRecord.id), batch)
            ids = [r[0] for r in res]
            s.execute(
                insert(ChangeLogEntry),
                [{"tenant": "bench", "memory_id": i, "op": "put"} for i in ids],
            )
        batch.clear()

    for p in range(partitions):
        for _ in range(rnd.randint(*per)):
            batch.append(_row(rng, rnd, "bench", f"user{p}", n))
            n += 1
            if len(batch) >= 2000:
                flush()
    if batch:
        flush()
    return n


def write_one(db: Database, rng, rnd, partitions: int, i: int) -> tuple[int, float]:
    user = f"user{rnd.randrange(partitions)}"
    with db.write() as s:
        rec = MemoryRecord(**_row(rng, rnd, "bench", user, 10_000_000 + i))
        s.add(rec)
        s.flush()
        seq = changelog.append(s, "bench", [rec.id])
    return seq, time.perf_counter()


class TimedLock:
    """The apply lock, recording how long the tail thread waited for it (held by a
    snapshot or anything else): the apply loop's pauses caused by others."""

    def __init__(self, inner) -> None:
        self.inner, self.waits = inner, []

    def acquire(self, *a, **k):
        t = time.perf_counter()
        ok = self.inner.acquire(*a, **k)
        if threading.current_thread().name == "index-tail":
            self.waits.append(time.perf_counter() - t)
        return ok

    def release(self):
        self.inner.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def steady(m: IndexManager, db: Database, partitions: int, rate: float, seconds: float):
    """Writes at rate/s for seconds with the tail thread running; returns latencies."""
    rng, rnd = np.random.default_rng(11), random.Random(11)
    pending: dict[int, float] = {}
    lat: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def watch():
        while not (done.is_set() and not pending):
            with m._cond:
                m._cond.wait(0.005)
            now, applied = time.perf_counter(), m.applied_seq
            with lock:
                for seq in [s for s in pending if s <= applied]:
                    lat.append(now - pending.pop(seq))

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0, i = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        seq, at = write_one(db, rng, rnd, partitions, i)
        with lock:
            pending[seq] = at
        m.wake(seq)
        i += 1
        time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    done.set()
    w.join(30)
    # Writes still not applied 30 s after the last one count with their wait so far.
    now = time.perf_counter()
    with lock:
        late = len(pending)
        lat += [now - t for t in pending.values()]
    return lat, i, late


def query_times(m: IndexManager, partitions: int, count: int = 200) -> dict:
    """Candidates of a scoped query in partitions not used since the build (packed ones
    are decoded first), then again at once (decoded)."""
    from retrieval_service.index import Filters

    rnd, rng = random.Random(3), np.random.default_rng(3)
    q = rng.standard_normal(DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    first, again = [], []
    for p in rnd.sample(range(partitions), min(count, partitions)):
        f = Filters(user_id=f"user{p}")
        for out in (first, again):
            t = time.perf_counter()
            part = m.partition(("bench", f"u:user{p}"))
            part.candidates(f, time.time(), q, "apple river", 10)
            out.append(time.perf_counter() - t)
    if hasattr(m, "pack_idle"):
        m.pack_idle(0)
    return {
        "query_first_use_p50_ms": percentile(first, 50) * 1000,
        "query_first_use_p99_ms": percentile(first, 99) * 1000,
        "query_again_p50_ms": percentile(again, 50) * 1000,
    }


def process_times(data: Path, db_url: str, code: Path) -> dict:
    """Start-up to SERVING and SIGTERM-to-exit of `python -m retrieval_service`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
    env.update(
        MEMLAKE_DATA_DIR=str(data),
        MEMLAKE_DATABASE_URL=db_url,
        MEMLAKE_EMBEDDER="minilm",
        MEMLAKE_RETRIEVAL_PORT=str(port),
        MEMLAKE_RETRIEVAL_METRICS_PORT=str(free_port()),
        MEMLAKE_LOG_REQUESTS="false",
        MEMLAKE_HEALTH_CHECK_INTERVAL_S="0.2",
        PYTHONPATH=str(code),
    )
    log = open(data / "retrieval.log", "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval_service"], env=env, cwd=code, stdout=log, stderr=log
    )
    serving = None
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=FAST_RECONNECT) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.perf_counter() - t0 < 600 and proc.poll() is None:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    serving = time.perf_counter() - t0
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    t1 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(300)
    return {"startup_to_serving_s": serving, "shutdown_s": time.perf_counter() - t1}


def run(args) -> dict:
    partitions, per = TIERS[args.tier]
    work = Path(args.work) / args.tier
    work.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{(work / 'memlake.db').resolve()}"
    db = Database(db_url)
    db.upgrade()
    t = time.perf_counter()
    with db.read() as s:
        have = changelog.last_seq(s)
    n = have or fill(db, partitions, per)
    fill_s = time.perf_counter() - t
    out: dict = {"tier": args.tier, "partitions": partitions, "memories": n, "fill_s": fill_s}
    print(f"{args.tier}: {n} memories in {partitions} partitions (filled in {fill_s:.1f} s)")

    # Build from the database, then the first (full) snapshot.
    snap = work / "index"
    for p in snap.glob("*"):
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()
    rss0 = rss_bytes()
    m = IndexManager(db, DIM, embed_model=MODEL, snapshot_dir=snap, snapshot_interval=1e9)
    t = time.perf_counter()
    m.load_all()
    out["build_s"] = time.perf_counter() - t
    out["rss_bytes_per_memory"] = (rss_bytes() - rss0) / n
    if args.rss_only:  # no timing: needs no bench lock
        return out
    out.update(query_times(m, partitions))
    t = time.perf_counter()
    m.save_snapshot()
    out["snapshot_full_s"] = time.perf_counter() - t

    # Steady writes with the tail thread running and snapshots every few seconds.
    m.snapshot_interval = args.snapshot_interval
    m.poll_interval = 0.2
    lock = m._apply_lock = TimedLock(m._apply_lock)
    snap_times: list[float] = []
    in_tail: list[float] = []  # snapshots taken on the tail thread itself (before: all)
    real_save = m.save_snapshot

    def timed_save(*a, **k):
        t = time.perf_counter()
        try:
            return real_save(*a, **k)
        finally:
            snap_times.append(time.perf_counter() - t)
            if threading.current_thread().name == "index-tail":
                in_tail.append(snap_times[-1])
            print(f"  snapshot on {threading.current_thread().name}: {snap_times[-1]:.2f} s")

    m.save_snapshot = timed_save
    m.start()
    lat, writes, late = steady(m, db, partitions, args.rate, args.seconds)
    lock_waits = list(lock.waits)
    t = time.perf_counter()
    m.stop()
    out["stop_in_process_s"] = time.perf_counter() - t
    out.update(
        writes=writes,
        writes_unapplied_30s_after=late,
        write_to_searchable_p50_ms=percentile(lat, 50) * 1000,
        write_to_searchable_p99_ms=percentile(lat, 99) * 1000,
        write_to_searchable_max_ms=max(lat) * 1000,
        snapshot_rounds=len(snap_times),
        snapshot_round_max_s=max(snap_times, default=0.0),
        apply_lock_wait_max_ms=max(lock_waits, default=0) * 1000,
        snapshot_in_apply_thread_max_ms=max(in_tail, default=0) * 1000,
        apply_pause_max_ms=max([*lock_waits, *in_tail], default=0) * 1000,
    )
    out.update(process_times(work, db_url, Path(args.code)))
    return out


def one_partition(n: int, data: Path, graph: bool = False) -> dict:
    """Resident bytes per memory of one partition of n conversation turns: LoCoMo dev
    texts (cycled, with their speakers and sessions) and random unit 384-d vectors; with
    graph, its HNSW graph too (built as a partition past the threshold builds it)."""
    import gc
    import json
    from datetime import timedelta

    from retrieval_service.index import Partition

    turns = []
    for conv in json.loads(data.read_text()):
        for sess, v in conv["conversation"].items():
            if isinstance(v, list):
                turns += [(sess, t["speaker"], t["text"]) for t in v if "text" in t]
    rng, t0 = np.random.default_rng(1), datetime(2023, 1, 1, tzinfo=UTC)
    recs = []
    for i in range(n):
        sess, speaker, text = turns[i % len(turns)]
        rec = MemoryRecord(
            id=i + 1, tenant="t", type=pb.MEMORY_TYPE_CONVERSATION, user_id="user-1",
            agent_id="", session_id=f"{sess}-{i // len(turns)}", content=text,
            attributes={"speaker": speaker}, importance=0.5, source={}, create_time=t0,
            update_time=t0, occur_time=t0 + timedelta(minutes=i), current=True, revision=1,
            etag="e", turn_index=i, conflicted=False,
        )  # fmt: skip
        v = rng.standard_normal(DIM).astype(np.float32)
        recs.append((rec, v / np.linalg.norm(v)))
    gc.collect()
    r0 = rss_bytes()
    p = Partition(DIM, n - 1 if graph else 10**9)  # without graph: exact only
    for rec, v in recs:
        p.put(rec, v)
    if graph:
        p.build_ann()
    gc.collect()
    return {
        "one_partition_memories": n,
        "graph": graph and p.ann is not None,
        "rss_bytes_per_memory": (rss_bytes() - r0) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", choices=sorted(TIERS), default="10k")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--snapshot-interval", type=float, default=3.0)
    ap.add_argument("--work", default="/tmp/memlake-bench-shards")
    ap.add_argument("--code", default=CODE)
    ap.add_argument("--out", default="bench/out/shards.json")
    ap.add_argument(
        "--one-partition",
        type=int,
        default=0,
        help="only measure bytes per memory of one partition of this many LoCoMo turns",
    )
    ap.add_argument("--graph", action="store_true", help="--one-partition with its HNSW graph")
    ap.add_argument(
        "--rss-only",
        action="store_true",
        help="only build the index and measure resident bytes per memory (no timings)",
    )
    ap.add_argument("--data", default=str(Path(CODE).parent / "shared/data/locomo10-dev.json"))
    args = ap.parse_args()
    if args.one_partition:
        out = one_partition(args.one_partition, Path(args.data), args.graph)
    else:
        out = run(args)
    out["cpu"] = platform.processor() or _cpu()
    out["code"] = args.code
    for k, v in out.items():
        print(f"  {k:40s} {v:.3f}" if isinstance(v, float) else f"  {k:40s} {v}")
    write_json(args.out, out)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()
