#!/usr/bin/env bash
# token-broker benchmarks: release build, load from a second process (wrk) over loopback, on
# SQLite, PostgreSQL and MariaDB. Prints a results table and writes it to bench/results-latest.md.
# See bench/README.md for what is measured and how to read it.
#
#   bench/run.sh                          # everything, ~7 minutes + ~½ minute per backend (rotate, wave)
#   BACKENDS="sqlite postgres" bench/run.sh
#   DURATION=5 VARIANTS=0 bench/run.sh    # shorter runs, no pinned / info-log variants
#   TOKENS=1000000 BACKENDS=sqlite bench/run.sh   # the many-tokens run (import alone takes minutes)
#
# Knobs (environment):
#   BACKENDS        sqlite postgres mysql      which databases
#   DURATION        10       seconds per measurement
#   WARMUP          5        seconds of warm-up (every token in turn; recorded as the cold hot path)
#   REWARM          2        seconds of unmeasured hot-path load before each hot-path run after the first
#   PAIRS           3        hot path + /healthz pairs in the main run (the median ratio is reported)
#   CONNS           64       wrk connections for the hot path and /healthz
#   WRITE_CONNS     32       wrk connections for the write path
#   TOKENS          10000    stored tokens the hot path picks from at random. Above HOT_SUBSET the
#                            hot path is also measured over the first HOT_SUBSET of them in every
#                            round (side by side), and above 100000 the access cache's capacity is
#                            raised to hold them all (TOKEN_BROKER__TOKENS__ACCESS_CACHE_CAPACITY =
#                            TOKENS + 25 %, unless set)
#   HOT_SUBSET      10000    the smaller id set of that comparison
#   CEILING         1        0: skip the bare-axum ceiling (bench/ceiling, GET /healthz -> "ok"),
#                            measured in every round next to the hot path and the broker's /healthz
#   CEILING_BIN     (unset)  a bench-ceiling binary to use instead of building bench/ceiling
#   PROXY           1        0: skip the proxy step (after the refresh storm, per backend: a broker whose
#                            provider `fake` has api_base_urls = [the bare-axum server]; PAIRS rounds
#                            of wrk on bare axum's GET /healthz directly, then GET /v1/proxy/{id}/healthz
#                            through the broker, CONNS connections each). Needs the bare-axum binary:
#                            with CEILING=0 it uses CEILING_BIN or an earlier build in
#                            target/bench-ceiling, else the step is skipped (noted in the report)
#   PAGING          1        0: skip `token-broker tokens list` and the GET /v1/tokens walk
#   PAGE_LIMIT      500      page size of that walk (the broker's max_page_size by default)
#   SETTLE_MAX      30       main run: before each measured run wait (at most this many seconds) until
#                            the broker's background work from the run before (audit rows, use marks,
#                            cache re-checks) is done: under 10 % of a core over 0.5 s. 0: don't wait
#   STORM_N         1000     concurrent callers in the refresh storm
#   PROVIDER_DELAY_MS 200    the fake provider's answer delay
#   BENCH_PIN       0        1: pin the broker to CPU 0 and the clients to CPU 1 in the main run
#   ROTATE          1        0: skip `token-broker keys rotate` (after the main steps: a second key k2
#                            becomes active and every row is re-encrypted under it, timed)
#   WAVE            1        0: skip the background refresh wave (after the main steps and the key
#                            rotation: WAVE_N more tokens of a second fake provider `wave`, all
#                            expiring within 180–600 s, each asked for once, then a broker with
#                            background refresh on refreshes them all; see bench/README.md)
#   WAVE_N          10000    tokens in the wave (the issue's figure: WAVE_N=100000)
#   WAVE_CAP        16       the wave broker's oauth.background.concurrency
#   WAVE_DELAY_MS   20       the wave provider's answer delay
#   VARIANTS        1        also measure the hot path (a) pinned: broker on CPU 0, wrk on CPU 1,
#                            (b) with log.filter=info (request logs to a file)
#   VARIANT_BACKENDS sqlite postgres   the backends those variants run on
#   BROKER_BIN      (unset)  a token-broker binary to measure instead of building this checkout's
#   PG_ADMIN_URL    postgres://postgres@127.0.0.1:5432/test
#   MYSQL_HOST/MYSQL_PORT/MYSQL_USER   127.0.0.1 / 3306 / root (no password)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
cd "$ROOT"

BACKENDS=${BACKENDS:-"sqlite postgres mysql"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
REWARM=${REWARM:-2}
PAIRS=${PAIRS:-3}
CONNS=${CONNS:-64}
WRITE_CONNS=${WRITE_CONNS:-32}
TOKENS=${TOKENS:-10000}
HOT_SUBSET=${HOT_SUBSET:-10000}
CEILING=${CEILING:-1}
PROXY=${PROXY:-1}
PAGING=${PAGING:-1}
PAGE_LIMIT=${PAGE_LIMIT:-500}
SETTLE_MAX=${SETTLE_MAX:-30}
STORM_N=${STORM_N:-1000}
PROVIDER_DELAY_MS=${PROVIDER_DELAY_MS:-200}
VARIANTS=${VARIANTS:-1}
VARIANT_BACKENDS=${VARIANT_BACKENDS:-"sqlite postgres"}
BENCH_PIN=${BENCH_PIN:-0}
ROTATE=${ROTATE:-1}
WAVE=${WAVE:-1}
WAVE_N=${WAVE_N:-10000}
WAVE_CAP=${WAVE_CAP:-16}
WAVE_DELAY_MS=${WAVE_DELAY_MS:-20}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
# Broker settings the caller exported (they apply to every broker this script starts; reported).
USER_OVERRIDES=$(env | { grep '^TOKEN_BROKER__' || true; } | { grep -v -E '__(CRYPTO|AUTH)__|__DATABASE__URL=' || true; } | sort | tr '\n' ' ' | sed 's/ $//')
# Many tokens: the access cache (default capacity 100000) must hold them all, or the hot path over
# all of them measures the cache's size, not its speed. quick_cache splits its capacity over shards,
# so give it a quarter more than the token count.
AUTO_SETTINGS=""
if [ "$TOKENS" -gt 100000 ] && [ -z "${TOKEN_BROKER__TOKENS__ACCESS_CACHE_CAPACITY:-}" ]; then
    export TOKEN_BROKER__TOKENS__ACCESS_CACHE_CAPACITY=$(( TOKENS + TOKENS / 4 ))
    AUTO_SETTINGS="TOKEN_BROKER__TOKENS__ACCESS_CACHE_CAPACITY=$TOKEN_BROKER__TOKENS__ACCESS_CACHE_CAPACITY (set by run.sh for TOKENS=$TOKENS)"
fi
SCALE=0; [ "$TOKENS" -gt "$HOT_SUBSET" ] && SCALE=1

log() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
need_apt() { # need_apt COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (apt)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "$2" >/dev/null \
        || die "could not install $2; install it and re-run"
}
need_apt wrk wrk
need_apt curl curl
need_apt python3 python3
need_apt taskset util-linux
case " $BACKENDS " in *" postgres "*) need_apt psql postgresql-client ;; esac
case " $BACKENDS " in *" mysql "*) need_apt mysql mariadb-client ;; esac

if [ -n "${BROKER_BIN:-}" ]; then
    # A/B runs: the same script against another build (e.g. the commit before a redesign).
    BIN=$BROKER_BIN
    log "using $BIN (BROKER_BIN)"
else
    log "cargo build --release --locked"
    cargo build --release --locked
    BIN="$ROOT/target/release/token-broker"
fi
[ -x "$BIN" ] || die "no $BIN after the build"

# The bare-axum ceiling (bench/ceiling, its own Cargo project and target directory; cargo rebuilds
# it only when it changed). Offline first: the broker's build has fetched axum and tokio already.
CEIL_BIN=""
PROXY_NOTE=""
if [ "$CEILING" = 1 ]; then
    if [ -n "${CEILING_BIN:-}" ]; then
        CEIL_BIN=$CEILING_BIN
        log "using $CEIL_BIN (CEILING_BIN)"
    else
        log "cargo build --release --locked (bench/ceiling: bare axum)"
        CEIL_TARGET="$ROOT/target/bench-ceiling"
        ( cd "$BENCH/ceiling" &&
            { CARGO_TARGET_DIR="$CEIL_TARGET" cargo build --release --locked --offline 2>/dev/null ||
              CARGO_TARGET_DIR="$CEIL_TARGET" cargo build --release --locked; } ) \
            || die "could not build bench/ceiling (CEILING=0 skips it)"
        CEIL_BIN="$CEIL_TARGET/release/bench-ceiling"
    fi
    [ -x "$CEIL_BIN" ] || die "no $CEIL_BIN"
elif [ "$PROXY" = 1 ]; then
    # The proxy step needs the bare-axum server as its fake upstream; without CEILING it only uses a
    # binary that is there already (no build).
    if [ -n "${CEILING_BIN:-}" ] && [ -x "$CEILING_BIN" ]; then
        CEIL_BIN=$CEILING_BIN
    elif [ -x "$ROOT/target/bench-ceiling/release/bench-ceiling" ]; then
        CEIL_BIN="$ROOT/target/bench-ceiling/release/bench-ceiling"
    fi
    if [ -n "$CEIL_BIN" ]; then
        log "using $CEIL_BIN as the proxy step's upstream (CEILING=0: not measured as a ceiling)"
    else
        PROXY_NOTE="skipped: CEILING=0 and no bare-axum binary (CEILING_BIN, target/bench-ceiling/release/bench-ceiling) to use as the upstream"
        echo "bench: proxy step $PROXY_NOTE" >&2
    fi
fi

# ---------------------------------------------------------------------------------------------
# Run state, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tb-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
RUN_ID=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
BROKER_PID=""
PROVIDER_PID=""
WAVE_PROVIDER_PID=""
CEIL_PID=""
PG_DBS=()
MY_DBS=()

cleanup() {
    set +e
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    [ -n "$PROVIDER_PID" ] && kill "$PROVIDER_PID" 2>/dev/null && wait "$PROVIDER_PID" 2>/dev/null
    [ -n "$WAVE_PROVIDER_PID" ] && kill "$WAVE_PROVIDER_PID" 2>/dev/null && wait "$WAVE_PROVIDER_PID" 2>/dev/null
    [ -n "$CEIL_PID" ] && kill "$CEIL_PID" 2>/dev/null && wait "$CEIL_PID" 2>/dev/null
    for db in "${PG_DBS[@]}"; do
        psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    done
    for db in "${MY_DBS[@]}"; do
        mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -e "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU pinning. Main run: none by default (broker, wrk and databases share both cores, as the
# broker would in production). The pinned variant: broker on CPU 0, wrk on CPU 1.
NPROC=$(nproc)
CAN_PIN=0; [ "$NPROC" -ge 2 ] && CAN_PIN=1
pin() { # pin on|off: sets PIN_BROKER / PIN_LOAD
    if [ "$1" = on ] && [ "$CAN_PIN" = 1 ]; then
        PIN_BROKER=(taskset -c 0); PIN_LOAD=(taskset -c 1)
    else
        PIN_BROKER=(); PIN_LOAD=()
    fi
}
if [ "$BENCH_PIN" = 1 ] && [ "$CAN_PIN" = 1 ]; then
    MAIN_PIN=on
    PIN_NOTE="main run: broker pinned to CPU 0 (taskset -c 0), wrk and the python clients to CPU 1; database servers unpinned"
else
    MAIN_PIN=off
    PIN_NOTE="main run: no pinning (broker, wrk, python clients and database servers share both cores)"
fi
if [ "$VARIANTS" = 1 ] && [ "$CAN_PIN" = 1 ]; then
    PIN_NOTE="$PIN_NOTE; pinned variant: broker on CPU 0 (taskset -c 0), wrk on CPU 1 (taskset -c 1)"
fi
pin "$MAIN_PIN"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$CLK_TCK" '{printf "%d", ($14 + $15) * 1000 / t}' "/proc/$1/stat"; } # user + system CPU so far
# settle: wait until the broker is idle (under 50 ms of CPU in 0.5 s), at most SETTLE_MAX seconds;
# sets SETTLED_MS (how long it took)
settle() {
    local t0 c0 c1
    SETTLED_MS=0
    [ "$SETTLE_MAX" -gt 0 ] || return 0
    t0=$(date +%s%N)
    while :; do
        c0=$(cpu_ms "$BROKER_PID"); sleep 0.5; c1=$(cpu_ms "$BROKER_PID")
        [ $(( c1 - c0 )) -lt 50 ] && break
        [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt "$SETTLE_MAX" ] || break
    done
    SETTLED_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$SETTLED_MS" -lt 1000 ] || echo "  waited ${SETTLED_MS} ms for the broker to go idle" >&2
}
record() { echo "$1" >>"$RESULTS"; } # one JSON object a line
# cpu_busy: % of all CPUs busy over one second (while this script's own processes idle, that is
# what other processes on the machine use: a noisy neighbour skews every number).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
BUSY_NOTES=()
check_quiet() { # check_quiet LABEL: note (and warn about) other load before measuring
    local busy; busy=$(cpu_busy)
    BUSY_NOTES+=("$1 ${busy}%")
    [ "$busy" -le 20 ] || echo "bench: warning: the machine is ${busy}% busy before $1 (other processes); numbers will be low and noisy" >&2
}

# ---------------------------------------------------------------------------------------------
# Keys and settings: everything through TOKEN_BROKER__… variables (nothing in config/ is touched).
export TOKEN_BROKER__CRYPTO__ACTIVE_KEY_ID=k1
export TOKEN_BROKER__CRYPTO__KEYS__K1="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export TOKEN_BROKER__CRYPTO__LOOKUP_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export TOKEN_BROKER__AUTH__HS256_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
export TOKEN_BROKER__OAUTH__BACKGROUND__ENABLED=false
export TOKEN_BROKER__LOG__FILTER=warn
export TOKEN_BROKER__SERVER__HOST=127.0.0.1
unset RUST_LOG TOKEN_BROKER_ENV

# The fake OAuth provider (counts token calls) for the refresh storm.
PROVIDER_PORT_FILE="$WORK/provider.port"
"${PIN_LOAD[@]}" python3 "$BENCH/fake_provider.py" --port 0 --port-file "$PROVIDER_PORT_FILE" \
    --delay-ms "$PROVIDER_DELAY_MS" >"$WORK/provider.log" 2>&1 &
PROVIDER_PID=$!
for _ in $(seq 100); do [ -s "$PROVIDER_PORT_FILE" ] && break; sleep 0.05; done
[ -s "$PROVIDER_PORT_FILE" ] || die "the fake provider did not start"
PROVIDER_URL="http://127.0.0.1:$(cat "$PROVIDER_PORT_FILE")"
export TOKEN_BROKER__PROVIDERS__FAKE__KIND=oauth2
export TOKEN_BROKER__PROVIDERS__FAKE__AUTHORIZE_URL="$PROVIDER_URL/authorize"
export TOKEN_BROKER__PROVIDERS__FAKE__TOKEN_URL="$PROVIDER_URL/token"
export TOKEN_BROKER__PROVIDERS__FAKE__CLIENT_ID=bench-client
export TOKEN_BROKER__PROVIDERS__FAKE__CLIENT_SECRET=bench-client-secret

# The second fake provider, `wave`, for the background refresh wave (its own process and counters;
# idle until then). Configured for every broker of the run, like `fake`.
WAVE_URL=""
if [ "$WAVE" = 1 ]; then
    WAVE_PORT_FILE="$WORK/wave-provider.port"
    "${PIN_LOAD[@]}" python3 "$BENCH/fake_provider.py" --port 0 --port-file "$WAVE_PORT_FILE" \
        --delay-ms "$WAVE_DELAY_MS" >"$WORK/wave-provider.log" 2>&1 &
    WAVE_PROVIDER_PID=$!
    for _ in $(seq 100); do [ -s "$WAVE_PORT_FILE" ] && break; sleep 0.05; done
    [ -s "$WAVE_PORT_FILE" ] || die "the wave's fake provider did not start"
    WAVE_URL="http://127.0.0.1:$(cat "$WAVE_PORT_FILE")"
    export TOKEN_BROKER__PROVIDERS__WAVE__KIND=oauth2
    export TOKEN_BROKER__PROVIDERS__WAVE__AUTHORIZE_URL="$WAVE_URL/authorize"
    export TOKEN_BROKER__PROVIDERS__WAVE__TOKEN_URL="$WAVE_URL/token"
    export TOKEN_BROKER__PROVIDERS__WAVE__CLIENT_ID=wave-client
    export TOKEN_BROKER__PROVIDERS__WAVE__CLIENT_SECRET=wave-client-secret
fi

# The bare-axum ceiling: one process for the whole run (idle between its measurements), started
# like the broker (pinned to CPU 0 only when BENCH_PIN=1). Also the proxy step's upstream.
CEIL_PORT=""
if [ -n "$CEIL_BIN" ]; then
    CEIL_PORT=$(free_port)
    PORT=$CEIL_PORT "${PIN_BROKER[@]}" "$CEIL_BIN" 2>"$WORK/ceiling.log" &
    CEIL_PID=$!
    for _ in $(seq 500); do curl -sf -o /dev/null "http://127.0.0.1:$CEIL_PORT/healthz" && break; sleep 0.01; done
    curl -sf -o /dev/null "http://127.0.0.1:$CEIL_PORT/healthz" || { cat "$WORK/ceiling.log" >&2; die "the bare-axum ceiling did not start"; }
fi

# The seed: a Zoho FileStore CSV of $TOKENS tokens (ids bench-tok-00001 …, valid for a day) and
# the list of their ids for wrk (and the first $HOT_SUBSET of them for the many-tokens comparison).
log "seed: $TOKENS tokens (FileStore CSV)"
SEED_CSV="$WORK/seed.csv"
IDS="$WORK/ids.txt"
IDS_SUB="$WORK/ids-subset.txt"
python3 - "$SEED_CSV" "$IDS" "$TOKENS" <<'PY'
import sys, time
csv_path, ids_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
expiry = int(time.time() * 1000) + 86_400_000
with open(csv_path, "w", newline="") as f, open(ids_path, "w") as g:
    f.write("id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,"
            "expiry_time,redirect_uri,api_domain\r\n")
    for i in range(1, n + 1):
        tid = f"bench-tok-{i:05d}"
        f.write(f'"{tid}","bench-user-{i:05d}@bench.example","1000.BENCHCLIENT",'
                f'"bench-secret-{i:05d}","1000.r.{i:05d}.refresh","1000.a.{i:05d}.access","",'
                f'"{expiry}","https://app.example.com/cb","https://www.zohoapis.com"\r\n')
        g.write(tid + "\n")
PY
head -n "$HOT_SUBSET" "$IDS" >"$IDS_SUB"

JWT=$("$BIN" jwt mint --sub bench --scope "tokens:access tokens:read tokens:write" --ttl 86400)
export TB_JWT="$JWT" TB_IDS="$IDS" TB_RUN="$RUN_ID" TB_USERS="$TOKENS"

# The proxy step: a caller JWT that may also call /v1/proxy, and a config file that gives provider
# `fake` its api_base_urls (a list, which a plain env variable cannot spell). The broker loads
# {config_dir}/{env}.toml on top of its defaults and the TOKEN_BROKER__… variables on top of that;
# the config crate merges the file's [providers.fake] table with the variables' providers.fake.*
# keys (checked by the step: a broker missing either half would not start or not proxy).
PROXY_JWT=""
PROXY_CONF_DIR="$WORK/proxy-config"
PROXY_ENV=bench-proxy
if [ "$PROXY" = 1 ] && [ -n "$CEIL_BIN" ]; then
    if PROXY_JWT=$("$BIN" jwt mint --sub bench --scope "tokens:access tokens:read tokens:write tokens:proxy" \
            --ttl 86400 2>>"$WORK/proxy-jwt.log"); then
        mkdir -p "$PROXY_CONF_DIR"
        printf '[providers.fake]\napi_base_urls = ["http://127.0.0.1:%s"]\n' "$CEIL_PORT" \
            >"$PROXY_CONF_DIR/$PROXY_ENV.toml"
    else
        PROXY_JWT=""
        PROXY_NOTE="skipped: \`jwt mint --scope … tokens:proxy\` failed ($(head -c 200 "$WORK/proxy-jwt.log" | tr '\n"' '  '); a build without the proxy?)"
        echo "bench: proxy step $PROXY_NOTE" >&2
    fi
fi

# ---------------------------------------------------------------------------------------------
# Broker lifecycle
PORT=""
start_broker() { # start_broker LOGFILE ; sets BROKER_PID, PORT, STARTED_MS (exec -> first 200)
    # START_SOFT=1: return 1 instead of ending the run when the broker does not start
    PORT=$(free_port)
    local t0 t1
    t0=$(date +%s%N)
    TOKEN_BROKER__SERVER__PORT=$PORT "${PIN_BROKER[@]}" "$BIN" serve 2>>"$1" &
    BROKER_PID=$!
    for _ in $(seq 3000); do
        if curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
            t1=$(date +%s%N)
            STARTED_MS=$(( (t1 - t0) / 1000000 ))
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            cat "$1" >&2
            [ "${START_SOFT:-0}" = 1 ] || die "the broker exited at start"
            wait "$BROKER_PID" 2>/dev/null || true
            BROKER_PID=""
            return 1
        fi
        sleep 0.01
    done
    [ "${START_SOFT:-0}" = 1 ] || die "the broker did not answer /healthz within 30 s"
    stop_broker
    return 1
}
stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

# run_wrk SCRIPT MODE CONNS DURATION [PORT] -> prints the WRKJSON object (PORT: the broker's)
run_wrk() {
    local out
    out=$(TB_MODE="$2" "${PIN_LOAD[@]}" wrk -t1 -c"$3" -d"$4"s --latency --timeout 10s \
        -s "$BENCH/wrk/$1" "http://127.0.0.1:${5:-$PORT}")
    echo "$out" >>"$WORK/wrk.log"
    echo "$out" | sed -n 's/^WRKJSON //p'
}
# metric NAME{LABELS}: its value on /metrics (0 when absent)
metric() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v k="$1" '$1 == k {printf "%d", $2; f=1} END {if (!f) print 0}'
}
jfield() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
summ() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  non-2xx %d" % (d["rps"], d["p50_us"]/1000, d["p99_us"]/1000, d["non2xx"]+d["err_timeout"]+d["err_read"]+d["err_connect"]))' "$1"; }
werrors() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["non2xx"]+d["err_timeout"]+d["err_read"]+d["err_connect"]+d["err_write"])' "$1"; }

# sweep_on IDS_FILE N LABEL: the hot path over the ids of IDS_FILE in file order, from where the
# sweep so far stopped (SWEPT requests, SWEEP_MS ms), in runs sized from the rate so far (plus
# 20 % and a second), until each of the N ids was asked for once. Updates SWEPT, SWEEP_MS and
# SWEEP_ERRORS (non-2xx answers and socket errors).
SWEPT=0 SWEEP_MS=0 SWEEP_ERRORS=0
sweep_on() {
    local chunk=0 secs j
    while [ "$SWEPT" -lt "$2" ]; do
        chunk=$(( chunk + 1 ))
        [ "$chunk" -le 50 ] || die "$3: the sweep did not reach all $2 tokens"
        secs=$(( ($2 - SWEPT) * SWEEP_MS * 12 / 10 / (SWEPT > 0 ? SWEPT : 1) / 1000 + 1 ))
        log "$3: $SWEPT of $2 tokens asked for, ${secs}s more in order"
        j=$(TB_IDS="$1" TB_SWEEP_START=$(( SWEPT % $2 )) run_wrk access.lua sweep "$CONNS" "$secs"); summ "$j" >&2
        SWEPT=$(( SWEPT + $(jfield "$j" requests) ))
        SWEEP_MS=$(( SWEEP_MS + $(jfield "$j" duration_us | cut -d. -f1) / 1000 ))
        SWEEP_ERRORS=$(( SWEEP_ERRORS + $(werrors "$j") ))
    done
}

# ---------------------------------------------------------------------------------------------
# keys rotate: a second key k2 becomes the active one and `token-broker keys rotate` re-encrypts
# every row under it (broker stopped; the CLI's own process on the same database). The brokers
# started after it in this backend know k1 and k2, k2 active; bench_backend puts k1 back.
bench_rotate() { # bench_rotate NAME
    local name=$1 t0 t1 ms out rc=0 counts
    export TOKEN_BROKER__CRYPTO__KEYS__K2="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
    export TOKEN_BROKER__CRYPTO__ACTIVE_KEY_ID=k2
    log "$name: token-broker keys rotate (every row re-encrypted under a new key k2)"
    t0=$(date +%s%N)
    out=$("${PIN_BROKER[@]}" "$BIN" keys rotate 2>>"$WORK/rotate-$name.log") || rc=$?
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    echo "$out" | tee -a "$WORK/rotate-$name.log" >&2
    # "re-encrypted N token(s) under key `k2`; N already used it; N could not be read"
    counts=$(echo "$out" | sed -n 's/^re-encrypted \([0-9]*\) token(s) under key `[^`]*`; \([0-9]*\) already used it; \([0-9]*\) could not be read.*/\1 \2 \3/p' | tail -1)
    if [ -z "$counts" ]; then
        cat "$WORK/rotate-$name.log" >&2
        echo "bench: $name: keys rotate exited $rc; its output was not understood" >&2
        record "{\"backend\":\"$name\",\"test\":\"keys_rotate\",\"ms\":$ms,\"exit\":$rc,\"error\":\"output not understood\"}"
        return 0
    fi
    set -- $counts
    echo "keys rotate: $(( $1 + $2 + $3 )) rows in $ms ms, $(( ($1 + $2 + $3) * 1000 / (ms > 0 ? ms : 1) )) rows/s (exit $rc)" >&2
    record "{\"backend\":\"$name\",\"test\":\"keys_rotate\",\"rows\":$(( $1 + $2 + $3 )),\"reencrypted\":$1,\"unchanged\":$2,\"unreadable\":$3,\"ms\":$ms,\"exit\":$rc}"
}

# The background refresh wave (#14): WAVE_N tokens of provider `wave` whose access tokens all expire
# within the same 10 minutes (180–600 s from the seed), each handed out once (so it counts as in
# use), then a broker with background refresh on (every second, 600 s ahead, concurrency WAVE_CAP)
# must refresh them all, WAVE_DELAY_MS per provider call; ideally before the first one expires.
bench_wave() { # bench_wave NAME
    local name=$1 csv="$WORK/wave-$name.csv" ids="$WORK/wave-ids-$name.txt" blog="$WORK/broker-$name-wave.log"
    local first_exp t0 t1 import_ms inline c0 cpu started_at deadline now c calls distinct
    local last_calls=-1 last_change last_log stop_reason fake0 fake1
    log "$name: refresh wave: $WAVE_N tokens of provider wave expiring 180–600 s from now (FileStore CSV)"
    # Written right before the import: expiries evenly spread over now+180 s … now+600 s, shuffled
    # over the ids. Refresh tokens end in ".exp<expiry ms>" so the fake provider can count refreshes
    # answered after the expiry. Prints the first expiry (ms since the epoch).
    first_exp=$(python3 - "$csv" "$ids" "$WAVE_N" "$RUN_ID" <<'PY'
import random, sys, time
csv_path, ids_path, n, run = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
now = int(time.time() * 1000)
lo, hi = now + 180_000, now + 600_000
exps = [lo + (hi - lo) * k // max(1, n - 1) for k in range(n)]
random.Random(n).shuffle(exps)
with open(csv_path, "w", newline="") as f, open(ids_path, "w") as g:
    f.write("id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,"
            "expiry_time,redirect_uri,api_domain\r\n")
    for i in range(1, n + 1):
        tid, e = f"wave-tok-{i:06d}", exps[i - 1]
        f.write(f'"{tid}","wave-user-{i:06d}@bench.example","1000.WAVECLIENT",'
                f'"wave-secret-{i:06d}","wave.r.{run}.{i:06d}.exp{e}","wave.a.{i:06d}","",'
                f'"{e}","https://app.example.com/cb","https://www.zohoapis.com"\r\n')
        g.write(tid + "\n")
print(min(exps))
PY
)
    log "$name: wave: import $WAVE_N tokens (token-broker import zoho-csv --provider wave)"
    t0=$(date +%s%N)
    "${PIN_BROKER[@]}" "$BIN" import zoho-csv --provider wave "$csv" >"$WORK/import-$name-wave.log"
    t1=$(date +%s%N)
    import_ms=$(( (t1 - t0) / 1000000 ))
    cat "$WORK/import-$name-wave.log" >&2
    echo "wave import: $WAVE_N rows in $import_ms ms, $(( WAVE_N * 1000 / (import_ms > 0 ? import_ms : 1) )) rows/s" >&2

    # In use: each wave token's access token handed out once (the hot path records last_used_at),
    # by a broker with background refresh off. Expiries are >= 180 s away, outside the hot path's
    # 60 s minimum validity: any refresh the sweep causes is an inline one (counted, reported).
    curl -sf -X POST "$WAVE_URL/reset" >/dev/null || die "$name: the wave provider does not answer"
    log "$name: wave: every wave token asked for once (GET …/access-token, in order), background refresh off"
    start_broker "$blog"
    SWEPT=0 SWEEP_MS=0 SWEEP_ERRORS=0
    sweep_on "$ids" "$WAVE_N" "$name: wave sweep"
    echo "wave sweep: $SWEPT requests in $SWEEP_MS ms, $SWEEP_ERRORS errors" >&2
    # Use marks are written every 5 s (oauth::background::USE_MARKS_EVERY) and not on shutdown:
    # wait for the next write, then until the broker is idle (the writes done).
    sleep 6
    SETTLE_MAX=30 settle
    inline=$(curl -sf "$WAVE_URL/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_calls"])')
    [ "$inline" = 0 ] || echo "bench: warning: $name: $inline refresh calls to the wave provider during the sweep (inline refreshes)" >&2
    stop_broker

    curl -sf -X POST "$WAVE_URL/reset" >/dev/null
    fake0=$(curl -sf "$PROVIDER_URL/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_calls"])')
    log "$name: wave: broker with background refresh on (every 1 s, 600 s ahead, used within 3600 s, concurrency $WAVE_CAP); waiting for $WAVE_N refreshes"
    started_at=$(date +%s%3N)
    TOKEN_BROKER__OAUTH__BACKGROUND__ENABLED=true \
    TOKEN_BROKER__OAUTH__BACKGROUND__INTERVAL_SECS=1 \
    TOKEN_BROKER__OAUTH__BACKGROUND__AHEAD_SECS=600 \
    TOKEN_BROKER__OAUTH__BACKGROUND__USED_WITHIN_SECS=3600 \
    TOKEN_BROKER__OAUTH__BACKGROUND__CONCURRENCY="$WAVE_CAP" \
        start_broker "$blog"
    c0=$(cpu_ms "$BROKER_PID")
    # Until every wave token was refreshed, or the last expiry plus a minute, or a minute without a
    # new provider call.
    deadline=$(( started_at + 660000 ))
    last_change=$started_at last_log=$started_at stop_reason=""
    while :; do
        c=$(curl -sf "$WAVE_URL/count") || { stop_reason="provider"; break; }
        read -r calls distinct < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["refresh_calls"], d["distinct_refresh_tokens"])' "$c")
        now=$(date +%s%3N)
        [ "$distinct" -ge "$WAVE_N" ] && { stop_reason="done"; break; }
        kill -0 "$BROKER_PID" 2>/dev/null || { stop_reason="broker exited"; break; }
        [ "$calls" = "$last_calls" ] || { last_calls=$calls; last_change=$now; }
        [ $(( now - last_change )) -lt 60000 ] || { stop_reason="stalled"; break; }
        [ "$now" -lt "$deadline" ] || { stop_reason="timeout"; break; }
        if [ $(( now - last_log )) -ge 10000 ]; then
            echo "  wave: $distinct of $WAVE_N tokens refreshed ($calls provider calls) after $(( (now - started_at) / 1000 )) s" >&2
            last_log=$now
        fi
        sleep 0.5
    done
    sleep 0.3 # the last answers' bookkeeping
    cpu=$(( $(cpu_ms "$BROKER_PID" 2>/dev/null || echo "$c0") - c0 ))
    c=$(curl -sf "$WAVE_URL/count" || echo '{}')
    fake1=$(curl -sf "$PROVIDER_URL/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_calls"])')
    [ "$stop_reason" = done ] || echo "bench: warning: $name: the wave did not complete ($stop_reason)" >&2
    local rec
    rec=$(python3 - "$c" <<PY
import json, sys
c = json.loads(sys.argv[1])
n, first_exp, started = $WAVE_N, $first_exp, $started_at
f, last, done = c.get("first_refresh_ms"), c.get("last_refresh_ms"), c.get("last_refresh_done_ms")
distinct = c.get("distinct_refresh_tokens", 0)
print(json.dumps({
    "backend": "$name", "test": "wave", "tokens": n, "cap": $WAVE_CAP, "provider_delay_ms": $WAVE_DELAY_MS,
    "wave_ms": done - f if f and done else None,
    "calls_span_ms": last - f if f and last else None,
    "first_call_after_start_ms": f - started if f else None,
    "refresh_calls": c.get("refresh_calls"), "refreshed": distinct,
    "max_in_flight": c.get("max_in_flight"),
    "before_first_expiry": bool(distinct >= n and done and done <= first_exp),
    "first_expiry_after_start_ms": first_exp - started,
    "late_refreshes": c.get("late_refreshes"),
    "sweep_inline_refreshes": $inline,
    "sweep_requests": $SWEPT, "sweep_ms": $SWEEP_MS, "sweep_errors": $SWEEP_ERRORS,
    "import_rows": n, "import_ms": $import_ms,
    "other_provider_calls": $fake1 - $fake0,
    "broker_cpu_ms": $cpu, "result": "$stop_reason",
}))
PY
)
    echo "$rec" >&2
    record "$rec"
    stop_broker
}

# The proxy (#15): how much a call through /v1/proxy/{id}/{path} adds to calling the same upstream
# directly. The upstream is the bare-axum server (GET /healthz -> "ok"); a broker whose provider
# `fake` lists it in api_base_urls (the config file above) holds one token whose api_domain is that
# server. Each round: wrk on the upstream directly, then (after REWARM s unmeasured) wrk on
# GET /v1/proxy/{id}/healthz through the broker; both at CONNS connections for DURATION s, each
# after a settle, both with the same Authorization header (the proxy JWT), so the client's work per
# request is the same.
proxy_metrics() { # proxy_metrics: the broker's proxy_* lines of /metrics (empty when absent)
    curl -sf "http://127.0.0.1:$PORT/metrics" | { grep '^proxy_' || true; }
}
proxy_fail() { # proxy_fail NAME MESSAGE: note why the step did not measure, and go on with the run
    local msg
    msg=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")
    echo "bench: $1: proxy step failed: $2" >&2
    record "{\"backend\":\"$1\",\"test\":\"proxy_error\",\"error\":$msg}"
    stop_broker
}
bench_proxy() { # bench_proxy NAME
    local name=$1 blog="$WORK/broker-$name-proxy.log" upstream="http://127.0.0.1:$CEIL_PORT"
    local exp resp id code body i jd jp c0 c cpu_d u0 ud up m0 m1 sd sp mrec
    log "$name: proxy: broker with providers.fake.api_base_urls = [\"$upstream\"] (--config-dir $PROXY_CONF_DIR --env $PROXY_ENV)"
    if ! curl -sf -o /dev/null "$upstream/healthz"; then
        proxy_fail "$name" "the upstream (bare axum at $upstream) does not answer"
        return 0
    fi
    if ! START_SOFT=1 TOKEN_BROKER_CONFIG_DIR="$PROXY_CONF_DIR" TOKEN_BROKER_ENV="$PROXY_ENV" start_broker "$blog"; then
        proxy_fail "$name" "the broker did not start with $PROXY_CONF_DIR/$PROXY_ENV.toml: $(tail -c 300 "$blog" | tr '\n' ' ')"
        return 0
    fi
    exp=$(( $(now_ms) + 86400000 ))
    resp=$(curl -s -w '\n%{http_code}' -X PUT "http://127.0.0.1:$PORT/v1/tokens" \
        -H "Authorization: Bearer $PROXY_JWT" -H "Content-Type: application/json" \
        -d "{\"user_name\":\"proxy-bench@bench.example\",\"provider\":\"fake\",\"refresh_token\":\"proxy.r\",\"access_token\":\"proxy.a\",\"expiry_time\":$exp,\"api_domain\":\"$upstream\"}") || true
    code=$(echo "$resp" | tail -n1)
    id=$(echo "$resp" | sed '$d' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null) || id=""
    if [ -z "$id" ] || [ "${code:0:1}" != 2 ]; then
        proxy_fail "$name" "PUT /v1/tokens answered $code: $(echo "$resp" | sed '$d' | head -c 300)"
        return 0
    fi
    # One call first: a build without the route answers 404 "no such endpoint"; a config without the
    # upstream 403 upstream_not_allowed.
    body="$WORK/proxy-check-$name.body"
    code=$(curl -s -o "$body" -w '%{http_code}' -H "Authorization: Bearer $PROXY_JWT" \
        "http://127.0.0.1:$PORT/v1/proxy/$id/healthz") || code="curl failed"
    if [ "$code" != 200 ] || [ "$(cat "$body")" != ok ]; then
        proxy_fail "$name" "GET /v1/proxy/$id/healthz answered $code: $(head -c 300 "$body" | tr '\n' ' ')$(grep -q 'no such endpoint' "$body" && echo ' (a build without the proxy route: stale binary?)')"
        return 0
    fi
    echo "proxy: token $id, GET /v1/proxy/$id/healthz -> 200 ok" >&2
    for i in $(seq "$PAIRS"); do
        settle; sd=$SETTLED_MS
        log "$name: proxy round $i/$PAIRS: direct GET $upstream/healthz (bare axum), $CONNS connections, ${DURATION}s"
        c0=$(cpu_ms "$BROKER_PID"); u0=$(cpu_ms "$CEIL_PID")
        jd=$(TB_JWT="$PROXY_JWT" run_wrk access.lua healthz "$CONNS" "$DURATION" "$CEIL_PORT"); summ "$jd" >&2
        cpu_d=$(( $(cpu_ms "$BROKER_PID") - c0 )); ud=$(( $(cpu_ms "$CEIL_PID") - u0 ))
        echo "  upstream CPU ${ud} ms; broker CPU meanwhile ${cpu_d} ms" >&2
        settle; sp=$SETTLED_MS
        if [ "$REWARM" -gt 0 ]; then
            log "$name: proxy round $i/$PAIRS: ${REWARM}s unmeasured GET /v1/proxy/{id}/healthz"
            TB_JWT="$PROXY_JWT" TB_PROXY_ID="$id" run_wrk access.lua proxy "$CONNS" "$REWARM" >/dev/null
        fi
        log "$name: proxy round $i/$PAIRS: GET /v1/proxy/$id/healthz through the broker, $CONNS connections, ${DURATION}s"
        m0=$(proxy_metrics)
        c0=$(cpu_ms "$BROKER_PID"); u0=$(cpu_ms "$CEIL_PID")
        jp=$(TB_JWT="$PROXY_JWT" TB_PROXY_ID="$id" run_wrk access.lua proxy "$CONNS" "$DURATION"); summ "$jp" >&2
        c=$(( $(cpu_ms "$BROKER_PID") - c0 )); up=$(( $(cpu_ms "$CEIL_PID") - u0 ))
        m1=$(proxy_metrics)
        # The broker's own count of the proxied calls by upstream status, and its mean time per call
        # (proxy_request_duration_seconds: token lookup to the upstream's status and headers).
        mrec=$(python3 - "$m0" "$m1" <<'PY'
import json, re, sys
def parse(text):
    d = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)(\{[^}]*\})?\s+(\S+)$', line.strip())
        if m:
            d[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return d
a, b = parse(sys.argv[1]), parse(sys.argv[2])
delta = lambda k: b.get(k, 0) - a.get(k, 0)
statuses = {}
for (name, labels), _ in b.items():
    if name == "proxy_requests_total":
        s = re.search(r'status="([^"]*)"', labels)
        n = int(delta((name, labels)))
        if s and n:
            statuses[s.group(1)] = statuses.get(s.group(1), 0) + n
dsum = sum(delta(k) for k in b if k[0] == "proxy_request_duration_seconds_sum")
dcnt = sum(delta(k) for k in b if k[0] == "proxy_request_duration_seconds_count")
replays = sum(delta(k) for k in b if k[0] == "proxy_replays_total")
print(json.dumps({"statuses": statuses, "mean_us": round(dsum / dcnt * 1e6, 1) if dcnt else None,
                  "calls": int(dcnt), "replays": int(replays)}))
PY
) || mrec='null'
        echo "  broker CPU ${c} ms; upstream CPU ${up} ms; broker's proxy metrics: $mrec" >&2
        record "{\"backend\":\"$name\",\"test\":\"proxy\",\"pair\":$i,\"conns\":$CONNS,\"settle_direct_ms\":$sd,\"settle_ms\":$sp,\"broker_cpu_ms\":$c,\"broker_cpu_direct_ms\":$cpu_d,\"upstream_cpu_direct_ms\":$ud,\"upstream_cpu_ms\":$up,\"broker_metrics\":$mrec,\"direct\":$jd,\"proxied\":$jp}"
    done
    stop_broker
}

bench_backend() { # bench_backend NAME URL
    local name=$1 url=$2 j
    export TOKEN_BROKER__DATABASE__URL="$url"
    # Each backend starts from a fresh database imported under k1 (bench_rotate adds k2).
    export TOKEN_BROKER__CRYPTO__ACTIVE_KEY_ID=k1
    unset TOKEN_BROKER__CRYPTO__KEYS__K2
    local blog="$WORK/broker-$name.log"

    log "$name: import $TOKENS tokens (token-broker import zoho-csv)"
    local t0 t1 import_ms
    t0=$(date +%s%N)
    "${PIN_BROKER[@]}" "$BIN" import zoho-csv "$SEED_CSV" >"$WORK/import-$name.log"
    t1=$(date +%s%N)
    import_ms=$(( (t1 - t0) / 1000000 ))
    cat "$WORK/import-$name.log" >&2
    echo "import: $TOKENS rows in $(( import_ms / 1000 )).$(( import_ms % 1000 / 100 )) s, $(( TOKENS * 1000 / (import_ms > 0 ? import_ms : 1) )) rows/s" >&2
    record "{\"backend\":\"$name\",\"test\":\"import\",\"rows\":$TOKENS,\"ms\":$import_ms}"

    check_quiet "$name"
    log "$name: start (log.filter=warn)"
    start_broker "$blog"
    sleep 1
    local rss_idle
    rss_idle=$(rss_kib "$BROKER_PID")
    record "{\"backend\":\"$name\",\"test\":\"start\",\"started_ms\":$STARTED_MS,\"rss_idle_kib\":$rss_idle}"
    curl -sf "http://127.0.0.1:$PORT/v1/tokens/bench-tok-00001/access-token" \
        -H "Authorization: Bearer $JWT" >/dev/null || die "$name: the hot path does not answer 200"

    log "$name: warm-up = hot path cold: every token in turn (first use: cache miss, last_used_at write)"
    j=$(TB_SWEEP_START=0 run_wrk access.lua sweep "$CONNS" "$WARMUP"); summ "$j" >&2
    record "{\"backend\":\"$name\",\"test\":\"hot_cold\",\"seconds\":$WARMUP,\"wrk\":$j}"
    # With many tokens the warm-up may not reach them all: go on in order from where it stopped
    # until every token was asked for once (only then is the RSS "all tokens cached").
    local rss_warm
    SWEPT=$(jfield "$j" requests); SWEEP_MS=$(( $(jfield "$j" duration_us | cut -d. -f1) / 1000 )); SWEEP_ERRORS=0
    sweep_on "$IDS" "$TOKENS" "$name: warm-up continues"
    rss_warm=$(rss_kib "$BROKER_PID")
    record "{\"backend\":\"$name\",\"test\":\"warm_all\",\"tokens\":$TOKENS,\"requests\":$SWEPT,\"ms\":$SWEEP_MS,\"rss_idle_kib\":$rss_idle,\"rss_warm_kib\":$rss_warm}"
    echo "warm-up: $SWEPT requests in $SWEEP_MS ms; RSS idle $rss_idle KiB, after asking for all $TOKENS tokens $rss_warm KiB" >&2

    local hits=0 miss=0 rss_hot="" hwm_hot i c0 c
    # measure_hot TEST ROUND IDS_FILE REWARM_SECONDS: wait for the broker to go idle, warm the
    # cache up (unmeasured) over the same ids, then one measured hot-path run with the token
    # cache's hits and misses during it
    measure_hot() {
        local h0 m0 h m nids c0 c
        nids=$(wc -l <"$3")
        settle
        if [ "$4" -gt 0 ]; then
            log "$name: round $2/$PAIRS: ${4}s unmeasured warm-up over $nids tokens"
            TB_IDS="$3" run_wrk access.lua access "$CONNS" "$4" >/dev/null
        fi
        log "$name: round $2/$PAIRS: hot path GET /v1/tokens/{id}/access-token over $nids tokens, $CONNS connections, ${DURATION}s"
        h0=$(metric 'token_cache_total{result="hit"}'); m0=$(metric 'token_cache_total{result="miss"}')
        c0=$(cpu_ms "$BROKER_PID")
        j=$(TB_IDS="$3" run_wrk access.lua access "$CONNS" "$DURATION"); summ "$j" >&2
        c=$(( $(cpu_ms "$BROKER_PID") - c0 ))
        h=$(( $(metric 'token_cache_total{result="hit"}') - h0 )); m=$(( $(metric 'token_cache_total{result="miss"}') - m0 ))
        echo "  token cache: $h hits, $m misses; broker CPU ${c} ms" >&2
        record "{\"backend\":\"$name\",\"test\":\"$1\",\"pair\":$2,\"ids\":$nids,\"settle_ms\":$SETTLED_MS,\"cache_hits\":$h,\"cache_misses\":$m,\"broker_cpu_ms\":$c,\"wrk\":$j}"
        if [ "$1" = hot ]; then hits=$(( hits + h )); miss=$(( miss + m )); fi
    }
    for i in $(seq "$PAIRS"); do
        # Each hot-path run after the first starts with an unmeasured warm-up over its own ids: the
        # runs before it outlast the token cache's time to live, and without this every run would
        # measure a cold start (that is the row above).
        measure_hot hot "$i" "$IDS" "$([ "$i" -gt 1 ] && echo "$REWARM" || echo 0)"
        [ -n "$rss_hot" ] || rss_hot=$(rss_kib "$BROKER_PID")
        if [ "$SCALE" = 1 ]; then measure_hot hot_subset "$i" "$IDS_SUB" "$REWARM"; fi
        settle
        log "$name: round $i/$PAIRS: broker GET /healthz, $CONNS connections, ${DURATION}s"
        c0=$(cpu_ms "$BROKER_PID")
        j=$(run_wrk access.lua healthz "$CONNS" "$DURATION"); summ "$j" >&2
        c=$(( $(cpu_ms "$BROKER_PID") - c0 ))
        record "{\"backend\":\"$name\",\"test\":\"healthz\",\"pair\":$i,\"settle_ms\":$SETTLED_MS,\"broker_cpu_ms\":$c,\"wrk\":$j}"
        if [ "$CEILING" = 1 ]; then
            # The broker stays up, idle (settle waited for that); its CPU meanwhile shows any
            # background work still competing with the ceiling.
            settle
            log "$name: round $i/$PAIRS: bare axum GET /healthz (bench/ceiling), $CONNS connections, ${DURATION}s"
            c0=$(cpu_ms "$BROKER_PID")
            j=$(run_wrk access.lua healthz "$CONNS" "$DURATION" "$CEIL_PORT"); summ "$j" >&2
            c=$(( $(cpu_ms "$BROKER_PID") - c0 ))
            echo "  broker CPU meanwhile: ${c} ms" >&2
            record "{\"backend\":\"$name\",\"test\":\"ceiling\",\"pair\":$i,\"settle_ms\":$SETTLED_MS,\"broker_cpu_ms\":$c,\"wrk\":$j}"
        fi
    done
    hwm_hot=$(hwm_kib "$BROKER_PID")
    record "{\"backend\":\"$name\",\"test\":\"cache\",\"cache_hits\":$hits,\"cache_misses\":$miss}"
    record "{\"backend\":\"$name\",\"test\":\"memory\",\"rss_after_hot_kib\":$rss_hot,\"hwm_after_hot_kib\":$hwm_hot,\"rss_after_healthz_kib\":$(rss_kib "$BROKER_PID")}"

    if [ "$PAGING" = 1 ]; then
        # Listing every row: the CLI (its own process on the same database, pages of max_page_size)
        # and GET /v1/tokens followed cursor by cursor. Before the write path, so exactly $TOKENS rows.
        log "$name: token-broker tokens list (all $TOKENS rows, output to /dev/null)"
        t0=$(date +%s%N)
        "${PIN_BROKER[@]}" "$BIN" tokens list >/dev/null
        t1=$(date +%s%N)
        echo "tokens list: $(( (t1 - t0) / 1000000 )) ms" >&2
        record "{\"backend\":\"$name\",\"test\":\"cli_list\",\"rows\":$TOKENS,\"ms\":$(( (t1 - t0) / 1000000 ))}"
        log "$name: GET /v1/tokens?limit=$PAGE_LIMIT, every page in turn (next_cursor)"
        local pj
        pj=$("${PIN_LOAD[@]}" python3 "$BENCH/paging.py" --port "$PORT" --jwt "$JWT" --limit "$PAGE_LIMIT" |
            sed -n 's/^PAGEJSON //p')
        echo "$pj" >&2
        [ -n "$pj" ] || die "$name: the GET /v1/tokens walk failed"
        record "{\"backend\":\"$name\",\"test\":\"paging\",\"paging\":$pj}"
    fi

    log "$name: write path PUT /v1/tokens, new users (insert), $WRITE_CONNS connections"
    j=$(run_wrk save.lua insert "$WRITE_CONNS" "$DURATION"); summ "$j" >&2
    record "{\"backend\":\"$name\",\"test\":\"save_insert\",\"wrk\":$j}"
    log "$name: write path PUT /v1/tokens, existing users (update), $WRITE_CONNS connections"
    j=$(run_wrk save.lua update "$WRITE_CONNS" "$DURATION"); summ "$j" >&2
    record "{\"backend\":\"$name\",\"test\":\"save_update\",\"wrk\":$j}"

    log "$name: refresh storm, $STORM_N callers on one expired token (provider delay ${PROVIDER_DELAY_MS} ms)"
    local expired storm_id
    expired=$(( $(now_ms) - 3600000 ))
    storm_id=$(curl -sf -X PUT "http://127.0.0.1:$PORT/v1/tokens" -H "Authorization: Bearer $JWT" \
        -H "Content-Type: application/json" \
        -d "{\"user_name\":\"storm-$RUN_ID@bench.example\",\"provider\":\"fake\",\"refresh_token\":\"storm.r.$RUN_ID\",\"access_token\":\"storm.a.old\",\"expiry_time\":$expired}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    local sj rc=0
    sj=$("${PIN_LOAD[@]}" python3 "$BENCH/storm.py" --port "$PORT" --jwt "$JWT" --token-id "$storm_id" \
        --n "$STORM_N" --provider "$PROVIDER_URL" | sed -n 's/^STORMJSON //p') || rc=$?
    echo "$sj" >&2
    [ -n "$sj" ] || sj='{"error":"storm client failed"}'
    record "{\"backend\":\"$name\",\"test\":\"storm\",\"ok\":$([ $rc = 0 ] && echo true || echo false),\"storm\":$sj}"
    stop_broker

    # The proxy against calling its upstream directly (its own broker, the same database).
    if [ "$PROXY" = 1 ] && [ -n "$PROXY_JWT" ]; then bench_proxy "$name"; fi

    # After the main steps (their figures are not affected): re-encrypt every row, then the wave.
    if [ "$ROTATE" = 1 ]; then bench_rotate "$name"; fi
    if [ "$WAVE" = 1 ]; then bench_wave "$name"; fi

    case " $VARIANT_BACKENDS " in *" $name "*) ;; *) return 0 ;; esac
    [ "$VARIANTS" = 1 ] || return 0
    if [ "$CAN_PIN" = 1 ] && [ "$MAIN_PIN" = off ]; then
        log "$name: pinned variant: broker on CPU 0, wrk on CPU 1"
        pin on
        start_broker "$blog"
        j=$(run_wrk access.lua sweep "$CONNS" "$WARMUP") # warm-up
        j=$(run_wrk access.lua access "$CONNS" "$DURATION"); summ "$j" >&2
        record "{\"backend\":\"$name\",\"test\":\"hot_pinned\",\"wrk\":$j}"
        j=$(run_wrk access.lua healthz "$CONNS" "$DURATION"); summ "$j" >&2
        record "{\"backend\":\"$name\",\"test\":\"healthz_pinned\",\"wrk\":$j}"
        stop_broker
        pin "$MAIN_PIN"
    fi
    log "$name: hot path with log.filter=info (request logs to a file)"
    TOKEN_BROKER__LOG__FILTER=info start_broker "$WORK/broker-$name-info.log"
    j=$(run_wrk access.lua sweep "$CONNS" "$WARMUP") # warm-up
    j=$(run_wrk access.lua access "$CONNS" "$DURATION"); summ "$j" >&2
    record "{\"backend\":\"$name\",\"test\":\"hot_info\",\"wrk\":$j}"
    j=$(run_wrk access.lua healthz "$CONNS" "$DURATION"); summ "$j" >&2
    record "{\"backend\":\"$name\",\"test\":\"healthz_info\",\"wrk\":$j}"
    stop_broker
}

# ---------------------------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "start-up: exec -> first 200 on /healthz, fresh SQLite database, 7 runs"
SJ=$(python3 "$BENCH/startup.py" --bin "$BIN" --runs 7 | sed -n 's/^STARTJSON //p')
echo "$SJ" >&2
record "{\"backend\":\"sqlite\",\"test\":\"startup\",\"startup\":$SJ}"

for backend in $BACKENDS; do
    case $backend in
    sqlite)
        mkdir -p "$WORK/sqlite"
        bench_backend sqlite "sqlite://$WORK/sqlite/broker.db?mode=rwc"
        ;;
    postgres)
        db="tb_bench_${RUN_ID}"
        if psql "$PG_ADMIN_URL" -qAtc "CREATE DATABASE $db" >/dev/null; then
            PG_DBS+=("$db")
            bench_backend postgres "${PG_ADMIN_URL%/*}/$db"
        else
            echo "bench: PostgreSQL at $PG_ADMIN_URL unreachable; skipped" >&2
            record '{"backend":"postgres","test":"skipped"}'
        fi
        ;;
    mysql)
        db="tb_bench_${RUN_ID}"
        if mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -e "CREATE DATABASE $db" >/dev/null; then
            MY_DBS+=("$db")
            bench_backend mysql "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$db"
        else
            echo "bench: MariaDB at $MYSQL_HOST:$MYSQL_PORT unreachable; skipped" >&2
            record '{"backend":"mysql","test":"skipped"}'
        fi
        ;;
    *) die "unknown backend $backend (sqlite, postgres, mysql)" ;;
    esac
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
check_quiet "end"

# ---------------------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT (+ uncommitted changes in src/)"
fi
python3 "$BENCH/report.py" "$RESULTS" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
    --meta "commit=$COMMIT" \
    --meta "binary=$([ -n "${BROKER_BIN:-}" ] && echo "$BIN (BROKER_BIN; not necessarily this commit)" || echo "release build of this checkout")" \
    --meta "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --meta "nproc=$NPROC" \
    --meta "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
    --meta "kernel=$(uname -r)" \
    --meta "load=$LOAD_BEFORE before, $LOAD_AFTER after (1/5/15-min load averages); CPU busy with other processes just before each backend (1 s sample): ${BUSY_NOTES[*]}" \
    --meta "pinning=$PIN_NOTE" \
    --meta "main_config=$([ "$MAIN_PIN" = on ] && echo "main run (pinned, log.filter=warn)" || echo "main run (2 cores shared, log.filter=warn)")" \
    --meta "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), 1 thread, --latency; hot path $CONNS connections, write path $WRITE_CONNS; ${DURATION} s per measurement after a ${WARMUP} s warm-up; main run: $PAIRS rounds of hot path$([ "$SCALE" = 1 ] && echo " (all $TOKENS tokens, then the first $HOT_SUBSET)") + broker /healthz$([ "$CEILING" = 1 ] && echo " + bare axum /healthz"), the round with the median ratio reported$([ "$PROXY" = 1 ] && [ -n "$PROXY_JWT" ] && echo "; proxy step: $PAIRS rounds of bare axum GET /healthz directly + GET /v1/proxy/{id}/healthz through the broker (after ${REWARM} s unmeasured), $CONNS connections, the round with the median added p50 reported")" \
    --meta "postgres=$(psql "$PG_ADMIN_URL" -qAtc 'show server_version' 2>/dev/null || echo n/a)" \
    --meta "mariadb=$(mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -Nse 'select version()' 2>/dev/null || echo n/a)" \
    --meta "overrides=${USER_OVERRIDES:-none}${AUTO_SETTINGS:+; $AUTO_SETTINGS}" \
    --meta "command=bench/run.sh (BACKENDS=\"$BACKENDS\" DURATION=$DURATION WARMUP=$WARMUP REWARM=$REWARM PAIRS=$PAIRS CONNS=$CONNS WRITE_CONNS=$WRITE_CONNS TOKENS=$TOKENS HOT_SUBSET=$HOT_SUBSET CEILING=$CEILING PROXY=$PROXY PAGING=$PAGING PAGE_LIMIT=$PAGE_LIMIT SETTLE_MAX=$SETTLE_MAX STORM_N=$STORM_N PROVIDER_DELAY_MS=$PROVIDER_DELAY_MS BENCH_PIN=$BENCH_PIN VARIANTS=$VARIANTS ROTATE=$ROTATE WAVE=$WAVE WAVE_N=$WAVE_N WAVE_CAP=$WAVE_CAP WAVE_DELAY_MS=$WAVE_DELAY_MS)" \
    --meta "tokens=$TOKENS" --meta "hot_subset=$HOT_SUBSET" --meta "rewarm=$REWARM" --meta "settle_max=$SETTLE_MAX" \
    --meta "provider_delay_ms=$PROVIDER_DELAY_MS" \
    --meta "proxy=$([ "$PROXY" = 1 ] && { [ -n "$PROXY_NOTE" ] && echo "$PROXY_NOTE" || echo "on"; } || echo "off (PROXY=0)")" \
    >"$BENCH/results-latest.md"
cp "$RESULTS" "$BENCH/results-latest.jsonl"
echo
cat "$BENCH/results-latest.md"
