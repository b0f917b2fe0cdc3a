#!/usr/bin/env bash
# Builds Passerelle and runs a local demo: a private PostgreSQL cluster in var/pg,
# a demo centre and API key, and gatewayd with the simulated SMS route. What
# `make demo` runs. Ctrl-C stops the gateway and the database.
#
#   scripts/demo.sh           build, set up and run the demo (foreground)
#   scripts/demo.sh stop      stop what a killed demo may have left running
#
# Environment: PORT (HTTP port of gatewayd, default 8080), PGPORT (port of the
# demo cluster's unix socket, default 55432).
set -euo pipefail

info() { printf 'passerelle: %s\n' "$*" >&2; }
die() { printf 'passerelle: error: %s\n' "$*" >&2; exit 1; }

ORIG_PWD=$PWD
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"

PORT=${PORT:-8080}
PGPORT=${PGPORT:-55432}
PGCTL=$REPO/scripts/pgctl.sh
BUILD=$REPO/build/release
GATEWAYD=$BUILD/gatewayd/gatewayd
GATEWAYCTL=$BUILD/gatewayd/gatewayctl
VAR=$REPO/var
PGDIR=$VAR/pg
DEMO=$VAR/demo
INI=$DEMO/gatewayd.ini
KEYFILE=$DEMO/api-key
ADMINFILE=$DEMO/admin-login # two lines: login, password
PIDFILE=$DEMO/gatewayd.pid
CENTRE="Centre social démo"
JOBS=2

for v in PORT PGPORT; do
    case "${!v}" in
        '' | *[!0-9]*) die "$v must be a port number, got '${!v}'" ;;
    esac
done

is_root() { [ "$(id -u)" -eq 0 ]; }

# True while process $1 exists and is not a zombie.
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

describe_status() { # exit status of `wait` -> words
    if [ "$1" -gt 128 ]; then
        printf 'killed by signal %s (%s)' "$(($1 - 128))" "$(kill -l "$(($1 - 128))" 2>/dev/null || echo '?')"
    else
        printf 'exit status %s' "$1"
    fi
}

# Stops a gatewayd left running by an earlier demo that was killed (pid file check).
stop_stale_gatewayd() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    rm -f -- "$PIDFILE"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    alive "$pid" || return 0
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    case "$cmdline" in
        *gatewayd*"$INI"*) ;;
        *) return 0 ;; # the pid was reused by something else
    esac
    info "stopping a gatewayd left over from an earlier demo (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        alive "$pid" || return 0
        sleep 0.1
    done
    info "gatewayd (pid $pid) ignored SIGTERM for 15 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

if [ "${1:-}" = stop ]; then
    stop_stale_gatewayd
    bash "$PGCTL" stop "$PGDIR"
    exit 0
elif [ "$#" -gt 0 ]; then
    die "usage: scripts/demo.sh [stop]"
fi

# As root, PostgreSQL runs as the `passerelle` system user, which must be able to reach var/pg.
make_var_reachable() {
    is_root || return 0
    bash "$PGCTL" ensure-user
    local path="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${REPO#/}"
    can_enter() { (cd / && runuser -u passerelle -- test -x "$1"); }
    if ! can_enter /; then
        die "the 'passerelle' user cannot even enter / : fix the permissions of /"
    fi
    for part in "${parts[@]}"; do
        [ -n "$part" ] || continue
        path=$path/$part
        [ "$path" = "$REPO" ] && break
        if ! can_enter "$path"; then
            die "the 'passerelle' system user, which runs PostgreSQL (it refuses to run as root),
  cannot reach $PGDIR: $path is not traversable by it (mode $(stat -c '%a, owner %U' -- "$path")).
  Either run: chmod o+x $path
  or clone the repository somewhere else (e.g. /srv or /opt) and run make demo there."
        fi
    done
    local d
    for d in "$REPO" "$VAR"; do
        if ! can_enter "$d"; then
            info "making $d traversable by others (chmod o+x) so that the 'passerelle' user running PostgreSQL can reach var/pg"
            chmod o+x -- "$d"
        fi
    done
}

GW_PID=""
PG_STARTED=0
RUNNING=0
STOPPING=0

# shellcheck disable=SC2317 # called from traps
stop_all() {
    [ "$STOPPING" -eq 0 ] || return 0
    STOPPING=1
    trap '' INT TERM HUP
    if [ -n "$GW_PID" ]; then
        if alive "$GW_PID"; then
            info "stopping gatewayd (pid $GW_PID)"
            kill -TERM "$GW_PID" 2>/dev/null || true
            # Give it 15 s to drain, then SIGKILL. (No timer subshell: INT and TERM are
            # ignored here, and a child would inherit that.)
            local rc=0
            for _ in $(seq 1 150); do
                alive "$GW_PID" || break
                sleep 0.1
            done
            if alive "$GW_PID"; then
                info "gatewayd did not stop within 15 s: killing it"
                kill -KILL "$GW_PID" 2>/dev/null || true
            fi
            wait "$GW_PID" 2>/dev/null || rc=$?
            info "gatewayd stopped ($(describe_status "$rc"))"
        else
            wait "$GW_PID" 2>/dev/null || true
        fi
        GW_PID=""
        rm -f -- "$PIDFILE"
    fi
    if [ "$PG_STARTED" -eq 1 ]; then
        bash "$PGCTL" stop "$PGDIR" || info "warning: could not stop PostgreSQL in $PGDIR"
    fi
}

# shellcheck disable=SC2317 # called from traps
on_signal() {
    printf '\n' >&2
    info "stopping the demo"
    stop_all
    if [ "$RUNNING" -eq 1 ]; then
        info "demo stopped"
        exit 0
    fi
    exit 130
}

# shellcheck disable=SC2317 # called from traps
on_exit() {
    local rc=$?
    stop_all
    exit "$rc"
}

trap on_exit EXIT
trap on_signal INT TERM HUP

info "installing missing dependencies (build runtime)"
bash "$REPO/scripts/deps.sh" build runtime

info "configuring $BUILD (Release)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPASSERELLE_TESTS=OFF
info "building with -j$JOBS"
cmake --build "$BUILD" -j"$JOBS"
for bin in "$GATEWAYD" "$GATEWAYCTL"; do
    [ -x "$bin" ] || die "the build did not produce $bin"
done

mkdir -p -- "$VAR" "$DEMO"
make_var_reachable
stop_stale_gatewayd

# The database: a private cluster on a unix socket in var/pg/run.
bash "$PGCTL" init "$PGDIR"
if [ -f "$PGDIR/postmaster.pid" ]; then
    running_port=$(sed -n 4p "$PGDIR/postmaster.pid" 2>/dev/null || true)
    if [ -n "$running_port" ] && [ "$running_port" != "$PGPORT" ] &&
        bash "$PGCTL" status "$PGDIR" >/dev/null 2>&1; then
        info "the demo cluster is running on port $running_port, not $PGPORT: restarting it"
        bash "$PGCTL" stop "$PGDIR"
    fi
fi
PG_STARTED=1
bash "$PGCTL" start "$PGDIR" "$PGPORT"
bash "$PGCTL" createdb "$PGDIR" "$PGPORT" passerelle
CONNINFO=$(bash "$PGCTL" conninfo "$PGDIR" "$PGPORT" passerelle)

# The configuration.
tmp=$(mktemp "$DEMO/.gatewayd.ini.XXXXXX")
cat >"$tmp" <<EOF
; Generated by make demo. See README.md "Configuration" for every option.
[gateway]
listen = 127.0.0.1:${PORT}
[database]
conninfo = ${CONNINFO}
[log]
format = text
level = info
[route sim]
driver = sim
latency_ms = 200
dlr_delay_ms = 2000
EOF
chmod 644 "$tmp"
mv -f -- "$tmp" "$INI"
info "wrote $INI"

ctl() { "$GATEWAYCTL" --config "$INI" "$@"; }

info "applying database migrations"
ctl migrate || die "gatewayctl migrate failed"

CENTRE_ID=$(ctl centre create "$CENTRE" --route sim --if-missing) ||
    die "gatewayctl centre create failed"
# activities (check-in codes 1234, 5678), items, job offers and alert topics for the flows;
# the sessions are moved around "now" at every start
ctl centre seed "$CENTRE" >/dev/null || die "gatewayctl centre seed failed"

if [ -s "$KEYFILE" ] && ctl key check "$(cat "$KEYFILE")" >/dev/null 2>&1; then
    info "reusing the API key in $KEYFILE"
else
    if [ -e "$KEYFILE" ]; then
        info "the API key in $KEYFILE is no longer valid: creating a new one"
    fi
    tmp=$(mktemp "$DEMO/.api-key.XXXXXX") # mode 600
    if ! ctl key create "$CENTRE" --label demo >"$tmp"; then
        rm -f -- "$tmp"
        die "gatewayctl key create failed"
    fi
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$KEYFILE"
    info "created an API key for \"$CENTRE\" in $KEYFILE"
fi
API_KEY=$(cat "$KEYFILE")

# The admin UI's login: the same password on every run (kept in $ADMINFILE); the account is
# created the first time (gatewayctl admin create) and given that password again otherwise.
ADMIN_LOGIN=demo
ADMIN_PW=""
if [ -s "$ADMINFILE" ]; then
    ADMIN_PW=$(sed -n 2p "$ADMINFILE")
fi
if [ "${#ADMIN_PW}" -lt 10 ]; then
    ADMIN_PW=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
fi
umask_old=$(umask)
umask 077
printf '%s\n%s\n' "$ADMIN_LOGIN" "$ADMIN_PW" >"$ADMINFILE.tmp"
umask "$umask_old"
mv -f -- "$ADMINFILE.tmp" "$ADMINFILE"
if ctl staff list "$CENTRE" | grep -q "^$ADMIN_LOGIN "; then
    ctl staff password "$ADMIN_LOGIN" --password-file <(sed -n 2p "$ADMINFILE") >/dev/null ||
        die "gatewayctl staff password failed"
else
    ctl admin create "$CENTRE" "$ADMIN_LOGIN" --name "Admin démo" \
        --password-file <(sed -n 2p "$ADMINFILE") >/dev/null ||
        die "gatewayctl admin create failed"
    info "created the admin UI account '$ADMIN_LOGIN' (saved in $ADMINFILE)"
fi

# The gateway.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$PORT.
  Stop it, or pick another port: make demo PORT=8081"
fi

info "starting gatewayd on 127.0.0.1:$PORT (its log follows)"
# In its own session, so that Ctrl-C reaches only this script, which then stops it
# with a single SIGTERM (and the database after it).
setsid "$GATEWAYD" --config "$INI" </dev/null &
GW_PID=$!
printf '%s\n' "$GW_PID" >"$PIDFILE"

deadline=$((SECONDS + 20))
until curl -fsS --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
    if ! alive "$GW_PID"; then
        rc=0
        wait "$GW_PID" || rc=$?
        GW_PID=""
        die "gatewayd exited during startup ($(describe_status "$rc")); see its messages above"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "gatewayd did not answer http://127.0.0.1:$PORT/healthz within 20 s"
    fi
    sleep 0.2
done

# Paths as the user can paste them from where they ran make.
if [ "$ORIG_PWD" = "$REPO" ] || [ "$(cd "$ORIG_PWD" && pwd -P)" = "$REPO" ]; then
    KEYREF=var/demo/api-key
else
    KEYREF=$KEYFILE
fi
BASE=http://127.0.0.1:$PORT
AUTH="-H \"Authorization: Bearer \$(cat $KEYREF)\""
RULE='=============================================================================='
cat <<EOF

$RULE
  Passerelle demo is running on $BASE
$RULE

  Centre:   $CENTRE${CENTRE_ID:+ (id $CENTRE_ID)}
  API key:  $API_KEY
            (saved in $KEYREF)

  Admin UI: $BASE/admin/  login: $ADMIN_LOGIN  password: $ADMIN_PW
            (saved in ${KEYREF%api-key}admin-login: login, then password)

  Send an SMS (the simulated route delivers it, with a delivery report ~2 s later):

    curl -s -X POST $BASE/api/v1/messages $AUTH -H 'Content-Type: application/json' -d '{"to":"06 12 34 56 78","text":"Bonjour ! Votre atelier commence demain à 10 h."}'

  See its status (<id> is the "id" in the answer above):

    curl -s $BASE/api/v1/messages/<id> $AUTH

  Text a keyword as a resident would (AIDE, CHECK 1234, JOB, PRET, ALERTE, STOP…),
  then see the reply among the number's messages:

    curl -s -X POST $BASE/providers/sim/inbound -d from=0612345678 --data-urlencode 'text=Check-in 1234'
    curl -s "$BASE/api/v1/messages?to=0612345678" $AUTH

  Walk the USSD menu (each answer joined by *):

    curl -s $BASE/ussd/$CENTRE_ID -d sessionId=demo$$ -d phoneNumber=%2B33612345678 -d text=
    curl -s $BASE/ussd/$CENTRE_ID -d sessionId=demo$$ -d phoneNumber=%2B33612345678 -d text=2

  Health and metrics:

    curl -s $BASE/healthz
    curl -s $BASE/metrics

  The live message log is below. Ctrl-C stops the gateway and the database.
$RULE

EOF

RUNNING=1
rc=0
wait "$GW_PID" || rc=$?
# Only reached when gatewayd stops by itself (Ctrl-C goes through on_signal).
GW_PID=""
rm -f -- "$PIDFILE"
RUNNING=0
info "gatewayd stopped on its own ($(describe_status "$rc")): stopping the database"
[ "$rc" -ne 0 ] || rc=1
exit "$rc"
