"""The Kubernetes manifests: every kustomization resolves, and every memlake workload runs
non-root on a read-only root filesystem with dropped capabilities, resources and native
gRPC probes on its named grpc port."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def _render(overlay: str) -> list[dict]:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: cannot render the kustomizations")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/prod"])
def test_retrieval_statefulset_spreads_partitions_over_its_pods(overlay):
    """Rendered: the pods take their ordinal from their name, hash over as many replicas as
    the StatefulSet runs, and reach each other through a headless Service that selects
    them; every ordinal builds a ring whose peers are those pods' DNS names."""
    from retrieval_service.ownership import ring_from_settings
    from shared.settings import Settings

    docs = _render(overlay)
    sts = next(
        d
        for d in docs
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "memlake-retrieval"
    )
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "retrieval")
    env = {e["name"]: e for e in c["env"]}
    assert env["MEMLAKE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    count = sts["spec"]["replicas"]
    assert int(env["MEMLAKE_REPLICA_COUNT"]["value"]) == count
    headless = next(
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    template = env["MEMLAKE_REPLICA_PEER_TEMPLATE"]["value"]
    name = sts["metadata"]["name"]
    for ordinal in range(count):
        ring = ring_from_settings(
            Settings(
                pod_name=f"{name}-{ordinal}",
                replica_count=count,
                replica_peer_template=template,
            )
        )
        assert ring.ordinal == ordinal and ring.count == count
        if count > 1:
            assert (
                ring.address(ordinal) == f"{name}-{ordinal}.{headless['metadata']['name']}:{port}"
            )
