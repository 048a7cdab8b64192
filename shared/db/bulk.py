"""Many rows in one statement, below SQLAlchemy's per-row parameter handling.

`insert(executemany)` through SQLAlchemy runs every value of every row through its type
machinery one call at a time, which was a quarter of bulk ingest's CPU. Here each column's
bind processor (the same one SQLAlchemy would use, so the stored bytes do not change) is
looked up once, values shared by every row are processed once, and the rows go to the
driver as one multi-row INSERT ... VALUES ... RETURNING per chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

# Bound parameters per statement: SQLite's limit (since 3.32) is 32766, Postgres' 65535.
MAX_PARAMS = 32000


def _processors(table: Table, names: Sequence[str], dialect) -> list:
    return [table.c[n].type._cached_bind_processor(dialect) for n in names]


def insert_rows(
    conn: Connection,
    table: Table,
    same: dict[str, Any],
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    returning: Sequence[str] = (),
) -> list[tuple]:
    """Inserts rows (tuples of the columns `names`, each row also taking the columns of
    `same`); returns the `returning` columns of each inserted row, in no promised order
    (match them back by a unique column)."""
    if not rows:
        return []
    dialect = conn.dialect
    shared_names = list(same)
    shared = []
    for name, proc in zip(shared_names, _processors(table, shared_names, dialect), strict=True):
        v = same[name]
        shared.append(proc(v) if proc is not None and v is not None else v)
    procs = list(enumerate(_processors(table, names, dialect)))
    procs = [(i, p) for i, p in procs if p is not None]
    cols = [*names, *shared_names]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    one = "(" + ", ".join([mark] * len(cols)) + ")"
    head = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES "
    tail = f" RETURNING {', '.join(returning)}" if returning else ""
    per = max(1, MAX_PARAMS // len(cols))
    cache: dict = {}  # (column, value) -> processed, for values many rows share ({} etc.)
    out: list[tuple] = []
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        params: list = []
        for row in chunk:
            row = list(row)
            for i, proc in procs:
                v = row[i]
                if v is None:
                    continue
                if type(v) is dict and not v:  # {}: the usual attributes or source
                    key = (i, "{}")
                    got = cache.get(key)
                    if got is None:
                        got = cache[key] = proc(v)
                    row[i] = got
                else:
                    row[i] = proc(v)
            params.extend(row)
            params.extend(shared)
        # Through SQLAlchemy as driver SQL: one call a chunk, its errors wrapped as usual.
        res = conn.exec_driver_sql(head + ", ".join([one] * len(chunk)) + tail, tuple(params))
        if returning:
            out.extend(tuple(r) for r in res.fetchall())
    return out
