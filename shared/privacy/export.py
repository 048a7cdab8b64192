"""A subject as JSON lines, and those lines written into another install.

Lines, in this order (each a JSON object; "record" says which):
  header        format, subject, export time, counts per kind
  memory        every memory row of the subject (current and past revisions), in id order
  fact_key      the normalised (scope, subject, predicate) keys
  fact_version  every bi-temporal version with its sources
  conflict      conflicts of the subject's keys
  alias         subject aliases
  audit         audit entries about the subject (redacted entries carry no subject)
Ids are the source install's; an import gives new ids and maps references (evidence
links, fact versions' records, conflicts' versions). Vectors are not exported: the
importing install embeds the texts with its own model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from memlake.v1 import memory_pb2 as pb
from shared import changelog
from shared.db.engine import Database
from shared.db.models import (
    AuditEvent,
    Base,
    FactConflict,
    FactKey,
    FactVersion,
    MemoryRecord,
    SubjectAlias,
)
from shared.db.types import UTCDateTime, utcnow
from shared.embedding import Embedder, to_bytes
from shared.errors import AlreadyExists, InvalidArgument
from shared.text import index_text

FORMAT = 1
PAGE = 1000
SKIP = {"tenant", "embedding", "embed_model", "redacted_by"}
# kind -> (model, the columns that name the subject)
KINDS = {
    "memory": MemoryRecord,
    "fact_key": FactKey,
    "fact_version": FactVersion,
    "conflict": FactConflict,
    "alias": SubjectAlias,
    "audit": AuditEvent,
}


def _row(kind: str, obj: Base) -> dict:
    out: dict = {"record": kind}
    for col in obj.__table__.columns:
        if col.key in SKIP:
            continue
        v = getattr(obj, col.key)
        out[col.key] = v.isoformat() if isinstance(v, datetime) else v
    return out


def _subject_filter(model, kind: str, subject: str) -> tuple:
    if kind == "user":
        return (model.user_id == subject,)
    if kind == "agent":
        return (model.agent_id == subject,)
    return ()


def _query(db: Database, tenant: str, kind: str, subject: str, what: str, keys_q):
    """The select for one kind of line (None when it has no rows of its own)."""
    if what == "fact_version":
        return select(FactVersion).where(FactVersion.key_id.in_(keys_q))
    model = KINDS[what]
    q = select(model).where(model.tenant == tenant, *_subject_filter(model, kind, subject))
    if what == "audit":
        q = q.where(AuditEvent.redacted_by.is_(None))
    return q


def _order(model):
    return [c for c in model.__table__.primary_key.columns]


def export_lines(db: Database, tenant: str, kind: str, subject: str) -> tuple[int, Iterator[str]]:
    """(number of lines, the lines). Reads in pages, each in its own short transaction."""
    keys_q = select(FactKey.id).where(
        FactKey.tenant == tenant, *_subject_filter(FactKey, kind, subject)
    )
    counts = {}
    with db.read() as s:
        for what in KINDS:
            q = _query(db, tenant, kind, subject, what, keys_q)
            counts[what] = s.scalar(select(func.count()).select_from(q.subquery())) or 0

    def lines() -> Iterator[str]:
        header = {
            "record": "header",
            "format": FORMAT,
            "subject": {kind: subject} if kind != "tenant" else {"tenant": True},
            "export_time": utcnow().isoformat(),
            "counts": counts,
        }
        yield json.dumps(header, ensure_ascii=False)
        for what, model in KINDS.items():
            order = _order(model)
            offset = 0
            while True:
                with db.read() as s:
                    q = _query(db, tenant, kind, subject, what, keys_q)
                    rows = list(s.scalars(q.order_by(*order).offset(offset).limit(PAGE)))
                for r in rows:
                    yield json.dumps(_row(what, r), ensure_ascii=False, default=str)
                if len(rows) < PAGE:
                    break
                offset += PAGE

    return 1 + sum(counts.values()), lines()


# -- import --------------------------------------------------------------------------------


def _dt(v):
    return datetime.fromisoformat(v) if isinstance(v, str) else v


def _fields(model, d: dict, drop=("record", "id")) -> dict:
    out = {}
    for col in model.__table__.columns:
        if col.key in d and col.key not in drop and col.key not in SKIP:
            v = d[col.key]
            if v is not None and isinstance(col.type, UTCDateTime):
                v = _dt(v)
            out[col.key] = v
    return out


def import_lines(
    db: Database, embedder: Embedder, tenant: str, lines: Iterable[str]
) -> tuple[Counter, int]:
    """Writes an export into `tenant` in one transaction. Returns rows per kind and the
    change-log seq of the imported memories."""
    parsed: dict[str, list[dict]] = {k: [] for k in KINDS}
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kind = d["record"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"lines[{n}]", "not a line of a memlake export") from exc
        if kind == "header":
            if d.get("format") != FORMAT:
                raise InvalidArgument(f"lines[{n}]", f"export format {d.get('format')}")
            continue
        if kind not in parsed:
            raise InvalidArgument(f"lines[{n}].record", f"unknown record {kind!r}")
        parsed[kind].append(d)
    counts: Counter = Counter()
    mems = parsed["memory"]
    texts = [
        index_text(d["type"], d["content"], d.get("attributes") or {}, _dt(d.get("occur_time")))
        for d in mems
    ]
    vecs = embedder.embed(texts) if texts else []
    try:
        with db.write() as s:
            mem_id: dict[int, int] = {}
            recs = []
            for d, vec in zip(mems, vecs, strict=True):
                f = _fields(MemoryRecord, d)
                rec = MemoryRecord(
                    tenant=tenant, embedding=to_bytes(vec), embed_model=embedder.name, **f
                )
                s.add(rec)
                s.flush()
                mem_id[d["id"]] = rec.id
                recs.append(rec)
            for rec in recs:  # evidence links point at the imported copies
                ev = (rec.attributes or {}).get("evidence_memory_ids")
                if rec.type == pb.MEMORY_TYPE_REFLECTION and ev:
                    attrs = dict(rec.attributes)
                    attrs["evidence_memory_ids"] = [
                        str(mem_id.get(int(x), x)) if str(x).isdigit() else x for x in ev
                    ]
                    rec.attributes = attrs
            counts["memory"] = len(recs)
            key_id: dict[int, int] = {}
            for d in parsed["fact_key"]:
                k = FactKey(tenant=tenant, **_fields(FactKey, d))
                s.add(k)
                s.flush()
                key_id[d["id"]] = k.id
            counts["fact_key"] = len(key_id)
            version_id: dict[int, int] = {}
            emb_of = {r.id: r.embedding for r in recs}
            for d in parsed["fact_version"]:
                f = _fields(FactVersion, d)
                f["key_id"] = key_id[d["key_id"]]
                f["memory_id"] = mem_id.get(d.get("memory_id")) if d.get("memory_id") else None
                v = FactVersion(tenant=tenant, embedding=emb_of.get(f["memory_id"]), **f)
                s.add(v)
                s.flush()
                version_id[d["id"]] = v.id
            counts["fact_version"] = len(version_id)
            for d in parsed["conflict"]:
                f = _fields(FactConflict, d)
                f["key_id"] = key_id[d["key_id"]]
                f["version_ids"] = [version_id.get(i, i) for i in d.get("version_ids") or []]
                s.add(FactConflict(tenant=tenant, **f))
            counts["conflict"] = len(parsed["conflict"])
            for d in parsed["alias"]:
                s.merge(SubjectAlias(tenant=tenant, **_fields(SubjectAlias, d, drop=("record",))))
            counts["alias"] = len(parsed["alias"])
            for d in parsed["audit"]:
                f = _fields(AuditEvent, d)
                f["key_id"] = key_id.get(d.get("key_id")) if d.get("key_id") else None
                f["fact_id"] = version_id.get(d.get("fact_id")) if d.get("fact_id") else None
                s.add(AuditEvent(tenant=tenant, **f))
            counts["audit"] = len(parsed["audit"])
            s.flush()
            seq = changelog.append(s, tenant, [r.id for r in recs]) if recs else 0
    except IntegrityError as exc:
        raise AlreadyExists(
            "the import collides with what this tenant already holds (a current keyed item, "
            "a session turn or a fact key of the same scope); import into an empty scope",
            reason="IMPORT_CONFLICT",
        ) from exc
    except KeyError as exc:
        raise InvalidArgument("lines", f"a line refers to an id not in the export: {exc}") from exc
    return counts, seq
