#!/usr/bin/env bash
# shellcheck disable=SC2119 # bench_pg_start and bench_daemon_start take optional arguments
# iSendPro-path benchmark: messages posted to the API, sent by gatewayd's isendpro route to the
# iSendPro mock (tests/peers/isendpro_mock) over real HTTP on loopback, delivery reports pushed
# back by the mock. Prints, per API concurrency: accepted/s at the API, messages/s accepted by
# the mock, delivered/s end to end, and how many /sms vs /smsmulti requests carried them.
#
#   bench/bench_isendpro.sh [COUNT] [CONCURRENCY...]     e.g. bench/bench_isendpro.sh 20000 8 32 128
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-20000}
shift || true
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(8 32 128)

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build gatewayd gatewayctl loadgen isendpro_mock
bench_setup passerelle-bench
mport=$(bench_free_port 19300 400)
mock=""
bench_pg_start
key_isp=bench-keyid-0123456789

printf '%-6s %10s %10s %10s %8s %10s\n' conc api/s mock/s deliv/s sms smsmulti
for conc in "${concs[@]}"; do
    bench_db_fresh
    "$bin/tests/peers/isendpro_mock" --listen "127.0.0.1:$mport" --keyid "$key_isp" \
        --credit 100000 --dlr-url "http://127.0.0.1:$port/providers/isp/dlr" --dlr-delay-ms 200 \
        2>/dev/null &
    mock=$!
    bench_track "$mock"
    bench_config "[outbox]
batch_size = 1000
poll_interval_ms = 200
[route isp]
driver = isendpro
url = http://127.0.0.1:$mport/cgi-bin
keyid = $key_isp
concurrency = 2000
credit_poll_s = 0
batch_max = 200"
    bench_centre isp
    bench_daemon_start || true
    t0=$(date +%s.%N)
    summary=$("$bin/bench/loadgen" --url "http://127.0.0.1:$port" --key "$key" --count "$count" \
              --concurrency "$conc" --distinct 1000 --json \
              --text "Bonjour, votre atelier commence demain a 10 h. Numero %d" || true)
    sent_t="" 
    for _ in $(seq 1200); do
        s=$(psqlq "SELECT count(*) FILTER (WHERE status IN ('sent','delivered')), count(*) FILTER (WHERE status = 'delivered') FROM messages")
        [ -z "$sent_t" ] && [ "${s%%|*}" = "$count" ] && sent_t=$(date +%s.%N)
        [ "${s##*|}" = "$count" ] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    [ -n "$sent_t" ] || sent_t=$t1
    reqs=$(curl -fs "http://127.0.0.1:$mport/_mock/state" || echo '{}')
    delivered=$(psqlq "SELECT count(*) FROM messages WHERE status = 'delivered'")
    bench_daemon_stop
    curl -fs "http://127.0.0.1:$mport/_mock/requests" >"$tmp/requests.json" || echo '[]' >"$tmp/requests.json"
    python3 - "$summary" "$conc" "$t0" "$sent_t" "$t1" "$delivered" "$count" "$reqs" \
        "$tmp/requests.json" "${BENCH_RESULTS:-}" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]
t0, ts, t1 = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
dlv, count = int(sys.argv[6]), int(sys.argv[7])
reqs = json.load(open(sys.argv[9]))
paths = [r.get("path", "") for r in reqs]
n_sms, n_multi = sum(p.endswith("/sms") for p in paths), sum(p.endswith("/smsmulti") for p in paths)
print("%-6s %10.0f %10.0f %10.0f %8d %10d" % (conc, s.get("accepted_per_s", 0),
      count / (ts - t0), dlv / (t1 - t0), n_sms, n_multi))
if sys.argv[10]:
    lat = s.get("latency_ms", {})
    with open(sys.argv[10], "a") as f:
        f.write("iSendPro mock path (gatewayd)\tAPI -> isendpro route -> mock over HTTP, %d msgs, conc %s\t"
                "accepted %.0f/s, at the mock %.0f/s, delivered %.0f/s (%d, DLR after 200 ms), "
                "%d /sms + %d /smsmulti requests, API p50 %.1f / p99 %.1f ms\n"
                % (count, conc, s.get("accepted_per_s", 0), count / (ts - t0), dlv / (t1 - t0), dlv,
                   n_sms, n_multi, lat.get("p50") or 0, lat.get("p99") or 0))
PY
    bench_kill "$mock"; mock=""
done
echo "machine: $(nproc) cores, $(uname -r); count $count per run; mock delivery reports after 200 ms"
