"""A private CA and certificates signed by it, made with the openssl command line per test run:
`server` for 127.0.0.1 (TLS servers: Redis, OTLP receivers) and `client` for mutual TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate for `name`, signed by the CA in `directory`."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-subj", f"/CN={subject}", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt", cwd=directory)  # fmt: skip


def make_pki(directory: Path) -> Path:
    """ca.crt, server.crt/key (SAN IP:127.0.0.1) and client.crt/key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-subj", "/CN=test-ca", "-days", "2", "-out", "ca.crt", cwd=directory)  # fmt: skip
    issue(directory, "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\n")
    issue(directory, "client", "sidecar-agent", "extendedKeyUsage=clientAuth\n")
    return directory
