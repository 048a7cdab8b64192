"""Health: liveness, dependencies and readiness, re-checked in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpc_health.v1 import health, health_pb2

if TYPE_CHECKING:
    from shared.server.lifecycle import ServiceSpec

log = logging.getLogger("memlake")


LIVENESS = "memlake.liveness"  # SERVING while the process can answer at all


@dataclass
class Dependency:
    """A health entry of its own (e.g. "memlake.database"). `required`: the overall
    status "" is NOT_SERVING while it fails; otherwise its failure only degrades."""

    name: str
    check: Callable[[], None]
    required: bool = True
    on_result: Callable[[bool], None] | None = None  # told each verdict


class HealthMonitor:
    """Re-runs the checks periodically and publishes: LIVENESS (always SERVING: the
    process answers; for liveness probes), each dependency, each service (readiness: its
    own checks), and "" (every service and every required dependency). A check that does
    not answer within `timeout` counts as failed, so a database that hangs rather than
    refuses turns readiness NOT_SERVING within interval + timeout seconds."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        specs: list[ServiceSpec],
        interval: float,
        dependencies: list[Dependency] | None = None,
        timeout: float = 2.0,
    ):
        self.servicer = servicer
        self.specs = specs
        self.deps = dependencies or []
        self.interval = interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._running: dict[Callable, threading.Thread] = {}
        for spec in specs:
            servicer.set(spec.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for dep in self.deps:
            servicer.set(dep.name, health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)

    def _run_check(self, check: Callable[[], None]) -> str | None:
        """None when the check passed within the timeout, else why not."""
        prev = self._running.get(check)
        if prev is not None and prev.is_alive():
            return "the previous check has not returned"
        out: list = []

        def run():
            try:
                check()
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                out.append(f"{type(exc).__name__}: {str(exc)[:200]}")

        t = threading.Thread(target=run, name="health-check", daemon=True)
        self._running[check] = t
        t.start()
        t.join(self.timeout)
        if t.is_alive():
            return f"no answer within {self.timeout:g} s"
        return out[0] if out else "no result"

    def check_once(self) -> bool:
        results: dict[Callable, str | None] = {}

        def result(check):
            if check not in results:
                results[check] = self._run_check(check)
            return results[check]

        def publish(name: str, ok: bool) -> None:
            self.servicer.set(
                name,
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING,
            )

        all_ok = True
        for dep in self.deps:
            why = result(dep.check)
            if why is not None:
                log.warning("health: %s failing: %s", dep.name, why)
            if dep.on_result is not None:
                dep.on_result(why is None)
            publish(dep.name, why is None)
            all_ok = all_ok and (why is None or not dep.required)
        for spec in self.specs:
            why = next((w for w in map(result, spec.checks) if w is not None), None)
            if why is not None:
                log.warning("health check failed for %s: %s", spec.full_name, why)
            publish(spec.full_name, why is None)
            all_ok = all_ok and why is None
        publish("", all_ok)
        return all_ok

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            ok = self.check_once()
            # Poll quickly until first SERVING, then at the configured interval.
            delay = self.interval if ok else min(max(delay * 2, 0.1), self.interval)
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
