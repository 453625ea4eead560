#!/usr/bin/env bash
# Lint, type-check and run every test (or, given pytest arguments, those tests only). Expects the
# environment from requirements-dev.txt; builds .venv-core for the core-alone tests.
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
# Core alone, then core with one op package, in an environment of their own: the tests that apply
# (tests/standalone). Skipped when arguments select a part of the suite (the fast local loop).
# torch==2.13.0 is the CPU-only build, which also checks that the plugins load on one.
if [ "$#" -eq 0 ]; then
    core=.venv-core
    [ -x "$core/bin/python" ] || python3 -m venv "$core"
    "$core/bin/pip" install -q torch==2.13.0 pytest==9.2.0 -e packages/core
    "$core/bin/pip" uninstall -q -y torchtally-transformer 2>/dev/null || true
    "$core/bin/python" -m pytest tests/standalone -W ignore::UserWarning
    "$core/bin/pip" install -q --no-deps -e packages/ops-transformer
    "$core/bin/python" -m pytest tests/standalone -W ignore::UserWarning
fi
"$py" -m pytest "$@"
