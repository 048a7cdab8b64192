"""TLS for servers and for the services' own calls to each other (files named in settings)."""

from __future__ import annotations

from pathlib import Path

import grpc


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def server_credentials(settings) -> grpc.ServerCredentials | None:
    """None: plaintext. With tls_client_ca_file, clients must present a certificate signed
    by that CA (mutual TLS); its common name is the caller's tenant."""
    if not settings.tls_cert_file:
        return None
    ca = _read(settings.tls_client_ca_file)
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def channel(addr: str, settings) -> grpc.Channel:
    """A channel from one memlake service to another, with TLS when the servers use it
    (presenting the server's own certificate when mutual TLS is on)."""
    from shared.server import channel_options

    sizes = channel_options(settings.max_message_bytes)  # the one limit, internal hops too
    if not settings.tls_cert_file:
        return grpc.insecure_channel(addr, options=sizes)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file) or _read(settings.tls_cert_file),
        private_key=_read(settings.tls_key_file) if settings.tls_client_ca_file else None,
        certificate_chain=_read(settings.tls_cert_file) if settings.tls_client_ca_file else None,
    )
    opts = list(sizes)
    if settings.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return grpc.secure_channel(addr, creds, options=opts)
