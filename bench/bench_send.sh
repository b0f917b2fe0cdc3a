#!/usr/bin/env bash
# Send-path benchmark: accepted messages/s through POST /api/v1/messages (each committed before
# its 202), end-to-end delivered/s through the simulator route at zero latency, API latency
# percentiles and the daemon's peak RSS. Prints figures; never fails on a timing.
#
#   bench/bench_send.sh [COUNT] [CONCURRENCY...]
#   e.g. bench/bench_send.sh 50000 8 32 64
#
# Uses a release build (build/release), a throwaway PostgreSQL cluster under /tmp, and the
# daemon at log level "warn" (a log line per state change would dominate the measurement).
# BENCH_TIMELINE=1 prints delivered/s every 10 s (to see whether the claim path decays as the
# tables grow); BENCH_ROUTE=nowhere measures accepting alone; BENCH_DISTINCT numbers (1000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-50000}
shift || true
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(64)

bash "$root/scripts/deps.sh" build runtime >/dev/null
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DPASSERELLE_TESTS=OFF >/dev/null
cmake --build "$root/build/release" -j2 >/dev/null
bin=$root/build/release

tmp=$(mktemp -d /tmp/passerelle-bench.XXXXXX)
chmod 755 "$tmp"
pgport=$((56400 + RANDOM % 500))
port=$((18400 + RANDOM % 500))
pgctl="$root/scripts/pgctl.sh"
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    bash "$pgctl" stop "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
bash "$pgctl" init "$tmp/pg" >/dev/null 2>&1
bash "$pgctl" start "$tmp/pg" "$pgport" >/dev/null 2>&1
psqlq() { bash "$pgctl" psql "$tmp/pg" "$pgport" bench -qAt -c "$1"; }

printf '%-6s %10s %10s %8s %8s %8s %12s %10s\n' conc accepted/s deliv/s p50ms p99ms maxms delivered peakRSS_MB
for conc in "${concs[@]}"; do
    bash "$pgctl" psql "$tmp/pg" "$pgport" postgres -qc "DROP DATABASE IF EXISTS bench" >/dev/null
    bash "$pgctl" createdb "$tmp/pg" "$pgport" bench >/dev/null
    cat >"$tmp/gw.ini" <<INI
[gateway]
listen = 127.0.0.1:$port
[database]
conninfo = $(bash "$pgctl" conninfo "$tmp/pg" "$pgport" bench)
pool_size = 6
[log]
level = warn
[outbox]
batch_size = 2000
poll_interval_ms = 200
[route sim]
driver = sim
concurrency = 5000
latency_ms = 0
dlr_delay_ms = 0
INI
    "$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" migrate >/dev/null
    "$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" centre create bench --route "${BENCH_ROUTE:-sim}" >/dev/null 2>&1
    key=$("$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" key create bench 2>/dev/null)
    "$bin/gatewayd/gatewayd" --config "$tmp/gw.ini" 2>"$tmp/gw.log" &
    daemon=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    t0=$(date +%s.%N)
    if [ -n "${BENCH_TIMELINE:-}" ]; then
        # delivered messages per 10 s while the run lasts: does the claim path stay flat as
        # the messages table grows?
        (prev=0; while kill -0 "$daemon" 2>/dev/null; do
             sleep 10
             n=$(psqlq "SELECT count(*) FROM messages WHERE status = 'delivered'" 2>/dev/null) || break
             echo "timeline: +$(( (n - prev) / 10 )) delivered/s (total $n)" >&2
             prev=$n
             [ "$n" -ge "$count" ] && break
         done) &
    fi
    summary=$("$bin/bench/loadgen" --url "http://127.0.0.1:$port" --key "$key" --count "$count" \
              --concurrency "$conc" --distinct "${BENCH_DISTINCT:-1000}" --json --text "Bonjour, ceci est un test de charge Passerelle numero %d" || true)
    # delivered/s: from the first request until every accepted message is delivered
    for _ in $(seq 2400); do
        [ -n "${BENCH_ROUTE:-}" ] && break
        left=$(psqlq "SELECT count(*) FROM messages WHERE status <> 'delivered'")
        [ "$left" = 0 ] && break
        sleep 0.25 # the count is a scan of messages: poll gently, it competes with the daemon
    done
    t1=$(date +%s.%N)
    delivered=$(psqlq "SELECT count(*) FROM messages WHERE status = 'delivered'")
    sleep 0.6
    psqlq "SELECT relname || ': ' || n_tup_upd || ' updates, ' || n_tup_hot_upd || ' HOT' FROM pg_stat_user_tables WHERE relname IN ('messages', 'outbox_queue')" >&2
    rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$daemon/status")
    curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^passerelle_(batch|db_round_trip_seconds)' >&2 || true
    kill "$daemon"; wait "$daemon" || true; daemon=""
    python3 - "$summary" "$conc" "$t0" "$t1" "$delivered" "$rss" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]
t0, t1 = float(sys.argv[3]), float(sys.argv[4]); dlv = int(sys.argv[5]); rss = sys.argv[6]
lat = s.get("latency_ms", {})
print("%-6s %10.0f %10.0f %8.2f %8.2f %8.2f %12d %10s" % (conc, s.get("accepted_per_s", 0),
      dlv / (t1 - t0), lat.get("p50", 0), lat.get("p99", 0), lat.get("max", 0), dlv, rss))
PY
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)" GiB"}' /proc/meminfo), $(uname -r); PostgreSQL $(bash "$pgctl" psql "$tmp/pg" "$pgport" postgres -qAt -c 'show server_version')"
