"""Domain errors. Domain code raises these; the server interceptor turns them into gRPC
statuses with google.rpc details (ErrorInfo reason, BadRequest field). No grpc import here."""

from __future__ import annotations

from google.protobuf.message import Message


class MemlakeError(Exception):
    code_name = "INTERNAL"
    reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        reason: str | None = None,
        details: list[Message] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if reason:
            self.reason = reason
        self.details = details or []


class InvalidArgument(MemlakeError):
    code_name = "INVALID_ARGUMENT"
    reason = "INVALID_FIELD"

    def __init__(self, field: str, message: str, **kw) -> None:
        super().__init__(f"{field}: {message}", field=field, **kw)


class NotFound(MemlakeError):
    code_name = "NOT_FOUND"
    reason = "NOT_FOUND"


class AlreadyExists(MemlakeError):
    code_name = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class FailedPrecondition(MemlakeError):
    code_name = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Unavailable(MemlakeError):
    code_name = "UNAVAILABLE"
    reason = "DEPENDENCY_UNAVAILABLE"


class DeadlineExceeded(MemlakeError):
    code_name = "DEADLINE_EXCEEDED"
    reason = "DEADLINE_EXCEEDED"


class OutOfRange(MemlakeError):
    code_name = "OUT_OF_RANGE"
    reason = "OUT_OF_RANGE"


class ResourceExhausted(MemlakeError):
    code_name = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class Aborted(MemlakeError):
    code_name = "ABORTED"
    reason = "CONCURRENT_MODIFICATION"


def error_for_code(code_name: str, message: str) -> MemlakeError:
    """A MemlakeError carrying a status received from another service."""
    cls = next((c for c in MemlakeError.__subclasses__() if c.code_name == code_name), None)
    if cls is None or cls is InvalidArgument:
        err = MemlakeError(message)
        err.code_name = code_name
        return err
    return cls(message)


class Unauthenticated(MemlakeError):
    code_name = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(MemlakeError):
    code_name = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"
