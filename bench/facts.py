"""AssertFact throughput and latency with 100k facts already stored.

Starts its own all-in-one server (SQLite in a temporary data dir by default, or
--database-url for Postgres), preloads facts straight into the database (bulk INSERTs, not
through the API: fact keys, one current version each, and the memory records that carry
them, with random unit vectors as stored embeddings and no change-log rows, so the search
index does not ingest them during the measurement), then measures AssertFact over gRPC:

- new:       a new key (CREATED): embed, lock, insert version + memory record + audit;
- supersede: a different value for a stored key (UPDATED): also closes the old version;
- duplicate: the stored value again (DUPLICATE): no new version, the source is appended;

each with 1 client and with several concurrent clients. Prints a table, writes JSON.

    python bench/facts.py --out bench/out/facts.json [--embedder minilm|hash]
        [--preload 100000] [--ops 1000] [--clients 1,4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import tenant_api_key  # noqa: E402
from memlake.client import MemlakeClient, scope  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from shared.db.models import FactKey, FactVersion, MemoryRecord  # noqa: E402
from shared.launch import start  # noqa: E402
from shared.settings import Settings  # noqa: E402
from versioning_service.versions import CURRENT, statement_text  # noqa: E402

TENANT = "bench"
KEY = [""]  # the bench tenant's ADMIN key, made once the server is up
USERS = 1000  # facts spread over this many users; each user has SUBJECTS subjects
SUBJECTS = 10


def key_of(i: int) -> tuple[str, str, str]:
    """(user, subject, predicate) of preloaded fact i."""
    user = i % USERS
    rest = i // USERS
    return f"u{user}", f"subject {rest % SUBJECTS}", f"attr_{rest // SUBJECTS}"


def value_of(i: int) -> str:
    return f"value {i}"


def preload(rt, n: int, dim: int, chunk: int = 5000) -> float:
    """Bulk-inserts n facts; returns seconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    vf = now - timedelta(days=365)
    kt, mt, vt = FactKey.__table__, MemoryRecord.__table__, FactVersion.__table__
    with rt.db.engine.begin() as conn:
        for lo in range(0, n, chunk):
            idx = range(lo, min(n, lo + chunk))
            keys = [key_of(i) for i in idx]
            key_ids = conn.execute(
                insert(kt).returning(kt.c.id, sort_by_parameter_order=True),
                [
                    dict(
                        tenant=TENANT,
                        user_id=u,
                        agent_id="",
                        subject_norm=s,
                        predicate_norm=p,
                        conflicted=False,
                        lock_version=0,
                        create_time=now,
                    )
                    for u, s, p in keys
                ],
            ).scalars()
            key_ids = list(key_ids)
            vecs = rng.standard_normal((len(keys), dim)).astype("<f4")
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            embs = [v.tobytes() for v in vecs]
            mem_ids = list(
                conn.execute(
                    insert(mt).returning(mt.c.id, sort_by_parameter_order=True),
                    [
                        dict(
                            tenant=TENANT,
                            type=pb.MEMORY_TYPE_FACT,
                            user_id=u,
                            agent_id="",
                            session_id="",
                            key=f"{s}|{p}",
                            revision=1,
                            current=True,
                            content=statement_text(s, p, value_of(i)),
                            attributes={"subject": s, "predicate": p, "value": value_of(i)},
                            importance=0.5,
                            source={"kind": "import", "actor": "bench"},
                            create_time=now,
                            update_time=now,
                            occur_time=vf,
                            etag=uuid.uuid4().hex[:16],
                            embedding=e,
                            embed_model="bench-random",
                            fact_status=CURRENT,
                            conflicted=False,
                        )
                        for i, (u, s, p), e in zip(idx, keys, embs, strict=True)
                    ],
                ).scalars()
            )
            conn.execute(
                insert(vt),
                [
                    dict(
                        tenant=TENANT,
                        key_id=k,
                        subject=s,
                        predicate=p,
                        value=value_of(i),
                        value_norm=value_of(i),
                        confidence=1.0,
                        valid_from=vf,
                        record_time=now - timedelta(days=1),
                        status=CURRENT,
                        sources=[{"kind": "import", "actor": "bench"}],
                        memory_id=m,
                        importance=0.5,
                        embedding=e,
                    )
                    for i, (u, s, p), k, m, e in zip(idx, keys, key_ids, mem_ids, embs, strict=True)
                ],
            )
    return time.perf_counter() - t0


def measure(addr: str, clients: int, ops: list, expected: int) -> dict:
    """Runs ops (kwargs for assert_fact) split over `clients` threads."""
    lat: list[float] = []
    wrong = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    shards = [ops[i::clients] for i in range(clients)]

    def run(mine):
        nonlocal wrong
        local, bad = [], 0
        with MemlakeClient(addr, api_key=KEY[0], timeout=60) as c:
            start_gate.wait()
            for kw in mine:
                t0 = time.perf_counter()
                r = c.assert_fact(**kw)
                local.append(time.perf_counter() - t0)
                bad += r.outcome != expected
        with lock:
            lat.extend(local)
            wrong += bad

    threads = [threading.Thread(target=run, args=(s,)) for s in shards]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "clients": clients,
        "ops": len(lat),
        "seconds": round(wall, 3),
        "throughput_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
        "unexpected_outcomes": wrong,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="AssertFact throughput/latency with facts stored")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "facts.json"))
    ap.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    ap.add_argument("--preload", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=1000, help="assertions per scenario and setting")
    ap.add_argument("--clients", default="1,4", help="comma-separated client thread counts")
    ap.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    ap.add_argument("--data-dir", default="")
    a = ap.parse_args(argv)
    clients = [int(x) for x in a.clients.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="memlake-bench-facts-")
    settings = Settings(
        data_dir=Path(a.data_dir or tmp.name),
        database_url=a.database_url,
        embedder=a.embedder,
        log_requests=False,
        health_check_interval_s=5.0,
    )
    running, rt = start("all", settings, port=0)
    addr = f"127.0.0.1:{running.port}"
    KEY[0] = tenant_api_key(addr, settings.key_file().read_text().strip(), TENANT)
    backend = rt.db.dialect
    try:
        with rt.db.read() as s:
            before = s.scalar(
                select(func.count()).select_from(FactVersion).where(FactVersion.tenant == TENANT)
            )
        if before:
            print(f"tenant {TENANT!r} already holds {before} fact versions; use a fresh database")
            return 2
        print(
            f"backend {backend}, embedder {rt.embedder.name}, server {addr}; preloading "
            f"{a.preload} facts by bulk INSERT into the database (not through the API) ..."
        )
        preload_s = preload(rt, a.preload, rt.embedder.dim)
        print(f"preloaded {a.preload} facts in {preload_s:.1f}s")
        rng = random.Random(1)
        # Disjoint stored keys for the supersede and duplicate runs.
        stored = rng.sample(range(a.preload), min(a.preload, 2 * a.ops * len(clients)))
        sup_keys, dup_keys = stored[0::2], stored[1::2]
        src = pb.Source(kind="tool", actor="bench")

        def stored_op(i: int, value: str) -> dict:
            u, s, p = key_of(i)
            return dict(subject=s, predicate=p, value=value, scope=scope(u), source=src)

        with MemlakeClient(addr, api_key=KEY[0]) as c:  # warm up (model, pools, caches)
            for w in range(20):
                c.assert_fact("warmup", f"w{w}", "x", scope=scope("warm"))
        results = []
        for n_clients in clients:
            new_ops = [
                dict(
                    subject=f"new subject {n_clients}",
                    predicate=f"p{j}",
                    value=f"fresh value {j}",
                    scope=scope(f"u{j % USERS}"),
                    source=src,
                )
                for j in range(a.ops)
            ]
            sup = sup_keys[: a.ops]
            sup_keys = sup_keys[a.ops :]
            dup = dup_keys[: a.ops]
            dup_keys = dup_keys[a.ops :]
            runs = [
                ("new", new_ops, pb.WRITE_OUTCOME_CREATED),
                (
                    "supersede",
                    [stored_op(i, f"{value_of(i)} v2") for i in sup],
                    pb.WRITE_OUTCOME_UPDATED,
                ),
                ("duplicate", [stored_op(i, value_of(i)) for i in dup], pb.WRITE_OUTCOME_DUPLICATE),
            ]
            for name, ops, expected in runs:
                r = {"scenario": name, **measure(addr, n_clients, ops, expected)}
                results.append(r)
                print(
                    f"  {name:<10} clients {n_clients}: {r['throughput_per_s']:>7.1f}/s  "
                    f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms",
                    flush=True,
                )
        with rt.db.read() as s:
            total = s.scalar(select(func.count()).select_from(FactVersion))
    finally:
        running.stop(2.0)
        tmp.cleanup()

    print(
        f"\nAssertFact over gRPC, {backend}, embedder {rt.embedder.name}, "
        f"{a.preload} facts preloaded ({total} fact version rows at the end), "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"{'scenario':<10} {'clients':>7} {'ops':>6} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'mean ms':>8}"
    )
    for r in results:
        print(
            f"{r['scenario']:<10} {r['clients']:>7} {r['ops']:>6} {r['throughput_per_s']:>8.1f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['mean_ms']:>8.2f}"
        )
    bad = sum(r["unexpected_outcomes"] for r in results)
    if bad:
        print(f"WARNING: {bad} assertions had an unexpected outcome")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "AssertFact",
                "time": datetime.now(UTC).isoformat(),
                "backend": backend,
                "database": "temporary SQLite file" if not a.database_url else "given URL",
                "embedder": rt.embedder.name,
                "preloaded_facts": a.preload,
                "preload": "bulk INSERT into fact_keys/memories/fact_versions, random unit "
                "vectors as embeddings, no change-log rows (not through the API)",
                "preload_seconds": round(preload_s, 1),
                "fact_version_rows_at_end": total,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
