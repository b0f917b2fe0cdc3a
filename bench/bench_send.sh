#!/usr/bin/env bash
# shellcheck disable=SC2119 # bench_pg_start and bench_daemon_start take optional arguments
# Send-path benchmark: accepted messages/s through POST /api/v1/messages (each committed before
# its 202), end-to-end delivered/s through the simulator route at zero latency, API latency
# percentiles and the daemon's peak RSS. Prints figures; never fails on a timing.
#
#   bench/bench_send.sh [COUNT] [CONCURRENCY...]
#   e.g. bench/bench_send.sh 50000 8 32 64
#
# Uses a release build (build/bench, see lib.sh), a throwaway PostgreSQL cluster under /tmp, and the
# daemon at log level "warn" (a log line per state change would dominate the measurement).
# BENCH_TIMELINE=1 prints delivered/s every 10 s (to see whether the claim path decays as the
# tables grow); BENCH_ROUTE=nowhere measures accepting alone; BENCH_DISTINCT numbers (1000);
# BENCH_HANDOFF=no turns the enqueue's hand-off off ([outbox] handoff, see README).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-50000}
shift || true
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(64)

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build gatewayd gatewayctl loadgen
bench_setup passerelle-bench
bench_pg_start

printf '%-6s %10s %10s %8s %8s %8s %12s %10s\n' conc accepted/s deliv/s p50ms p99ms maxms delivered peakRSS_MB
for conc in "${concs[@]}"; do
    bench_db_fresh
    bench_config "[outbox]
batch_size = 2000
poll_interval_ms = 200
${BENCH_HANDOFF:+handoff = $BENCH_HANDOFF}
$BENCH_SIM_ROUTE"
    bench_centre "${BENCH_ROUTE:-sim}"
    bench_daemon_start || true
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
    rss=$(peak_rss_mb "$daemon")
    curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^passerelle_(batch|db_round_trip_seconds)' >&2 || true
    bench_daemon_stop
    python3 - "$summary" "$conc" "$t0" "$t1" "$delivered" "$rss" "$count" "${BENCH_ROUTE:-}" \
        "${BENCH_RESULTS:-}" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]
t0, t1 = float(sys.argv[3]), float(sys.argv[4]); dlv = int(sys.argv[5]); rss = sys.argv[6]
count, route, results = int(sys.argv[7]), sys.argv[8], sys.argv[9]
lat = s.get("latency_ms", {})
print("%-6s %10.0f %10.0f %8.2f %8.2f %8.2f %12d %10s" % (conc, s.get("accepted_per_s", 0),
      dlv / (t1 - t0), lat.get("p50", 0), lat.get("p99", 0), lat.get("max", 0), dlv, rss))
if results:
    figs = "accepted %.0f/s (%d of %d)" % (s.get("accepted_per_s", 0), s.get("accepted", 0), count)
    if route == "":  # waited until every message was delivered
        figs += ", delivered %.0f/s (%d)" % (dlv / (t1 - t0), dlv)
    figs += ", API latency p50 %.1f / p99 %.1f ms, peak RSS %s MB" % (
        lat.get("p50") or 0, lat.get("p99") or 0, rss)
    with open(results, "a") as f:
        f.write("send API (gatewayd)\tPOST /api/v1/messages, %d msgs, conc %s, route %s\t%s\n"
                % (count, conc, route or "sim", figs))
PY
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)" GiB"}' /proc/meminfo), $(uname -r); PostgreSQL $(pg_version)"
