#!/usr/bin/env bash
# Browser tests of the broker's connect sessions (login.mjs): Debian's Chromium, driven by
# playwright-core, opens connect links, signs in at the oidc-provider harness started with
# INTERACTIVE=1 (tests/oidc-provider), and checks the broker's pages and API.
#
#   TOKEN_BROKER_URL   the broker's base URL, http://127.0.0.1:PORT
#   TOKEN_BROKER_JWT   scopes "tokens:read tokens:access tokens:write tokens:admin", no tenant
#   OIDC_ISSUER        the running harness (INTERACTIVE=1; its REDIRECT_URIS = the broker's callback)
#   PROVIDER           the broker's key for that provider (default oidc)
#   STRICT_PROVIDER    the same provider, requiring the login to match user_name (default oidc-strict)
#   RETURN_TO_BASE     http://127.0.0.1:PORT, allowed by the broker for return_to (scenario g fails
#                      without it); login.mjs serves that port itself, so the caller reserves it
#                      and leaves it free
#   SCREENSHOT_DIR     where the PNGs go (default: target/browser-screenshots in the repo)
#   SCENARIOS          comma list of scenario letters a..i (or names); default all
#   CHROMIUM_PATH      default /usr/bin/chromium
#
# Installs tests/browser/node_modules with `npm ci` when it is missing or package-lock.json changed
# (guarded by flock, so parallel runs install once; no browser download: playwright-core only),
# then runs `node login.mjs`. It prints `ok - <name>` / `not ok - <name>: <reason>` per scenario
# and `N passed, N failed`; the exit code is non-zero when any scenario failed or none ran.
#
#   run-tests.sh --install-only   only the npm ci step (no env needed)
#   run-tests.sh a c              same as SCENARIOS=a,c
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
stamp="node_modules/.token-broker-browser-installed"
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

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "run-tests.sh: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM_PATH)" >&2
    exit 2
fi

missing=()
for name in TOKEN_BROKER_URL TOKEN_BROKER_JWT OIDC_ISSUER; do
    if [ -z "${!name:-}" ]; then missing+=("$name"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "run-tests.sh: not set: ${missing[*]} (see the comment at the top of this script)" >&2
    exit 2
fi
export PROVIDER="${PROVIDER:-oidc}" STRICT_PROVIDER="${STRICT_PROVIDER:-oidc-strict}"
if [ "$#" -gt 0 ]; then
    SCENARIOS="$(IFS=,; echo "$*")"
    export SCENARIOS
fi

exec node login.mjs
