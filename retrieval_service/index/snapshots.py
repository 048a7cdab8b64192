"""Incremental index snapshots: only partitions that changed are written, never under the
change-log apply lock, and a crash at any point leaves the previous snapshot loadable.

Layout of the snapshot folder:
  seg-<seq>-<rand>.bin   partitions written by one snapshot round, back to back
  manifest.json          written last (temp file, fsync, rename): the applied seq, the
                         configuration, and for each partition (segment, offset, length)

A round copies each changed partition under that partition's own lock (a few ms at 10k
rows), encodes and writes it outside any lock, then replaces the manifest. Partitions that
did not change keep their old (segment, offset, length); a segment no manifest entry points
to is deleted after the manifest is replaced. A small partition is written in the packed
encoding (`pack`, format 5: what the index manager holds it as while unused; its strings
and documents zlib-compressed), any other with a JSON header of its arrays (format 4,
which format 5 still reads, as it reads format 3). Only live rows are written (tombstones, and
so forgotten memories, never reach a snapshot); a graph is kept only when the partition
has no tombstones (its ids are row numbers), otherwise the loader rebuilds it. A graph is
written without its storage (format 6): its storage is the partition's vectors, written
once beside it; a graph of formats 3-5, with its own 8-bit copy, loads without that copy.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mmap
import os
import re
import shutil
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from retrieval_service.index.graph import graph_links
from retrieval_service.index.partition import COLUMNS, STRINGS, Partition
from retrieval_service.index.storage import Arena, KeyMap

log = logging.getLogger("memlake.snapshots")
# Columns decode rebuilds (turn links, BM25 document ids): not in the packed encoding.
DERIVED = ("prev_row", "next_row", "doc_turn", "doc_window")
# 6: a graph without its storage (the vectors); 5: a small partition may be in the packed
# encoding (pack); 4: vectors as bfloat16 bits; 3 (float32 vectors). All four are read.
FORMAT = 6
READABLE = (3, 4, 5, 6)
MANIFEST = "manifest.json"
_HEAD = struct.Struct("<I")


@dataclass
class Copy:
    """A consistent copy of a partition's live rows, taken under its lock."""

    cols: dict[str, np.ndarray]
    vectors: np.ndarray
    strings: dict[str, list]
    docs: list[bytes]
    graph: np.ndarray | None


def copy_partition(p: Partition) -> Copy:
    with p.lock:
        n = p.n
        live = np.nonzero(p.alive[:n])[0]
        whole = len(live) == n
        cols = {name: getattr(p, name)[:n][live] for name in COLUMNS}
        vectors = p.vectors[:n][live]
        if whole:
            strings = {name: list(getattr(p, name)[:n]) for name in STRINGS}
            docs = list(p.docs[:n])
        else:
            strings = {name: [getattr(p, name)[i] for i in live] for name in STRINGS}
            docs = [p.docs[i] for i in live]
        graph = graph_links(p.ann) if (p.ann is not None and whole) else None
    return Copy(cols, vectors, strings, docs, graph)


def encode(c: Copy) -> bytes:
    """header length, JSON header (name, dtype, shape, nbytes per part), raw parts."""
    parts: list[tuple[str, np.ndarray]] = [(k, np.ascontiguousarray(v)) for k, v in c.cols.items()]
    parts.append(("vectors", np.ascontiguousarray(c.vectors)))
    parts.append(("strings", np.frombuffer(json.dumps(c.strings).encode(), np.uint8)))
    parts.append(("doc_offsets", np.cumsum([0] + [len(d) for d in c.docs]).astype(np.int64)))
    parts.append(("docs", np.frombuffer(b"".join(c.docs), np.uint8)))
    if c.graph is not None:
        parts.append(("graph", c.graph))
    head = json.dumps([[k, a.dtype.str, list(a.shape), a.nbytes] for k, a in parts]).encode()
    return b"".join([_HEAD.pack(len(head)), head, *(a.tobytes() for _, a in parts)])


# The packed encoding of a small partition (see pack): the form a small partition is held
# in memory while it is not in use, and written to snapshots as is.
PACKED = b"MLp1"
_PACKED_HEAD = struct.Struct("<4sII")  # magic, rows, dim
STORED_COLUMNS = [k for k in COLUMNS if k not in DERIVED]
ROW_BYTES = sum(np.dtype(COLUMNS[k][0]).itemsize for k in STORED_COLUMNS)


def pack(p: Partition) -> bytes:
    """A partition's live rows in a few bytes more than their content: stored columns and
    bfloat16 vectors as raw arrays, strings as one JSON list, documents back to back. No
    derived parts (BM25 postings, turn links, string codes): decode rebuilds them. For
    small partitions without a graph (IndexManager keeps those it is not using so)."""
    return pack_copy(copy_partition(p))


def pack_copy(c: Copy) -> bytes:
    n = len(c.vectors)
    dim = c.vectors.shape[1] if c.vectors.ndim == 2 else 0
    out = [_PACKED_HEAD.pack(PACKED, n, dim)]
    for name in STORED_COLUMNS:
        out.append(np.ascontiguousarray(c.cols[name], dtype=COLUMNS[name][0]).tobytes())
    out.append(np.ascontiguousarray(c.vectors, dtype=np.uint16).tobytes())
    # Strings and documents compressed together: a memory's content is in both its index
    # text and its document (LoCoMo-sized turns: about 205 -> 117 bytes a row).
    strings = json.dumps([c.strings[name] for name in STRINGS], ensure_ascii=False).encode()
    lens = np.array([len(d) for d in c.docs], dtype="<u4").tobytes()
    out.append(zlib.compress(b"".join([_HEAD.pack(len(strings)), strings, lens, *c.docs])))
    return b"".join(out)


def is_packed(buf) -> bool:
    return bytes(buf[:4]) == PACKED


def _unpack(buf) -> tuple[dict, np.ndarray, dict, list[bytes]]:
    _, n, dim = _PACKED_HEAD.unpack_from(buf, 0)
    pos = _PACKED_HEAD.size
    cols = {}
    for name in STORED_COLUMNS:
        dt = np.dtype(COLUMNS[name][0])
        cols[name] = np.frombuffer(buf, dtype=dt, count=n, offset=pos)
        pos += n * dt.itemsize
    for name in DERIVED:
        cols[name] = np.full(n, -1, dtype=COLUMNS[name][0])
    vectors = np.frombuffer(buf, dtype=np.uint16, count=n * dim, offset=pos).reshape(n, dim)
    buf = zlib.decompress(buf[pos + 2 * n * dim :])
    pos = 0
    (slen,) = _HEAD.unpack_from(buf, pos)
    pos += _HEAD.size
    strings = dict(zip(STRINGS, json.loads(bytes(buf[pos : pos + slen])), strict=True))
    pos += slen
    lens = np.frombuffer(buf, dtype="<u4", count=n, offset=pos).tolist()
    pos += 4 * n
    docs = []
    for ln in lens:
        docs.append(bytes(buf[pos : pos + ln]))
        pos += ln
    return cols, vectors, strings, docs


def readable(buf) -> bytes:
    """buf with the compressed part of every packed partition found in it (at any offset:
    segments, the arena) appended in plain: what a search for content in stored bytes
    (erasure checks) must look through."""
    buf = bytes(buf)
    out = [buf]
    at = buf.find(PACKED)
    while at >= 0:
        try:
            _, n, dim = _PACKED_HEAD.unpack_from(buf, at)
            pos = at + _PACKED_HEAD.size + n * ROW_BYTES + 2 * n * dim
            out.append(zlib.decompressobj().decompress(buf[pos:]))
        except (struct.error, zlib.error):
            pass
        at = buf.find(PACKED, at + 1)
    return b"".join(out)


def packed_ids(buf) -> np.ndarray:
    """The memory ids a packed partition holds (without decoding the rest)."""
    _, n, _ = _PACKED_HEAD.unpack_from(buf, 0)
    return np.frombuffer(buf, dtype=np.int64, count=n, offset=_PACKED_HEAD.size)


def packed_rows(buf) -> int:
    return _PACKED_HEAD.unpack_from(buf, 0)[1]


def decode(buf, dim: int, ann_threshold: int, lexical_window: int, smoothing) -> Partition:
    if is_packed(buf):
        p = Partition(dim, ann_threshold, lexical_window, smoothing)
        p._load_rows(*_unpack(buf))
        return p
    (hlen,) = _HEAD.unpack_from(buf, 0)
    head = json.loads(bytes(buf[4 : 4 + hlen]))
    pos = 4 + hlen
    arrays = {}
    for name, dtype, shape, nbytes in head:
        dt = np.dtype(dtype)
        a = np.frombuffer(buf, dtype=dt, count=nbytes // dt.itemsize, offset=pos)
        arrays[name] = a.reshape(shape)
        pos += nbytes
    strings = json.loads(arrays["strings"].tobytes())
    offsets = arrays["doc_offsets"]
    blob = arrays["docs"].tobytes()
    docs = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    p = Partition(dim, ann_threshold, lexical_window, smoothing)
    p._load_rows({k: arrays[k] for k in COLUMNS}, arrays["vectors"], strings, docs)
    if "graph" in arrays:
        p.attach_graph(faiss.deserialize_index(np.array(arrays["graph"])))
    return p


class SnapshotStore:
    """The snapshot folder: a manifest and the segments it points to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._maps: dict[str, tuple[mmap.mmap, object]] = {}
        self._tocs: dict[str, set[str]] = {}

    def read_manifest(self) -> dict | None:
        """The manifest, with "partitions" as name -> [segment, offset, length]."""
        path = self.root / MANIFEST
        if not path.exists():
            return None
        m = json.loads(path.read_text())
        segs, names = m.pop("segments"), m.pop("names")
        rows = np.frombuffer(base64.b64decode(m.pop("entries")), dtype="<i8").reshape(-1, 3)
        m["partitions"] = {
            n: [segs[s], o, ln] for n, (s, o, ln) in zip(names, rows.tolist(), strict=True)
        }
        return m

    def read(self, entry: list) -> memoryview:
        """The bytes of one partition (segment, offset, length), from a memory map."""
        seg, off, length = entry
        m = self._maps.get(seg)
        if m is None:
            fh = open(self.root / seg, "rb")  # noqa: SIM115 - kept open with its map
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            m = self._maps[seg] = (mm, fh)
        return memoryview(m[0])[off : off + length]

    def write_segment(self, items, seq: int, fail_after: int = -1) -> dict:
        """Writes items (partition name, function giving its bytes) into a new segment, one
        at a time; returns name -> entry. fail_after (tests): raise after that many, as a
        crash in the middle of a snapshot would."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"seg-{seq:012d}-{uuid.uuid4().hex[:8]}.bin"
        entries = {}
        with open(self.root / name, "wb") as fh:
            off = 0
            for i, (key, produce) in enumerate(items):
                if i == fail_after:
                    raise RuntimeError("injected failure in the middle of a snapshot")
                blob = produce()
                fh.write(blob)
                entries[key] = [name, off, len(blob)]
                off += len(blob)
            fh.flush()
            os.fsync(fh.fileno())
        # Its table of contents: which partitions have a copy in it (for erasure).
        (self.root / f"{name}.toc").write_text(json.dumps(sorted(entries)))
        self._tocs[name] = set(entries)
        return entries

    def toc(self, segment: str) -> set[str] | None:
        """The partitions a segment holds a copy of; None when unknown."""
        got = self._tocs.get(segment)
        if got is None:
            try:
                got = self._tocs[segment] = set(
                    json.loads((self.root / f"{segment}.toc").read_text())
                )
            except (OSError, ValueError):
                return None
        return got

    def write_manifest(self, manifest: dict) -> None:
        """Compactly: the partition names as one list and their (segment number, offset,
        length) as one packed array (a dict of lists took 3x longer at 100k partitions,
        all of it holding the GIL the apply thread needs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        parts = manifest["partitions"]
        segs = sorted({e[0] for e in parts.values()})
        num = {name: i for i, name in enumerate(segs)}
        rows = np.array([(num[e[0]], e[1], e[2]) for e in parts.values()], dtype="<i8")
        out = {k: v for k, v in manifest.items() if k != "partitions"}
        out.update(
            segments=segs,
            names=list(parts),
            entries=base64.b64encode(rows.tobytes()).decode(),
        )
        tmp = self.root / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        with open(tmp, "w") as fh:
            fh.write(json.dumps(out))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / MANIFEST)
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def collect(self, manifest: dict) -> None:
        """Deletes segments and temp files the manifest no longer points to."""
        used = {e[0] for e in manifest["partitions"].values()}
        used |= {f"{s}.toc" for s in used}
        for path in self.root.iterdir():
            if path.name == MANIFEST or path.name in used:
                continue
            if path.name.startswith(("seg-", f".{MANIFEST}.")):
                self._unmap(path.name)
                self._tocs.pop(path.name, None)
                path.unlink(missing_ok=True)
            elif path.is_dir() and re.fullmatch(r"p\d+", path.name):  # format 2 leftovers
                shutil.rmtree(path, ignore_errors=True)

    def segment_bytes(self, manifest: dict) -> tuple[int, int]:
        """(bytes in the segments the manifest uses, bytes of the partitions it points to)."""
        used = {e[0] for e in manifest["partitions"].values()}
        total = sum((self.root / s).stat().st_size for s in used if (self.root / s).exists())
        live = sum(e[2] for e in manifest["partitions"].values())
        return total, live

    def _unmap(self, name: str) -> None:
        m = self._maps.pop(name, None)
        if m is not None:
            try:
                m[0].close()
            except BufferError:  # a decoded array still points into it; the GC frees it
                pass
            m[1].close()

    def close(self) -> None:
        for name in list(self._maps):
            self._unmap(name)


def part_name(key: tuple[str, str]) -> str:
    return key[0] + "\x1f" + key[1]


def part_key(name: str) -> tuple[str, str]:
    tenant, _, key = name.partition("\x1f")
    return (tenant, key)


# -- the index manager's side -----------------------------------------------------------------


def _config(m) -> dict:
    return {
        "format": FORMAT,
        "dim": m.dim,
        "embed_model": m.embed_model,
        "lexical_window": m.lexical_window,
    }


def save(m, fail_after: int = -1) -> bool:
    """One incremental round for IndexManager m. The apply lock is held only to swap the
    set of changed partitions and read the applied seq; each partition is copied under its
    own lock, encoded and written outside both."""
    store = m._store
    if store is None or not m.ready:
        return False
    with m._snapshot_lock:
        return _save(m, store, fail_after)


def _save(m, store: SnapshotStore, fail_after: int) -> bool:
    with m._apply_lock, m._load_lock:  # (a query decoding a packed one takes the latter)
        seq = m.applied_seq
        if seq == m.snapshot_seq and not m._dirty:
            return False
        dirty, m._dirty = m._dirty, set()
        purge, m._purge = m._purge, set()
        m.removed_since_snapshot = False
        changed = {k: m.partitions[k] for k in dirty if k in m.partitions and m.owns(k)}
        packed = {  # copied now: the arena entry is freed when the partition is decoded
            k: m._arena.copy(e)
            for k in dirty
            if isinstance(e := m._stored.get(k), int) and k not in changed and m.owns(k)
        }
        old = m._manifest_parts
    dropped = {part_name(k) for k in dirty}
    if m.ring.sharded:
        keep = {n: e for n, e in old.items() if n not in dropped and m.owns(part_key(n))}
    else:
        keep = {n: e for n, e in old.items() if n not in dropped}
    # Segments holding any copy (current or stale) of a partition that lost a memory are
    # not kept: their other partitions are copied into the new segment, so the old files
    # (and the removed rows in them) can be deleted.
    names = {part_name(k) for k in purge}
    purged = set()
    for seg in {e[0] for e in old.values()} if names else ():
        toc = store.toc(seg)
        if toc is None or toc & names:
            purged.add(seg)
    try:
        total, live = store.segment_bytes({"partitions": keep}) if keep else (0, 0)
        rewrite = total > 2 * live and total > (4 << 20)  # mostly dead segments: copy live
        copy = {n: e for n, e in keep.items() if rewrite or e[0] in purged}
        items = [(part_name(k), (lambda p=p: _encode(m, p))) for k, p in changed.items()]
        items += [(part_name(k), (lambda b=b: b)) for k, b in packed.items()]
        items += [(n, (lambda e=e: bytes(store.read(e)))) for n, e in copy.items()]
        entries = store.write_segment(items, seq, fail_after) if items else {}
        kept = {n: e for n, e in keep.items() if n not in copy}
        manifest = {
            **_config(m),
            "applied_seq": seq,
            "ring": m.ring.describe(),
            "partitions": {**kept, **entries},
        }
        store.write_manifest(manifest)
    except BaseException:
        with m._apply_lock:
            m._dirty |= dirty  # written next time
            m._purge |= purge
            m.removed_since_snapshot = m.removed_since_snapshot or bool(purge)
        raise
    m._manifest_parts = manifest["partitions"]
    m.snapshot_seq = seq
    with m._load_lock:  # partitions not decoded yet now live in the new segment
        for k, old_e in list(m._stored.items()):
            e = manifest["partitions"].get(part_name(k))
            if e is not None and isinstance(old_e, list):
                m._stored[k] = e
        store.collect(manifest)
    log.info("index snapshot at seq %d: %d partitions written", seq, len(changed) + len(packed))
    return True


def _encode(m, p: Partition) -> bytes:
    """A small partition in the packed encoding (what it is held as when idle), any other
    with its header (and graph)."""
    c = copy_partition(p)
    if m.pack_rows > 0 and c.graph is None and len(c.vectors) <= m.pack_rows:
        return pack_copy(c)
    return encode(c)


def load(m) -> bool:
    """Reads the manifest; partitions are decoded on first use or by a background loader.
    Partitions owned now but not in the snapshot (the replica set changed) are built from
    the database by scope. Then catches up with the log and marks the index ready."""
    store = m._store
    if store is None:
        return False
    try:
        manifest = store.read_manifest()
        if manifest is None:
            return False
        want = _config(m)
        if manifest.get("format") in READABLE:
            want["format"] = manifest["format"]
        if any(manifest.get(k) != v for k, v in want.items()):
            log.warning("index snapshot does not match this configuration; rebuilding")
            return False
        parts = manifest["partitions"]
        seq = int(manifest["applied_seq"])
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        log.warning("index snapshot unreadable (%s); rebuilding from the database", exc)
        return False
    with m._apply_lock:
        m.partitions, m.where, m._hot, m._arena = {}, KeyMap(), {}, Arena()
        m._stored = {part_key(n): e for n, e in parts.items() if m.owns(part_key(n))}
        m._manifest_parts = dict(parts)
        m.snapshot_seq = seq
        m._set_applied(seq)
    # Shared partitions: the snapshot may predate a move (or a build cut short), so what
    # this replica holds and the snapshot lacks is built now, before it says ready.
    if m.ring.sharded or manifest.get("ring") != m.ring.describe():
        missing = {k for k in m.discover() if m.owns(k) and k not in m._stored}
        log.info("replica set changed since the snapshot: %d partitions to build", len(missing))
        m.adopt(missing, held=True)
    log.info("index snapshot loaded at seq %d (%d partitions)", seq, len(m._stored))
    m.catch_up()
    m._mark_ready()
    return True
