#!/usr/bin/env bash
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

bash "$root/scripts/deps.sh" build runtime >/dev/null
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DPASSERELLE_TESTS=ON >/dev/null
cmake --build "$root/build/release" -j2 --target gatewayd gatewayctl loadgen isendpro_mock >/dev/null
bin=$root/build/release

tmp=$(mktemp -d /tmp/passerelle-bench.XXXXXX)
chmod 755 "$tmp"
pgport=$((56900 + RANDOM % 500))
port=$((18900 + RANDOM % 400))
mport=$((port + 400))
pgctl="$root/scripts/pgctl.sh"
daemon="" mock=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    [ -n "$mock" ] && kill "$mock" 2>/dev/null && wait "$mock" 2>/dev/null || true
    bash "$pgctl" stop "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
bash "$pgctl" init "$tmp/pg" >/dev/null 2>&1
bash "$pgctl" start "$tmp/pg" "$pgport" >/dev/null 2>&1
psqlq() { bash "$pgctl" psql "$tmp/pg" "$pgport" bench -qAt -c "$1"; }
key_isp=bench-keyid-0123456789

printf '%-6s %10s %10s %10s %8s %10s\n' conc api/s mock/s deliv/s sms smsmulti
for conc in "${concs[@]}"; do
    bash "$pgctl" psql "$tmp/pg" "$pgport" postgres -qc "DROP DATABASE IF EXISTS bench" >/dev/null 2>&1
    bash "$pgctl" createdb "$tmp/pg" "$pgport" bench >/dev/null 2>&1
    "$bin/tests/peers/isendpro_mock" --listen "127.0.0.1:$mport" --keyid "$key_isp" \
        --credit 100000 --dlr-url "http://127.0.0.1:$port/providers/isp/dlr" --dlr-delay-ms 200 \
        2>/dev/null &
    mock=$!
    cat >"$tmp/gw.ini" <<INI
[gateway]
listen = 127.0.0.1:$port
[database]
conninfo = $(bash "$pgctl" conninfo "$tmp/pg" "$pgport" bench)
pool_size = 6
[log]
level = warn
[outbox]
batch_size = 1000
poll_interval_ms = 200
[route isp]
driver = isendpro
url = http://127.0.0.1:$mport/cgi-bin
keyid = $key_isp
concurrency = 2000
credit_poll_s = 0
batch_max = 200
INI
    "$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" migrate >/dev/null
    "$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" centre create bench --route isp >/dev/null 2>&1
    key=$("$bin/gatewayd/gatewayctl" --config "$tmp/gw.ini" key create bench 2>/dev/null)
    "$bin/gatewayd/gatewayd" --config "$tmp/gw.ini" 2>"$tmp/gw.log" &
    daemon=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
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
    kill "$daemon"; wait "$daemon" || true; daemon=""
    curl -fs "http://127.0.0.1:$mport/_mock/requests" >"$tmp/requests.json" || echo '[]' >"$tmp/requests.json"
    python3 - "$summary" "$conc" "$t0" "$sent_t" "$t1" "$delivered" "$count" "$reqs" \
        "$tmp/requests.json" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]
t0, ts, t1 = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
dlv, count = int(sys.argv[6]), int(sys.argv[7])
reqs = json.load(open(sys.argv[9]))
paths = [r.get("path", "") for r in reqs]
print("%-6s %10.0f %10.0f %10.0f %8d %10d" % (conc, s.get("accepted_per_s", 0),
      count / (ts - t0), dlv / (t1 - t0), sum(p.endswith("/sms") for p in paths),
      sum(p.endswith("/smsmulti") for p in paths)))
PY
    kill "$mock"; wait "$mock" 2>/dev/null || true; mock=""
done
echo "machine: $(nproc) cores, $(uname -r); count $count per run; mock delivery reports after 200 ms"
