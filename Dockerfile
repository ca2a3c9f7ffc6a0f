# syntax=docker/dockerfile:1
# sidecar-agent: runs beside an application container (compose service, Kubernetes pod).
#
#   docker build -t sidecar-agent:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --read-only -v agent-data:/var/lib/sidecar-agent sidecar-agent:0.1.0
#
# Stage "build" turns the source into a wheel and installs it with its dependencies into a
# venv, every dependency at the exact version in constraints.txt (written by scripts/lock, the
# versions scripts/test ran with), and compiles the hot modules into that venv; the runtime
# stage copies only that venv (no compiler, no pip cache, no sources).
# tests/deploy/test_image.py builds the same wheel with the same command, installs it into a
# fresh venv and runs this file's ENTRYPOINT/CMD and HEALTHCHECK commands from it, as the
# uid below, as PID 1 of its own PID namespace.

# Both stages use the same pinned base so the venv's interpreter path is valid in the second.
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY agent ./agent

# The compiler for the compiled hot modules (agent/native), in this stage only.
RUN command -v gcc >/dev/null \
    || { apt-get update \
         && apt-get install -y --no-install-recommends gcc=4:12.2.* libc6-dev=2.36-* \
         && rm -rf /var/lib/apt/lists/*; }

RUN python -m pip wheel --no-deps --wheel-dir /dist . \
    && python -m venv /opt/sidecar-agent \
    && /opt/sidecar-agent/bin/python -m pip install -c constraints.txt /dist/sidecar_agent-*.whl \
    && /opt/sidecar-agent/bin/python -m pip uninstall --yes pip

# mypyc (from mypy, at the version scripts/test ran) compiles the hot modules of the same
# wheel in a throwaway venv into the runtime venv's sidecar-agent-native directory; the agent
# loads them because their sources' hashes match the installed package's.
RUN python -m venv /src/native-venv \
    && /src/native-venv/bin/python -m pip install -c constraints.txt /dist/sidecar_agent-*.whl mypy \
    && SIDECAR_AGENT_NATIVE=off /src/native-venv/bin/python -m agent.native.build \
       --dir /opt/sidecar-agent/sidecar-agent-native \
    && rm -rf /src/native-venv


FROM python:3.11.13-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="sidecar-agent" \
      org.opencontainers.image.description="Ships span logs to Jaeger as OTLP and proxies message publishes into Redis Streams with a durable disk buffer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

# A fixed uid/gid so volume ownership and Kubernetes' runAsUser/fsGroup can be set in advance.
RUN groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sidecar \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/sidecar-agent

COPY --from=build /opt/sidecar-agent /opt/sidecar-agent

# The bytecode was compiled at install time; with a read-only root filesystem nothing else
# may be written outside the data volume.
ENV PATH="/opt/sidecar-agent/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIDECAR_DATA_DIR=/var/lib/sidecar-agent

WORKDIR /var/lib/sidecar-agent
USER 10001:10001
VOLUME ["/var/lib/sidecar-agent"]

# 8788: admin (/healthz, /readyz, /metrics, /status). The publish API (8787) listens on
# 127.0.0.1 by default: containers sharing the sidecar's network namespace (a pod, or
# compose's network_mode: service:...) reach it there; set SIDECAR_PROXY_LISTEN to publish it.
EXPOSE 8788

# The agent is PID 1: it installs its own SIGTERM/SIGINT handlers (drain within
# shutdown_timeout; a second signal forces exit) and starts no child processes, so no init
# shim is needed.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["sidecar-agent", "healthcheck"]

ENTRYPOINT ["sidecar-agent"]
CMD ["run"]
