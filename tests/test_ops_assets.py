"""ops/: the Prometheus alert rules parse and, like the Grafana dashboard, name only metrics
that a running suite exports; the operator metrics report what happened."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml
from prometheus_client import REGISTRY, start_http_server

from memlake import memories
from memlake.client import scope
from tests.conftest import start_suite

OPS = Path(__file__).resolve().parent.parent / "ops"
NOT_OURS = {"up"}
DURATION = re.compile(r"^\d+[smhd]$")


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(memlake_[a-z0-9_]+)\b", expr)) | (
        {"up"} if re.search(r"\bup\{", expr) else set()
    )


def _alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load((OPS / "prometheus" / "alerts.yaml").read_text())
    out = {}
    for g in doc["groups"]:
        assert g["name"] and g["rules"]
        for r in g["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", r["alert"])
            assert DURATION.match(r.get("for", "0s")), r
            assert r["labels"]["severity"] in ("page", "ticket")
            assert r["annotations"]["summary"]
            assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
            out[r["alert"]] = r["expr"]
    return out


def _dashboard_exprs() -> list[str]:
    dash = json.loads((OPS / "grafana" / "memlake.json").read_text())
    assert dash["uid"] and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    return exprs


def _scrape(port: int) -> tuple[set[str], dict[str, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    names, values = set(), {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            names.add(name)
            if "{" not in line:
                values[name] = float(line.rsplit(" ", 1)[1])
    return names, values


def test_rules_and_dashboard_name_only_exported_metrics(fresh_backend):
    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=REGISTRY)
    try:
        with suite.client() as c:
            c.remember(memories.event("Shipped the release", user="ops"))
            c.remember(memories.turn("hello", session="s1", user="ops", speaker="user"))
            r = c.remember(memories.background("name", "Ops bot", user="ops"))
            c.assert_fact("ops", "oncall", "alice", scope=scope("ops"))
            c.search("release", scope=scope("ops"), min_seq=r.seq)
            c.context(scope=scope("ops", session_id="s1"), intent="release", min_seq=r.seq)
        names, values = _scrape(httpd.server_port)
    finally:
        httpd.shutdown()
        httpd.server_close()
        suite.stop()

    used = set()
    for expr in _alert_exprs().values():
        used |= _metric_names(expr)
    for expr in _dashboard_exprs():
        used |= _metric_names(expr)
    missing = {n for n in used - NOT_OURS if n not in names}
    assert not missing, f"named in ops/ but not exported: {sorted(missing)}"
    assert {
        "memlake_index_lag_seconds",
        "memlake_index_lag_seq",
        "memlake_index_partitions",
        "memlake_index_resident_bytes",
        "memlake_embed_batch_size_sum",
        "memlake_db_pool_wait_seconds_bucket",
        "memlake_cache_lookups_total",
    } <= used

    # The values say what happened.
    assert values["memlake_index_applied_seq"] >= r.seq
    assert values["memlake_index_head_seq"] >= values["memlake_index_applied_seq"]
    assert values["memlake_index_partitions"] >= 1
    assert values["memlake_index_resident_bytes"] > 0
    assert values["memlake_embed_batch_size_count"] >= 3
    assert values["memlake_embed_duration_seconds_count"] >= 3
