#!/usr/bin/env bash
# One command for a newcomer: install into .venv, then `hub up` (SQLite file, demo data, API).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/hub" up "$@"
