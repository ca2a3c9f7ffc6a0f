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
