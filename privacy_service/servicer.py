"""protobuf <-> shared.privacy for PrivacyService."""

from __future__ import annotations

from memlake.v1 import privacy_service_pb2 as ppb
from memlake.v1 import privacy_service_pb2_grpc as ppb_grpc
from shared.auth.identity import caller
from shared.convert import dt_to_ts
from shared.db.engine import Database
from shared.embedding import Embedder
from shared.errors import InvalidArgument
from shared.privacy.erase import Eraser
from shared.privacy.export import export_lines, import_lines

CHUNK_LINES = 200


def _subject(subject: ppb.Subject) -> tuple[str, str]:
    which = subject.WhichOneof("kind")
    if which is None:
        raise InvalidArgument("subject", "name a user_id, an agent_id, or tenant: true")
    if which == "tenant":
        if not subject.tenant:
            raise InvalidArgument("subject.tenant", "must be true to name the whole tenant")
        return "tenant", ""
    value = getattr(subject, which)
    if not value:
        raise InvalidArgument(f"subject.{which}", "must not be empty")
    if len(value) > 256:
        raise InvalidArgument(f"subject.{which}", "longer than 256 characters")
    return which.removesuffix("_id"), value


class PrivacyServicer(ppb_grpc.PrivacyServiceServicer):
    def __init__(
        self, db: Database, embedder: Embedder, eraser: Eraser, default_tenant: str
    ) -> None:
        self.db, self.embedder, self.eraser = db, embedder, eraser
        self.default_tenant = default_tenant

    def _tenant(self, context) -> str:
        # Erasing, exporting and importing a subject is an admin's act (of this tenant) until
        # grants say finer (e.g. a key of user 42 exporting user 42).
        caller().require_admin()
        return caller().tenant

    def EraseSubject(self, request, context):
        tenant = self._tenant(context)
        kind, subject = _subject(request.subject)
        r = self.eraser.erase(tenant, kind, subject)
        out = ppb.ErasureReceipt(job_id=str(r.job_id), seq=r.seq, resumed=r.resumed)
        out.counts.update(r.counts)
        dt_to_ts(r.finish_time, out.finish_time)
        return ppb.EraseSubjectResponse(receipt=out)

    def ExportSubject(self, request, context):
        tenant = self._tenant(context)
        kind, subject = _subject(request.subject)
        total, lines = export_lines(self.db, tenant, kind, subject)
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= CHUNK_LINES:
                yield ppb.ExportSubjectResponse(lines=chunk, total_lines=total)
                chunk = []
        if chunk:
            yield ppb.ExportSubjectResponse(lines=chunk, total_lines=total)

    def ImportSubject(self, request_iterator, context):
        tenant = self._tenant(context)

        def lines():
            for req in request_iterator:
                yield from req.lines

        counts, seq = import_lines(self.db, self.embedder, tenant, lines())
        resp = ppb.ImportSubjectResponse(seq=seq)
        resp.counts.update(counts)
        return resp
