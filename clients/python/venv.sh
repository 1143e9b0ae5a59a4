#!/usr/bin/env bash
# Ensures a virtualenv for one Zoho SDK with pytest and this package (editable), and prints the
# path of its python as the LAST line on stdout.
#
#   python="$(bash clients/python/venv.sh | tail -n 1)"
#   ZOHO_SDK="zohocrmsdk7-0==6.0.0" bash clients/python/venv.sh
#
# ZOHO_SDK   the SDK requirement (default zohocrmsdk8-0==7.0.0; e.g. zohocrmsdk7-0==6.0.0)
# PYTHON     the interpreter the venv is made from (default python3)
#
# The venv is target/python-venv-<ZOHO_SDK with every character but [A-Za-z0-9._-] made "_"> at
# the repository root, e.g. target/python-venv-zohocrmsdk8-0__7.0.0. It is set up again when the
# SDK, pytest, the interpreter or pyproject.toml change, or when it is broken. Setups are
# serialised with flock (one lock per venv), so parallel runs do not pip install over each other.
# Progress goes to stderr; stdout has only the python path.
set -euo pipefail

ZOHO_SDK="${ZOHO_SDK:-zohocrmsdk8-0==7.0.0}"
PYTEST="pytest==8.3.5"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sanitized="$(printf '%s' "$ZOHO_SDK" | LC_ALL=C tr -c 'A-Za-z0-9._-' '_')"
venv="$root/target/python-venv-$sanitized"
python="${PYTHON:-python3}"

mkdir -p "$root/target"

if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi

# What the venv was set up from; when it changes (or the venv is broken) it is set up again.
stamp_of() {
  {
    echo "$ZOHO_SDK $PYTEST"
    "$python" -c 'import sys; print(sys.version)'
    cat "$here/pyproject.toml"
  } | cksum
}
want="$(stamp_of)"
stamp="$venv/.token-broker-zoho-stamp"

if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] \
  || ! "$venv/bin/python" -c 'import pytest, requests, zohocrmsdk, token_broker_zoho' >/dev/null 2>&1; then
  echo "== setting up $venv ($ZOHO_SDK)" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # No ensurepip (Debian without python3-venv): make the venv bare and let the system pip
    # install pip into it.
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv"
    "$python" -m pip --python "$venv/bin/python" install --quiet pip >&2
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$ZOHO_SDK" "$PYTEST" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$here" >&2
  "$venv/bin/python" -c 'import pytest, requests, zohocrmsdk, token_broker_zoho' >&2
  echo "$want" >"$stamp"
fi

echo "$venv/bin/python"
