"""kill -9 of each service during a write stream retried by request_id, ROUNDS rounds, on
Postgres with the three services as processes and a Redis this bench starts itself.
Prints one row per crash (acknowledged writes, retries, lost, duplicated, index ids that
differ from the database's) and writes JSON; exit 1 if anything was lost or duplicated.

    make bench-faults DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_info, write_json  # noqa: E402
from tests.faultkit import kill_rounds  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--write-s", type=float, default=1.0, help="writing before/after a crash")
    ap.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="an admin URL: a fresh database is created beside it and dropped after",
    )
    ap.add_argument("--out", default="bench/out/faults.json")
    args = ap.parse_args()
    name = f"memlake_faults_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.database_url.rsplit("/", 1)[0] + "/" + name
    t0 = time.monotonic()
    print(
        f"{'round':>5} {'killed':<11}{'restart s':>10}{'acked':>7}{'tries':>7}{'retried':>8}"
        f"{'lost':>6}{'dup':>5}{'index!=db':>10}  errors seen by the client"
    )
    n = [0]

    def log(r):
        print(
            f"{n[0] // 3 + 1:>5} {r.killed:<11}{r.restart_s:>10}{r.acked:>7}{r.attempts:>7}"
            f"{r.retried:>8}{r.lost:>6}{r.duplicates:>5}{r.index_mismatch:>10}  {r.errors or '-'}",
            flush=True,
        )
        n[0] += 1

    try:
        reports = kill_rounds(url, args.rounds, args.write_s, log=log)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    bad = sum(r.lost + r.duplicates + r.index_mismatch for r in reports)
    print(
        f"{len(reports)} crashes, {sum(r.acked for r in reports)} acknowledged writes, "
        f"lost+duplicated+index mismatches: {bad}; {time.monotonic() - t0:.0f} s"
    )
    write_json(
        args.out,
        {
            "rounds": args.rounds,
            "cpu": cpu_info(),
            "crashes": [dataclasses.asdict(r) for r in reports],
        },
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
