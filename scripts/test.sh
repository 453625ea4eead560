#!/usr/bin/env bash
# Lint, type-check and run every test. Expects the environment from requirements-dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
# The HTML report's browser tests drive Debian's Chromium (Playwright's own browser download is not
# reachable from these machines): install it when it is missing and this user may (root, apt).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
"$py" -m ruff check .
"$py" -m ruff format --check .
"$py" -m mypy $(ls -d packages/*/src | while read -r src; do
    [ -n "$(find "$src" -name '*.py' -print -quit)" ] && echo "$src"; done)
"$py" -m pytest "$@"
