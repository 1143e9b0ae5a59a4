#!/usr/bin/env bash
# Property-based fuzzing of the broker's HTTP API with schemathesis, against the OpenAPI document
# the broker itself serves at /openapi.json. Catches 5xx answers, status codes and content types
# the document does not list, and bodies that do not match its schemas.
#
#   tests/schemathesis/run.sh                       # needs target/debug/token-broker (cargo build)
#   TB_BIN=/path/to/token-broker tests/schemathesis/run.sh
#
# TB_BIN           the broker binary (default target/debug/token-broker; a relative path is taken
#                  from the repository root). The script starts it itself; nothing else is needed.
# ST_MAX_EXAMPLES  test cases per operation (default 300: about a minute a run on 2 cores)
# ST_SEED          the random seed (default 20261204), so a CI failure reproduces locally
# ST_RUN_TIMEOUT   hard limit in seconds for one schemathesis run (default 120); past it the run
#                  is killed and counts as failed
# PYTHON           the interpreter the venv is made from (default python3)
#
# Two runs against one broker (SQLite in a fresh temporary folder, loopback only, a free port):
#   all-scopes  a JWT with tokens:read/access/write/secrets/admin: every operation's real work
#   read-only   a JWT with tokens:read only: the 403 paths of everything else
# Checks: not_a_server_error, response_schema_conformance, status_code_conformance,
# content_type_conformance. Every operation is tested (none excluded): the OAuth providers are
# pointed at a closed loopback port, so the ones that must reach a provider answer their documented
# 503 provider_unavailable, which not_a_server_error is told to accept for exactly those operations.
# No traffic leaves 127.0.0.1. Reports go to target/schemathesis/<run>/ (JUnit XML, NDJSON events,
# the console output as output.txt) and the broker's log to target/schemathesis/broker.log.
#
# Schemathesis comes from tests/schemathesis/requirements.txt, installed into
# target/schemathesis-venv; the venv is set up again when that file or the interpreter changes, or
# when it is broken, and setups are serialised with flock so parallel runs do not pip install over
# each other (as clients/python/venv.sh does).
#
# The exit code is 0 only when both runs pass; the last line is "schemathesis: N passed, N failed"
# (counting runs), the plain summary line CI reads.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

tb_bin="${TB_BIN:-target/debug/token-broker}"
case "$tb_bin" in
    /*) ;;
    *) tb_bin="$root/$tb_bin" ;;
esac
if [ ! -x "$tb_bin" ]; then
    echo "run.sh: no broker binary at $tb_bin (cargo build, or set TB_BIN)" >&2
    exit 2
fi
for tool in curl flock; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: needs $tool" >&2
        exit 2
    fi
done

max_examples="${ST_MAX_EXAMPLES:-300}"
seed="${ST_SEED:-20261204}"
run_timeout="${ST_RUN_TIMEOUT:-120}"
python="${PYTHON:-python3}"
out="$root/target/schemathesis"
mkdir -p "$root/target" "$out"

# ---------------------------------------------------------------------------------------------
# The venv: set up again when requirements.txt or the interpreter changes (or it is broken).
venv="$root/target/schemathesis-venv"
requirements="$here/requirements.txt"
(
    flock 9
    want="$({ cat "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | cksum)"
    stamp="$venv/.token-broker-schemathesis-stamp"
    if [[ ! -x "$venv/bin/st" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] \
        || ! "$venv/bin/python" -c 'import schemathesis' >/dev/null 2>&1; then
        echo "== setting up $venv" >&2
        started=$(date +%s)
        rm -rf "$venv"
        if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
            # No ensurepip (Debian without python3-venv): make the venv bare and let the system
            # pip install pip into it.
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv"
            "$python" -m pip --python "$venv/bin/python" install --quiet pip >&2
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
        "$venv/bin/st" --version >&2
        echo "$want" >"$stamp"
        echo "run.sh: venv set up in $(($(date +%s) - started)) s" >&2
    fi
) 9>"$venv.lock"
st="$venv/bin/st"
vpython="$venv/bin/python"

# ---------------------------------------------------------------------------------------------
# The broker: its own database and key file in a temporary folder, removed on exit.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tb-schemathesis.XXXXXX")"
broker_pid=""
broker_log="$out/broker.log"
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Settings from the caller's shell (TOKEN_BROKER_ENV, TOKEN_BROKER__*) would make the run depend on
# who starts it: drop them all, then set only what this run needs.
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep '^TOKEN_BROKER' || true)

free_port() {
    "$vpython" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

export TOKEN_BROKER__DATABASE__URL="sqlite://$tmp/tb.db?mode=rwc"
export TOKEN_BROKER__CRYPTO__KEY_FILE="$tmp/keys.json"
export TOKEN_BROKER__SERVER__HOST=127.0.0.1
# Nothing but loopback: the built-in Zoho presets would call accounts.zoho.* when a fuzzed token is
# refreshed, revoked or exchanged (a token may carry its own client_id, and the background
# refresher runs too). Point every preset at 127.0.0.1:9, where nothing listens, so those calls
# fail at once with "connection refused" and the broker answers with its documented
# provider_unavailable. No retries and a short timeout keep one such call from taking seconds.
for preset in ZOHO_US ZOHO_EU ZOHO_IN ZOHO_AU ZOHO_CN ZOHO_JP ZOHO_CA ZOHO_SA; do
    export "TOKEN_BROKER__PROVIDERS__${preset}__ACCOUNTS_URL=http://127.0.0.1:9"
done
# zoho-us gets (fake) client credentials, so connect sessions and /v1/oauth/authorize are fuzzed
# past "client_id is not configured" into their real work.
export TOKEN_BROKER__PROVIDERS__ZOHO_US__CLIENT_ID=1000.SCHEMATHESIS
export TOKEN_BROKER__PROVIDERS__ZOHO_US__CLIENT_SECRET=schemathesis-not-a-secret
export TOKEN_BROKER__OAUTH__MAX_RETRIES=0
export TOKEN_BROKER__OAUTH__HTTP_TIMEOUT_SECS=3
export TOKEN_BROKER__LOG__FORMAT=text
export NO_COLOR=1

: >"$broker_log"
port=""
# A free port can be taken by someone else before the broker binds it: try a few.
for attempt in 1 2 3; do
    port="$(free_port)"
    export TOKEN_BROKER__SERVER__PORT="$port"
    export TOKEN_BROKER__OAUTH__PUBLIC_URL="http://127.0.0.1:$port"
    echo "== starting $tb_bin on 127.0.0.1:$port (attempt $attempt)" >>"$broker_log"
    # cwd = the temporary folder: whatever the broker writes relative to it stays in there.
    (cd "$tmp" && exec "$tb_bin" serve) >>"$broker_log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            break 2
        fi
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
done
if [ -z "$broker_pid" ]; then
    echo "run.sh: the broker did not come up; its log ($broker_log) ends with:" >&2
    tail -n 30 "$broker_log" >&2
    exit 2
fi
base="http://127.0.0.1:$port"
echo "== broker $("$tb_bin" --version 2>/dev/null | head -n 1) at $base (pid $broker_pid)"

# ---------------------------------------------------------------------------------------------
# Caller JWTs, signed with the same key file as the running broker. Builds that know the
# all-tenants grant take --tenant '*' (newer ones print a note on stderr without it); older ones
# may refuse the flag, or mint it and then answer 401 "bad tenant". So: try '*', keep it only if
# the broker accepts the JWT, otherwise mint without --tenant. Only stdout's last line is the JWT.
mint() { # mint SUB SCOPES [extra args]
    (cd "$tmp" && "$tb_bin" jwt mint --sub "$1" --scope "$2" "${@:3}" 2>>"$broker_log") | tail -n 1
}
accepted() { # accepted JWT: does the broker take it for GET /v1/tokens?
    local code
    code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$base/v1/tokens?limit=1")"
    [ "$code" = 200 ]
}
tenant_args=(--tenant '*')
probe="$(mint schemathesis-probe tokens:read "${tenant_args[@]}" || true)"
if [ -z "$probe" ] || ! accepted "$probe"; then
    tenant_args=()
    echo "== this build refuses --tenant '*': minting without --tenant"
fi
all_scopes="tokens:read tokens:access tokens:write tokens:secrets tokens:admin"
jwt_all="$(mint schemathesis-all "$all_scopes" "${tenant_args[@]}")"
jwt_read="$(mint schemathesis-read tokens:read "${tenant_args[@]}")"
for jwt in "$jwt_all" "$jwt_read"; do
    if ! accepted "$jwt"; then
        echo "run.sh: the broker refuses a JWT minted by '$tb_bin jwt mint'; see $broker_log" >&2
        exit 2
    fi
done

# ---------------------------------------------------------------------------------------------
# A few stored tokens before each run (the all-scopes run deletes and revokes what it finds, so
# the read-only run gets its own): lists and finds have data, and the {id} operations get real ids.
seed_tokens() { # seed_tokens RUN: PUT two tokens, print their ids
    local now_ms n body response code
    now_ms=$(($(date +%s) * 1000))
    for n in 1 2; do
        body="{\"user_name\":\"seed$n-$1@example.com\",\"refresh_token\":\"1000.r$n-$1\",\"access_token\":\"1000.a$n-$1\",\"expiry_time\":$((now_ms + 3600000))}"
        response="$(curl -sS -w '\n%{http_code}' -X PUT -H "Authorization: Bearer $jwt_all" \
            -H 'Content-Type: application/json' --data "$body" "$base/v1/tokens")"
        code="${response##*$'\n'}"
        if [ "$code" != 201 ] && [ "$code" != 200 ]; then
            echo "run.sh: seeding a token failed with $code: ${response%$'\n'*}" >&2
            return 1
        fi
        "$vpython" -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "${response%$'\n'*}"
    done
}

# ---------------------------------------------------------------------------------------------
# The runs. Fixed seed, no example database (a failure from an earlier run would otherwise be
# replayed first) and one worker (the broker's state, and so the answers, depend on the order of
# requests): the same build fuzzes the same way every time. No redirects are followed: a 302 leads
# to a connect link and from there to a provider, and only the broker's own answers are checked.
# --continue-on-failure: every distinct failure of an operation is reported, not just the first.
# --output-sanitize false: the bodies in the report are shown as sent (the JWTs in them are signed
# with this run's throwaway key file, and the token values are made up).
checks="not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
st_args=(
    run "$base/openapi.json"
    --checks "$checks"
    --max-examples "$max_examples"
    --seed "$seed"
    --generation-database none
    --workers 1
    --max-redirects 0
    --request-timeout 15
    --continue-on-failure
    --output-sanitize false
    --no-color
)
# What the command line cannot say goes into a config file of each run (which also keeps
# schemathesis from picking up a schemathesis.toml of its working directory or the folders above):
# - Every provider points at a closed loopback port (above), so an operation that has to reach one
#   answers 503 provider_unavailable; the document lists that 503 for each of them, and it is the
#   right answer here, so not_a_server_error allows 503 for exactly those operations
#   (status_code_conformance and response_schema_conformance still check it). /readyz is not
#   among them: its 503 would mean the database is gone.
# - Half of the generated {id}s of /v1/tokens/{id}... are the seeded tokens' ids, so those
#   operations do their real work instead of answering 404 to random strings.
write_config() { # write_config FILE ID...
    local ids
    ids="$(printf '"%s", ' "${@:2}")"
    cat >"$1" <<TOML
[dictionaries.seeded-tokens]
values = [${ids%, }]

[[operations]]
include-path-regex = "^/v1/tokens/[{]id[}]"
parameters = { "path.id" = { dictionary = "seeded-tokens", probability = 0.5 } }

[[operations]]
include-name = [
    "POST /v1/oauth/exchange",
    "POST /v1/tokens/{id}/refresh",
    "POST /v1/tokens/{id}/revoke",
    "GET /v1/tokens/{id}/access-token",
    "GET /v1/oauth/callback",
    "GET /connect/{link}",
]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
TOML
}
names=()
statuses=()
seconds=()
for run in all-scopes read-only; do
    case "$run" in
        all-scopes) jwt="$jwt_all" ;;
        read-only) jwt="$jwt_read" ;;
    esac
    dir="$out/$run"
    rm -rf "$dir"
    mkdir -p "$dir"
    mapfile -t ids < <(seed_tokens "$run")
    if [ "${#ids[@]}" != 2 ]; then
        exit 2
    fi
    write_config "$dir/schemathesis.toml" "${ids[@]}"
    echo
    echo "== schemathesis ($run), seeded tokens ${ids[*]}"
    echo "   st --config-file $dir/schemathesis.toml ${st_args[*]} -H 'Authorization: Bearer <$run JWT>' --report junit,ndjson --report-dir $dir"
    started=$(date +%s)
    set +e
    (cd "$tmp" && timeout --kill-after=10 "$run_timeout" "$st" --config-file "$dir/schemathesis.toml" "${st_args[@]}" \
        -H "Authorization: Bearer $jwt" \
        --report junit,ndjson --report-dir "$dir") 2>&1 | tee "$dir/output.txt"
    status=${PIPESTATUS[0]}
    set -e
    took=$(($(date +%s) - started))
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        echo "run.sh: schemathesis ($run) was stopped after ${run_timeout} s (ST_RUN_TIMEOUT)" | tee -a "$dir/output.txt"
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "run.sh: the broker died during the $run run; its log ($broker_log) ends with:" >&2
        tail -n 30 "$broker_log" >&2
        status=3
    fi
    names+=("$run")
    statuses+=("$status")
    seconds+=("$took")
done

# ---------------------------------------------------------------------------------------------
echo
echo "== summary (reports in $out)"
passed=0
failed=0
for i in "${!names[@]}"; do
    if [ "${statuses[$i]}" = 0 ]; then
        verdict="passed"
        passed=$((passed + 1))
    else
        verdict="FAILED (exit ${statuses[$i]})"
        failed=$((failed + 1))
    fi
    # schemathesis' own closing line, e.g. "15 failures, 2 warnings in 55.70s"
    closing="$(grep -E '^=+ .+ =+$' "$out/${names[$i]}/output.txt" | tail -n 1 | sed -E 's/^=+ (.*) =+$/\1/' || true)"
    printf '  %-10s %-18s %4s s  %s\n' "${names[$i]}" "$verdict" "${seconds[$i]}" "${closing:-no summary from schemathesis}"
    printf '  %-10s see %s\n' "" "$out/${names[$i]}/output.txt"
done
echo "schemathesis: $passed passed, $failed failed"
[ "$failed" = 0 ]
