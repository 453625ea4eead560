#!/usr/bin/env bash
# Lint, type-check and run every test. Expects the environment from requirements-dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
"$py" -m ruff check .
"$py" -m ruff format --check .
"$py" -m mypy $(ls -d packages/*/src | while read -r src; do
    [ -n "$(find "$src" -name '*.py' -print -quit)" ] && echo "$src"; done)
"$py" -m pytest "$@"
