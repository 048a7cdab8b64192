"""A process that serves only writes (ingest or versioning alone) runs at a lower CPU
priority (MEMLAKE_WRITER_NICE), so searches on the same machine get the cores first;
retrieval and the all-in-one server keep the priority they were started with."""

from __future__ import annotations

import os

from bench.common import Server


def _nice(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def test_write_only_services_yield_the_cpu_to_search(tmp_path):
    base = _nice(0)
    env = {"MEMLAKE_EMBEDDER": "hash"}
    servers = {
        "versioning": Server(tmp_path / "v", env, "versioning"),
        "retrieval": Server(tmp_path / "r", env, "retrieval"),
        "off": Server(tmp_path / "o", {**env, "MEMLAKE_WRITER_NICE": "0"}, "versioning"),
    }
    try:
        for s in servers.values():
            s.wait_serving(60)
        assert _nice(servers["versioning"].proc.pid) == min(base + 19, 19)
        assert _nice(servers["retrieval"].proc.pid) == base
        assert _nice(servers["off"].proc.pid) == base
    finally:
        for s in servers.values():
            s.stop()
