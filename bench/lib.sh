# shellcheck shell=bash disable=SC2034  # (variables set here are the caller's)
# bench/lib.sh — the set-up shared by the benchmark scripts (sourced, never run):
# release build, a throwaway PostgreSQL cluster (scripts/pgctl.sh), gatewayd's configuration,
# the bench centre and its API key, the daemon's start and stop, extra processes to clean up,
# the machine's description, and the rows that bench/run_all.sh gathers into its table.
#
#   root=$(cd "$(dirname "$0")/.." && pwd)
#   . "$root/bench/lib.sh"
#   bench_build gatewayd gatewayctl loadgen     # sets $bin
#   bench_setup passerelle-bench                # $tmp, $port, $pgport, the EXIT trap
#   bench_pg_start                              # cluster in $tmp/pg; psqlq "SQL"
#   bench_db_fresh; bench_config "<extra ini>"; bench_centre sim; bench_daemon_start
#
# Environment: BENCH_BUILD_DIR (build/bench), BENCH_REV (build that commit, exported with
# `git archive` into BENCH_BUILD_DIR-rev/src and built in BENCH_BUILD_DIR-rev, instead of the
# work tree: other people's
# unfinished edits in a shared work tree then neither break nor colour the figures), BENCH_RESULTS (a file: each script appends
# its table rows there, see bench_row), BENCH_KEEP=1 (leave the cluster running), BENCH_GW_ENV
# (VAR=value words put in gatewayd's environment, e.g. GLIBC_TUNABLES=glibc.malloc.mxfast=0).

root=${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
pgctl="$root/scripts/pgctl.sh"
tmp="" port="" pgport="" daemon="" bin="" bench_commit=""
bench_pids=()

# Release build of the given targets in BENCH_BUILD_DIR (build/bench, with the test peers
# such as the iSendPro mock): the dependencies are installed first when missing.
bench_build() {
    bash "$root/scripts/deps.sh" build runtime >/dev/null 2>&1 ||
        bash "$root/scripts/deps.sh" build runtime >/dev/null
    if ! pkg-config --exists cmocka 2>/dev/null; then # the test peers' CMake needs it
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libcmocka-dev >/dev/null
    fi
    bin=${BENCH_BUILD_DIR:-$root/build/bench}
    local src=$root rev
    if [ -n "${BENCH_REV:-}" ]; then
        rev=$(git -C "$root" rev-parse --short "${BENCH_REV}^{commit}")
        bin=$bin-rev
        src=$bin/src
        # the commit's files replace those that differ only, so that make rebuilds what changed
        rm -rf "$bin/src.new" && mkdir -p "$bin/src.new" "$src"
        git -C "$root" archive "$rev" | tar -x -C "$bin/src.new"
        python3 - "$bin/src.new" "$src" <<'PY'
import filecmp, os, shutil, sys
new, cur = sys.argv[1], sys.argv[2]
for d, dirs, files in os.walk(new):
    rel = os.path.relpath(d, new)
    os.makedirs(os.path.join(cur, rel), exist_ok=True)
    for f in files:
        a, b = os.path.join(d, f), os.path.join(cur, rel, f)
        if not os.path.isfile(b) or not filecmp.cmp(a, b, shallow=False):
            shutil.copy(a, b)  # mtime now: make rebuilds it even when it goes back in time
for d, dirs, files in os.walk(cur, topdown=False):
    rel = os.path.relpath(d, cur)
    for f in files:
        if not os.path.exists(os.path.join(new, rel, f)):
            os.remove(os.path.join(d, f))
    if not os.path.exists(os.path.join(new, rel)):
        os.rmdir(d)
PY
        rm -rf "$bin/src.new"
        bench_commit=$rev
    fi
    cmake -S "$src" -B "$bin" -DCMAKE_BUILD_TYPE=Release -DPASSERELLE_TESTS=ON >/dev/null
    cmake --build "$bin" -j2 --target "$@" >/dev/null
}

# A free TCP port on 127.0.0.1 in [base, base+range): nothing answers a connect there.
bench_free_port() {
    local base=$1 range=$2 p
    for _ in $(seq 50); do
        p=$((base + RANDOM % range))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "bench: no free port in $base..$((base + range - 1))" >&2
    return 1
}

# The work directory, gatewayd's port, the cluster's port (its socket is in $tmp/pg/run, so
# no other cluster can take it) and the clean-up on exit.
bench_setup() {
    tmp=$(mktemp -d "/tmp/${1:-passerelle-bench}.XXXXXX")
    chmod 755 "$tmp" # pgctl.sh runs PostgreSQL as the 'passerelle' user when we are root
    pgport=$((56400 + RANDOM % 1000))
    port=$(bench_free_port 18400 1000)
    trap bench_cleanup EXIT
}

bench_track() { bench_pids+=("$1"); }

# Stops a process started by this script, by its pid: SIGTERM, then SIGKILL after 10 s (Kannel's
# test_http_server ignores SIGTERM).
bench_stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# bench_stop_pid, and forget the pid.
bench_kill() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    bench_stop_pid "$pid"
    for i in "${!bench_pids[@]}"; do
        [ "${bench_pids[$i]}" = "$pid" ] && unset 'bench_pids[i]'
    done
    return 0
}

bench_cleanup() {
    local pid
    for pid in $daemon "${bench_pids[@]}"; do bench_stop_pid "$pid"; done
    [ -n "$tmp" ] || return 0
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "kept: scripts/pgctl.sh psql $tmp/pg $pgport bench   (stop: scripts/pgctl.sh stop $tmp/pg)" >&2
        return 0
    fi
    bash "$pgctl" stop "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
    return 0
}

# Initialises and starts the cluster; arguments are lines appended to postgresql.conf.
bench_pg_start() {
    bash "$pgctl" init "$tmp/pg" >/dev/null 2>&1
    [ "$#" -eq 0 ] || printf '%s\n' "$@" >>"$tmp/pg/postgresql.conf"
    bash "$pgctl" start "$tmp/pg" "$pgport" >/dev/null 2>&1
}

psqlq() { bash "$pgctl" psql "$tmp/pg" "$pgport" bench -X -qAt -v ON_ERROR_STOP=1 -c "$1"; }
pg_version() { bash "$pgctl" psql "$tmp/pg" "$pgport" postgres -qAt -c 'show server_version'; }

# A new, empty database 'bench'.
bench_db_fresh() {
    bash "$pgctl" psql "$tmp/pg" "$pgport" postgres -qc "DROP DATABASE IF EXISTS bench" >/dev/null 2>&1
    bash "$pgctl" createdb "$tmp/pg" "$pgport" bench >/dev/null 2>&1
}

# $tmp/gw.ini: the listener, the database (pool of 6), log level warn (a line per state change
# would dominate the measurement), then the sections given as one string.
bench_config() {
    cat >"$tmp/gw.ini" <<INI
[gateway]
listen = 127.0.0.1:$port
[database]
conninfo = $(bash "$pgctl" conninfo "$tmp/pg" "$pgport" bench)
pool_size = 6
[log]
level = warn
$1
INI
}

# The zero-latency simulator route most benchmarks use (a section for bench_config).
BENCH_SIM_ROUTE='[route sim]
driver = sim
concurrency = 5000
latency_ms = 0
dlr_delay_ms = 0'

gwctl() { "$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" "$@"; }

# Migrates the database, creates the centre 'bench' on ROUTE and sets $key to a new API key.
bench_centre() {
    gwctl migrate >/dev/null
    gwctl centre create bench --route "$1" >/dev/null 2>&1
    key=$(gwctl key create bench 2>/dev/null)
}

# Starts gatewayd (stderr to $tmp/gw.log, appended with 'append') and waits up to 10 s for
# /healthz; returns 1 when it never answered.
bench_daemon_start() {
    if [ "${1:-}" = append ]; then
        env ${BENCH_GW_ENV:-} "$bin/gatewayd/gatewayd" --config "$tmp/gw.ini" 2>>"$tmp/gw.log" &
    else
        env ${BENCH_GW_ENV:-} "$bin/gatewayd/gatewayd" --config "$tmp/gw.ini" 2>"$tmp/gw.log" &
    fi
    daemon=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null
}

bench_daemon_stop() {
    [ -n "$daemon" ] || return 0
    kill "$daemon"
    wait "$daemon" || true
    daemon=""
}

peak_rss_mb() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }

# One line about the machine: CPU model, cores, RAM, kernel, PostgreSQL (when a cluster of
# ours runs), the commit (with -dirty when the work tree differs from it), the load average.
bench_machine() {
    local cpu mem pg="" commit
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
    if [ -n "$tmp" ] && [ -S "$tmp/pg/run/.s.PGSQL.$pgport" ]; then pg=$(pg_version 2>/dev/null || true); fi
    if [ -z "$pg" ]; then # the newest server installed, as pgctl.sh picks it
        pg=$(cd /usr/lib/postgresql 2>/dev/null && printf '%s\n' * | sort -V | tail -n1)
        [ -z "$pg" ] || pg=$("/usr/lib/postgresql/$pg/bin/postgres" --version 2>/dev/null |
                               sed 's/^postgres (PostgreSQL) //' || echo "$pg")
    fi
    commit=$bench_commit
    if [ -z "$commit" ]; then
        commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then commit="$commit + uncommitted changes"; fi
    fi
    echo "${cpu:-unknown CPU}, $(nproc) cores, $mem RAM, Linux $(uname -r), PostgreSQL ${pg:-?}, commit $commit, load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# A row of run_all.sh's table: BENCHMARK, WORKLOAD, FIGURES (tab-separated in BENCH_RESULTS).
bench_row() {
    [ -n "${BENCH_RESULTS:-}" ] || return 0
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$BENCH_RESULTS"
}
