"""Authentication and authorization over real channels, on both backends."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from memlake.client import MemlakeClient, grant, scope
from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import memory_pb2 as pb
from shared.auth.grants import Grant
from shared.auth.store import KeyStore
from shared.db.engine import Database
from tests.helpers import background, event, expect_error, turn

SERVICES = [
    "memlake.v1.IngestService",
    "memlake.v1.RetrievalService",
    "memlake.v1.VersioningService",
    "memlake.v1.AdminService",
]


def _member(suite, admin: MemlakeClient, *grants: apb.Grant, **kw) -> MemlakeClient:
    secret = admin.create_api_key(name="member", grants=list(grants), **kw).secret
    return MemlakeClient(suite.addr, api_key=secret)


def _raw(addr: str, full_method: str, metadata) -> grpc.StatusCode:
    """Calls a method with an empty request; returns the status code."""
    service, method = full_method.rsplit("/", 1)
    sd = descriptor_pool.Default().FindServiceByName(service)
    md = sd.methods_by_name[method]
    req_cls = message_factory.GetMessageClass(md.input_type)
    resp_cls = message_factory.GetMessageClass(md.output_type)
    path = f"/{service}/{method}"
    with grpc.insecure_channel(addr) as ch:
        if md.client_streaming and not md.server_streaming:
            call = ch.stream_unary(path, req_cls.SerializeToString, resp_cls.FromString)
            arg = iter([req_cls()])
        elif md.server_streaming and not md.client_streaming:
            call = ch.unary_stream(path, req_cls.SerializeToString, resp_cls.FromString)
            arg = req_cls()
        else:
            call = ch.unary_unary(path, req_cls.SerializeToString, resp_cls.FromString)
            arg = req_cls()
        try:
            out = call(arg, timeout=10, metadata=metadata)
            if md.server_streaming:
                list(out)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _all_methods() -> list[str]:
    from memlake.v1 import (  # noqa: F401 - registers the descriptors
        admin_service_pb2,
        ingest_service_pb2,
        retrieval_service_pb2,
        versioning_service_pb2,
    )

    out = []
    for name in SERVICES:
        sd = descriptor_pool.Default().FindServiceByName(name)
        out += [f"{name}/{m.name}" for m in sd.methods]
    return out


def test_every_rpc_needs_credentials(suite):
    methods = _all_methods()
    assert len(methods) >= 28
    for m in methods:
        assert _raw(suite.addr, m, []) == grpc.StatusCode.UNAUTHENTICATED, m
        bad = [("authorization", "Bearer mlk_0123456789abcdef_" + "x" * 43)]
        assert _raw(suite.addr, m, bad) == grpc.StatusCode.UNAUTHENTICATED, m
        assert _raw(suite.addr, m, [("authorization", "Basic abc")]) == (
            grpc.StatusCode.UNAUTHENTICATED
        ), m
    # Health and reflection stay open (probes and generic clients).
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(suite.addr) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == 1


def test_a_key_is_never_mapped_to_another_tenant(suite):
    with suite.client() as a, suite.client() as b:
        r = a.remember(event("tenant a's secret"))
        other = b.whoami().tenant
        with MemlakeClient(suite.addr, api_key=a.api_key, tenant=other) as mixed:
            with expect_error("PERMISSION_DENIED") as e:
                mixed.get(r.memory.id)
            assert "another tenant" in e.value.message
        with expect_error("NOT_FOUND"):
            b.get(r.memory.id)


def test_member_grants_restrict_reads_and_writes(suite):
    with suite.client() as admin:
        w = [
            admin.remember(event("alice went sailing in Lisbon", user="alice")),
            admin.remember(event("bob went sailing in Porto", user="bob")),
            admin.remember(background("name", "Bob Builder sails", user="bob")),
            admin.remember(turn("sailing lessons next week", session="s1", user="bob")),
        ]
        seq = max(x.seq for x in w)
        key = admin.create_api_key(grants=[grant(users=["alice"], read=True, write=True)])
        with MemlakeClient(suite.addr, api_key=key.secret) as m:
            # Reads narrow silently: only alice's memories, whatever the scope asked.
            hits = m.search("sailing", min_seq=seq).results
            assert [h.memory.scope.user_id for h in hits] == ["alice"]
            assert m.search("sailing", scope=scope("bob"), min_seq=seq).results == []
            assert {x.scope.user_id for x in m.list_all()} == {"alice"}
            ctx = m.context(scope=scope("bob", session_id="s1"), intent="sailing")
            assert ctx.items == [] and "Bob" not in ctx.rendered
            # A direct read or a write outside the grant is refused, naming what; a read by
            # id names the id only, not the scope of what the key may not see.
            with expect_error("PERMISSION_DENIED") as e:
                m.get(w[1].memory.id)
            assert f"memory {w[1].memory.id}" in e.value.message
            assert "bob" not in e.value.message and "EVENT" not in e.value.message
            with expect_error("PERMISSION_DENIED") as e:
                m.remember(event("forged", user="bob"))
            assert "bob" in e.value.message and "EVENT" in e.value.message
            with expect_error("PERMISSION_DENIED"):
                m.forget(w[1].memory.id)
            with expect_error("PERMISSION_DENIED"):
                m.create_api_key(name="x", role=apb.KEY_ROLE_ADMIN)
            with expect_error("PERMISSION_DENIED"):
                m.list_api_keys()
            ok = m.remember(event("alice again", user="alice"))
            assert m.get(ok.memory.id).content == "alice again"
            # Batch: the refused item fails alone.
            r = m.remember_batch([event("a", user="alice"), event("b", user="bob")])
            assert not r.results[0].HasField("error")
            assert r.results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        # Nothing of bob's changed.
        assert admin.get(w[1].memory.id).content == "bob went sailing in Porto"
        assert sum(1 for x in admin.list_all() if x.scope.user_id == "bob") == 3


def test_support_bot_grant_example(suite):
    """ "May read BACKGROUND and FACT of any user and write CONVERSATION of its own agent."""
    with suite.client() as admin:
        bg = admin.remember(background("tier", "gold customer", user="u7"))
        ev = admin.remember(event("refund issued", user="u7"))
        admin.assert_fact("u7", "plan", "pro", scope=scope("u7"))
        key = admin.create_api_key(
            name="support-bot",
            grants=[
                grant(types=["background", "fact"], read=True),
                grant(agents=["support-bot"], types=["conversation"], write=True),
            ],
        )
        with MemlakeClient(suite.addr, api_key=key.secret) as bot:
            assert bot.get(bg.memory.id).content == "gold customer"
            with expect_error("PERMISSION_DENIED"):
                bot.get(ev.memory.id)
            assert bot.get_fact("u7", "plan", scope=scope("u7")).fact.value == "pro"
            with expect_error("PERMISSION_DENIED"):
                bot.assert_fact("u7", "plan", "free", scope=scope("u7"))
            t = turn("how can I help?", session="c1", user="u7")
            t.scope.agent_id = "support-bot"
            bot.remember(t)
            with expect_error("PERMISSION_DENIED"):
                bot.remember(turn("not my agent", session="c1", user="u7"))
            hits = bot.search("refund gold customer", min_seq=ev.seq).results
            assert {h.memory.type for h in hits} <= {pb.MEMORY_TYPE_BACKGROUND, pb.MEMORY_TYPE_FACT}
            # A FACT written through ingest is checked by versioning with the caller's key.
            f = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="x", scope=scope("u7"))
            f.fact.subject, f.fact.predicate, f.fact.value = "u7", "plan", "free"
            with expect_error("PERMISSION_DENIED"):
                bot.remember(f)
        assert admin.get_fact("u7", "plan", scope=scope("u7")).fact.value == "pro"


def test_minted_session_keys_are_narrower_and_expire(suite):
    with suite.client() as admin:
        parent = admin.create_api_key(
            grants=[grant(users=["42"], read=True, write=True)], ttl_seconds=3600
        )
        with MemlakeClient(suite.addr, api_key=parent.secret) as p:
            with expect_error("INVALID_ARGUMENT", "expire_time"):
                p.create_api_key(grants=[grant(users=["42"], read=True)])
            with expect_error("PERMISSION_DENIED", "grants[0]"):
                p.create_api_key(grants=[grant(users=["43"], read=True)], ttl_seconds=60)
            with expect_error("PERMISSION_DENIED", "grants[0]"):
                p.create_api_key(grants=[grant(read=True)], ttl_seconds=60)  # any user
            with expect_error("INVALID_ARGUMENT", "expire_time"):
                p.create_api_key(grants=[grant(users=["42"], read=True)], ttl_seconds=7200)
            child = p.create_api_key(
                grants=[grant(users=["42"], sessions=["s9"], read=True)], ttl_seconds=60
            )
            assert child.key.parent_key_id == parent.key.key_id
        with MemlakeClient(suite.addr, api_key=child.secret) as c:
            assert c.whoami().key.key_id == child.key.key_id
            with expect_error("PERMISSION_DENIED"):
                c.remember(turn("hi", session="s9", user="42"))  # read only
        revoked = admin.revoke_api_key(parent.key.key_id)
        assert revoked.revoked_children == 1
        with MemlakeClient(suite.addr, api_key=child.secret) as c:
            with expect_error("UNAUTHENTICATED"):
                c.whoami()
        listed = admin.list_api_keys(include_revoked=True).keys
        assert {k.key_id for k in listed if k.HasField("revoke_time")} >= {
            parent.key.key_id,
            child.key.key_id,
        }


def test_expired_key_is_refused(suite):
    with suite.client() as admin:
        k = admin.create_api_key(
            grants=[grant(read=True)], expire_time=datetime.now(UTC) + timedelta(seconds=1.5)
        )
        with MemlakeClient(suite.addr, api_key=k.secret) as c:
            c.whoami()
            time.sleep(1.6)
            with expect_error("UNAUTHENTICATED") as e:
                c.whoami()
            assert "expired" in e.value.message


def test_revocation_reaches_another_replica_within_the_cache_bound(suite):
    """Two KeyStores on one database stand for two replicas."""
    db = Database(suite.settings.sqlalchemy_url())
    try:
        other = KeyStore(db, hash_n=1024, cache_ttl_s=1.0)
        with suite.client() as admin:
            k = admin.create_api_key(grants=[grant(read=True)])
            assert other.authenticate(k.secret).key_id == k.key.key_id
            admin.revoke_api_key(k.key.key_id)
            t0 = time.monotonic()
            while True:
                try:
                    other.authenticate(k.secret)
                except Exception as exc:  # noqa: BLE001
                    assert getattr(exc, "code_name", "") == "UNAUTHENTICATED"
                    break
                assert time.monotonic() - t0 < 2.0, "revoked key still accepted after the bound"
                time.sleep(0.05)
            # A wrong secret with a real key id is refused (scrypt check, not the cache).
            forged = k.secret[:-4] + ("AAAA" if not k.secret.endswith("AAAA") else "BBBB")
            with pytest.raises(Exception, match="unknown API key|revoked"):
                other.authenticate(forged)
    finally:
        db.dispose()


def test_keys_are_stored_only_as_hashes(suite):
    from sqlalchemy import select

    from shared.db.models import ApiKeyRecord

    with suite.client() as admin:
        k = admin.create_api_key(grants=[grant(read=True)])
    db = Database(suite.settings.sqlalchemy_url())
    try:
        with db.read() as s:
            rec = s.scalar(select(ApiKeyRecord).where(ApiKeyRecord.key_id == k.key.key_id))
        from shared.auth.keys import parse

        secret_part = parse(k.secret)[1]  # 43 characters of the 32 random bytes
        blob = repr(
            (rec.salt, rec.secret_hash, rec.hash_params, rec.grants, rec.name, rec.key_id)
        ).encode()
        assert secret_part.encode() not in blob and k.secret.encode() not in blob
        assert rec.hash_params.startswith("scrypt:")
    finally:
        db.dispose()


def test_writes_and_admin_calls_are_audited_reads_on_request(suite):
    with suite.client() as admin:
        tenant = admin.whoami().tenant
        r = admin.remember(event("audited write", user="u1"))
        admin.get(r.memory.id)
        events = admin.list_access_events().events
        writes = [e for e in events if e.method.endswith("/Remember")]
        assert writes and writes[0].action == "write" and writes[0].code == "OK"
        assert r.memory.id in writes[0].target_ids and writes[0].user_id == "u1"
        assert writes[0].key_id == admin.whoami().key.key_id
        assert not [e for e in events if e.method.endswith("/GetMemory")]
        with suite.operator() as op:
            op.update_tenant(tenant, audit_reads=True)
        time.sleep(suite.settings.auth_cache_ttl_s + 0.1)
        admin.get(r.memory.id)
        events = admin.list_access_events().events
        reads = [e for e in events if e.method.endswith("/GetMemory")]
        assert len(reads) == 1 and reads[0].action == "read" and r.memory.id in reads[0].target_ids
        # A refused call is audited too, with its code.
        m = _member(suite, admin, grant(users=["nobody"], write=True))
        with expect_error("PERMISSION_DENIED"):
            m.remember(event("x", user="u1"))
        m.close()
        denied = [e for e in admin.list_access_events().events if e.code == "PERMISSION_DENIED"]
        assert denied and denied[0].method.endswith("/Remember")


def test_operator_only_calls(suite):
    with suite.client() as admin:
        with expect_error("PERMISSION_DENIED"):
            admin.create_tenant(f"x{uuid.uuid4().hex[:8]}")
        with expect_error("PERMISSION_DENIED"):
            admin.create_api_key(tenant="default", role=apb.KEY_ROLE_ADMIN)
        with expect_error("PERMISSION_DENIED"):
            admin.create_api_key(role=apb.KEY_ROLE_OPERATOR)
    with suite.operator() as op:
        name = f"x{uuid.uuid4().hex[:8]}"
        r = op.create_tenant(name)
        assert r.admin_secret.startswith("mlk_") and r.admin_key.tenant == name
        with expect_error("ALREADY_EXISTS", "name"):
            op.create_tenant(name)
        with expect_error("INVALID_ARGUMENT", "name"):
            op.create_tenant("bad name!")
        with expect_error("NOT_FOUND", "tenant"):
            op.create_api_key(tenant="nosuchtenant", role=apb.KEY_ROLE_ADMIN)
        with MemlakeClient(suite.addr, api_key=r.admin_secret) as t:
            assert t.whoami().tenant == name


def test_grant_cover_rules():
    anyone = Grant(permissions=frozenset({1, 2}))
    u42 = Grant(users=frozenset({"42"}), permissions=frozenset({1}))
    assert anyone.covers(u42) and not u42.covers(anyone)
    assert not u42.covers(Grant(users=frozenset({"42"}), permissions=frozenset({1, 2})))
    assert u42.covers(Grant(users=frozenset({"42"}), sessions=frozenset({"s"}), permissions={1}))
    assert not Grant(types=frozenset({2}), permissions=frozenset({1})).covers(
        Grant(permissions=frozenset({1}))
    )


def test_auth_off_only_on_loopback(capsys):
    from shared.launch import check_auth_setting
    from shared.settings import Settings

    with pytest.raises(SystemExit, match="loopback"):
        check_auth_setting(Settings(auth_enabled=False, host="0.0.0.0"))
    check_auth_setting(Settings(auth_enabled=False, host="127.0.0.1"))
    assert "AUTHENTICATION IS OFF" in capsys.readouterr().err


def test_fact_reads_narrow_to_grants(suite):
    with suite.client() as admin:
        admin.assert_fact("alice", "city", "Paris", scope=scope("alice"))
        admin.assert_fact("bob", "city", "Oslo", scope=scope("bob"))
        m = _member(suite, admin, grant(users=["alice"], types=["fact"], read=True))
        facts = m.list_facts(scope=pb.Scope()).facts
        assert [f.value for f in facts] == ["Paris"]
        with expect_error("PERMISSION_DENIED"):
            m.get_fact("bob", "city", scope=scope("bob"))
        with expect_error("PERMISSION_DENIED"):
            m.fact_history("bob", "city", scope=scope("bob"))
        events = m.list_audit_events(scope=pb.Scope()).events
        assert events and all(e.scope.user_id == "alice" for e in events)
        m.close()
