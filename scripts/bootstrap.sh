#!/usr/bin/env bash
# Creates .venv and installs the hub (editable) with its test and benchmark tools; re-runs only when
# pyproject.toml changed. Sourced by up.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
source "$ROOT/scripts/prereqs.sh"

# A .venv left without pip (made while the venv module was missing) is made again.
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  ensure_python "$PYTHON"
  ensure_python_venv "$PYTHON"
  echo "==> creating virtual environment in .venv"
  "$PYTHON" -m venv --clear "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "==> installing the hub and its dependencies"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # bench: SpiffWorkflow, which bench/workflow.py (and its test) run beside the engine.
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test,bench]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
