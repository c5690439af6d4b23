#!/usr/bin/env bash
# Create or reuse .venv and install the project with its pinned dependencies. pip runs at -qq:
# its warnings (index locations, setuptools notices) are not for a new user, its errors still are.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "bootstrap: Python 3.11 is required ($python is $("$python" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
echo "bootstrap: installing the project and its pinned dependencies into .venv (a minute the first time)…"
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq -e '.[dev]'
touch .venv/.installed
echo "bootstrap: .venv is ready"
