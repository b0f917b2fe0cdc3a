#!/usr/bin/env bash
# The whole benchmark set in one command (also `make bench`), with moderate sizes (3 to 5
# minutes on 2 cores, plus the first build), then ONE table: benchmark, workload, figures,
# and the machine it ran on.
#
#   bench/run_all.sh
#   BENCH_REV=HEAD bench/run_all.sh          measure a commit, not the work tree (see lib.sh)
#   BENCH_ONLY="send kannel" bench/run_all.sh
#
# Sizes (environment, defaults in brackets):
#   BENCH_SEND_COUNT [50000]  BENCH_SEND_CONC [32]     bench_send.sh (and Kannel's, same workload)
#   BENCH_ISP_COUNT [20000]   BENCH_ISP_CONC [32]      bench_isendpro.sh
#   BENCH_INBOUND_COUNT [10000] BENCH_INBOUND_CONC [16] bench_inbound.sh
#   BENCH_SCHED_REMINDERS [200000] BENCH_SCHED_BUSY [5000] BENCH_SCHED_FIRST [20000]
#                                                      bench_sched.sh (busy minute 5-65 s ahead)
#   BENCH_KANNEL [1]          0 skips kannel/bench_kannel.sh (installs kannel, kannel-extras)
#   BENCH_ONLY                a subset of: send isendpro inbound sched kannel
#   BENCH_LOG_DIR             where each script's full output is kept (a new /tmp directory)
# Each script's own output (more figures than the table) is in BENCH_LOG_DIR/<name>.log.
# Exit status: 0 when every benchmark ran (whatever its figures), 1 when one failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

send_n=${BENCH_SEND_COUNT:-50000} send_c=${BENCH_SEND_CONC:-32}
isp_n=${BENCH_ISP_COUNT:-20000} isp_c=${BENCH_ISP_CONC:-32}
in_n=${BENCH_INBOUND_COUNT:-10000} in_c=${BENCH_INBOUND_CONC:-16}
sched_rem=${BENCH_SCHED_REMINDERS:-200000} sched_busy=${BENCH_SCHED_BUSY:-5000}
sched_first=${BENCH_SCHED_FIRST:-20000}
only=${BENCH_ONLY:-send isendpro inbound sched kannel}
[ "${BENCH_KANNEL:-1}" != 0 ] || only=${only//kannel/}

logs=${BENCH_LOG_DIR:-$(mktemp -d /tmp/passerelle-bench-all.XXXXXX)}
mkdir -p "$logs"
results=$logs/results.tsv
: >"$results"
export BENCH_RESULTS=$results

if [ -n "${BENCH_REV:-}" ]; then # one commit for every script, even if HEAD moves meanwhile
    BENCH_REV=$(git -C "$root" rev-parse --short "${BENCH_REV}^{commit}")
    export BENCH_REV
fi

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
start=$(date +%s)
echo "run_all: building (release, ${BENCH_REV:+commit $BENCH_REV, }$(basename "${BENCH_BUILD_DIR:-build/bench}"))" >&2
bench_build gatewayd gatewayctl loadgen isendpro_mock

failed=0
run() { # NAME TITLE COMMAND...: runs one benchmark, its output to $logs/NAME.log
    local name=$1 title=$2 t0 rc=0 rows_before
    shift 2
    case " $only " in *" $name "*) ;; *) return 0 ;; esac
    t0=$(date +%s)
    rows_before=$(wc -l <"$results")
    echo "run_all: $name: $*" >&2
    "$@" >"$logs/$name.log" 2>&1 || rc=$?
    echo "run_all: $name: exit $rc after $(($(date +%s) - t0)) s (log $logs/$name.log)" >&2
    if [ "$rc" -ne 0 ] || [ "$(wc -l <"$results")" = "$rows_before" ]; then
        failed=1
        printf '%s\t%s\t%s\n' "$title" "$*" "FAILED (exit $rc): see $logs/$name.log" >>"$results"
    fi
}

run send "send API (gatewayd)" "$root/bench/bench_send.sh" "$send_n" "$send_c"
run isendpro "iSendPro mock path (gatewayd)" "$root/bench/bench_isendpro.sh" "$isp_n" "$isp_c"
run inbound "inbound keyword round trip (gatewayd)" "$root/bench/bench_inbound.sh" "$in_n" "$in_c"
run sched "scheduler materialisation (gatewayd)" \
    env BENCH_LEAD="${BENCH_LEAD:-5}" BENCH_FIRST="$sched_first" BENCH_IDLE="${BENCH_IDLE:-5}" \
    "$root/bench/bench_sched.sh" "$sched_rem" "$sched_busy"
run kannel "same MT workload through Kannel" "$root/bench/kannel/bench_kannel.sh" "$send_n" "$send_c"

machine=$(bench_machine)
elapsed=$(($(date +%s) - start))
python3 - "$results" "$machine" "$elapsed" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
head = ("benchmark", "workload", "figures")
rows = [(r + ["", "", ""])[:3] for r in rows]
esc = lambda s: s.replace("|", "\\|")
w = [max([len(head[i])] + [len(esc(r[i])) for r in rows]) for i in range(2)]
print("| %-*s | %-*s | %s |" % (w[0], head[0], w[1], head[1], head[2]))
print("| %s | %s | %s |" % ("-" * w[0], "-" * w[1], "---"))
for r in rows:
    print("| %-*s | %-*s | %s |" % (w[0], esc(r[0]), w[1], esc(r[1]), esc(r[2])))
print()
print("machine: %s; whole run %d s" % (sys.argv[2], int(sys.argv[3])))
PY
echo "full outputs: $logs" >&2
exit "$failed"
