"""Shared by the benchmarks: start an all-in-one memlake process, percentiles, output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`memlake serve` in a child process on a temporary data folder and a free port."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        service: str = "all",
        port: int | None = None,
    ) -> None:
        """service: "all" or one of "ingest", "retrieval", "versioning" (then pass the
        database and Redis URLs in env, and MEMLAKE_VERSIONING_ADDR to ingest)."""
        self.port, self.metrics_port = port or free_port(), free_port()
        self.service = service
        prefix = "ALLINONE" if service == "all" else service.upper()
        full = dict(os.environ)
        for k in ("MEMLAKE_DATABASE_URL", "MEMLAKE_REDIS_URL"):
            full.pop(k, None)
        full.update(
            {
                "MEMLAKE_DATA_DIR": str(data_dir),
                f"MEMLAKE_{prefix}_PORT": str(self.port),
                f"MEMLAKE_{prefix}_METRICS_PORT": str(self.metrics_port),
                "MEMLAKE_LOG_REQUESTS": "false",
                "MEMLAKE_HTTP_PORT": str(free_port()),  # the all-in-one's HTTP gateway
            }
        )
        full.update(env or {})
        self.env = full
        self.data_dir = data_dir
        self.log = open(data_dir.parent / f"{data_dir.name}-{service}-server.log", "a")
        self.proc = self._spawn()
        self.addr = f"127.0.0.1:{self.port}"
        self.key_file = data_dir / "admin.key"

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "memlake", "serve", "--service", self.service],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        """SIGKILL: no drain, no final snapshot (a crash)."""
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc = self._spawn()

    def operator_key(self) -> str:
        return self.key_file.read_text().strip()

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited; see {self.log.name}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise TimeoutError("server did not become SERVING")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def tenant_api_key(addr: str, operator_key: str, tenant: str) -> str:
    """An ADMIN key of tenant (created if new), made with an OPERATOR key such as the
    bootstrap key a fresh server writes to <data dir>/admin.key."""
    from memlake.client import MemlakeClient

    with MemlakeClient(addr, api_key=operator_key, timeout=30) as op:
        return op.tenant_admin_key(tenant, name="bench")


def embedder_alone(memories) -> dict:
    """The model alone on the texts ingest embeds (each memory's index text), in length-sorted
    batches of 32, in this process, at the precision the server is set to: texts/s by wall
    clock and per CPU-second, on one worker and on one per core (the server's default). The
    bar bulk ingest is held to (issue 8: at least 0.8 of it)."""
    from shared.convert import ts_to_dt
    from shared.minilm import MiniLMEmbedder
    from shared.settings import Settings
    from shared.text import index_text

    texts = [
        index_text(m.type, m.content, {"speaker": m.conversation.speaker}, ts_to_dt(m.occur_time))
        for m in memories
    ]
    out: dict = {}
    for workers in sorted({1, os.cpu_count() or 1}):
        e = MiniLMEmbedder(workers=workers, precision=Settings().embed_precision)
        e._embed(texts[:64])  # warm up
        t, cpu = time.perf_counter(), time.process_time()
        e._embed(texts)
        out[f"workers_{workers}"] = round(len(texts) / (time.perf_counter() - t), 1)
        out[f"workers_{workers}_per_cpu_s"] = round(len(texts) / (time.process_time() - cpu), 1)
    out["precision"] = e.precision
    return out


def best_rate(raw: dict, per_cpu_s: bool = False) -> float:
    """The best of embedder_alone's texts/s (or texts per CPU-second) over its workers."""
    return max(
        v
        for k, v in raw.items()
        if k.startswith("workers_") and k.endswith("_per_cpu_s") == per_cpu_s
    )


def cpu_info() -> dict:
    """CPU model and the SIMD flags that decide the embedder's speed (printed with figures)."""
    model, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    simd = [f for f in flags if f.startswith(("avx", "fma", "sse4", "amx"))]
    return {"model": model, "cpus": os.cpu_count(), "simd_flags": sorted(simd)}
