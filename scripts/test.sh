#!/usr/bin/env bash
# `make test`: the whole suite against real Redis and PostgreSQL, started here when not running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
exec .venv/bin/python -m pytest "$@"
