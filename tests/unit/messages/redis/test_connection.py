from __future__ import annotations

import ssl

from agent.config.tree import RedisConfig, TlsConfig
from agent.messages.redis.connection import RedisTarget, ServerInfo, parse_server_version


def test_server_version_and_idmp_support() -> None:
    assert parse_server_version(b"# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n") == (
        7,
        0,
        15,
    )
    assert parse_server_version(b"redis_version:8.6\r\n") == (8, 6, 0)
    assert parse_server_version(b"nothing here") == (0, 0, 0)
    assert not ServerInfo((7, 0, 15)).supports_idmp
    assert not ServerInfo((8, 4, 2)).supports_idmp
    assert ServerInfo((8, 6, 0)).supports_idmp and ServerInfo((9, 0, 1)).supports_idmp


def test_targets_from_urls_never_show_the_password() -> None:
    target = RedisTarget.from_config(RedisConfig(url="redis://user:s3cret@cache:6380/2"))
    url = target.url
    assert (url.host, url.port, url.db, url.username, url.password) == (
        "cache",
        6380,
        2,
        "user",
        "s3cret",
    )
    assert "s3cret" not in target.description and target.ssl_context is None
    unix = RedisTarget.from_config(RedisConfig(url="unix:///run/redis.sock?db=1"))
    assert (unix.url.path, unix.url.host, unix.url.db) == ("/run/redis.sock", None, 1)


def test_rediss_builds_a_tls_context() -> None:
    config = RedisConfig(url="rediss://h:6379/0", tls=TlsConfig(insecure_skip_verify=True))
    target = RedisTarget.from_config(config)
    assert isinstance(target.ssl_context, ssl.SSLContext)
    assert target.ssl_context.verify_mode == ssl.CERT_NONE and target.description.startswith(
        "rediss://"
    )


def test_url_parsing_agrees_with_redis_py() -> None:
    from redis.connection import parse_url

    from agent.messages.redis.connection import parse_redis_url

    urls = [
        "redis://localhost:6379/0",
        "redis://cache",
        "redis://:p%40ss@cache:6380/3",
        "redis://user:pw@cache:6380?db=5",
        "rediss://u:p@secure.example:6390/1",
        "redis://[::1]:6379/2",
        "unix:///run/redis.sock?db=4",
        "unix://user:pw@/tmp/r.sock",
    ]
    for url in urls:
        ours = parse_redis_url(url)
        theirs = parse_url(url)  # type: ignore[no-untyped-call]
        assert ours.db == int(theirs.get("db") or 0), url
        assert ours.password == theirs.get("password"), url
        assert ours.username == theirs.get("username"), url
        assert ours.path == theirs.get("path"), url
        if ours.path is None:
            assert ours.host == theirs.get("host", "localhost"), url
            assert ours.port == int(theirs.get("port", 6379)), url
        assert ours.tls == url.startswith("rediss://"), url


def test_the_agent_does_not_import_redis_py() -> None:
    import subprocess
    import sys

    code = "import sys, agent.app, agent.pipelines; print('redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", "redis-py costs ~10 MB of RSS at runtime"
