#!/usr/bin/env bash
# The test command: lint, format, types, then the test suite. Run from the repository root
# with the project's venv first on PATH (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
pytest "$@"
