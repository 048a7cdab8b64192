"""Database I/O never outlives its caller. Postgres statement_timeout only works while
the server can be reached: through a dropped or paused network a statement (or a ping)
blocks in recv until TCP gives up, holding an RPC thread. So each checked-out connection
is watched with the deadline of the call that took it (or a default budget without one);
once that deadline has passed by GRACE_S, its socket is shut down, the blocked call fails
at once with a disconnect error, and SQLAlchemy replaces the pool's connections."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from shared import deadline

log = logging.getLogger("memlake.db")
GRACE_S = 0.05
TICK_S = 0.02


class Watchdog:
    def __init__(self, default_budget_s: float) -> None:
        self.default_budget_s = default_budget_s
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[object, float]] = {}  # id(dbapi conn) -> (conn, end)
        self._thread: threading.Thread | None = None
        self.killed = 0

    def watch(self, dbapi_conn) -> None:
        left = deadline.remaining()
        budget = self.default_budget_s if left is None else max(left, 0.0)
        with self._lock:
            self._watched[id(dbapi_conn)] = (dbapi_conn, time.monotonic() + budget + GRACE_S)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, dbapi_conn) -> None:
        with self._lock:
            self._watched.pop(id(dbapi_conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [c for c, end in self._watched.values() if end <= now]
                for c in late:
                    self._watched.pop(id(c), None)
            for c in late:
                self._kill(c)

    def _kill(self, dbapi_conn) -> None:
        try:
            fd = dbapi_conn.pgconn.socket
        except Exception:  # noqa: BLE001 - already closed
            return
        try:
            dup = socket.socket(fileno=os.dup(fd))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()
            self.killed += 1
            log.warning("database call outlived its deadline: connection shut down")
        except OSError:
            pass
