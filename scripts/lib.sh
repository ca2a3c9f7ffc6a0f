# shellcheck shell=bash
# Shared helpers for scripts/*. Source it; it defines functions and changes nothing else.

# Messages go to stderr so that a script's stdout stays machine-readable
# (scripts/build-jaeger prints only the binary's path there).
log() {
    printf '[%s] %s\n' "$(basename "$0")" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# The per-machine cache for things built outside the repo (never inside it: the
# Go module cache and a 120 MB binary have no place in git or in a CI checkout).
sidecar_cache_dir() {
    printf '%s\n' "${SIDECAR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-agent}"
}

# Run a command as root: directly when we are root (CI, containers), else via sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (no sudo on this machine)"
    fi
}

# --- setup shared by scripts/test and scripts/demo -------------------------------------------
# Both run from the repository root and use its .venv.

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$candidate"
            return
        fi
    done
    die "need python3.11 or a python3 >= 3.11 on PATH"
}

# The extras a development venv gets; scripts/lock resolves exactly these (plus the runtime).
DEV_EXTRAS=dev,grpc

# Create .venv if missing; install the package with its dev extras, pinned by constraints.txt,
# when pyproject.toml or constraints.txt changed since the last install (their checksum is kept
# inside .venv, so a fresh venv always installs).
ensure_venv() {
    local venv=.venv
    local stamp="$venv/.sidecar-install-stamp"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        "$(find_python)" -m venv "$venv"
    fi
    local wanted
    wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
        log "installing sidecar-agent[$DEV_EXTRAS] into $venv, versions from constraints.txt"
        "$venv/bin/python" -m pip install --quiet -c constraints.txt -e ".[$DEV_EXTRAS]"
        echo "$wanted" >"$stamp"
    fi
}

# The compiled hot modules (agent/native): mypyc (from the dev install) compiles them into the
# venv when the sources changed since the last build; a second run finds them up to date.
# Prints "require" when a build for these sources is in place, "auto" when it failed (then
# the agent runs pure Python, which behaves the same, only slower).
ensure_native() {
    local venv=.venv
    if SIDECAR_AGENT_NATIVE=off "$venv/bin/python" -m agent.native.build >&2; then
        echo require
    else
        log "WARNING: the native build failed (a C compiler and Python's headers are needed); running pure Python"
        echo auto
    fi
}

# redis-sentinel is a separate Debian package; the Sentinel integration tests need it.
ensure_redis_server() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} from Debian's packages"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}
