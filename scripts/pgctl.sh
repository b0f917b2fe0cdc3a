#!/usr/bin/env bash
# Manages a private PostgreSQL cluster (unix socket only) for the demo and the tests.
#
#   scripts/pgctl.sh init     DIR
#   scripts/pgctl.sh start    DIR PORT
#   scripts/pgctl.sh stop     DIR
#   scripts/pgctl.sh status   DIR
#   scripts/pgctl.sh createdb DIR PORT NAME
#   scripts/pgctl.sh conninfo DIR PORT [DB]
#   scripts/pgctl.sh psql     DIR PORT [DB] [psql args...]
#   scripts/pgctl.sh ensure-user
#
# DIR is the data directory; the server's socket lives in DIR/run and its log in
# DIR/log. The superuser is `passerelle` and authentication is `trust` (the
# socket is the only way in). PostgreSQL refuses to run as root: when this
# script runs as root it creates a system user `passerelle`, gives DIR to it and
# runs initdb/pg_ctl through runuser. Otherwise everything runs as the caller.
set -euo pipefail

PG_USER=passerelle # both the database superuser and, as root, the system user

info() { printf 'passerelle: %s\n' "$*" >&2; }
die() { printf 'passerelle: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Newest PostgreSQL in /usr/lib/postgresql/<version>/bin (PASSERELLE_PGBIN overrides).
find_pgbin() {
    if [ -n "${PASSERELLE_PGBIN:-}" ]; then
        [ -x "$PASSERELLE_PGBIN/pg_ctl" ] || die "PASSERELLE_PGBIN=$PASSERELLE_PGBIN has no pg_ctl"
        PGBIN=$PASSERELLE_PGBIN
        return
    fi
    local v best=""
    for v in /usr/lib/postgresql/*/bin/pg_ctl; do
        [ -x "$v" ] || continue
        v=${v#/usr/lib/postgresql/}
        v=${v%%/*}
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n1)" = "$v" ]; then
            best=$v
        fi
    done
    [ -n "$best" ] ||
        die "no PostgreSQL server found in /usr/lib/postgresql/*/bin (run: scripts/deps.sh runtime)"
    PGBIN=/usr/lib/postgresql/$best/bin
}

# Absolute path of DIR, without requiring it to exist.
abspath() {
    local p=$1
    [ -n "$p" ] || die "empty directory argument"
    case "$p" in /*) ;; *) p=$PWD/$p ;; esac
    realpath -m -- "$p"
}

check_port() {
    case "$1" in
        '' | *[!0-9]*) die "invalid port '$1' (expected a number)" ;;
    esac
    if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        die "invalid port '$1' (expected 1-65535)"
    fi
}

ensure_user() {
    is_root || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        info "creating system user '$PG_USER' to run PostgreSQL (it refuses to run as root)"
        useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" ||
            die "could not create system user '$PG_USER'"
    fi
}

# Runs a PostgreSQL server program as $RUN_AS (set by use_dir/prepare_dir_as_root when
# root; empty = as ourselves). The working directory is / so that the server user never
# trips over root's cwd.
RUN_AS=""
as_pg() {
    if [ -n "$RUN_AS" ]; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        "$@"
    fi
}

# Prints the first directory on the way to $1 that the passerelle user cannot traverse.
blocking_ancestor() {
    local target=$1 path="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${target#/}"
    if ! (cd / && runuser -u "$RUN_AS" -- test -x /); then
        printf '/\n'
        return
    fi
    for part in "${parts[@]}"; do
        [ -n "$part" ] || continue
        path=$path/$part
        [ -d "$path" ] || return 0
        if ! (cd / && runuser -u "$RUN_AS" -- test -x "$path"); then
            printf '%s\n' "$path"
            return
        fi
    done
}

# As root: fails with a clear message when $RUN_AS cannot write to DIR.
check_reachable() {
    local dir=$1 blocker mode
    (cd / && runuser -u "$RUN_AS" -- test -w "$dir") && return 0
    blocker=$(blocking_ancestor "$dir")
    if [ -n "$blocker" ]; then
        mode=$(stat -c '%a, owner %U' -- "$blocker")
        die "the '$RUN_AS' user, which runs PostgreSQL (it refuses to run as root), cannot reach $dir:
  $blocker is not traversable by it (mode $mode).
  Fix: chmod o+x $blocker   -- or put the cluster in a directory it can reach (e.g. under /tmp or /srv)."
    fi
    die "the '$RUN_AS' user cannot write to $dir"
}

# As root: make DIR exist, belong to the passerelle user, and be reachable by it.
prepare_dir_as_root() {
    local dir=$1 top="" p
    ensure_user
    # Remember the highest directory we create, to remove it again if DIR is unreachable.
    p=$dir
    while [ ! -e "$p" ]; do
        top=$p
        p=$(dirname -- "$p")
    done
    mkdir -p -- "$dir"
    if [ "$(stat -c %U -- "$dir")" != "$PG_USER" ]; then
        chown -R "$PG_USER:" -- "$dir"
    fi
    RUN_AS=$PG_USER
    if [ -n "$top" ]; then
        # shellcheck disable=SC2064 # expand $top now
        trap "rm -rf -- $(printf '%q' "$top")" EXIT
        check_reachable "$dir"
        trap - EXIT
    else
        check_reachable "$dir"
    fi
}

# Chooses who runs pg_ctl for an existing cluster in DIR. As root: the owner of DIR
# (a cluster made by a normal user stays theirs), or the passerelle user when DIR
# belongs to root or to a user that no longer exists. Otherwise: ourselves, who must
# own DIR.
use_dir() {
    local dir=$1 owner
    if ! is_root; then
        check_owner_nonroot "$dir"
        return 0
    fi
    owner=$(stat -c %U -- "$dir")
    if [ "$owner" = root ] || [ "$owner" = UNKNOWN ]; then
        ensure_user
        info "giving $dir to the '$PG_USER' system user"
        chown -R "$PG_USER:" -- "$dir"
        owner=$PG_USER
    fi
    RUN_AS=$owner
    check_reachable "$dir"
}

# Refuses to touch a cluster that belongs to another non-root user.
check_owner_nonroot() {
    local dir=$1 owner
    [ -e "$dir" ] || return 0
    owner=$(stat -c %U -- "$dir")
    if [ "$owner" != "$(id -un)" ]; then
        die "$dir belongs to '$owner'; run this as root (sudo) or as '$owner'"
    fi
}

# Quotes a value for postgresql.conf ('...' with ' doubled).
conf_quote() {
    local v=${1//\'/\'\'}
    printf "'%s'" "$v"
}

# Settings are written to DIR/passerelle.conf, included from postgresql.conf, and
# rewritten at every start (so a moved directory still gets the right socket path).
write_conf() {
    local dir=$1 tmp
    tmp=$(mktemp "$dir/.passerelle.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Written by scripts/pgctl.sh at every start: edits are lost. Put yours in postgresql.conf
# after the include line.
listen_addresses = ''
unix_socket_directories = $(conf_quote "$dir/run")
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 256MB
autovacuum_naptime = 10s
EOF
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$dir/passerelle.conf"
    if ! grep -q "^include_if_exists = 'passerelle.conf'" "$dir/postgresql.conf"; then
        printf "\n# Passerelle settings (scripts/pgctl.sh)\ninclude_if_exists = 'passerelle.conf'\n" \
            >>"$dir/postgresql.conf"
    fi
    mkdir -p -- "$dir/run"
    if [ -n "$RUN_AS" ]; then
        chown "$RUN_AS:" -- "$dir/passerelle.conf" "$dir/postgresql.conf" "$dir/run"
    fi
}

pick_locale() {
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        printf 'C.UTF-8\n'
    else
        printf 'C\n'
    fi
}

running_port() { # port of the running postmaster, from postmaster.pid line 4
    sed -n 4p "$1/postmaster.pid" 2>/dev/null || true
}

is_running() {
    [ -f "$1/PG_VERSION" ] || return 1
    as_pg "$PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

socket_path_check() {
    local sock="$1/run/.s.PGSQL.$2"
    if [ "${#sock}" -gt 107 ]; then
        die "socket path too long for unix sockets (${#sock} > 107 bytes): $sock
  Put the cluster in a shorter directory."
    fi
}

cmd_init() {
    local dir
    dir=$(abspath "$1")
    if [ -f "$dir/PG_VERSION" ]; then
        info "cluster already initialised in $dir (PostgreSQL $(cat "$dir/PG_VERSION"))"
        return 0
    fi
    if [ -d "$dir" ] && [ -n "$(ls -A -- "$dir")" ]; then
        die "$dir exists, is not empty and holds no cluster (no PG_VERSION): refusing to initdb there"
    fi
    if is_root; then
        prepare_dir_as_root "$dir"
    else
        mkdir -p -- "$dir"
        check_owner_nonroot "$dir"
    fi
    local loc
    loc=$(pick_locale)
    info "creating PostgreSQL $(basename "$(dirname "$PGBIN")") cluster in $dir (locale $loc)"
    local out
    if ! out=$(as_pg "$PGBIN/initdb" -D "$dir" -A trust -U "$PG_USER" --encoding=UTF8 \
        --locale="$loc" 2>&1); then
        printf '%s\n' "$out" >&2
        die "initdb failed in $dir"
    fi
    write_conf "$dir"
    info "cluster ready in $dir"
}

cmd_start() {
    local dir port
    dir=$(abspath "$1")
    port=$2
    check_port "$port"
    [ -f "$dir/PG_VERSION" ] || die "no cluster in $dir (run: scripts/pgctl.sh init $dir)"
    use_dir "$dir"
    if is_running "$dir"; then
        local cur
        cur=$(running_port "$dir")
        if [ "$cur" = "$port" ]; then
            info "PostgreSQL already running in $dir on port $port"
            return 0
        fi
        die "PostgreSQL is already running in $dir on port ${cur:-?}, not $port.
  Stop it first: scripts/pgctl.sh stop $dir"
    fi
    socket_path_check "$dir" "$port"
    write_conf "$dir"
    info "starting PostgreSQL in $dir (socket $dir/run, port $port, log $dir/log)"
    if ! as_pg "$PGBIN/pg_ctl" -D "$dir" -l "$dir/log" -w -t 60 -o "-p $port" start >/dev/null; then
        printf 'passerelle: last lines of %s:\n' "$dir/log" >&2
        tail -n 20 -- "$dir/log" >&2 2>/dev/null || true
        die "PostgreSQL failed to start in $dir on port $port"
    fi
}

cmd_stop() {
    local dir
    dir=$(abspath "$1")
    if [ ! -f "$dir/PG_VERSION" ]; then
        info "no cluster in $dir: nothing to stop"
        return 0
    fi
    use_dir "$dir"
    if ! is_running "$dir"; then
        info "PostgreSQL is not running in $dir"
        return 0
    fi
    info "stopping PostgreSQL in $dir"
    as_pg "$PGBIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null ||
        die "pg_ctl stop failed for $dir (see $dir/log)"
}

cmd_status() {
    local dir rc=0
    dir=$(abspath "$1")
    if [ ! -f "$dir/PG_VERSION" ]; then
        printf 'passerelle: no cluster in %s\n' "$dir"
        return 4
    fi
    use_dir "$dir"
    as_pg "$PGBIN/pg_ctl" -D "$dir" status || rc=$?
    if [ "$rc" -eq 0 ]; then
        printf 'passerelle: socket %s/run, port %s\n' "$dir" "$(running_port "$dir")"
    fi
    return "$rc"
}

conninfo_value() { # quotes a libpq conninfo value only when it needs it
    case "$1" in
        '' | *[[:space:]\'\\]*)
            local v=${1//\\/\\\\}
            v=${v//\'/\\\'}
            printf "'%s'" "$v"
            ;;
        *) printf '%s' "$1" ;;
    esac
}

cmd_conninfo() {
    local dir port db=${3:-passerelle}
    dir=$(abspath "$1")
    port=$2
    check_port "$port"
    printf 'host=%s port=%s user=%s dbname=%s\n' "$(conninfo_value "$dir/run")" "$port" \
        "$PG_USER" "$(conninfo_value "$db")"
}

cmd_createdb() {
    local dir port name exists
    dir=$(abspath "$1")
    port=$2
    name=$3
    check_port "$port"
    [ -n "$name" ] || die "empty database name"
    exists=$(printf "SELECT 1 FROM pg_database WHERE datname = :'name';\n" |
        "$PGBIN/psql" -X -q -tA -h "$dir/run" -p "$port" -U "$PG_USER" -d postgres \
            -v ON_ERROR_STOP=1 -v name="$name") ||
        die "cannot connect to PostgreSQL at $dir/run port $port (is it started?)"
    if [ "$exists" = 1 ]; then
        info "database '$name' already exists"
        return 0
    fi
    info "creating database '$name'"
    "$PGBIN/createdb" -h "$dir/run" -p "$port" -U "$PG_USER" -- "$name" ||
        die "createdb '$name' failed"
}

cmd_psql() {
    local dir port db=passerelle
    dir=$(abspath "$1")
    port=$2
    check_port "$port"
    shift 2
    if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
        db=$1
        shift
    fi
    exec "$PGBIN/psql" -h "$dir/run" -p "$port" -U "$PG_USER" -d "$db" "$@"
}

need() { # need N "usage" ARGS...
    local n=$1 use=$2
    shift 2
    [ "$#" -ge "$n" ] || die "usage: scripts/pgctl.sh $use"
}

main() {
    [ "$#" -ge 1 ] || { usage; exit 2; }
    local cmd=$1
    shift
    case "$cmd" in
        -h | --help | help) usage; return 0 ;;
        ensure-user) ensure_user; return 0 ;;
    esac
    find_pgbin
    case "$cmd" in
        init) need 1 "init DIR" "$@"; cmd_init "$1" ;;
        start) need 2 "start DIR PORT" "$@"; cmd_start "$1" "$2" ;;
        stop) need 1 "stop DIR" "$@"; cmd_stop "$1" ;;
        status) need 1 "status DIR" "$@"; cmd_status "$1" ;;
        createdb) need 3 "createdb DIR PORT NAME" "$@"; cmd_createdb "$1" "$2" "$3" ;;
        conninfo) need 2 "conninfo DIR PORT [DB]" "$@"; cmd_conninfo "$@" ;;
        psql) need 2 "psql DIR PORT [DB] [psql args...]" "$@"; cmd_psql "$@" ;;
        *) usage; die "unknown command '$cmd'" ;;
    esac
}

main "$@"
