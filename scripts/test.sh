#!/usr/bin/env bash
# Set up (scripts/setup.sh --dev: apt packages, .venv, torch, the project with its dev extras)
# and run the checks: ruff, then pytest -q. The README's test command and .ci/run run this.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
