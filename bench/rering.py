"""Ownership moves while retrieval replicas run, at the default membership settings
(heartbeat 1 s, TTL 10 s, handover grace 5 s): how long a move takes and what queries
see meanwhile.

An all-in-one server writes USERS x PER_USER memories (hash embedder: the costs measured
here do not depend on what vectors mean) into its SQLite file (or --database-url), then
retrieval replicas run as processes on the same database while a client sends scoped
searches to the replicas that are up, round robin:

  1. replicas 0 and 1 serve; replica 2 starts (2 -> 3): time to SERVING and until the
     serving ring names it (it has built its partitions by scope);
  2. SIGTERM to replica 2 (3 -> 2): time until the others serve its partitions, and to exit;
  3. kill -9 of replica 1: time until the ring drops it (heartbeat expiry), queries
     meanwhile answered by replica 0 building replica 1's partitions on demand.

Prints a table per phase (queries, failures, p50/p99 ms) and the move times, and writes
bench/out/rering.json.

  python bench/rering.py [--users 2000] [--per-user 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Server,
    cpu_info,
    free_port,
    percentile,
    tenant_api_key,
    write_json,
)
from memlake.client import MemlakeClient, scope  # noqa: E402
from memlake.memories import event  # noqa: E402
from shared.db.engine import Database  # noqa: E402
from shared.db.models import RetrievalRing  # noqa: E402
from shared.settings import Settings  # noqa: E402

WORDS = "harbour walk piano lesson coffee meeting river garden train book dinner".split()


def _fill(addr: str, key: str, users: int, per_user: int) -> int:
    rng = random.Random(7)
    seq = 0
    with MemlakeClient(addr, api_key=key, timeout=120) as c:
        batch = []
        for u in range(users):
            for i in range(per_user):
                text = f"{' '.join(rng.sample(WORDS, 4))} with user{u} note {i}"
                batch.append(event(text, user=f"user{u}"))
            if len(batch) >= 500:
                seq = c.stream_remember(batch).seq
                batch = []
        if batch:
            seq = c.stream_remember(batch).seq
    return seq


class Ring:
    def __init__(self, url: str) -> None:
        self.db = Database(url)

    def serving(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        with self.db.read() as s:
            row = s.get(RetrievalRing, 1)
            if row is None:
                return (), ()
            as_tuple = lambda t: tuple(int(x) for x in t.split(","))  # noqa: E731
            return as_tuple(row.serving), as_tuple(row.target)

    def wait(self, members: tuple[int, ...], timeout: float = 600) -> float:
        t0 = time.monotonic()
        while self.serving() != (members, members):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"ring never became {members}: {self.serving()}")
            time.sleep(0.02)
        return time.monotonic()


class Load(threading.Thread):
    def __init__(self, key: str, users: int) -> None:
        super().__init__(daemon=True)
        self.key, self.users = key, users
        self.up: dict[int, str] = {}
        self.phase = "before"
        self.samples: dict[str, list[float]] = {}
        self.failed: dict[str, int] = {}
        self.errors: list[tuple[str, str, str]] = []
        self.stop = threading.Event()
        self.clients: dict[str, MemlakeClient] = {}

    def run(self) -> None:
        rng = random.Random(11)
        i = 0
        while not self.stop.is_set():
            up = sorted(self.up.items())
            if not up:
                time.sleep(0.01)
                continue
            _, addr = up[i % len(up)]
            i += 1
            c = self.clients.get(addr)
            if c is None:
                c = self.clients[addr] = MemlakeClient(addr, api_key=self.key, timeout=30)
            phase = self.phase
            t0 = time.perf_counter()
            try:
                c.search("harbour walk", scope=scope(f"user{rng.randrange(self.users)}"), top_k=5)
                self.samples.setdefault(phase, []).append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # noqa: BLE001 - counted, the first few shown
                self.failed[phase] = self.failed.get(phase, 0) + 1
                if len(self.errors) < 5:
                    self.errors.append((phase, addr, repr(exc)[:300]))

    def close(self) -> None:
        self.stop.set()
        self.join(30)
        for c in self.clients.values():
            c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--per-user", type=int, default=5)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--out", default="bench/out/rering.json")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rering-"))
    base = {"MEMLAKE_EMBEDDER": "hash"}
    if args.database_url:
        base["MEMLAKE_DATABASE_URL"] = args.database_url
    writer = Server(tmp / "all", env=base)
    writer.wait_serving()
    url = args.database_url or Settings(data_dir=tmp / "all").sqlalchemy_url()
    key = tenant_api_key(writer.addr, writer.operator_key(), "acme")
    t0 = time.monotonic()
    _fill(writer.addr, key, args.users, args.per_user)
    fill_s = time.monotonic() - t0
    n = args.users * args.per_user
    print(f"wrote {n} memories in {args.users} partitions in {fill_s:.1f} s")

    ports = [free_port() for _ in range(3)]

    def replica(o: int) -> Server:
        env = dict(
            base,
            MEMLAKE_DATABASE_URL=url,
            MEMLAKE_REPLICA_ORDINAL=str(o),
            MEMLAKE_REPLICA_ADDRESS=f"127.0.0.1:{ports[o]}",
            MEMLAKE_SHUTDOWN_GRACE_S="60",
        )
        return Server(tmp / f"r{o}", env=env, service="retrieval", port=ports[o])

    ring = Ring(url)
    out: dict = {"memories": n, "partitions": args.users, "cpu": cpu_info()}
    rs = [replica(0), replica(1)]
    for r in rs:
        r.wait_serving(600)
    ring.wait((0, 1))
    load = Load(key, args.users)
    load.up = {0: rs[0].addr, 1: rs[1].addr}
    load.start()
    time.sleep(5)

    load.phase = "growing 2->3"
    t0 = time.monotonic()
    rs.append(replica(2))
    rs[2].wait_serving(600)
    out["grow_serving_s"] = time.monotonic() - t0
    load.up[2] = rs[2].addr
    out["grow_ring_s"] = ring.wait((0, 1, 2)) - t0
    load.phase = "after 2->3"
    time.sleep(5)

    load.phase = "shrinking 3->2"
    load.up.pop(2)
    t0 = time.monotonic()
    rs[2].proc.send_signal(signal.SIGTERM)
    out["shrink_ring_s"] = ring.wait((0, 1)) - t0
    rs[2].proc.wait(120)
    out["shrink_exit_s"] = time.monotonic() - t0
    load.phase = "after 3->2"
    time.sleep(5)

    load.phase = "kill -9 of 1"
    load.up.pop(1)  # its endpoint goes when its readiness probe fails
    t0 = time.monotonic()
    rs[1].kill9()
    out["kill_ring_s"] = ring.wait((0,)) - t0
    load.phase = "after kill -9"
    time.sleep(5)
    load.close()

    phases = []
    print(f"\n{'phase':<16} {'queries':>8} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for ph in ["before", "growing 2->3", "after 2->3", "shrinking 3->2", "after 3->2"] + [
        "kill -9 of 1",
        "after kill -9",
    ]:
        xs = load.samples.get(ph, [])
        row = {
            "phase": ph,
            "queries": len(xs),
            "failed": load.failed.get(ph, 0),
            "p50_ms": percentile(xs, 50),
            "p99_ms": percentile(xs, 99),
        }
        phases.append(row)
        print(
            f"{ph:<16} {row['queries']:>8} {row['failed']:>7} {row['p50_ms']:>8.1f}"
            f" {row['p99_ms']:>8.1f}"
        )
    out["phases"] = phases
    out["errors"] = load.errors
    for e in load.errors:
        print("failed:", *e)
    print(
        f"\n2->3: SERVING after {out['grow_serving_s']:.1f} s, in the serving ring after"
        f" {out['grow_ring_s']:.1f} s\n3->2 (SIGTERM): others serving its partitions after"
        f" {out['shrink_ring_s']:.1f} s, exited after {out['shrink_exit_s']:.1f} s\n"
        f"kill -9: dropped from the ring after {out['kill_ring_s']:.1f} s"
    )
    out["load_average"] = os.getloadavg()
    print(f"CPU: {out['cpu']}  load average: {out['load_average']}")
    write_json(args.out, out)
    for r in [rs[0], writer]:
        r.stop()
    ring.db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
