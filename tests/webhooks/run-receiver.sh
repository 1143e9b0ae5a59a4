#!/usr/bin/env bash
# Runs tests/webhooks/receiver.py (a webhook receiver that verifies deliveries with the Standard
# Webhooks reference library) in a venv that has the library; every argument goes to receiver.py.
#
#   bash tests/webhooks/run-receiver.sh --secret whsec_... --port 0 --port-file /tmp/x/port [--mode down]
#   bash tests/webhooks/run-receiver.sh --self-test          # prints "ok" when the venv works
#
# PYTHON   the interpreter the venv is made from (default python3)
#
# The venv is target/webhooks-venv at the repository root, installed from requirements.txt beside
# this script. It is set up again when requirements.txt or the interpreter changes, or when it is
# broken. Setups are serialised with flock on target/webhooks-venv.lock, so parallel tests do not
# pip install over each other; the lock is held only while checking or setting up, never while the
# receiver runs (so any number of receivers can run at once). Works from any cwd. Progress goes to
# stderr; stdout is receiver.py's alone. The script then execs the venv's python, so the caller's
# pid (and its SIGTERM) is the receiver's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/webhooks-venv"
requirements="$here/requirements.txt"
python="${PYTHON:-python3}"

mkdir -p "$root/target"

# What the venv was set up from; when it changes (or the venv is broken) it is set up again.
stamp_of() {
  {
    cat "$requirements"
    "$python" -c 'import sys; print(sys.version); print(sys.executable)'
  } | cksum
}

(
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  want="$(stamp_of)"
  stamp="$venv/.token-broker-webhooks-stamp"
  if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] \
    || ! "$venv/bin/python" -c 'import standardwebhooks.webhooks' >/dev/null 2>&1; then
    echo "== setting up $venv" >&2
    started=$(date +%s)
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
      # No ensurepip (Debian without python3-venv): make the venv bare and let the system pip
      # install pip into it.
      rm -rf "$venv"
      "$python" -m venv --without-pip "$venv"
      "$python" -m pip --python "$venv/bin/python" install --quiet pip >&2
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    "$venv/bin/python" -c 'import standardwebhooks.webhooks' >&2
    echo "$want" >"$stamp"
    echo "run-receiver.sh: venv set up in $(($(date +%s) - started)) s" >&2
  fi
) 9>"$venv.lock"

exec "$venv/bin/python" "$here/receiver.py" "$@"
