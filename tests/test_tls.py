"""TLS, mutual TLS (tenant from the client certificate) and a mesh's forwarded identity."""

from __future__ import annotations

import datetime as dt
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memlake.client import MemlakeClient, scope
from memlake.v1 import memory_pb2 as pb
from shared.launch import start
from tests.conftest import settings_for
from tests.helpers import event, expect_error


def _cert(cn: str, issuer=None, issuer_key=None, *, ca: bool = False, san: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = b.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def _write(path, cert, key) -> tuple[str, str]:
    c, k = path.with_suffix(".crt"), path.with_suffix(".key")
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(c), str(k)


@pytest.fixture
def pki(tmp_path):
    ca, ca_key = _cert("memlake test CA", ca=True)
    ca_file, _ = _write(tmp_path / "ca", ca, ca_key)
    srv, srv_key = _cert("memlake-server", ca, ca_key, san=True)
    cli, cli_key = _cert("acme", ca, ca_key)
    other_ca, other_key = _cert("rogue CA", ca=True)
    rogue, rogue_key = _cert("acme", other_ca, other_key)
    return {
        "ca": ca_file,
        "server": _write(tmp_path / "server", srv, srv_key),
        "client": _write(tmp_path / "client", cli, cli_key),
        "rogue": _write(tmp_path / "rogue", rogue, rogue_key),
        "dir": tmp_path,
    }


def _wait(addr: str, creds) -> None:
    deadline = time.monotonic() + 20
    with grpc.secure_channel(addr, creds) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError("TLS server never became SERVING")


def test_mutual_tls_tenant_from_client_certificate(pki):
    cert, key = pki["server"]
    settings = settings_for(
        "sqlite",
        pki["dir"] / "data",
        tls_cert_file=cert,
        tls_key_file=key,
        tls_client_ca_file=pki["ca"],
        tls_ca_file=pki["ca"],
        tls_server_name="localhost",
    )
    running, _ = start("all", settings, port=0)
    addr = f"localhost:{running.port}"
    try:
        ca = open(pki["ca"], "rb").read()
        ccert, ckey = (open(p, "rb").read() for p in pki["client"])
        _wait(addr, grpc.ssl_channel_credentials(ca, ckey, ccert))
        with MemlakeClient(
            addr,
            api_key="",
            ca_file=pki["ca"],
            cert_file=pki["client"][0],
            key_file=pki["client"][1],
        ) as c:
            who = c.whoami()
            assert (who.tenant, who.method) == ("acme", "client_certificate")
            r = c.remember(event("signed by the CA", user="u1"))
            assert c.search("signed", scope=scope("u1"), min_seq=r.seq).results
            # A FACT crosses the ingest -> versioning hop for a certificate caller.
            f = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="x", scope=scope("u1"))
            f.fact.subject, f.fact.predicate, f.fact.value = "u1", "tier", "gold"
            c.remember(f)
            assert c.get_fact("u1", "tier", scope=scope("u1")).fact.value == "gold"
        # No client certificate, or one from another CA: the handshake fails.
        for cert_key in (None, pki["rogue"]):
            kw = {"cert_file": cert_key[0], "key_file": cert_key[1]} if cert_key else {}
            with MemlakeClient(addr, api_key="", ca_file=pki["ca"], timeout=3, **kw) as c:
                with expect_error("UNAVAILABLE"):
                    c.whoami()
        # The bootstrap key still works over mutual TLS, for its own tenant.
        boot = settings.key_file().read_text().strip()
        with MemlakeClient(
            addr,
            api_key=boot,
            ca_file=pki["ca"],
            cert_file=pki["client"][0],
            key_file=pki["client"][1],
        ) as c:
            assert c.whoami().tenant == "default"
    finally:
        running.stop(1.0)


def test_plain_tls_with_api_keys(pki):
    cert, key = pki["server"]
    settings = settings_for("sqlite", pki["dir"] / "data2", tls_cert_file=cert, tls_key_file=key)
    running, _ = start("all", settings, port=0)
    addr = f"localhost:{running.port}"
    try:
        _wait(addr, grpc.ssl_channel_credentials(open(pki["ca"], "rb").read()))
        boot = settings.key_file().read_text().strip()
        with MemlakeClient(addr, api_key=boot, ca_file=pki["ca"]) as c:
            assert c.whoami().key.key_id == "bootstrap"
        with MemlakeClient(addr, api_key="", ca_file=pki["ca"]) as c:
            with expect_error("UNAUTHENTICATED"):
                c.whoami()
        with MemlakeClient(addr, api_key=boot, timeout=3) as c:  # plaintext to a TLS port
            with expect_error("UNAVAILABLE"):
                c.whoami()
    finally:
        running.stop(1.0)


def test_mesh_forwarded_identity_only_when_trusted(tmp_path):
    xfcc = 'By=spiffe://cluster.local/ns/m/sa/memlake;Hash=abc;Subject="CN=meshco,O=Mesh";URI='
    for trusted in (True, False):
        settings = settings_for("sqlite", tmp_path / f"d{trusted}", trust_mesh_identity=trusted)
        running, _ = start("all", settings, port=0)
        try:
            with MemlakeClient(f"127.0.0.1:{running.port}", api_key="") as c:
                c.metadata.append(("x-forwarded-client-cert", xfcc))
                if trusted:
                    who = c.whoami()
                    assert (who.tenant, who.method) == ("meshco", "mesh")
                else:
                    with expect_error("UNAUTHENTICATED"):
                        c.whoami()
        finally:
            running.stop(1.0)
