#!/usr/bin/env bash
# Runs the Python adapter's tests (clients/python/tests) against a running token-broker.
#
#   TOKEN_BROKER_URL=http://127.0.0.1:8080 TOKEN_BROKER_JWT=... bash clients/python/run-tests.sh [pytest args]
#
# The JWT needs "tokens:read tokens:write tokens:secrets tokens:admin". Set
# TOKEN_BROKER_TEST_DELETE_ALL=1 to also run the delete_tokens test, which deletes every token the
# JWT can see (throwaway brokers only).
#
# Creates (or reuses) a virtualenv in target/python-venv at the repository root with the pinned
# Zoho SDK, pytest and this package (editable). PYTHON picks the interpreter (default python3).
# Exits with pytest's status; "no tests ran" (5) counts as a failure.
set -euo pipefail

ZOHO_SDK="zohocrmsdk8-0==7.0.0"
PYTEST="pytest==8.3.5"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/python-venv"
python="${PYTHON:-python3}"

: "${TOKEN_BROKER_URL:?set TOKEN_BROKER_URL to the broker, e.g. http://127.0.0.1:8080}"
: "${TOKEN_BROKER_JWT:?set TOKEN_BROKER_JWT to a caller JWT (tokens:read tokens:write tokens:secrets tokens:admin)}"

mkdir -p "$root/target"

# One setup at a time (two runs sharing the venv must not pip install over each other).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/target/python-venv.lock"
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
  || ! "$venv/bin/python" -c 'import pytest, zohocrmsdk, token_broker_zoho' >/dev/null 2>&1; then
  echo "== setting up $venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
      # No ensurepip (Debian without python3-venv): make the venv bare and let the system pip
      # install pip into it.
      rm -rf "$venv"
      "$python" -m venv --without-pip "$venv"
      "$python" -m pip --python "$venv/bin/python" install --quiet pip
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$ZOHO_SDK" "$PYTEST"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here"
  echo "$want" >"$stamp"
fi

echo "== pytest against $TOKEN_BROKER_URL"
cd "$here"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider "$@" tests || status=$?
if [[ $status -eq 5 ]]; then
  echo "no tests ran" >&2
fi
exit "$status"
