#!/usr/bin/env bash
# Installs the official Dapr SDKs used by the SDK compatibility suite (tests/sdk/).
#
#   tests/sdk/js/node_modules      <- `npm ci` from the committed package-lock.json
#   tests/sdk/python/.venv         <- venv with tests/sdk/python/requirements.txt
#   tests/browser/node_modules     <- `npm ci` (playwright-core, no browser download)
#
# Idempotent: each part is skipped when its stamp file holds the hash of the inputs it was
# built from (lockfile / requirements + interpreter), so a second run costs a few hashes.
# Works from any cwd. Meant for a fresh Debian machine where it runs as root: if node/npm or the
# venv module is missing and apt-get is usable, the Debian packages are installed.
#
# Environment:
#   SDK_DEPS_ONLY=js|python   install only one side
#   SDK_DEPS_FORCE=1          ignore the stamps and reinstall
#   PYTHON=/path/to/python3   interpreter for the venv (default: python3 on PATH)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDK_DIR="$ROOT/tests/sdk"
JS_DIR="$SDK_DIR/js"
PY_DIR="$SDK_DIR/python"
# The dashboard's browser tests: playwright-core, which drives Debian's Chromium (make deps).
BROWSER_DIR="$ROOT/tests/browser"
VENV="$PY_DIR/.venv"
ONLY="${SDK_DEPS_ONLY:-}"
FORCE="${SDK_DEPS_FORCE:-}"

log() { printf 'sdk-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

hash_of() { # hash_of FILE|STRING... -> sha256 of the concatenation (files read, strings as is)
    local part
    for part in "$@"; do
        if [ -f "$part" ]; then cat "$part"; else printf '%s' "$part"; fi
        printf '\n'
    done | sha256sum | cut -d' ' -f1
}

stamp_matches() { # stamp_matches STAMPFILE HASH
    [ -z "$FORCE" ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

APT_UPDATED=""
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    [ "$(id -u)" = 0 ] || return 1
    if [ -z "$APT_UPDATED" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

install_js() { # install_js [DIR]: npm ci in DIR (default: the JS SDK suite)
    local JS_DIR="${1:-$JS_DIR}"
    [ -f "$JS_DIR/package-lock.json" ] || die "missing $JS_DIR/package-lock.json"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "node/npm not found; installing Debian's nodejs and npm"
        apt_install nodejs npm || die "node and npm are required (need Node.js >= 18)"
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 18 ] || die "Node.js >= 18 required, found $(node --version)"

    local stamp="$JS_DIR/node_modules/.outrider-sdk-stamp"
    local want
    want="$(hash_of "$JS_DIR/package-lock.json" "$JS_DIR/package.json" "node-$major")"
    if [ -d "$JS_DIR/node_modules" ] && stamp_matches "$stamp" "$want"; then
        log "js: node_modules up to date"
        return 0
    fi
    log "js: npm ci in $JS_DIR"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
    printf '%s\n' "$want" >"$stamp"
}

install_python() {
    [ -f "$PY_DIR/requirements.txt" ] || die "missing $PY_DIR/requirements.txt"
    local py="${PYTHON:-python3}"
    command -v "$py" >/dev/null 2>&1 || { apt_install python3 python3-venv || die "python3 not found"; }
    local pyver
    pyver="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
        || die "Python >= 3.9 required, found $pyver"

    local stamp="$VENV/.outrider-sdk-stamp"
    local want
    want="$(hash_of "$PY_DIR/requirements.txt" "python-$pyver" "$(command -v "$py")")"
    if [ -x "$VENV/bin/python" ] && stamp_matches "$stamp" "$want"; then
        log "python: venv up to date"
        return 0
    fi
    log "python: creating $VENV with $py ($pyver)"
    rm -rf "$VENV"
    if ! "$py" -m venv "$VENV" >&2; then
        rm -rf "$VENV"
        log "python: venv module unusable; installing Debian's python3-venv"
        apt_install python3-venv || die "cannot create a venv (install python3-venv)"
        "$py" -m venv "$VENV" >&2
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$PY_DIR/requirements.txt" >&2
    printf '%s\n' "$want" >"$stamp"
}

case "$ONLY" in
    "") install_js; install_js "$BROWSER_DIR"; install_python ;;
    js) install_js; install_js "$BROWSER_DIR" ;;
    python) install_python ;;
    *) die "SDK_DEPS_ONLY must be js or python, got '$ONLY'" ;;
esac
log "done"
