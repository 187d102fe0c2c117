#!/usr/bin/env bash
# Set up what the project needs, and only what is missing: a Python >= 3.11 virtualenv with the
# project installed, redis-server, the Cerbos binary (pinned, from npm) at .tools/bin/cerbos, and
# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
# Safe to run again: a second run checks, prints one line per item and changes nothing.
set -euo pipefail

CERBOS_VERSION="0.51.0"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# bash's EUID comes from geteuid(), not from whatever `id` is on the PATH
can_apt() { [ "${EUID:-$(id -u)}" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  say "installing with apt-get: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Python and the virtualenv ------------------------------------------------------------------
PYTHON=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
[ -n "$PYTHON" ] || die "Python >= 3.11 not found (tried python3.11, python3). Install it, e.g. \`apt-get install python3.11 python3.11-venv\`."

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    can_apt || die "\`$PYTHON -m venv\` failed: install the venv module (\`apt-get install python3-venv\`)."
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi

# constraints.txt pins every package to the versions the project is tested with (scripts/lock.sh)
STAMP=.venv/.installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
  say "installing the project into .venv (pip install -c constraints.txt -e '.[dev]')"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
  touch "$STAMP"
else
  say "python: .venv is up to date ($(.venv/bin/python -V 2>&1))"
fi

# --- Redis ---------------------------------------------------------------------------------------
if command -v redis-server >/dev/null 2>&1; then
  say "redis: $(redis-server --version | cut -d' ' -f1-3)"
elif can_apt; then
  apt_install redis-server
  # We always start our own Redis on our own ports: the distro's service is not wanted.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still not on PATH after apt-get install."
  say "redis: $(redis-server --version | cut -d' ' -f1-3)"
else
  die "redis-server not found. Install Redis >= 7 (Debian/Ubuntu: \`sudo apt-get install redis-server\`, macOS: \`brew install redis\`), then run this again."
fi

# --- Chromium (tests/browser only: the stack runs without it) -----------------------------------
CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  say "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n1 || echo "$CHROMIUM")"
elif [ -z "${CHROMIUM_BIN:-}" ] && can_apt; then
  apt_install chromium
  [ -x /usr/bin/chromium ] || die "/usr/bin/chromium is still missing after apt-get install chromium."
  say "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
  say "chromium: not found at $CHROMIUM and cannot install it here (needs root and apt-get)."
  say "  The browser tests (tests/browser) will fail until it is there: \`sudo apt-get install chromium\`,"
  say "  or set CHROMIUM_BIN to a Chromium binary."
fi

# --- Cerbos --------------------------------------------------------------------------------------
case "$(uname -m)" in
  x86_64 | amd64) CERBOS_ARCH=x64 ;;
  aarch64 | arm64) CERBOS_ARCH=arm64 ;;
  *) CERBOS_ARCH="" ;;   # no npm binary: only a hand-placed .tools/bin/cerbos will do
esac
CERBOS_PKG="cerbos-linux-${CERBOS_ARCH}"
CERBOS_REL="cerbos/node_modules/@cerbos/${CERBOS_PKG}/${CERBOS_PKG}"   # relative to .tools/
CERBOS_REAL="$ROOT/.tools/$CERBOS_REL"

version_of() { "$1" --version 2>/dev/null | head -n1 || true; }

if [ -f .tools/bin/cerbos ] && [ ! -L .tools/bin/cerbos ] &&
   [ "$(version_of .tools/bin/cerbos)" = "$CERBOS_VERSION" ]; then
  : # a binary put there by hand: use it as it is
else
  if [ "$(version_of "$CERBOS_REAL")" != "$CERBOS_VERSION" ]; then
    [ -n "$CERBOS_ARCH" ] || die "Cerbos has no npm binary for $(uname -m): put a cerbos $CERBOS_VERSION binary at .tools/bin/cerbos."
    command -v npm >/dev/null 2>&1 || die "Cerbos $CERBOS_VERSION is missing and npm is not installed. Install Node.js with npm (\`apt-get install npm\`), or put a cerbos $CERBOS_VERSION binary at .tools/bin/cerbos."
    say "installing Cerbos $CERBOS_VERSION from npm into .tools/cerbos"
    mkdir -p .tools/cerbos
    npm install --no-audit --no-fund --loglevel=error --prefix .tools/cerbos "cerbos@${CERBOS_VERSION}" >/dev/null
    [ "$(version_of "$CERBOS_REAL")" = "$CERBOS_VERSION" ] || die "the Cerbos binary at $CERBOS_REAL does not run or is not $CERBOS_VERSION."
  fi
  mkdir -p .tools/bin
  if [ "$(readlink .tools/bin/cerbos 2>/dev/null || true)" != "../$CERBOS_REL" ]; then
    rm -f .tools/bin/cerbos
    ln -s "../$CERBOS_REL" .tools/bin/cerbos
  fi
fi
say "cerbos: $(version_of .tools/bin/cerbos) at .tools/bin/cerbos"

say "done"
