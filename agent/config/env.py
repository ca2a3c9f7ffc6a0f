"""Maps the standard environment variables (OpenTelemetry's and REDIS_URL) onto config keys.

Signal-specific OTEL_EXPORTER_OTLP_TRACES_* variables win over the generic OTEL_EXPORTER_OTLP_*
ones, as the OpenTelemetry specification says. The generic endpoint is a base URL to which
`/v1/traces` is appended; the traces endpoint is used as given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

# (config key, suffix after OTEL_EXPORTER_OTLP_[TRACES_])
_OTLP_KEYS = (
    ("export.headers", "HEADERS"),
    ("export.compression", "COMPRESSION"),
    ("export.protocol", "PROTOCOL"),
    ("export.tls.ca_file", "CERTIFICATE"),
    ("export.tls.cert_file", "CLIENT_CERTIFICATE"),
    ("export.tls.key_file", "CLIENT_KEY"),
)

_PLAIN_KEYS = (
    ("service.name", "OTEL_SERVICE_NAME"),
    ("service.resource_attributes", "OTEL_RESOURCE_ATTRIBUTES"),
    ("spans.sampler", "OTEL_TRACES_SAMPLER"),
    ("spans.sampler_arg", "OTEL_TRACES_SAMPLER_ARG"),
    ("redis.url", "REDIS_URL"),
)


def standard_env_values(
    env: Mapping[str, str], problems: list[str]
) -> Iterator[tuple[str, str, str]]:
    """Yield (config key, raw value, variable name) for every standard variable that is set."""
    for key, name in _PLAIN_KEYS:
        if env.get(name, "").strip():
            yield key, env[name], name
    yield from _endpoint(env)
    yield from _timeout(env, problems)
    for key, suffix in _OTLP_KEYS:
        found = _signal_or_generic(env, suffix)
        if found is not None:
            yield key, found[1], found[0]


def _signal_or_generic(env: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    for name in (f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _endpoint(env: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        yield "export.endpoint", traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        return
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        yield "export.endpoint", base.rstrip("/") + "/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT"


def _timeout(env: Mapping[str, str], problems: list[str]) -> Iterator[tuple[str, str, str]]:
    found = _signal_or_generic(env, "TIMEOUT")
    if found is None:
        return
    name, value = found
    try:
        millis = float(value)
    except ValueError:
        problems.append(f"{name}: {value!r} is not a number of milliseconds")
        return
    yield "export.timeout", f"{millis}ms", name
