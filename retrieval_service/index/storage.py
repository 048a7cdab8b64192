"""Compact storage for the index: bfloat16 vectors, string columns as integer codes, and
memory id -> row / partition-key maps in a few bytes an entry (a dict took about 85)."""

from __future__ import annotations

import ctypes

import numpy as np

_libc = None


def trim_heap() -> None:
    """Returns the free pages of the C heap to the system (glibc malloc_trim): a build (of
    partitions, or of a graph: its widened rows, the row array it replaces) frees most of
    what it allocated, and without this the process keeps it resident."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        _libc = False


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)


def from_bf16(b: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exactly."""
    w = b.astype(np.uint32)
    w <<= 16
    return w.view(np.float32)


class _Codes:
    """A string column as integer codes, so a filter on it is one numpy comparison instead
    of a Python comparison per row. Extended lazily with the rows appended since the last
    use (rows are append-only and keep their scope strings)."""

    __slots__ = ("codes", "lookup", "n")

    def __init__(self) -> None:
        self.codes = np.zeros(0, dtype=np.int32)
        self.lookup: dict[str, int] = {}
        self.n = 0

    def equal(self, column: list[str], value: str, n: int) -> np.ndarray:
        self.sync(column, n)
        code = self.lookup.get(value)
        if code is None:
            return np.zeros(n, dtype=bool)
        return self.codes[:n] == code

    def sync(self, column: list[str], n: int) -> None:
        """Brings the codes up to the column's first n rows."""
        if self.n < n:
            if n > len(self.codes):
                grown = np.zeros(max(n, 2 * len(self.codes)), dtype=np.int32)
                grown[: self.n] = self.codes[: self.n]
                self.codes = grown
            lookup = self.lookup
            self.codes[self.n : n] = np.fromiter(
                (lookup.setdefault(s, len(lookup)) for s in column[self.n : n]),
                np.int32,
                n - self.n,
            )
            self.n = n


class RowMap:
    """Memory id -> row, as a dict would answer, in 12 bytes an entry (a dict of ints took
    about 85): ids arrive mostly in increasing order (the database numbers them), so they
    go into sorted arrays searched by bisection; an id that arrives out of order goes
    into a small dict, merged into the arrays once it grows."""

    __slots__ = ("ids", "rows", "m", "extra", "count", "top")
    MERGE = 4096

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.rows = np.zeros(0, np.int32)  # -1: removed
        self.m = 0
        self.extra: dict[int, int] = {}
        self.count = 0
        self.top = 0  # ids[m - 1] as a Python int: the largest id in the arrays

    @classmethod
    def of(cls, ids: np.ndarray, rows: np.ndarray) -> RowMap:
        """A map of distinct ids to their rows, built in one sort."""
        r = cls()
        order = np.argsort(ids, kind="stable")
        r.ids, r.rows = ids[order].astype(np.int64), rows[order].astype(np.int32)
        r.m = r.count = len(ids)
        r.top = int(r.ids[-1]) if r.m else 0
        return r

    def _find(self, mid: int) -> int:
        if self.m == 0 or mid > self.top:  # a new id (the usual case): no search
            return -1
        i = int(np.searchsorted(self.ids[: self.m], mid))
        return i if i < self.m and self.ids[i] == mid and self.rows[i] >= 0 else -1

    def get(self, mid: int, default=None):
        row = self.extra.get(mid)
        if row is not None:
            return row
        i = self._find(mid)
        return int(self.rows[i]) if i >= 0 else default

    def __getitem__(self, mid: int) -> int:
        row = self.get(mid)
        if row is None:
            raise KeyError(mid)
        return row

    def __contains__(self, mid: int) -> bool:
        return self.get(mid) is not None

    def __len__(self) -> int:
        return self.count

    def __setitem__(self, mid: int, row: int) -> None:
        self.pop(mid, None)
        self.count += 1
        if self.m == 0 or mid > self.top:
            if self.m == len(self.ids):
                cap = max(4, 2 * self.m if self.m < 4096 else self.m + self.m // 8)
                self.ids = np.resize(self.ids, cap)
                self.rows = np.resize(self.rows, cap)
            self.ids[self.m], self.rows[self.m] = mid, row
            self.m += 1
            self.top = mid
            return
        self.extra[mid] = row
        if len(self.extra) >= self.MERGE:
            self._merge()

    def pop(self, mid: int, default=None):
        row = self.extra.pop(mid, None)
        if row is None:
            i = self._find(mid)
            if i < 0:
                return default
            row, self.rows[i] = int(self.rows[i]), -1
        self.count -= 1
        return row

    def _merge(self) -> None:
        keep = self.rows[: self.m] >= 0
        ids = np.concatenate([self.ids[: self.m][keep], np.fromiter(self.extra, np.int64)])
        rows = np.concatenate(
            [self.rows[: self.m][keep], np.fromiter(self.extra.values(), np.int32)]
        )
        order = np.argsort(ids, kind="stable")
        self.ids, self.rows, self.m = ids[order], rows[order], len(ids)
        self.top = int(self.ids[self.m - 1]) if self.m else 0
        self.extra = {}

    def __iter__(self):
        live = self.rows[: self.m] >= 0
        yield from self.ids[: self.m][live].tolist()
        yield from list(self.extra)

    def items(self):
        live = self.rows[: self.m] >= 0
        ids, rows = self.ids[: self.m][live].tolist(), self.rows[: self.m][live].tolist()
        yield from zip(ids, rows, strict=True)
        yield from list(self.extra.items())


class KeyMap:
    """Memory id -> partition key, as a dict would answer, in about 12 bytes an id (a dict
    took about 80): the ids in a RowMap whose values are codes of the keys. A key no id
    points to any more is dropped (its scope strings leave memory, as erasure wants)."""

    __slots__ = ("ids", "keys", "code", "uses")

    def __init__(self) -> None:
        self.ids = RowMap()
        self.keys: list = []
        self.code: dict = {}
        self.uses: list[int] = []

    def __setitem__(self, mid: int, key) -> None:
        self.pop(mid)
        c = self.code.get(key)
        if c is None:
            c = self.code[key] = len(self.keys)
            self.keys.append(key)
            self.uses.append(0)
        self.uses[c] += 1
        self.ids[mid] = c

    def get(self, mid: int, default=None):
        c = self.ids.get(mid)
        return self.keys[c] if c is not None else default

    def canonical(self, key):
        """The key object already held for an equal key (so equal keys share one), else
        key itself."""
        c = self.code.get(key)
        return self.keys[c] if c is not None else key

    def pop(self, mid: int, default=None):
        c = self.ids.pop(mid)
        if c is None:
            return default
        key = self.keys[c]
        self.uses[c] -= 1
        if not self.uses[c]:
            del self.code[key]
            self.keys[c] = None  # the code is not reused: ids may still name it until merged
        return key

    def __contains__(self, mid: int) -> bool:
        return mid in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids)


class Blobs:
    """A list of byte strings in one buffer: an entry costs its bytes and 12 (start,
    length), where a bytes object in a list took its bytes and about 45. Entries are
    appended; one replaced by a longer one moves to the end, and the old bytes are zeroed
    (so is an entry set empty: a forgotten memory's bytes do not linger in the buffer).
    The dead space goes when the partition is compacted (rebuilt from its live rows)."""

    __slots__ = ("data", "start", "length", "n")

    def __init__(self, items=()) -> None:
        self.data = bytearray()
        self.start = np.zeros(0, np.int64)
        self.length = np.zeros(0, np.int32)
        self.n = 0
        items = [self._bytes(x) for x in items]
        if items:
            lens = np.fromiter((len(x) for x in items), np.int64, len(items))
            self.data = bytearray(b"".join(items))
            self.start = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            self.length = lens.astype(np.int32)
            self.n = len(items)

    @staticmethod
    def _bytes(x) -> bytes:
        return x

    def _value(self, b: bytes):
        return b

    def __len__(self) -> int:
        return self.n

    def append(self, x) -> None:
        b = self._bytes(x)
        if self.n == len(self.start):
            cap = max(1, 2 * self.n if self.n < 4096 else self.n + self.n // 8)
            self.start = np.resize(self.start, cap)
            self.length = np.resize(self.length, cap)
        self.start[self.n] = len(self.data)
        self.length[self.n] = len(b)
        self.data += b
        self.n += 1

    def _get(self, i: int) -> bytes:
        s = int(self.start[i])
        return bytes(self.data[s : s + int(self.length[i])])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._value(self._get(j)) for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._value(self._get(i))

    def __setitem__(self, i: int, x) -> None:
        b = self._bytes(x)
        s, ln = int(self.start[i]), int(self.length[i])
        if len(b) <= ln:  # in place; the rest of the old bytes zeroed
            self.data[s : s + len(b)] = b
            self.data[s + len(b) : s + ln] = bytes(ln - len(b))
        else:
            self.data[s : s + ln] = bytes(ln)
            self.start[i] = len(self.data)
            self.data += b
        self.length[i] = len(b)

    def __iter__(self):
        for i in range(self.n):
            yield self._value(self._get(i))


class Texts(Blobs):
    """Blobs of str (UTF-8)."""

    __slots__ = ()

    @staticmethod
    def _bytes(x) -> bytes:
        return x.encode()

    def _value(self, b: bytes):
        return b.decode()


class Arena:
    """Packed small partitions (snapshots.pack) back to back in large shared chunks, so
    thousands of them are not as many heap blocks between the short-lived allocations of
    queries and writes (which kept the heap from shrinking). An entry is addressed by an
    int (chunk * CHUNK + offset) and prefixed by its length. A freed entry is zeroed at
    once (a packed partition holds content: a forgotten memory must not stay in memory);
    a chunk with no live entry left is released, and `compact` copies the live entries
    of mostly dead chunks into fresh ones."""

    CHUNK = 1 << 20
    _LEN = np.dtype("<u4")

    def __init__(self) -> None:
        self.chunks: list[bytearray | None] = []
        self.used: list[int] = []  # bytes written into each chunk
        self.live: list[int] = []  # bytes of live entries in each chunk
        self.entries = 0

    def put(self, blob: bytes) -> int:
        need = 4 + len(blob)
        c = len(self.chunks) - 1
        if c < 0 or self.chunks[c] is None or self.used[c] + need > len(self.chunks[c]):
            self.chunks.append(bytearray(max(self.CHUNK, need)))
            self.used.append(0)
            self.live.append(0)
            c += 1
        off = self.used[c]
        chunk = self.chunks[c]
        chunk[off : off + 4] = len(blob).to_bytes(4, "little")
        chunk[off + 4 : off + need] = blob
        self.used[c] += need
        self.live[c] += need
        self.entries += 1
        return c * self.CHUNK + off  # (an oversized chunk holds one entry, at offset 0)

    def _where(self, handle: int) -> tuple[bytearray, int, int]:
        c, off = divmod(handle, self.CHUNK)
        chunk = self.chunks[c]
        n = int.from_bytes(chunk[off : off + 4], "little")
        return chunk, off + 4, n

    def get(self, handle: int) -> memoryview:
        chunk, s, n = self._where(handle)
        return memoryview(chunk)[s : s + n]

    def copy(self, handle: int) -> bytes:
        chunk, s, n = self._where(handle)
        return bytes(chunk[s : s + n])

    def free(self, handle: int) -> None:
        c = handle // self.CHUNK
        chunk, s, n = self._where(handle)
        chunk[s - 4 : s + n] = bytes(n + 4)
        self.live[c] -= n + 4
        self.entries -= 1
        if self.live[c] == 0 and c != len(self.chunks) - 1:
            self.chunks[c] = None  # released
            self.used[c] = 0

    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks if c is not None)

    def live_bytes(self) -> int:
        return sum(self.live)

    def wasteful(self) -> bool:
        """Mostly dead space (worth a compaction)."""
        total = self.nbytes()
        return total > 4 * self.CHUNK and self.live_bytes() < total // 2

    def compact(self, handles: dict) -> dict:
        """Copies the entries of handles (key -> handle) into fresh chunks; returns key ->
        new handle. Every live entry must be in handles."""
        old = self.chunks
        self.chunks, self.used, self.live, self.entries = [], [], [], 0
        out = {}
        for key, h in handles.items():
            c, off = divmod(h, self.CHUNK)
            chunk = old[c]
            n = int.from_bytes(chunk[off : off + 4], "little")
            out[key] = self.put(bytes(chunk[off + 4 : off + 4 + n]))
        for chunk in old:
            if chunk is not None:
                chunk[:] = bytes(len(chunk))  # no copy of a freed entry stays behind
        return out
