"""ExportSubject / ImportSubject: a subject round-trips between two installs, through the
SDK and through `memlake export` / `memlake import`."""

from __future__ import annotations

import json
import uuid

from memlake.cli import main
from memlake.client import scope
from tests.conftest import start_suite, tenant_key
from tests.test_erasure import populate

# Columns that differ between installs by construction (new ids, new vectors).
VOLATILE = {"id", "key_id", "memory_id", "fact_id", "version_ids", "etag", "embed_model"}


def _normal(lines: list[str]) -> list[str]:
    """The export without the source install's ids (references become positions)."""
    out = []
    rows = [json.loads(x) for x in lines]
    header = rows[0]
    assert header["record"] == "header" and header["format"] == 1
    ids = {(r["record"], r.get("id")): i for i, r in enumerate(rows)}
    for r in rows[1:]:
        d = {k: v for k, v in r.items() if k not in VOLATILE}
        if r["record"] == "fact_version":
            d["key"] = ids.get(("fact_key", r["key_id"]))
            d["memory"] = ids.get(("memory", r["memory_id"]))
        if r["record"] == "audit":
            d["key"] = ids.get(("fact_key", r.get("key_id")))
        if r["record"] == "memory" and r["attributes"].get("evidence_memory_ids"):
            d["attributes"] = dict(r["attributes"])
            d["attributes"]["evidence_memory_ids"] = [
                ids.get(("memory", int(x))) for x in r["attributes"]["evidence_memory_ids"]
            ]
        out.append(json.dumps(d, sort_keys=True))
    return out


def _export(client, user: str) -> list[str]:
    return [ln for chunk in client.export_subject(user_id=user) for ln in chunk.lines]


def test_round_trip_between_two_installs(suite, fresh_backend, tmp_path, capsys):
    user = "xu-" + uuid.uuid4().hex[:8]
    tenant_a = "t" + uuid.uuid4().hex[:12]
    with suite.client(tenant_a) as a:
        got = populate(a, user)
        lines = _export(a, user)
    kinds = [json.loads(x)["record"] for x in lines]
    for k in ("memory", "fact_key", "fact_version", "conflict", "alias", "audit"):
        assert k in kinds, k
    assert json.loads(lines[0])["counts"]["memory"] == kinds.count("memory")
    assert all(m in "\n".join(lines) for m in got["markers"])

    backend, settings = fresh_backend
    other = start_suite(settings, backend)  # a second install (own database and index)
    try:
        with other.client() as b:
            r = b.import_subject(lines)
            assert r.counts["memory"] == kinds.count("memory") and r.seq > 0
            back = _export(b, user)
            assert _normal(back) == _normal(lines)
            # What was imported is readable and searchable there.
            hits = b.search(got["markers"][0], scope=scope(user), min_seq=r.seq).results
            assert hits and got["markers"][0] in hits[0].memory.content
            assert b.get_fact(user, "lives_in", scope=scope(user)).fact.value
            # Through the command line, into yet another tenant of the second install.
            path = tmp_path / "subject.jsonl"
            key_a = tenant_key(suite.addr, suite.settings, tenant_a)
            base = ["--addr", suite.addr, "--api-key", key_a]
            assert main([*base, "export", "--user", user, "-o", str(path)]) == 0
            tenant_c = "tc" + uuid.uuid4().hex[:8]
            key_c = tenant_key(other.addr, other.settings, tenant_c)
            assert main(["--addr", other.addr, "--api-key", key_c, "import", str(path)]) == 0
            assert "imported" in capsys.readouterr().out
            with other.client(tenant_c) as c:
                assert _normal(_export(c, user)) == _normal(lines)
    finally:
        other.stop()


def test_export_of_an_erased_subject_is_empty(client):
    user = "xe-" + uuid.uuid4().hex[:8]
    populate(client, user)
    client.erase_subject(user_id=user)
    lines = _export(client, user)
    assert len(lines) == 1 and json.loads(lines[0])["record"] == "header"


def test_bad_lines_and_non_admin_keys_are_refused(suite):
    from memlake.client import MemlakeClient, grant
    from tests.helpers import expect_error

    with suite.client() as c:
        with expect_error("INVALID_ARGUMENT", "lines[0]"):
            c.import_subject(["not json"])
        with expect_error("INVALID_ARGUMENT", "lines[1].record"):
            c.import_subject(['{"record": "header", "format": 1}', '{"record": "nope"}'])
        with expect_error("INVALID_ARGUMENT", "subject.user_id"):
            c.erase_subject(user_id="x" * 300)
        member = c.create_api_key(name="m", grants=[grant(users=["u1"], read=True)]).secret
        with MemlakeClient(suite.addr, api_key=member, timeout=20) as m:
            with expect_error("PERMISSION_DENIED"):
                m.erase_subject(user_id="u1")
            with expect_error("PERMISSION_DENIED"):
                list(m.export_subject(user_id="u1"))


def test_progress_bar(capsys):
    from memlake.cli.format import Progress

    bar = Progress("export", force=True)
    bar.update(5, 10)
    bar.update(5)
    bar.close()
    err = capsys.readouterr().err
    assert "10/10 lines" in err and "#" * 30 in err
