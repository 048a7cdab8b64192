"""A background thread: purges expired memories every interval, and at start finishes
erasure jobs an interrupted process left running."""

from __future__ import annotations

import logging
import threading

from shared.privacy.erase import Eraser

log = logging.getLogger("memlake.privacy")


class Sweeper:
    def __init__(self, eraser: Eraser, interval_s: float) -> None:
        self.eraser = eraser
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="privacy-sweep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for r in self.eraser.resume_all():
                log.info("finished interrupted erasure job %d", r.job_id)
        except Exception:  # noqa: BLE001 - retried at the next start
            log.exception("resuming erasure jobs failed")
        while self.interval_s > 0 and not self._stop.wait(self.interval_s):
            try:
                n = self.eraser.sweep_expired()
                if n:
                    log.info("purged %d expired memories", n)
            except Exception:  # noqa: BLE001 - a database hiccup: next round
                log.exception("expiry sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
