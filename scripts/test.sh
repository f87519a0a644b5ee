#!/usr/bin/env bash
# The whole test suite, on a fresh clone: installs what it needs (.venv; PostgreSQL and RabbitMQ from
# Debian's packages where missing), starts them, then runs ruff, the guards (import contracts, mypy, the
# commit check) and pytest against SQLite and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
source scripts/services.sh
ensure_postgres
ensure_rabbitmq

echo "==> ruff"
.venv/bin/ruff check workflow hub adapters mocks tests bench scripts

# Guards (docs/architecture.md, "Guards in the test command"): DESIGN §2's import rules, the type
# checker, and no commit outside the transaction boundaries. Configuration in pyproject.toml.
echo "==> lint-imports"
.venv/bin/lint-imports
echo "==> mypy"
.venv/bin/mypy
echo "==> check_commits"
.venv/bin/python scripts/check_commits.py

echo "==> pytest (backends: sqlite, postgresql)"
export HUB_TEST_BACKENDS="${HUB_TEST_BACKENDS:-sqlite,postgresql}"
exec .venv/bin/python -m pytest "$@"
