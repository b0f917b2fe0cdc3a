#!/usr/bin/env bash
# shellcheck disable=SC2119 # bench_daemon_start and friends take optional arguments
# The send workload of bench/bench_send.sh pushed through Kannel instead of gatewayd, on the same
# machine, for a side-by-side figure: COUNT messages at CONCURRENCY keep-alive connections, each
# a GET /cgi-bin/sendsms to smsbox (loadgen --get, same texts and recipients as bench_send),
# bearerbox routing them to its fake SMSC connection, Kannel's own test program `fakesmsc`
# receiving them. Prints, per concurrency:
#   accepted/s   sendsms answers "202 Accepted for delivery" per second (loadgen, wall clock)
#   deliv/s      messages received by fakesmsc (counted from its log) per second, from the
#                first request until the last one arrived
#   p50/p99/max  sendsms answer time (loadgen), ms
#   peak RSS     bearerbox + smsbox, MB
# Prints figures; never fails on a timing.
#
#   bench/kannel/bench_kannel.sh [COUNT] [CONCURRENCY...]      (defaults 50000 64, as bench_send)
#
# Installs Debian's kannel (bearerbox, smsbox) and kannel-extras (fakesmsc) when missing.
# BENCH_KANNEL_DLR=1 also asks for a delivery report per message (dlr-mask 8, "accepted by the
# SMSC", which bearerbox issues itself when the fake SMSC takes the message) posted by smsbox
# to a local URL (Kannel's test_http_server); the reports received are counted.
# BENCH_DISTINCT numbers (1000). BENCH_STALL: stop waiting after this many seconds without
# progress (30).
#
# What differs from gatewayd (see bench/README.md): Kannel answers 202 once bearerbox has the
# message in its memory queue and its store file (store-type = file, configured here), a file
# Kannel never forces to disk (bearerbox calls no fsync). gatewayd answers 202 only after the message's
# row is committed to PostgreSQL, and every state change is a committed row too.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
count=${1:-50000}
shift || true
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(64)
for v in "$count" "${concs[@]}"; do
    case "$v" in '' | *[!0-9]*) echo "bench_kannel: '$v' is not a number" >&2; exit 2 ;; esac
done

fakesmsc=/usr/lib/kannel/test/fakesmsc
httpsink=/usr/lib/kannel/test/test_http_server
missing=()
for pkg in kannel kannel-extras; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    echo "bench_kannel: installing ${missing[*]}" >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 \
        "${missing[@]}" >/dev/null
fi
[ -x "$fakesmsc" ] || { echo "bench_kannel: $fakesmsc not found (package kannel-extras)" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build loadgen
bench_setup passerelle-bkannel

kstop() { # stops a Kannel process of ours and waits for it (bearerbox takes a second or two)
    bench_kill "$1"
}
kannel_version=$(dpkg-query -W -f='${Version}' kannel)

printf '%-6s %10s %10s %8s %8s %8s %12s %10s\n' conc accepted/s deliv/s p50ms p99ms maxms delivered peakRSS_MB
for conc in "${concs[@]}"; do
    admin=$(bench_free_port 23000 500)
    boxport=$(bench_free_port 23500 500)
    smscport=$(bench_free_port 24000 500)
    sendport=$(bench_free_port 24500 500)
    dlrport=$(bench_free_port 25000 500)
    rm -f "$tmp"/*.log "$tmp"/kannel.store*
    cat >"$tmp/kannel.conf" <<CONF
group = core
admin-port = $admin
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = $boxport
box-allow-ip = "127.0.0.1"
log-file = "$tmp/bearerbox.log"
log-level = 2
store-type = file
store-location = "$tmp/kannel.store"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = $smscport
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $boxport
sendsms-port = $sendport
log-file = "$tmp/smsbox.log"
log-level = 2

group = sendsms-user
username = bench
password = bench
max-messages = 1

group = sms-service
keyword = default
text = "Passerelle bench"
catch-all = true
CONF
    /usr/sbin/bearerbox -v 2 "$tmp/kannel.conf" >"$tmp/bearerbox.out" 2>&1 &
    bb=$!
    bench_track "$bb"
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/status.txt?password=bench" >/dev/null && break; sleep 0.1; done
    # fakesmsc sends no MO (-m 0) and logs each MT it receives ("Got message N: <...>", debug)
    "$fakesmsc" -H 127.0.0.1 -r "$smscport" -m 0 "1 2 text nop" >"$tmp/fakesmsc.log" 2>&1 &
    fs=$!
    bench_track "$fs"
    /usr/sbin/smsbox -v 2 "$tmp/kannel.conf" >"$tmp/smsbox.out" 2>&1 &
    sb=$!
    bench_track "$sb"
    ready=""
    for _ in $(seq 100); do
        st=$(curl -fs "http://127.0.0.1:$admin/status.txt?password=bench" || true)
        if grep -q 'FAKE:.*(online' <<<"$st" && grep -q 'smsbox:' <<<"$st" &&
            (exec 3<>"/dev/tcp/127.0.0.1/$sendport") 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "bench_kannel: Kannel did not come up; see below" >&2; tail -n 20 "$tmp"/*.out "$tmp"/*.log >&2; exit 1; }
    dlr=""
    if [ -n "${BENCH_KANNEL_DLR:-}" ]; then
        "$httpsink" -p "$dlrport" -t 8 -v 1 >"$tmp/dlr.log" 2>&1 &
        sink=$!
        bench_track "$sink"
        # smsbox retries a report whose URL did not answer only after a delay: the sink must
        # listen before the first message
        for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$dlrport") 2>/dev/null && break; sleep 0.1; done
        dlr="&dlr-mask=8&dlr-url=http%3A%2F%2F127.0.0.1%3A$dlrport%2Fdlr%3Fid%3D{i}%26s%3D%25d"
    fi

    t0=$(date +%s.%N)
    summary=$("$bin/bench/loadgen" --url "http://127.0.0.1:$sendport" --count "$count" \
              --concurrency "$conc" --distinct "${BENCH_DISTINCT:-1000}" --json \
              --get "/cgi-bin/sendsms?username=bench&password=bench&from=Passerelle&to={to}&text={text}$dlr" \
              --text "Bonjour, ceci est un test de charge Passerelle numero %d" || true)
    accepted=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("accepted", 0))' "$summary")
    # delivered/s: from the first request until fakesmsc has received every accepted message
    last=-1 last_change=$(date +%s) stalled="" got=0
    while :; do
        got=$(grep -c 'Got message' "$tmp/fakesmsc.log" || true)
        [ "$got" -ge "$accepted" ] && break
        if [ "$got" != "$last" ]; then last=$got; last_change=$(date +%s); fi
        if [ $(($(date +%s) - last_change)) -gt "${BENCH_STALL:-30}" ]; then
            stalled="no progress for ${BENCH_STALL:-30}s: $got of $accepted received by fakesmsc"
            break
        fi
        sleep 0.1
    done
    t1=$(date +%s.%N)
    dlrs="" t2=$t1
    if [ -n "$dlr" ]; then
        last=-1 last_change=$(date +%s)
        while :; do # the reports trail the messages
            dlrs=$(grep -c 'Request for </dlr>' "$tmp/dlr.log" || true)
            [ "$dlrs" -ge "$accepted" ] && break
            if [ "$dlrs" != "$last" ]; then last=$dlrs; last_change=$(date +%s); fi
            [ $(($(date +%s) - last_change)) -le "${BENCH_STALL:-30}" ] || break
            sleep 0.1
        done
        t2=$(date +%s.%N)
    fi
    rss=$(( $(peak_rss_mb "$bb") + $(peak_rss_mb "$sb") ))
    status=$(curl -fs "http://127.0.0.1:$admin/status.txt?password=bench" | grep -E '^SMS:|^DLR:' || true)
    kstop "$sb"
    kstop "$fs"
    kstop "$bb"
    [ -z "${sink:-}" ] || { kstop "$sink"; sink=""; }
    echo "$status" >&2
    [ -z "$stalled" ] || echo "bench_kannel: STALLED: $stalled" >&2
    python3 - "$summary" "$conc" "$t0" "$t1" "$got" "$rss" "$count" "$stalled" "$dlrs" \
        "$kannel_version" "${BENCH_RESULTS:-}" "$t2" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); conc = sys.argv[2]
t0, t1 = float(sys.argv[3]), float(sys.argv[4]); dlv = int(sys.argv[5]); rss = sys.argv[6]
count, stalled, dlrs, version, results = int(sys.argv[7]), sys.argv[8], sys.argv[9], sys.argv[10], sys.argv[11]
t2 = float(sys.argv[12])
lat = s.get("latency_ms", {})
print("%-6s %10.0f %10.0f %8.2f %8.2f %8.2f %12d %10s" % (conc, s.get("accepted_per_s", 0),
      dlv / (t1 - t0), lat.get("p50") or 0, lat.get("p99") or 0, lat.get("max") or 0, dlv, rss))
if dlrs:
    print("  delivery reports (dlr-mask 8) received at the local URL: %s, %.0f/s from the first request"
          % (dlrs, int(dlrs) / (t2 - t0)))
if results:
    figs = "accepted %.0f/s (%d of %d), delivered to fakesmsc %.0f/s (%d), sendsms latency p50 %.1f / p99 %.1f ms, peak RSS %s MB (bearerbox + smsbox)" % (
        s.get("accepted_per_s", 0), s.get("accepted", 0), count, dlv / (t1 - t0), dlv,
        lat.get("p50") or 0, lat.get("p99") or 0, rss)
    if dlrs:
        figs += ", DLRs at a local URL %.0f/s (%s)" % (int(dlrs) / (t2 - t0), dlrs)
    if stalled:
        figs += "; STALLED: " + stalled
    with open(results, "a") as f:
        f.write("same MT workload through Kannel %s\tGET /cgi-bin/sendsms, %d msgs, conc %s, fake SMSC%s\t%s\n"
                % (version, count, conc, " + DLR" if dlrs else "", figs))
PY
done
echo "machine: $(bench_machine); Kannel $kannel_version"
