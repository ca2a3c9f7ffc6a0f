"""TLS client contexts from the config's `tls` sections (OTLP endpoint, Redis)."""

from __future__ import annotations

import ssl

from agent.config.tree import TlsConfig


def ssl_context_for(tls: TlsConfig) -> ssl.SSLContext:
    """System CAs unless `ca_file`; a client certificate for mutual TLS when `cert_file` is set."""
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file or None)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
