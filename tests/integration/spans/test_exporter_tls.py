"""TLS to the OTLP endpoint: a private CA, and mutual TLS with a client certificate.

Certificates are made with the openssl command line for each test run (tests/harness/pki.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config.tree import ExportConfig, TlsConfig
from agent.core.metrics import Metrics
from agent.core.retry import RetryableError
from agent.spans.export.exporter import OtlpHttpExporter, pack_request
from tests.doubles.otlp_receiver import FaultInjectingOtlpReceiver
from tests.harness.pki import make_pki
from tests.integration.spans.requests import request_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(pki: Path, *, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    if require_client_cert:
        context.load_verify_locations(pki / "ca.crt")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def mtls_receiver(pki: Path) -> Iterator[FaultInjectingOtlpReceiver]:
    with FaultInjectingOtlpReceiver(server_context(pki, require_client_cert=True)) as double:
        yield double


async def push_once(endpoint: str, tls: TlsConfig) -> None:
    config = replace(ExportConfig(), endpoint=endpoint, timeout=2.0, tls=tls)
    exporter = OtlpHttpExporter(config, Metrics())
    await exporter.start()
    try:
        await exporter.push(pack_request(request_body("svc", 2), 2, gzipped=True, json=False))
    finally:
        await exporter.close()


async def test_mutual_tls_with_a_private_ca(
    pki: Path, mtls_receiver: FaultInjectingOtlpReceiver
) -> None:
    tls = TlsConfig(
        ca_file=str(pki / "ca.crt"),
        cert_file=str(pki / "client.crt"),
        key_file=str(pki / "client.key"),
    )
    await push_once(mtls_receiver.endpoint, tls)
    assert len(mtls_receiver.accepted_spans()) == 2


async def test_without_the_client_certificate_the_handshake_fails(
    pki: Path, mtls_receiver: FaultInjectingOtlpReceiver
) -> None:
    with pytest.raises(RetryableError, match="otlp endpoint unreachable"):
        await push_once(mtls_receiver.endpoint, TlsConfig(ca_file=str(pki / "ca.crt")))
    assert mtls_receiver.accepted_spans() == []


async def test_an_unknown_ca_is_refused_unless_verification_is_off(pki: Path) -> None:
    with FaultInjectingOtlpReceiver(server_context(pki, require_client_cert=False)) as double:
        with pytest.raises(RetryableError, match="certificate"):
            await push_once(double.endpoint, TlsConfig())
        await push_once(double.endpoint, TlsConfig(insecure_skip_verify=True))
        assert len(double.accepted_spans()) == 2
