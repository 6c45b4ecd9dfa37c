#!/usr/bin/env bash
# Install Tandem into .venv on a fresh machine, as root or as a user with sudo. Missing system
# packages come from apt (sudo only when not root; a fresh container often has no sudo):
# python3 and its venv module, and with --dev what the tests need (redis-server, chromium,
# chromium-driver). Then .venv, torch first, the project (with its dev extras for --dev).
# The README's two commands run this (directly, or through scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
dev=0
[ "${1:-}" = "--dev" ] && dev=1

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "scripts/setup.sh: installing system packages needs root: run as root or install sudo" >&2
    exit 1
  fi
}

missing=()
if ! command -v python3 >/dev/null; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)  # Debian and Ubuntu ship venv's pip bootstrap apart
fi
if [ "$dev" = 1 ]; then
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "scripts/setup.sh: missing ${missing[*]} and no apt-get: install them with your package manager" >&2
    exit 1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "scripts/setup.sh: Tandem needs Python 3.10+, python3 is $(python3 -V 2>&1)" >&2
  exit 1
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first, pinned: the project allows torch<2.14, and a looser resolution can pull a
# multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
if [ "$dev" = 1 ]; then
  .venv/bin/pip install -q -e '.[dev]'
else
  .venv/bin/pip install -q -e .
fi
