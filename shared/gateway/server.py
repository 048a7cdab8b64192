"""The HTTP side: the Connect protocol (https://connectrpc.com/docs/protocol) over HTTP/1.1,
forwarded to the gRPC services. Unary methods take `application/json` (proto3 JSON) or
`application/proto`; the client-streaming StreamRemember takes Connect's enveloped stream
(`application/connect+json` / `+proto`). Errors carry the gRPC code, message and the same
google.rpc details (ErrorInfo, BadRequest, ...), with the HTTP status the protocol assigns.
The Authorization, x-memlake-tenant and x-request-id headers travel on as gRPC metadata."""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from shared.gateway.registry import Method, methods

log = logging.getLogger("memlake.gateway")

# Connect's code -> HTTP status table.
HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}
# Request headers passed on as gRPC metadata.
FORWARDED = ("authorization", "x-memlake-tenant", "x-request-id", "traceparent", "tracestate")
MAX_BODY = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0


class GatewayError(Exception):
    def __init__(self, code: str, message: str, details=()) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, list(details)


def error_json(code: str, message: str, details=()) -> dict:
    """Connect's error body; each detail is the packed google.protobuf.Any from the gRPC
    status, as {type, value (base64), debug (the same message as JSON)}."""
    out: dict = {"code": code, "message": message}
    ds = []
    for any_ in details:
        d = {
            "type": any_.type_url.rsplit("/", 1)[-1],
            "value": base64.b64encode(any_.value).decode().rstrip("="),
        }
        try:
            d["debug"] = json.loads(json_format.MessageToJson(any_))
            d["debug"].pop("@type", None)
        except Exception:  # noqa: BLE001 - a type this process cannot decode: value is enough
            pass
        ds.append(d)
    if ds:
        out["details"] = ds
    return out


def _grpc_error(exc: grpc.RpcError) -> GatewayError:
    code = exc.code().name.lower() if exc.code() else "unknown"
    details = []
    for k, v in exc.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(v)
            details = list(st.details)
    return GatewayError(code, exc.details() or "", details)


class Upstreams:
    """One gRPC channel per upstream address; a service's calls go to its address."""

    def __init__(
        self,
        default_addr: str,
        by_service: dict[str, str] | None = None,
        open_channel=grpc.insecure_channel,
    ) -> None:
        self.default_addr = default_addr
        self.by_service = by_service or {}
        self.open_channel = open_channel
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, service: str) -> grpc.Channel:
        addr = self.by_service.get(service) or self.default_addr
        with self._lock:
            ch = self._channels.get(addr)
            if ch is None:
                ch = self._channels[addr] = self.open_channel(addr)
            return ch

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def _envelopes(body: bytes) -> Iterator[tuple[int, bytes]]:
    i = 0
    while i < len(body):
        if len(body) - i < 5:
            raise GatewayError("invalid_argument", "truncated stream envelope")
        flags, n = struct.unpack(">BI", body[i : i + 5])
        data = body[i + 5 : i + 5 + n]
        if len(data) != n:
            raise GatewayError("invalid_argument", "truncated stream envelope")
        yield flags, data
        i += 5 + n


def _envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "memlake-gateway"
    upstreams: Upstreams  # set on the subclass made by make_server
    openapi: bytes | None = None

    def log_message(self, fmt, *args):  # the gRPC side logs every call
        log.debug("http " + fmt, *args)

    # -- plumbing ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise GatewayError("resource_exhausted", "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        if n > MAX_BODY:
            raise GatewayError("resource_exhausted", "request body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, ctype: str, body: bytes, headers=()) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, err: GatewayError) -> None:
        body = json.dumps(error_json(err.code, err.message, err.details)).encode()
        self._send(HTTP_STATUS.get(err.code, 500), "application/json", body)

    def _metadata(self) -> list[tuple[str, str]]:
        return [(k, self.headers[k]) for k in FORWARDED if self.headers.get(k)]

    def _timeout(self) -> float:
        ms = self.headers.get("connect-timeout-ms")
        try:
            return int(ms) / 1000 if ms else DEFAULT_TIMEOUT_S
        except ValueError:
            raise GatewayError(
                "invalid_argument", "connect-timeout-ms must be an integer"
            ) from None

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self):
        if self.path in ("/openapi.json", "/") and self.openapi is not None:
            self._send(200, "application/json", self.openapi)
        else:
            self._send_error(GatewayError("not_found", f"no route GET {self.path}"))

    def do_POST(self):
        try:
            meth = methods().get(self.path.split("?", 1)[0])
            body = self._read_body()
            if meth is None:
                raise GatewayError("not_found", f"no method {self.path}")
            ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
            if meth.unary:
                self._unary(meth, ctype, body)
            else:
                self._stream(meth, ctype, body)
        except GatewayError as err:
            self._send_error(err)
        except Exception:  # noqa: BLE001 - never a bare 500 without a body
            log.exception("gateway error on %s", self.path)
            self._send_error(GatewayError("internal", "gateway error"))

    def _decode(self, meth: Method, body: bytes, as_json: bool):
        req = meth.request_cls()
        try:
            if as_json:
                json_format.Parse(body or b"{}", req)
            else:
                req.ParseFromString(body)
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            raise GatewayError("invalid_argument", f"request body: {exc}") from None
        return req

    def _encode(self, msg, as_json: bool) -> bytes:
        return (
            json_format.MessageToJson(msg, indent=None).encode()
            if as_json
            else (msg.SerializeToString())
        )

    def _unary(self, meth: Method, ctype: str, body: bytes) -> None:
        if ctype not in ("application/json", "application/proto"):
            raise GatewayError(
                "invalid_argument", "content-type must be application/json or application/proto"
            )
        as_json = ctype == "application/json"
        req = self._decode(meth, body, as_json)
        call = self.upstreams.channel(meth.service).unary_unary(
            meth.path,
            request_serializer=meth.request_cls.SerializeToString,
            response_deserializer=meth.response_cls.FromString,
        )
        try:
            resp = call(req, timeout=self._timeout(), metadata=self._metadata())
        except grpc.RpcError as exc:
            raise _grpc_error(exc) from None
        self._send(200, ctype, self._encode(resp, as_json))

    def _stream(self, meth: Method, ctype: str, body: bytes) -> None:
        """Connect streaming: the request body is enveloped messages (one for a server
        stream), the response is an envelope per message and an end-of-stream envelope that
        carries the error, if any. The request is read whole before the call starts."""
        if ctype not in ("application/connect+json", "application/connect+proto"):
            raise GatewayError(
                "invalid_argument",
                f"{meth.path} streams: content-type must be "
                "application/connect+json or application/connect+proto",
            )
        as_json = ctype == "application/connect+json"
        reqs = [self._decode(meth, data, as_json) for flags, data in _envelopes(body) if flags == 0]
        cs, ss = meth.desc.client_streaming, meth.desc.server_streaming
        if not cs and len(reqs) != 1:
            raise GatewayError("invalid_argument", f"{meth.path} takes exactly one message")
        kind = {(True, False): "stream_unary", (False, True): "unary_stream"}.get(
            (cs, ss), "stream_stream"
        )
        call = getattr(self.upstreams.channel(meth.service), kind)(
            meth.path,
            request_serializer=meth.request_cls.SerializeToString,
            response_deserializer=meth.response_cls.FromString,
        )
        end: dict = {}
        out = []
        try:
            arg = reqs[0] if not cs else iter(reqs)
            result = call(arg, timeout=self._timeout(), metadata=self._metadata())
            for msg in [result] if not ss else result:
                out.append(_envelope(0, self._encode(msg, as_json)))
        except grpc.RpcError as exc:
            err = _grpc_error(exc)
            end["error"] = error_json(err.code, err.message, err.details)
        out.append(_envelope(2, json.dumps(end).encode()))
        self._send(200, ctype, b"".join(out))


class GatewayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up early is not an error worth a traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.exception("HTTP gateway error with %s", client_address)


def make_server(
    host: str, port: int, upstreams: Upstreams, openapi: bytes | None = None
) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"upstreams": upstreams, "openapi": openapi})
    httpd = GatewayHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd


def start_gateway(
    host: str, port: int, upstreams: Upstreams, openapi: bytes | None = None
) -> ThreadingHTTPServer:
    """Serves in a background thread; returns the server (server_port is the bound port)."""
    httpd = make_server(host, port, upstreams, openapi)
    threading.Thread(target=httpd.serve_forever, name="http-gateway", daemon=True).start()
    return httpd
