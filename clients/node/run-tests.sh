#!/usr/bin/env bash
# Tests of the Node adapter (token-broker-zoho) against a running broker and fake Zoho.
#
#   TOKEN_BROKER_URL            the broker's base URL
#   TOKEN_BROKER_JWT            scopes "tokens:read tokens:access tokens:write" (managed mode, no secrets)
#   TOKEN_BROKER_JWT_STORE      scopes "tokens:read tokens:write tokens:secrets tokens:admin" (store-only mode)
#   TOKEN_BROKER_JWT_NO_ACCESS  scopes "tokens:read tokens:write" (the missing-tokens:access error)
#   FAKE_ZOHO_URL               a running tests/fake_zoho/fake_zoho.py; the broker's zoho-us provider's
#                               accounts_url points at it
#   TOKEN_BROKER_PROVIDER       the broker provider that uses the fake (default zoho-us)
#   TOKEN_BROKER_TEST_DELETE_ALL=1  deleteTokens is tested on the broker itself (it deletes every token
#                               the store JWT sees: set it only for a broker of the tests' own);
#                               otherwise against a scripted broker
#
# Installs clients/node/node_modules with `npm ci` when it is missing or package-lock.json changed
# (guarded by flock, so parallel runs install once), then runs `node --test` on test/*.test.mjs (or
# on the files given as arguments), one file at a time: the fake's counters are global. Exits non-zero
# when a test fails, when none ran, or when any was skipped or marked todo.
#
#   run-tests.sh --install-only   only the npm ci step (no env needed), e.g. before running test/storm.mjs
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

install_only=0
if [ "${1:-}" = "--install-only" ]; then
    install_only=1
    shift
fi

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
    echo "run-tests.sh: needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 2
fi

# npm ci when node_modules is missing or was installed from another package-lock.json.
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
stamp="node_modules/.token-broker-zoho-installed"
(
    flock 9
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        started=$(date +%s)
        npm ci --no-audit --no-fund --loglevel=error >&2
        echo "$want" >"$stamp"
        echo "run-tests.sh: npm ci took $(( $(date +%s) - started )) s" >&2
    fi
) 9>"$here/.npm-install.lock"

if [ "$install_only" -eq 1 ]; then
    exit 0
fi

missing=()
for name in TOKEN_BROKER_URL TOKEN_BROKER_JWT TOKEN_BROKER_JWT_STORE TOKEN_BROKER_JWT_NO_ACCESS FAKE_ZOHO_URL; do
    if [ -z "${!name:-}" ]; then missing+=("$name"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "run-tests.sh: not set: ${missing[*]} (see the comment at the top of this script)" >&2
    exit 2
fi
export TOKEN_BROKER_PROVIDER="${TOKEN_BROKER_PROVIDER:-zoho-us}"

if [ "$#" -gt 0 ]; then
    files=("$@")
else
    # Explicit files: test/helpers.mjs and test/storm.mjs are not tests (Node 20's default would run
    # every file under test/).
    files=(test/*.test.mjs)
fi

tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
status=0
node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${files[@]}" || status=$?

count() { sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$tap" | tail -1; }
tests="$(count tests)"; fail="$(count fail)"; skipped="$(count skipped)"; todo="$(count todo)"; cancelled="$(count cancelled)"
echo "run-tests.sh: tests=${tests:-?} fail=${fail:-?} cancelled=${cancelled:-?} skipped=${skipped:-?} todo=${todo:-?}"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ -z "$tests" ] || [ "$tests" -eq 0 ]; then echo "run-tests.sh: no tests ran" >&2; exit 1; fi
if [ "${fail:-1}" -ne 0 ] || [ "${cancelled:-0}" -ne 0 ]; then exit 1; fi
if [ "${skipped:-0}" -ne 0 ] || [ "${todo:-0}" -ne 0 ]; then
    echo "run-tests.sh: skipped or todo tests count as failures" >&2
    exit 1
fi
