"""The model in a child process at a lower CPU priority, for write batches of a process
that also answers searches (the all-in-one server).

Niced threads inside one Python process invert priorities: a niced thread that holds the
GIL (between model calls: taking a batch, pooling, waking its callers) is preempted by
any thread it wakes, and every thread of the process then waits for the GIL until the
scheduler gives the niced thread a turn, which on a busy machine takes tens of
milliseconds (py-spy showed the embedding workers holding the GIL in Event.set for 2% of
a 20 s load run). A child process has its own interpreter: its priority only decides
whose CPU time it gets, never who holds this process's lock. Texts go down a pipe and
vectors come back (a 32-text batch is about 50 KB); waiting for them releases the GIL.

Run as `python -m shared.embed_child KIND THREADS PRECISION NICE`: frames of an 8-byte
length and a pickle, texts in, ("ok", vectors) or ("error", message) out; it exits when
its parent closes the pipe (or dies)."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading

import numpy as np

from shared.embedding import CachedEmbedder, Embedder, make_embedder

log = logging.getLogger("memlake.embedding")
_LEN = struct.Struct("<Q")


def _write(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_LEN.pack(len(data)) + data)
    f.flush()


def _read(f):
    head = f.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("the embedding child closed its pipe")
    size = _LEN.unpack(head)[0]
    data = f.read(size)
    if len(data) < size:
        raise EOFError("the embedding child closed its pipe")
    return pickle.loads(data)  # noqa: S301 - our own child, over our own pipe


class ChildEmbedder(Embedder):
    """embed() in a child process niced by `nice` (started in the background: `ready`
    says when it can answer). One batch at a time; a child that fails is not used again
    (`broken`), and the caller falls back to its own model."""

    def __init__(self, kind: str, threads: int, precision: str, nice: int, dim: int, name: str):
        self.name, self.dim = name, dim
        self.kind, self.nice = kind, nice
        self._args = [kind, str(threads), precision, str(nice)]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self.ready = False
        self.broken = False
        threading.Thread(target=self._start, name="embed-child", daemon=True).start()

    def _start(self) -> None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "shared.embed_child", *self._args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            with self._lock:
                self._proc = proc
                if _read(proc.stdout) != "ready":
                    raise RuntimeError("the embedding child did not start")
                self.ready = True
        except Exception:  # noqa: BLE001 - writes then run in this process
            log.exception("embedding child failed to start; write batches run in-process")
            self._fail()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _fail(self) -> None:
        self.broken, self.ready = True, False
        if self._proc is not None:
            self._proc.kill()

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if not self.ready:
                raise RuntimeError("the embedding child is not running")
            try:
                _write(self._proc.stdin, list(texts))
                status, out = _read(self._proc.stdout)
            except (OSError, EOFError, pickle.PickleError) as exc:
                self._fail()
                raise RuntimeError("the embedding child died") from exc
        if status != "ok":
            raise RuntimeError(f"embedding child: {out}")
        return out

    def close(self) -> None:
        with self._lock:
            self.ready = False
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()


def _main(argv: list[str]) -> int:
    kind, threads, precision, nice = argv[0], int(argv[1]), argv[2], int(argv[3])
    out = os.fdopen(os.dup(1), "wb")  # the frames; anything printed goes to stderr
    os.dup2(2, 1)
    inp = os.fdopen(0, "rb")
    if nice > 0:
        os.nice(nice)
    model = make_embedder(kind, threads, 1, precision)
    if isinstance(model, CachedEmbedder):
        model = model.inner
    _write(out, "ready")
    while True:
        try:
            texts = _read(inp)
        except EOFError:
            return 0
        try:
            reply = ("ok", model.embed(texts))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write(out, reply)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
