#!/usr/bin/env bash
# What the two commands need before anything else (README.md, "Prerequisites"): Python >= 3.11 with its
# venv module. Debian and Ubuntu ship `venv` (and the ensurepip it needs) in the separate package
# python3-venv, missing from a stock install, so `python3 -m venv` fails there; it is installed with apt
# as root (or through sudo when that needs no password), otherwise the message says what to run.
# Sourced by bootstrap.sh; defines functions only.

prereq_as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo "$@"; else return 90; fi
}

ensure_python() {
  local python=$1
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "hub: $python not found. Install Python >= 3.11 (Debian 12 or newer: apt-get install python3)" >&2
    return 1
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "hub: $python is $("$python" -c 'import sys; print(sys.version.split()[0])') but the hub needs" \
         "Python >= 3.11 (Debian 12 or newer); set PYTHON=/path/to/python3.11 or newer" >&2
    return 1
  fi
}

# `venv` and `ensurepip` both: without ensurepip, `python3 -m venv` leaves a .venv with no pip in it.
python_can_make_venvs() { "$1" -c 'import ensurepip, venv' >/dev/null 2>&1; }

ensure_python_venv() {
  local python=$1 package status=0
  python_can_make_venvs "$python" && return 0
  package="python3-venv"
  echo "==> $python cannot create virtual environments: installing $package (apt)"
  prereq_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
  if [[ $status -eq 0 ]]; then
    prereq_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null || status=$?
  fi
  if [[ $status -eq 90 ]]; then
    echo "hub: \`$python -m venv\` is unavailable and installing $package needs root. Run" >&2
    echo "       sudo apt-get install $package" >&2
    echo "     (or run this command as root), then run it again." >&2
    return 1
  fi
  if [[ $status -ne 0 ]] || ! python_can_make_venvs "$python"; then
    echo "hub: installing $package did not give $python a working venv module (apt exit $status);" \
         "install it by hand: apt-get install $package" >&2
    return 1
  fi
}
