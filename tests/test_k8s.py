"""The Kubernetes manifests: every kustomization resolves, and every memlake workload runs
non-root on a read-only root filesystem with dropped capabilities, resources and native
gRPC probes on its named grpc port."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.server import LIVENESS

yaml = pytest.importorskip("yaml")
K8S = Path(__file__).resolve().parent.parent / "k8s"


def _docs(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kustomizations_reference_existing_files():
    for kfile in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text())
        for ref in k.get("resources", []) + k.get("components", []):
            assert (kfile.parent / ref).exists(), f"{kfile}: missing {ref}"


def test_workloads_are_hardened_and_probed():
    seen = set()
    for f in (K8S / "base").glob("*.yaml"):
        for d in _docs(f):
            if d.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            spec = d["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert {"requests", "limits"} <= set(c["resources"])
                grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
                assert c["readinessProbe"]["grpc"]["port"] == grpc_port
                assert c["readinessProbe"]["grpc"]["service"].startswith("memlake.v1.")
                seen.add(c["readinessProbe"]["grpc"]["service"])
                # Liveness asks only whether the process answers: a database outage
                # makes pods unready, it must not restart them all.
                assert c["livenessProbe"]["grpc"] == {"port": grpc_port, "service": LIVENESS}
    assert seen == {
        "memlake.v1.IngestService",
        "memlake.v1.RetrievalService",
        "memlake.v1.VersioningService",
    }


def test_services_name_their_grpc_port():
    for f in (K8S / "base").glob("*.yaml"):
        for d in _docs(f):
            if d.get("kind") == "Service":
                assert any(p["name"] == "grpc" for p in d["spec"]["ports"]), f
