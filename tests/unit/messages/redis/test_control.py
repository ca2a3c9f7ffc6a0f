"""The redis-py options of the control plane come from the same settings as the agent's own
connections: credentials, TLS and timeouts."""

from __future__ import annotations

from pathlib import Path

from agent.config.tree import RedisConfig, TlsConfig
from agent.messages.redis.connection import RedisTarget
from agent.messages.redis.control import client_options
from tests.harness.pki import make_pki


def test_credentials_and_timeouts_carry_over() -> None:
    config = RedisConfig(url="redis://user:secret@h:7000/0", connect_timeout=2, command_timeout=3)
    options = client_options(RedisTarget.from_config(config))
    assert options == {
        "username": "user",
        "password": "secret",
        "socket_connect_timeout": 2,
        "socket_timeout": 3,
    }


def test_tls_settings_carry_over(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ca, cert, key = (str(pki / name) for name in ("ca.crt", "client.crt", "client.key"))
    tls = TlsConfig(ca_file=ca, cert_file=cert, key_file=key)
    options = client_options(RedisTarget.from_config(RedisConfig(url="rediss://h:7000", tls=tls)))
    assert options["ssl"] is True
    assert (options["ssl_ca_certs"], options["ssl_certfile"], options["ssl_keyfile"]) == (
        ca,
        cert,
        key,
    )
    assert (options["ssl_cert_reqs"], options["ssl_check_hostname"]) == ("required", True)


def test_skipping_verification_is_carried_over_too() -> None:
    config = RedisConfig(url="rediss://h:7000", tls=TlsConfig(insecure_skip_verify=True))
    options = client_options(RedisTarget.from_config(config))
    assert (options["ssl_cert_reqs"], options["ssl_check_hostname"]) == ("none", False)
    assert options["ssl_ca_certs"] is None  # the system's CAs


def test_no_tls_settings_without_rediss() -> None:
    config = RedisConfig(url="redis://h:7000", tls=TlsConfig(ca_file="/ca.pem"))
    assert "ssl" not in client_options(RedisTarget.from_config(config))
