#!/usr/bin/env bash
# shellcheck disable=SC2119 # bench_pg_start and bench_daemon_start take optional arguments
# Inbound keyword round trip: COUNT inbound SMS injected through the simulator route
# (POST /providers/sim/inbound, form from/text, by loadgen --inbound) at CONCURRENCY, each
# from its own number, a mix of "CHECK 1234" (attendance at the seeded named activity),
# "CHECK 5678 2" (the anonymous one, two people), "AIDE" and a text no keyword matches (the
# inbox, with the daily help reply). Every one of them is stored, goes through the flow engine
# (flow_runs) and decides one reply, which is queued in the outbox and delivered by the
# simulator at zero latency. Prints, per concurrency:
#   inbound/s     inbound SMS answered 200 by the endpoint per second (loadgen, wall clock)
#   replies/s     replies delivered per second, from the first inbound stored to the last reply
#                 delivered (database clock)
#   p50/p95/p99/max  per inbound SMS, from its row (messages.created_at, the start of the
#                 transaction that stored it) to its reply's 'delivered' event
#                 (message_events.at), in ms
#   http p50/p99  the injection endpoint's own answer time (loadgen)
# Prints figures; never fails on a timing (exit 0 unless the set-up fails).
#
#   bench/bench_inbound.sh [COUNT] [CONCURRENCY...]     (defaults 5000 16)
#
# BENCH_STALL  give up when no reply was delivered for this many seconds (30)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-5000}
shift || true
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(16)
for v in "$count" "${concs[@]}"; do
    case "$v" in '' | *[!0-9]*) echo "bench_inbound: '$v' is not a number" >&2; exit 2 ;; esac
done

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build gatewayd gatewayctl loadgen
bench_setup passerelle-binbound
bench_pg_start

printf '%s\n' "CHECK 1234" "AIDE" "Bonjour, est-ce que l'atelier %d a lieu samedi ?" "CHECK 5678 2" \
    >"$tmp/texts"

printf '%-6s %10s %10s %8s %8s %8s %8s %9s %9s %9s\n' conc inbound/s replies/s p50ms p95ms p99ms maxms \
    http_p50 http_p99 replied
for conc in "${concs[@]}"; do
    bench_db_fresh
    bench_config "[outbox]
batch_size = 2000
poll_interval_ms = 200
$BENCH_SIM_ROUTE"
    bench_centre sim
    gwctl centre seed bench >/dev/null
    # no phone repeats (--distinct COUNT): the loop protection (20 texts an hour) and the
    # one help reply a day never come in, so each inbound SMS has exactly one reply
    bench_daemon_start || { echo "bench_inbound: gatewayd did not start" >&2; cat "$tmp/gw.log" >&2; exit 1; }
    summary=$("$bin/bench/loadgen" --url "http://127.0.0.1:$port" --inbound sim --count "$count" \
              --concurrency "$conc" --to-base +33700000000 --distinct "$count" \
              --texts-file "$tmp/texts" --json || true)
    accepted=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("accepted", 0))' "$summary")
    # wait until every accepted inbound SMS has its flow run and every decided reply is delivered
    last="" last_change=$(date +%s) stalled=""
    while :; do
        IFS='|' read -r nin nruns nrep ndlv < <(psqlq "SELECT
            (SELECT count(*) FROM messages WHERE direction = 'in'),
            (SELECT count(*) FROM flow_runs),
            (SELECT coalesce(sum(jsonb_array_length(replies)), 0) FROM flow_runs),
            (SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'delivered')")
        if [ "$nruns" -ge "$accepted" ] && [ "$nin" -ge "$accepted" ] && [ "$ndlv" -ge "$nrep" ]; then break; fi
        if [ "$nin|$nruns|$ndlv" != "$last" ]; then last="$nin|$nruns|$ndlv"; last_change=$(date +%s); fi
        if [ $(($(date +%s) - last_change)) -gt "${BENCH_STALL:-30}" ]; then
            stalled="no progress for ${BENCH_STALL:-30}s: $nin inbound, $nruns flow runs, $ndlv of $nrep replies delivered"
            break
        fi
        sleep 0.25
    done
    rss=$(peak_rss_mb "$daemon")
    bench_daemon_stop
    # per inbound SMS: its row's time -> its first reply's 'delivered' event
    figs=$(psqlq "WITH r AS (
            SELECT i.created_at AS t_in,
                   (SELECT min(e.at) FROM message_events e
                     WHERE e.message_id = o.id AND e.status = 'delivered') AS t_dlv
              FROM messages i
              JOIN messages o ON o.centre_id = i.centre_id AND o.idempotency_key = 'flow:' || i.id || ':0'
             WHERE i.direction = 'in'),
          d AS (SELECT extract(epoch FROM t_dlv - t_in) * 1000 AS ms FROM r WHERE t_dlv IS NOT NULL)
        SELECT (SELECT count(*) FROM d),
               round(extract(epoch FROM (SELECT max(t_dlv) - min(t_in) FROM r))::numeric, 3),
               round(percentile_disc(0.50) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_disc(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(max(ms)::numeric, 1)
          FROM d")
    outcomes=$(psqlq "SELECT string_agg(outcome || ' ' || n, ', ' ORDER BY n DESC)
                        FROM (SELECT outcome, count(*) AS n FROM flow_runs GROUP BY 1) x")
    python3 - "$summary" "$conc" "$count" "$figs" "$rss" "$outcomes" "$stalled" "${BENCH_RESULTS:-}" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]; count = int(sys.argv[3])
n, span, p50, p95, p99, mx = (sys.argv[4].split("|") + [""] * 6)[:6]
rss, outcomes, stalled, results = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
n = int(n or 0)
num = lambda v: float(v) if v not in ("", None) else 0.0
rate = n / num(span) if num(span) > 0 else 0.0
lat = s.get("latency_ms", {})
print("%-6s %10.0f %10.0f %8.1f %8.1f %8.1f %8.1f %9.2f %9.2f %9d" % (
    conc, s.get("accepted_per_s", 0), rate, num(p50), num(p95), num(p99), num(mx),
    lat.get("p50") or 0, lat.get("p99") or 0, n))
print("  flow outcomes: %s; peak RSS %s MB%s" % (outcomes, rss, ("; STALLED: " + stalled) if stalled else ""))
if results:
    with open(results, "a") as f:
        f.write("inbound keyword round trip (gatewayd)\t%d inbound SMS (CHECK/AIDE/unknown), conc %s, "
                "sim route\tinbound %.0f/s (%d of %d), replies delivered %.0f/s (%d), inbound -> reply "
                "delivered p50 %.0f / p95 %.0f / p99 %.0f ms, HTTP p50 %.1f ms%s\n"
                % (count, conc, s.get("accepted_per_s", 0), s.get("accepted", 0), count, rate, n,
                   num(p50), num(p95), num(p99), lat.get("p50") or 0,
                   ("; STALLED: " + stalled) if stalled else ""))
PY
done
echo "machine: $(bench_machine)"
