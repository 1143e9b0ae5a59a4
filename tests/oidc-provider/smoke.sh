#!/usr/bin/env bash
# Smoke test of the oidc-provider harness, with curl only (plus node for
# JSON/PKCE helpers). Starts server.mjs on a free loopback port, runs the
# authorization-code + PKCE flow without a browser, exchanges codes with
# client_secret_basic and client_secret_post, shows refresh-token rotation and
# revocation, then stops the server. Exits non-zero on the first failure.
#
#   bash tests/oidc-provider/smoke.sh        (runs `npm ci` first if needed)
#   SMOKE_VERBOSE=1 bash ...                 (also print response bodies)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

PASSED=0
say()  { printf '%s\n' "$*"; }
ok()   { PASSED=$((PASSED + 1)); say "  ok  $*"; }
fail() { say "  FAIL $*"; say "0 passed, 1 failed (after ${PASSED} passed checks)"; exit 1; }
vlog() { if [[ "${SMOKE_VERBOSE:-}" == 1 ]]; then say "       $*"; fi; }

command -v curl >/dev/null || fail "curl not found"
command -v node >/dev/null || fail "node not found"

if [[ ! -d node_modules/oidc-provider ]]; then
  say "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$TMP/server.stderr" ]]; then
    say "---- server stderr (last 30 lines) ----"
    tail -n 30 "$TMP/server.stderr" || true
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers --
# jget PATH FILE  -> prints the JSON value at dotted PATH ('' when absent)
jget() {
  node -e '
    const o = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
    const v = process.argv[1].split(".").reduce((a, k) => (a == null ? a : a[k]), o);
    process.stdout.write(v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  ' "$1" "$2"
}
# form-urlencode (application/x-www-form-urlencoded, RFC 6749 Appendix B)
formenc() { node -e 'process.stdout.write(new URLSearchParams({ x: process.argv[1] }).toString().slice(2))' "$1"; }
# query parameter NAME of URL
qparam() { node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get(process.argv[2]) ?? "")' "$1" "$2"; }
# PKCE: prints "<verifier> <S256 challenge>"
pkce() {
  node -e '
    const c = require("crypto");
    const v = c.randomBytes(32).toString("base64url");
    process.stdout.write(v + " " + c.createHash("sha256").update(v).digest("base64url"));'
}

# http NAME curl-args... : body -> $TMP/NAME.json, sets STATUS
http() {
  local name="$1"; shift
  STATUS="$(curl -sS -o "$TMP/$name.json" -w '%{http_code}' "$@")"
  BODY="$TMP/$name.json"
  vlog "$name -> $STATUS $(head -c 400 "$BODY")"
}

expect_status() { [[ "$STATUS" == "$1" ]] || fail "$2: expected HTTP $1, got $STATUS: $(head -c 400 "$BODY")"; }
expect_error() { # STATUS ERROR what
  expect_status "$1" "$3"
  local e; e="$(jget error "$BODY")"
  [[ "$e" == "$2" ]] || fail "$3: expected error=$2, got: $(head -c 400 "$BODY")"
  ok "$3 -> HTTP $STATUS $(head -c 300 "$BODY")"
}

# authorize JAR CLIENT_ID [LOGIN_HINT [EXTRA_QUERY]]
# Follows the redirect chain by hand (cookie jar JAR) until the Location is the
# redirect_uri; sets CODE and VERIFIER, and HOPS (number of requests).
authorize() {
  local jar="$1" client="$2" hint="${3:-}" extra="${4:-}"
  local v_c state url hop loc status
  v_c="$(pkce)"; VERIFIER="${v_c% *}"
  state="st-$RANDOM$RANDOM"
  url="$ISSUER/auth?response_type=code&client_id=$(formenc "$client")&redirect_uri=$(formenc "$REDIRECT_URI")"
  url+="&scope=$(formenc 'openid offline_access')&state=$state&code_challenge=${v_c#* }&code_challenge_method=S256"
  if [[ -n "$hint" ]]; then url+="&login_hint=$(formenc "$hint")"; fi
  if [[ -n "$extra" ]]; then url+="&$extra"; fi
  HOPS=0
  for hop in 1 2 3 4 5 6; do
    HOPS=$hop
    : >"$TMP/headers"
    status="$(curl -sS -o /dev/null -D "$TMP/headers" -b "$jar" -c "$jar" -w '%{http_code}' "$url")"
    loc="$(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Ll]ocation: //p')"
    say "       hop $hop: GET ${url%%\?*} -> $status; set-cookie: $(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Ss]et-[Cc]ookie: \([^=]*\)=[^;]*;.*path=\([^;]*\).*/\1(path=\2)/p' | tr '\n' ' ')"
    [[ "$status" == 302 || "$status" == 303 ]] || fail "authorize hop $hop: expected a redirect, got $status"
    [[ -n "$loc" ]] || fail "authorize hop $hop: no Location"
    case "$loc" in
      "$REDIRECT_URI"\?*)
        say "       -> ${loc%%\?*}?$(sed 's/^[^?]*?//; s/code=[^&]*/code=<redacted>/' <<<"$loc")"
        [[ "$(qparam "$loc" state)" == "$state" ]] || fail "state mismatch in $loc"
        [[ -z "$(qparam "$loc" error)" ]] || fail "authorization error: $loc"
        CODE="$(qparam "$loc" code)"
        [[ -n "$CODE" ]] || fail "no code in redirect"
        return 0 ;;
      /*) url="$ISSUER$loc" ;;
      *)  url="$loc" ;;
    esac
  done
  fail "authorize: redirect_uri not reached after $HOPS hops"
}

basic_header() { # CLIENT_ID SECRET -> Authorization header value (RFC 6749 2.3.1)
  printf 'Basic %s' "$(printf '%s:%s' "$(formenc "$1")" "$(formenc "$2")" | base64 -w0)"
}

check_token_response() { # what
  expect_status 200 "$1"
  local at rt tt ei
  at="$(jget access_token "$BODY")"; rt="$(jget refresh_token "$BODY")"
  tt="$(jget token_type "$BODY")";   ei="$(jget expires_in "$BODY")"
  [[ -n "$at" && -n "$rt" ]] || fail "$1: access_token/refresh_token missing: $(cat "$BODY")"
  [[ "$tt" == Bearer ]] || fail "$1: token_type=$tt"
  [[ "$ei" == "$ACCESS_TOKEN_TTL" ]] || fail "$1: expires_in=$ei, expected $ACCESS_TOKEN_TTL"
  ok "$1 -> 200 {$(node -e '
    const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    process.stdout.write(Object.entries(o).map(([k, v]) => `${k}: ${/token$/.test(k) ? `<${String(v).length} chars>` : JSON.stringify(v)}`).join(", "));
  ' "$BODY")}"
}

# ------------------------------------------------------------ the server --
CLIENT_SECRET='s3cr3t +/=&%?'     # see README: the library rejects non-ASCII ('é')
ACCESS_TOKEN_TTL=30
REDIRECT_URI="http://127.0.0.1:9/v1/oauth/callback"   # never contacted
export ACCESS_TOKEN_TTL REDIRECT_URIS="$REDIRECT_URI,http://127.0.0.1:8080/v1/oauth/callback"

say "== start server.mjs (port 0)"
mkfifo "$TMP/stdin"
node server.mjs 0 <"$TMP/stdin" >"$TMP/server.stdout" 2>"$TMP/server.stderr" &
SERVER_PID=$!
exec 3>"$TMP/stdin"     # the server's stdin stays open while this script runs
ISSUER=""
for _ in $(seq 1 100); do
  if read -r first <"$TMP/server.stdout" 2>/dev/null && [[ "$first" == READY\ * ]]; then
    ISSUER="${first#READY }"; break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited early"
  sleep 0.1
done
[[ "$ISSUER" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || fail "no READY line within 10s"
ok "READY line: READY $ISSUER"

say "== discovery"
http disco "$ISSUER/.well-known/openid-configuration"
expect_status 200 discovery
for kv in "issuer=$ISSUER" "authorization_endpoint=$ISSUER/auth" "token_endpoint=$ISSUER/token" \
          "revocation_endpoint=$ISSUER/token/revocation" "code_challenge_methods_supported=[\"S256\"]"; do
  got="$(jget "${kv%%=*}" "$BODY")"
  [[ "$got" == "${kv#*=}" ]] || fail "discovery ${kv%%=*}=$got, expected ${kv#*=}"
done
ok "discovery: authorize=$ISSUER/auth token=$ISSUER/token revocation=$ISSUER/token/revocation"
http disco8414 "$ISSUER/.well-known/oauth-authorization-server"
expect_status 200 "RFC 8414 metadata"
ok "RFC 8414 path /.well-known/oauth-authorization-server -> 200"

say "== PKCE is required"
curl -sS -o /dev/null -D "$TMP/h" "$ISSUER/auth?response_type=code&client_id=broker-client&redirect_uri=$(formenc "$REDIRECT_URI")&scope=openid&state=s1"
loc="$(tr -d '\r' <"$TMP/h" | sed -n 's/^[Ll]ocation: //p')"
[[ "$(qparam "$loc" error)" == invalid_request ]] || fail "authorize without code_challenge: $loc"
ok "authorize without code_challenge -> 303 to redirect_uri?error=invalid_request&error_description=$(qparam "$loc" error_description | head -c 80)"

say "== flow A: broker-client (client_secret_basic), login_hint=bob@example.com"
authorize "$TMP/jarA" broker-client bob@example.com
(( HOPS == 3 )) || fail "expected 3 hops (auth, interaction, resume), got $HOPS"
ok "code obtained after $HOPS hops"
AUTH_BASIC="$(basic_header broker-client "$CLIENT_SECRET")"

http badsecret "$ISSUER/token" -H "Authorization: $(basic_header broker-client 'wrong')" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER"
expect_error 401 invalid_client "token with wrong secret"
http rawbasic "$ISSUER/token" -H "Authorization: Basic $(printf '%s:%s' broker-client "$CLIENT_SECRET" | base64 -w0)" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER"
expect_error 400 invalid_request "token with NOT url-encoded secret in Basic"
http badverifier "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$(pkce | cut -d' ' -f1)"
expect_error 400 invalid_grant "token with wrong code_verifier"
# a failed PKCE check does not consume the code:
http tokA "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER"
check_token_response "code exchange (client_secret_basic)"
AT1="$(jget access_token "$BODY")"; RT1="$(jget refresh_token "$BODY")"
[[ "$(jget scope "$BODY")" == "openid" ]] || fail "scope=$(jget scope "$BODY")"
[[ -n "$(jget id_token "$BODY")" ]] || fail "no id_token"
ok "without prompt=consent the library drops offline_access: scope=\"openid\" (a refresh token is issued anyway)"

http userinfo "$ISSUER/me" -H "Authorization: Bearer $AT1"
expect_status 200 userinfo
[[ "$(jget sub "$BODY")" == bob@example.com ]] || fail "userinfo sub: $(cat "$BODY")"
ok "userinfo with access token -> 200 $(cat "$BODY")"

say "== refresh-token rotation"
http ref1 "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RT1"
check_token_response "refresh RT1"
RT2="$(jget refresh_token "$BODY")"
[[ "$RT2" != "$RT1" ]] || fail "refresh token was not rotated"
ok "rotated: RT2 != RT1"
http ref2 "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RT2"
check_token_response "refresh RT2"
RT3="$(jget refresh_token "$BODY")"
http ref1again "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RT1"
expect_error 400 invalid_grant "reuse of rotated RT1"
http ref3 "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RT3"
expect_error 400 invalid_grant "RT3 after RT1 reuse (reuse detection revoked the whole grant)"

say "== flow B: broker-client, fresh cookie jar, no login_hint -> alice@example.com; revocation"
authorize "$TMP/jarB" broker-client
http tokB "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER"
check_token_response "code exchange (flow B)"
ATB="$(jget access_token "$BODY")"; RTB="$(jget refresh_token "$BODY")"
http userinfoB "$ISSUER/me" -H "Authorization: Bearer $ATB"
[[ "$STATUS" == 200 && "$(jget sub "$BODY")" == alice@example.com ]] || fail "userinfo B: $STATUS $(cat "$BODY")"
ok "default account -> $(cat "$BODY")"
http revbad "$ISSUER/token/revocation" -H "Authorization: $(basic_header broker-client wrong)" \
  --data-urlencode "token=$RTB" --data-urlencode token_type_hint=refresh_token
expect_error 401 invalid_client "revocation with wrong secret"
http rev "$ISSUER/token/revocation" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode "token=$RTB" --data-urlencode token_type_hint=refresh_token
expect_status 200 "revocation"
[[ ! -s "$BODY" ]] || fail "revocation body not empty: $(cat "$BODY")"
ok "revoke RTB -> 200, empty body"
http rev2 "$ISSUER/token/revocation" -H "Authorization: $AUTH_BASIC" --data-urlencode "token=$RTB"
expect_status 200 "revocation of an already revoked token"
ok "revoke RTB again -> 200 (unknown tokens are not an error, RFC 7009)"
http refrev "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RTB"
expect_error 400 invalid_grant "refresh with revoked RTB"
http userinfoB2 "$ISSUER/me" -H "Authorization: Bearer $ATB"
expect_error 401 invalid_token "access token after its refresh token was revoked"

say "== flow C: broker-client-post (client_secret_post), prompt=consent"
authorize "$TMP/jarC" broker-client-post carol@example.com prompt=consent
CODEC="$CODE"; VERC="$VERIFIER"
http postbasic "$ISSUER/token" -H "Authorization: $AUTH_BASIC" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODEC" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERC"
expect_error 400 invalid_grant "broker-client-post's code redeemed by broker-client (client mismatch; code not consumed)"
http tokC "$ISSUER/token" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODEC" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERC" \
  --data-urlencode client_id=broker-client-post --data-urlencode "client_secret=$CLIENT_SECRET"
check_token_response "code exchange (client_secret_post)"
RTC="$(jget refresh_token "$BODY")"
[[ "$(jget scope "$BODY")" == "openid offline_access" ]] || fail "scope=$(jget scope "$BODY")"
ok "with prompt=consent: scope=\"openid offline_access\""
http refC "$ISSUER/token" --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RTC" \
  --data-urlencode client_id=broker-client-post --data-urlencode "client_secret=$CLIENT_SECRET"
check_token_response "refresh (client_secret_post)"
RTC2="$(jget refresh_token "$BODY")"
http basicforpost "$ISSUER/token" -H "Authorization: $(basic_header broker-client-post "$CLIENT_SECRET")" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RTC2"
expect_error 401 invalid_client "broker-client-post using client_secret_basic (harness enforces the registered method)"
http postforbasic "$ISSUER/token" --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RTC2" \
  --data-urlencode client_id=broker-client --data-urlencode "client_secret=$CLIENT_SECRET"
expect_error 401 invalid_client "broker-client using client_secret_post"

say "== flow D: same cookie jar as C again -> session + grant exist, no interaction"
authorize "$TMP/jarC" broker-client-post
(( HOPS == 1 )) || fail "expected a direct redirect to redirect_uri, got $HOPS hops"
ok "second authorization with the session cookie: 1 hop"
http tokD "$ISSUER/token" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" \
  --data-urlencode client_id=broker-client-post --data-urlencode "client_secret=$CLIENT_SECRET"
check_token_response "code exchange (flow D)"
http tokDagain "$ISSUER/token" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" \
  --data-urlencode client_id=broker-client-post --data-urlencode "client_secret=$CLIENT_SECRET"
expect_error 400 invalid_grant "code replay"
http refD "$ISSUER/token" --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RTC2" \
  --data-urlencode client_id=broker-client-post --data-urlencode "client_secret=$CLIENT_SECRET"
expect_error 400 invalid_grant "flow C's refresh token after the code replay (replay revokes the grant)"

say "== shutdown"
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[[ $rc -eq 0 ]] || fail "server exit code $rc after SIGTERM"
[[ "$(wc -l <"$TMP/server.stdout")" -eq 1 ]] || fail "stdout had more than the READY line: $(cat "$TMP/server.stdout")"
ok "SIGTERM -> exit 0; stdout was exactly one line"
exec 3>&-

say "$PASSED passed, 0 failed"
