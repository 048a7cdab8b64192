"""Looks for strings in every store a suite writes to. Used by the erasure tests: after
an erasure (or a Forget) none of the erased subject's ids and marker strings may remain."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import MetaData, select

from retrieval_service.index import snapshots
from retrieval_service.lexical import tokenize

# The stores scanned, as quoted in the README ("Erasure and export").
STORES = (
    "sql: every column of every table (reflected from the database)",
    "index snapshot files on disk (columns.npz, strings.json, docs.bin, doc_offsets.npy, "
    "hnsw.faiss, manifest.json), after a forced snapshot",
    "index in memory: partition keys, row texts, scope and speaker strings, documents, "
    "string codes, turn links, BM25 postings of both lexical indexes",
    "cache: every Redis key and value of the test database (or the in-process cache)",
    "SQLite (embedded default): the bytes of the database file and its -wal and -shm files",
)


def _hit(value, needles: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | memoryview):
        b = bytes(value)
        return [n for n in needles if n.encode() in b]
    text = value if isinstance(value, str) else repr(value)
    return [n for n in needles if n in text]


def scan_sql(engine, needles: list[str]) -> list[str]:
    found = []
    md = MetaData()
    md.reflect(bind=engine)
    with engine.connect() as conn:
        for table in md.sorted_tables:
            for row in conn.execute(select(table)):
                for col, value in zip(table.columns, row, strict=True):
                    for n in _hit(value, needles):
                        found.append(f"sql {table.name}.{col.name}: {n}")
    return found


def scan_files(root: Path, needles: list[str]) -> list[str]:
    found = []
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_file():
            for n in _hit(snapshots.readable(p.read_bytes()), needles):
                found.append(f"file {p.relative_to(root)}: {n}")
    return found


def scan_index(index, needles: list[str]) -> list[str]:
    found = []
    terms = {t: n for n in needles for t in tokenize(n)}
    for key, p in list(index.partitions.items()):
        for n in _hit(" ".join(key), needles):
            found.append(f"index partition key {key}: {n}")
        with p.lock:
            for name in ("texts", "sessions", "agents", "users", "speakers"):
                for v in getattr(p, name):
                    for n in _hit(v, needles):
                        found.append(f"index {name}: {n}")
            for d in p.docs:
                for n in _hit(d, needles):
                    found.append(f"index docs: {n}")
            for name, codes in p._codes.items():
                for v in codes.lookup:
                    for n in _hit(v, needles):
                        found.append(f"index codes {name}: {n}")
            for session in p.last_turn:
                for n in _hit(session, needles):
                    found.append(f"index turn links: {n}")
            for bm in (p.bm25, p.bm25_window):
                for t in bm.postings:
                    if t in terms:
                        found.append(f"index postings term {t!r}: {terms[t]}")
    # Small partitions packed while idle (retrieval_service/index/storage.Arena), live or
    # freed entries alike, and their keys.
    with index._load_lock:
        for key in list(index._stored):
            for n in _hit(" ".join(key), needles):
                found.append(f"index packed partition key {key}: {n}")
        for chunk in index._arena.chunks:
            for n in _hit(snapshots.readable(chunk) if chunk else b"", needles):
                found.append(f"index packed partitions: {n}")
    return found


def scan_cache(cache, needles: list[str]) -> list[str]:
    found = []
    r = getattr(cache, "_redis", None)
    if r is None:  # the in-process cache
        with cache._lock:
            for k, (_, items) in cache._tails.items():
                for n in _hit(k, needles) + [n for i in items for n in _hit(i, needles)]:
                    found.append(f"cache {k}: {n}")
        return found
    for k in r.scan_iter(count=1000):
        t = r.type(k).decode()
        if t == "string":
            values = [r.get(k)]
        elif t == "list":
            values = r.lrange(k, 0, -1)
        elif t == "hash":
            values = [x for kv in r.hgetall(k).items() for x in kv]
        elif t == "set":
            values = list(r.smembers(k))
        elif t == "zset":
            values = r.zrange(k, 0, -1)
        else:
            values = []
        for n in _hit(k, needles) + [n for v in values for n in _hit(v, needles)]:
            found.append(f"redis {k!r}: {n}")
    return found


def scan_all(suite, needles: list[str], *, min_seq: int = 0) -> list[str]:
    """Waits for the index to apply min_seq, forces a snapshot, then scans every store."""
    rt = suite.runtime
    assert rt.index.wait_for(min_seq, 20)
    rt.index.snapshot_seq = -1  # force a new snapshot even if nothing changed since
    rt.index.save_snapshot()  # (False if the tailer just wrote one itself)
    manifest = json.loads((suite.settings.index_dir() / "manifest.json").read_text())
    assert manifest["applied_seq"] >= min_seq
    db_files = []
    if rt.db.dialect == "sqlite":
        # Deleted rows leave the main file at a checkpoint; while a reader (the tailer, a
        # health check) holds the log, that is the next one, which is what is documented.
        deadline = time.monotonic() + 10
        while not rt.db.truncate_wal() and time.monotonic() < deadline:
            time.sleep(0.05)
        path = Path(rt.db.engine.url.database)
        db_files = [
            f"{h} (sqlite file {p.name})"
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
            if p.exists()
            for h in _hit(p.read_bytes(), needles)
        ]
    return (
        db_files
        + scan_sql(rt.db.engine, needles)
        + scan_files(suite.settings.index_dir(), needles)
        + scan_index(rt.index, needles)
        + scan_cache(rt.cache, needles)
    )
