#!/usr/bin/env bash
# Installs what the Python binding's build and tests need into a private venv
# at .tools/venv, skipping whatever is already there. Safe to run again and
# again; called by test-python.sh and bench-python.sh.
#   bash scripts/setup-python.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-python] %s\n' "$*"; }

# Pinned tool versions (PyPI).
MATURIN_VERSION=1.16.0
PYTEST_VERSION=9.2.0

venv=.tools/venv
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || { log "$python not found: install Python 3.9+ first"; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  mkdir -p .tools
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's Python has no venv (ensurepip) without python3-venv.
    rm -rf "$venv"
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
      || { log "$python cannot make a venv: install its venv module (apt python3-venv)"; exit 1; }
    log "installing python3-venv (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
    "$python" -m venv "$venv"
  fi
fi

installed_version() {
  "$venv/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
PY
}

want=()
[ "$(installed_version maturin)" = "$MATURIN_VERSION" ] || want+=("maturin==$MATURIN_VERSION")
[ "$(installed_version pytest)" = "$PYTEST_VERSION" ] || want+=("pytest==$PYTEST_VERSION")
if [ "${#want[@]}" -gt 0 ]; then
  log "installing ${want[*]} into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi
log "Python tools ready ($("$venv/bin/python" --version), maturin $(installed_version maturin), pytest $(installed_version pytest))"
