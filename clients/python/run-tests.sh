#!/usr/bin/env bash
# Runs the Python adapter's tests (clients/python/tests) against a running token-broker and the
# fake Zoho (tests/fake_zoho/fake_zoho.py) the broker's zoho provider points at.
#
#   TOKEN_BROKER_URL=http://127.0.0.1:8080 \
#   TOKEN_BROKER_JWT=...            # tokens:read tokens:access tokens:write (managed-mode tests)
#   TOKEN_BROKER_JWT_STORE=...      # tokens:read tokens:write tokens:secrets tokens:admin (store-only tests)
#   TOKEN_BROKER_JWT_NO_ACCESS=...  # tokens:read tokens:write (the missing-scope test)
#   FAKE_ZOHO_URL=http://127.0.0.1:PORT   # the fake, already running; the broker's provider uses it
#   TOKEN_BROKER_PROVIDER=zoho-us   # that provider's key (default zoho-us)
#   ZOHO_SDK=zohocrmsdk8-0==7.0.0   # which SDK to test with (default; or zohocrmsdk7-0==6.0.0)
#     bash clients/python/run-tests.sh [pytest args]
#
# TOKEN_BROKER_TEST_DELETE_ALL=1 also runs the delete_tokens test, which deletes every token the
# store JWT can see (throwaway brokers only). A test whose variables are missing is skipped (and
# the Rust harness counts a skip as a failure).
#
# The venv comes from venv.sh (target/python-venv-<sdk> at the repository root). PYTHON picks the
# interpreter it is made from. Exits with pytest's status; "no tests ran" (5) counts as a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

: "${TOKEN_BROKER_URL:?set TOKEN_BROKER_URL to the broker, e.g. http://127.0.0.1:8080}"
: "${TOKEN_BROKER_JWT:?set TOKEN_BROKER_JWT to a caller JWT (tokens:read tokens:access tokens:write)}"
export ZOHO_SDK="${ZOHO_SDK:-zohocrmsdk8-0==7.0.0}"
export TOKEN_BROKER_PROVIDER="${TOKEN_BROKER_PROVIDER:-zoho-us}"

python="$(bash "$here/venv.sh" | tail -n 1)"

echo "== pytest ($ZOHO_SDK) against $TOKEN_BROKER_URL"
cd "$here"
status=0
"$python" -m pytest -p no:cacheprovider "$@" tests || status=$?
if [[ $status -eq 5 ]]; then
  echo "no tests ran" >&2
fi
exit "$status"
