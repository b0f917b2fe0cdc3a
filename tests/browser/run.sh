#!/usr/bin/env bash
# Browser and API tests of the admin UI (ctest: browser_admin, label "browser").
#
#   tests/browser/run.sh [GATEWAYD GATEWAYCTL]
#
# Needs the environment of scripts/check.sh (`make check ARGS="-R browser_admin"`):
# PASSERELLE_TEST_PG (superuser conninfo), PASSERELLE_BUILD (binaries, unless given as
# arguments), PASSERELLE_TEST_TMPDIR (scratch). Uses Debian's chromium (/usr/bin/chromium, or
# PASSERELLE_CHROMIUM) headless with --no-sandbox and never downloads a browser; installs the
# pinned npm packages (package-lock.json) into tests/browser/node_modules when missing.
#
# Like the integration harness (tests/integration/harness.c) it creates a database, writes a
# configuration, sets up two centres and their staff accounts with gatewayctl, starts gatewayd,
# waits for /healthz, runs admin.test.mjs, stops gatewayd with SIGTERM (exit 0 and no
# sanitizer report expected) and drops the database. On failure the logs and the database are
# kept and their paths printed. Screenshots go to $PASSERELLE_TEST_TMPDIR/browser-artifacts
# (PASSERELLE_BROWSER_ARTIFACTS overrides: scripts/check.sh removes its scratch directory at
# the end).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)

log() { printf '[browser_admin] %s\n' "$*" >&2; }
die() { printf '[browser_admin] error: %s\n' "$*" >&2; exit 1; }

[ -n "${PASSERELLE_TEST_PG:-}" ] || die "PASSERELLE_TEST_PG is not set: run this test with \`make check ARGS=\"-R browser_admin\"\` (scripts/check.sh starts a throwaway PostgreSQL and sets the environment)"
[ -n "${PASSERELLE_TEST_TMPDIR:-}" ] || die "PASSERELLE_TEST_TMPDIR is not set: run this test with \`make check ARGS=\"-R browser_admin\"\`"
GATEWAYD=${1:-${PASSERELLE_BUILD:+$PASSERELLE_BUILD/gatewayd/gatewayd}}
GATEWAYCTL=${2:-${PASSERELLE_BUILD:+$PASSERELLE_BUILD/gatewayd/gatewayctl}}
[ -n "$GATEWAYD" ] && [ -x "$GATEWAYD" ] || die "no gatewayd executable ('$GATEWAYD'): pass it as first argument or set PASSERELLE_BUILD"
[ -n "$GATEWAYCTL" ] && [ -x "$GATEWAYCTL" ] || die "no gatewayctl executable ('$GATEWAYCTL')"

CHROMIUM=${PASSERELLE_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || die "$CHROMIUM not found: install Debian's chromium (scripts/deps.sh test)"
command -v node >/dev/null 2>&1 || die "node not found: install Node.js (scripts/deps.sh test)"
command -v psql >/dev/null 2>&1 || die "psql not found (scripts/deps.sh runtime)"
command -v curl >/dev/null 2>&1 || die "curl not found (scripts/deps.sh runtime)"

# ---------------------------------------------------------------- npm packages (pinned)
# Installed when missing or older than package-lock.json; playwright-core has no browser
# download of its own, and we tell it not to try anyway.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -f "$HERE/node_modules/.package-lock.json" ] ||
    [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
    command -v npm >/dev/null 2>&1 || die "npm not found: install it (scripts/deps.sh test)"
    log "installing the pinned npm packages in $HERE/node_modules"
    (cd "$HERE" && { npm ci --no-audit --no-fund --loglevel=error ||
        npm install --no-audit --no-fund --loglevel=error; }) >&2 ||
        die "npm could not install playwright-core and axe-core (is the npm registry reachable?)"
fi

# ---------------------------------------------------------------- scratch, database, config
WORK=$(mktemp -d "$PASSERELLE_TEST_TMPDIR/browser.XXXXXX")
chmod 755 "$WORK"
ARTIFACTS=${PASSERELLE_BROWSER_ARTIFACTS:-$PASSERELLE_TEST_TMPDIR/browser-artifacts}
mkdir -p "$ARTIFACTS"
DB=t_browser_$$
ADMIN_PG="$PASSERELLE_TEST_PG dbname=postgres" # a later keyword wins in a libpq conninfo
CONNINFO="$PASSERELLE_TEST_PG dbname=$DB"
PID=""
STATUS=1

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

sanitizer_report() {
    grep -E -m1 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer|AddressSanitizer:DEADLYSIGNAL' "$WORK/gatewayd.log" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called from the EXIT trap
finish() {
    local rc=$?
    trap - EXIT
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        log "killing gatewayd (pid $PID), still running at the end"
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ "$rc" -eq 0 ] && [ "$STATUS" -eq 0 ]; then
        psql "$ADMIN_PG" -qX -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
            -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null ||
            log "warning: could not drop database $DB"
        rm -rf -- "$WORK"
    else
        if [ -f "$WORK/gatewayd.log" ]; then
            log "----- last 60 lines of $WORK/gatewayd.log -----"
            tail -n 60 "$WORK/gatewayd.log" >&2 || true
            log "----- end -----"
        fi
        log "FAILED: kept the logs and configuration in $WORK and the database $DB"
        [ "$rc" -ne 0 ] || rc=1
    fi
    log "screenshots and reports: $ARTIFACTS"
    exit "$rc"
}
trap finish EXIT

log "database $DB, scratch $WORK"
psql "$ADMIN_PG" -qX -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\"" >/dev/null

PORT=$(free_port)
OPS_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
CONFIG=$WORK/gatewayd.ini
# Times that let a browser see the states: the simulator accepts after 300 ms and reports
# delivery 3 s later; the outbox and the scheduler look often.
cat >"$CONFIG" <<EOF
[gateway]
listen = 127.0.0.1:$PORT
node_id = browser
ops_token = $OPS_TOKEN
[database]
conninfo = $CONNINFO
[log]
level = info
[outbox]
lease_seconds = 5
poll_interval_ms = 100
backoff_base_ms = 100
backoff_max_ms = 1000
[scheduler]
interval_ms = 500
[admin]
www_dir = $REPO/admin/www
[route sim]
driver = sim
latency_ms = 300
dlr_delay_ms = 3000
[route simb]
driver = sim
latency_ms = 20
dlr_delay_ms = 100
EOF
chmod 600 "$CONFIG"

ctl() {
    "$GATEWAYCTL" --config "$CONFIG" "$@" >>"$WORK/gatewayctl.log" 2>&1 ||
        die "gatewayctl $* failed (exit $?); see $WORK/gatewayctl.log: $(tail -n 3 "$WORK/gatewayctl.log")"
}

# Passwords in files only (gatewayctl prints nothing secret when given a file).
password() {
    local f=$WORK/pw-$1
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
    printf '%s' "$f"
}

CENTRE_A="Centre social des Oliviers"
CENTRE_B="Centre social des Tilleuls"
ctl migrate
ctl centre create "$CENTRE_A" --route sim
ctl centre seed "$CENTRE_A"
ctl centre create "$CENTRE_B" --route simb
PW_ADMIN=$(password agnes)
PW_VIEWER=$(password victor)
PW_TARGET=$(password cible)
PW_B=$(password bruno)
PW_STAFF=$(password sami)
ctl staff create "$CENTRE_A" agnes --role admin --name "Agnès Martin" --password-file "$PW_ADMIN"
ctl staff create "$CENTRE_A" victor --role viewer --name "Victor Lenoir" --password-file "$PW_VIEWER"
ctl staff create "$CENTRE_A" cible --role referent --name "Compte attaqué" --password-file "$PW_TARGET"
ctl staff create "$CENTRE_A" sami --role staff --name "Sami Haddad" --password-file "$PW_STAFF"
ctl staff create "$CENTRE_B" bruno --role admin --name "Bruno Petit" --password-file "$PW_B"
if grep -qiE 'password|mot de passe' "$WORK/gatewayctl.log"; then
    die "gatewayctl printed something about a password although it was given in a file: $WORK/gatewayctl.log"
fi

# ---------------------------------------------------------------- gatewayd
log "starting gatewayd on 127.0.0.1:$PORT"
"$GATEWAYD" --config "$CONFIG" >"$WORK/gatewayd.log" 2>&1 &
PID=$!
for i in $(seq 1 300); do
    if ! kill -0 "$PID" 2>/dev/null; then
        wait "$PID" || true
        PID=""
        die "gatewayd exited during start-up; see $WORK/gatewayd.log"
    fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
        break
    fi
    [ "$i" -lt 300 ] || die "GET /healthz did not answer 200 within 30 s"
    sleep 0.1
done

# ---------------------------------------------------------------- the tests
log "running admin.test.mjs (chromium: $CHROMIUM)"
set +e
PASSERELLE_URL="http://127.0.0.1:$PORT" \
    PASSERELLE_CHROMIUM="$CHROMIUM" \
    PASSERELLE_ARTIFACTS="$ARTIFACTS" \
    PASSERELLE_WWW="$REPO/admin/www" \
    PW_ADMIN_FILE="$PW_ADMIN" PW_VIEWER_FILE="$PW_VIEWER" PW_TARGET_FILE="$PW_TARGET" PW_B_FILE="$PW_B" \
    node "$HERE/admin.test.mjs"
STATUS=$?
# the second increment's screens (Emplois, Alertes, Paramètres, import, reminder edit), same
# daemon and database, after the first file
log "running admin-more.test.mjs"
PASSERELLE_URL="http://127.0.0.1:$PORT" \
    PASSERELLE_CHROMIUM="$CHROMIUM" \
    PASSERELLE_ARTIFACTS="$ARTIFACTS" \
    PW_ADMIN_FILE="$PW_ADMIN" PW_VIEWER_FILE="$PW_VIEWER" PW_B_FILE="$PW_B" PW_STAFF_FILE="$PW_STAFF" \
    node "$HERE/admin-more.test.mjs"
MORE=$?
[ "$MORE" -eq 0 ] || STATUS=$MORE
set -e

# ---------------------------------------------------------------- clean stop
log "stopping gatewayd (SIGTERM)"
kill -TERM "$PID"
rc=""
for _ in $(seq 1 300); do
    if ! kill -0 "$PID" 2>/dev/null; then
        rc=0
        wait "$PID" || rc=$?
        break
    fi
    sleep 0.1
done
if [ -z "$rc" ]; then
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
    die "gatewayd did not exit within 30 s of SIGTERM"
fi
PID=""
if [ "$rc" -eq 23 ]; then
    die "gatewayd exited with status 23 after SIGTERM: LeakSanitizer found leaks ($WORK/gatewayd.log)"
fi
[ "$rc" -eq 0 ] || die "gatewayd exited with status $rc after SIGTERM (expected 0)"
bad=$(sanitizer_report)
[ -z "$bad" ] || die "gatewayd's log holds a sanitizer report ('$bad'): $WORK/gatewayd.log"
[ "$STATUS" -eq 0 ] || die "admin.test.mjs or admin-more.test.mjs failed (exit $STATUS)"
log "all browser and API checks passed"
