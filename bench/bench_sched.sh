#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2001 # bench_pg_start and bench_daemon_start take optional arguments
# Scheduler benchmark (issue 5): one busy minute among a month of reminders. REMINDERS active
# reminders spread over the next 30 days (half monthly RRULEs, half 'once', over BENCH_CONTACTS
# residents, next occurrence precomputed in SQL the way the scheduler stores it) and BUSY
# occurrences due at the same minute (half 'once', half weekly RRULEs started 4 weeks ago).
# Measures, from that minute's due time: when every occurrence is materialised (expansion:
# gw_sched_claim/commit), when every one is in the outbox (release: gw_release_claim/commit →
# gw_enqueue), the lateness of the last one queued, occurrences/s, the daemon's peak RSS, the
# mean time of each scheduler function (pg_stat_statements), whether the scheduler still ticks
# after the burst, the claims' plans with nothing due (auto_explain); then how long a fresh
# daemon takes to compute the first occurrence of BENCH_FIRST new reminders (next_at NULL), and
# what an idle tick costs. Prints figures; never fails on a timing (exit 0 unless the set-up does).
#
#   bench/bench_sched.sh [REMINDERS] [BUSY]          (defaults 1000000 20000)
#
# BENCH_BATCH        [scheduler] batch_size (1000)
# BENCH_INTERVAL     [scheduler] interval_ms (1000)
# BENCH_ROUTE        the centre's route: 'nowhere' (default: nobody serves it, the scheduler is
#                    measured without delivery) or 'sim' (zero-latency simulator: the outbox
#                    sends while the scheduler releases; also prints when all were delivered)
# BENCH_CONTACTS     residents (50000)
# BENCH_FIRST        new reminders whose first occurrence the daemon computes (100000; 0 = skip)
# BENCH_LEAD         seconds at least between the end of the set-up and the busy minute (60)
# BENCH_TIMEOUT      give up waiting for a phase after this many seconds (900)
# BENCH_STALL        report a stall when nothing moves for this many seconds (30)
# BENCH_IDLE         seconds of idle ticks measured at the end (10)
# BENCH_DETAIL=1     also print the statements inside the functions that took the most time
# BENCH_KEEP=1       leave the PostgreSQL cluster running at the end (to EXPLAIN by hand)
#
# Release build (build/release), a throwaway PostgreSQL cluster under /tmp with
# pg_stat_statements, the daemon at log level "warn". The centre has no quiet hours (00:00-24:00,
# Sundays and holidays allowed) and a daily cap of 50, so nothing is deferred.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nrem=${1:-1000000}
busy=${2:-20000}
batch=${BENCH_BATCH:-1000}
interval=${BENCH_INTERVAL:-1000}
route=${BENCH_ROUTE:-nowhere}
ncontacts=${BENCH_CONTACTS:-50000}
nfirst=${BENCH_FIRST:-100000}
lead=${BENCH_LEAD:-60}
timeout=${BENCH_TIMEOUT:-900}
for v in "$nrem" "$busy" "$batch" "$interval" "$ncontacts" "$nfirst" "$lead" "$timeout"; do
    case "$v" in '' | *[!0-9]*) echo "bench_sched: '$v' is not a number" >&2; exit 2 ;; esac
done
if [ "$ncontacts" -le 0 ] || [ "$busy" -le 0 ]; then echo "bench_sched: BUSY and BENCH_CONTACTS must be > 0" >&2; exit 2; fi

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build gatewayd gatewayctl
bench_setup passerelle-bsched
# pg_stat_statements, inner statements of the plpgsql functions included (BENCH_DETAIL)
bench_pg_start "shared_preload_libraries = 'pg_stat_statements'" "pg_stat_statements.track = all"
bash "$pgctl" createdb "$tmp/pg" "$pgport" bench >/dev/null 2>&1
psqlq "CREATE EXTENSION pg_stat_statements" >/dev/null
dbid=$(psqlq "SELECT oid FROM pg_database WHERE datname = 'bench'")

bench_config "[outbox]
batch_size = 2000
poll_interval_ms = 200
[scheduler]
interval_ms = $interval
batch_size = $batch
$BENCH_SIM_ROUTE"
bench_centre "$route"
centre=$(psqlq "SELECT id FROM centres WHERE name = 'bench'")
psqlq "UPDATE centres SET settings = settings || '{\"quiet_start\":\"00:00\",\"quiet_end\":\"24:00\",\"quiet_sundays\":\"no\",\"quiet_holidays\":\"no\",\"daily_cap\":\"50\"}' WHERE id = $centre" >/dev/null
tz=$(psqlq "SELECT timezone FROM centres WHERE id = $centre")

# ---------------------------------------------------------------- set-up (set-based SQL)
body='Bonjour {prenom}, rappel : rendez-vous le {date} a {heure} au centre.'
s0=$(date +%s.%N)
psqlq "INSERT INTO contacts (centre_id, phone, first_name, consent_source, consent_at)
       SELECT $centre, '+336' || lpad(g::text, 8, '0'), 'Resident' || g, 'import', now()
         FROM generate_series(1, $ncontacts) g" >/dev/null
cmin=$(psqlq "SELECT min(id) FROM contacts WHERE centre_id = $centre")
# The month: local minutes from (set-up start + 61 min) over 30 days, a pseudo-random but
# reproducible spread ((g * 7919) mod 43200 minutes); next_at/next_key are what the scheduler
# would store (the first occurrence of a 'once' or of an RRULE is its start). The busy minute
# is at most a few minutes after the set-up, so none of these is due during the run.
psqlq "INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local,
                              rrule, next_at, next_key)
       SELECT $centre, $cmin + g % $ncontacts, 'bench', '$body',
              CASE WHEN g % 2 = 0 THEN 'rrule' ELSE 'once' END, loc,
              CASE WHEN g % 2 = 0 THEN 'FREQ=MONTHLY' END,
              loc AT TIME ZONE '$tz', to_char(loc, 'YYYY-MM-DD\"T\"HH24:MI')
         FROM (SELECT g, date_trunc('minute', now() AT TIME ZONE '$tz') + interval '61 min'
                         + make_interval(mins => ((g::bigint * 7919) % 43200)::int) AS loc
                 FROM generate_series(1, $nrem) g) s" >/dev/null
psqlq "VACUUM ANALYZE contacts" >/dev/null
psqlq "VACUUM ANALYZE reminders" >/dev/null
# The busy minute: at least BENCH_LEAD seconds after the set-up, on a minute boundary.
due=$(psqlq "SELECT extract(epoch FROM date_trunc('minute', now() + make_interval(secs => $lead + 60)))::bigint")
psqlq "INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local,
                              rrule, next_at, next_key)
       SELECT $centre, $cmin + (g * 7) % $ncontacts, 'bench-busy', '$body',
              CASE WHEN g % 2 = 0 THEN 'rrule' ELSE 'once' END,
              CASE WHEN g % 2 = 0 THEN loc - interval '28 days' ELSE loc END,
              CASE WHEN g % 2 = 0 THEN 'FREQ=WEEKLY' END,
              to_timestamp($due), to_char(loc, 'YYYY-MM-DD\"T\"HH24:MI')
         FROM (SELECT g, to_timestamp($due) AT TIME ZONE '$tz' AS loc
                 FROM generate_series(1, $busy) g) s" >/dev/null
psqlq "ANALYZE reminders" >/dev/null
s1=$(date +%s.%N)
setup_s=$(python3 -c "print('%.1f' % ($s1 - $s0))")

bench_daemon_start || { echo "bench_sched: gatewayd did not start" >&2; cat "$tmp/gw.log" >&2; exit 1; }

# pg_stat_statements over the busy minute only: reset one second before it (slept in the
# database: no client start-up time in between)
psqlq "SELECT pg_sleep_until(to_timestamp($due - 1))" >/dev/null
psqlq "SELECT pg_stat_statements_reset()" >/dev/null

# ---------------------------------------------------------------- the busy minute
# Poll (about 5 per second) how many occurrences exist and how many messages were queued;
# times are the database clock's, in ms from the due time.
t_mat="" t_rel="" t_dlv="" stalled="" last="" last_change=0
while :; do
    IFS='|' read -r el nocc nmsg ndlv < <(psqlq "SELECT round((extract(epoch FROM clock_timestamp()) - $due) * 1000)::bigint,
        (SELECT count(*) FROM reminder_occurrences),
        (SELECT count(*) FROM messages WHERE kind = 'reminders'),
        (SELECT count(*) FROM messages WHERE kind = 'reminders' AND status = 'delivered')")
    [ -z "$t_mat" ] && [ "$nocc" -ge "$busy" ] && t_mat=$el
    [ -z "$t_rel" ] && [ "$nmsg" -ge "$busy" ] && t_rel=$el
    [ -z "$t_dlv" ] && [ "$ndlv" -ge "$busy" ] && t_dlv=$el
    if [ -n "$t_rel" ] && { [ "$route" != sim ] || [ -n "$t_dlv" ]; }; then break; fi
    # no progress for BENCH_STALL seconds (many scheduler intervals) once something happened
    if [ "$nocc|$nmsg|$ndlv" != "$last" ]; then last="$nocc|$nmsg|$ndlv"; last_change=$el; fi
    if [ "$nocc" -gt 0 ] && [ $((el - last_change)) -gt $(( ${BENCH_STALL:-30} * 1000 )) ]; then
        stalled="no progress for ${BENCH_STALL:-30}s since +$((last_change / 1000))s: $nocc occurrences, $nmsg queued, $ndlv delivered"
        break
    fi
    if [ "$el" -gt $((timeout * 1000)) ]; then
        stalled="gave up after ${timeout}s: $nocc occurrences, $nmsg queued, $ndlv delivered"
        break
    fi
    sleep 0.2
done
rss=$(peak_rss_mb "$daemon")
stats_busy=$(psqlq "SELECT f, calls, round(mean::numeric, 1), round(total::numeric), round((total * 1000 / $busy)::numeric, 1)
                      FROM (SELECT substring(query FROM 'gw_[a-z_]+') AS f, sum(calls) AS calls,
                                   sum(total_exec_time) / sum(calls) AS mean, sum(total_exec_time) AS total
                              FROM pg_stat_statements
                             WHERE dbid = $dbid AND toplevel
                               AND query ~ 'FROM gw_(sched|release)_claim\\(|gw_(sched|release)_commit\\('
                             GROUP BY 1) x
                     ORDER BY array_position(ARRAY['gw_sched_claim','gw_sched_commit','gw_release_claim','gw_release_commit'], f)")
detail_busy=""
if [ -n "${BENCH_DETAIL:-}" ]; then
    detail_busy=$(psqlq "SELECT round(total_exec_time::numeric) || ' ms  ' || calls || ' calls  '
                               || regexp_replace(left(query, 110), '\\s+', ' ', 'g')
                          FROM pg_stat_statements WHERE dbid = $dbid AND NOT toplevel
                         ORDER BY total_exec_time DESC LIMIT 8")
fi
IFS='|' read -r first_d last_d last_m nocc nmsg < <(psqlq "SELECT
        round(extract(epoch FROM min(d.created_at)) - $due, 2), round(extract(epoch FROM max(d.created_at)) - $due, 2),
        (SELECT round(extract(epoch FROM max(m.created_at)) - $due, 2) FROM messages m WHERE m.kind = 'reminders'),
        (SELECT count(*) FROM reminder_occurrences),
        (SELECT count(*) FROM messages WHERE kind = 'reminders')
   FROM deliveries d WHERE d.kind = 'reminders'")
# the month's reminders: none leased, moved or expanded
untouched=$(psqlq "SELECT (SELECT count(*) FROM reminders r WHERE r.created_by = 'bench'
                             AND r.lease_token IS NULL AND r.next_at > now() AND r.updated_at < to_timestamp($due))
                     - (SELECT count(*) FROM reminder_occurrences o JOIN reminders r ON r.id = o.reminder_id
                         WHERE r.created_by = 'bench')
                     || '/' || $nrem")
# Is the scheduler still ticking after the burst? One more reminder, due 2 s from now.
alive_due=$(psqlq "SELECT extract(epoch FROM date_trunc('second', clock_timestamp()) + interval '2 s')::bigint")
psqlq "INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local, next_at, next_key)
       SELECT $centre, $cmin, 'bench-alive', '$body', 'once', loc, to_timestamp($alive_due),
              to_char(loc, 'YYYY-MM-DD\"T\"HH24:MI')
         FROM (SELECT to_timestamp($alive_due) AT TIME ZONE '$tz' AS loc) s" >/dev/null
alive=""
for _ in $(seq $(( (interval * 5 / 1000 + 12) * 5 ))); do
    alive=$(psqlq "SELECT round(extract(epoch FROM clock_timestamp()) - $alive_due, 1)
                    WHERE EXISTS (SELECT 1 FROM reminder_occurrences o JOIN reminders r ON r.id = o.reminder_id
                                   WHERE r.created_by = 'bench-alive')")
    [ -n "$alive" ] && break
    sleep 0.2
done
[ -n "$alive" ] && alive="yes (a reminder due after the burst was materialised within ${alive}s of its time)" ||
    alive="NO: a reminder due after the burst was not materialised within $((interval * 5 / 1000 + 10))s (the scheduler's timer is no longer armed)"
bench_daemon_stop

# The plans the claims use now that only the month's reminders are left (and the busy
# occurrences of the week): each function called once, in a fresh session and a transaction
# rolled back, its statements' plans from auto_explain in the server log.
explain_fn() { # SQL-call → "<ms> ms  <statement>" per statement, then the full plan of the one matching $2
    local mark
    mark=$(wc -c <"$tmp/pg/log")
    bash "$pgctl" psql "$tmp/pg" "$pgport" bench -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
BEGIN;
SELECT count(*) FROM $1;
ROLLBACK;
SQL
    sleep 0.3
    tail -c +$((mark + 1)) "$tmp/pg/log" | python3 -c '
import re, sys
want = sys.argv[1]
entries, cur = [], None
for line in sys.stdin.read().splitlines():
    if re.match(r"^\d{4}-\d\d-\d\d ", line):
        cur = None
        m = re.search(r"duration: ([0-9.]+) ms\s+plan:", line)
        if m:
            cur = {"ms": float(m.group(1)), "lines": []}
            entries.append(cur)
    elif cur is not None:
        cur["lines"].append(line.replace("\t", "  ", 1).replace("\t", "  "))
for e in entries:
    text = [l for l in e["lines"] if "Query Text:" in l]
    q = " ".join(" ".join(e["lines"]).split())
    q = q[q.find("Query Text:") + 12:][:90] if text else "?"
    if q.startswith("SELECT count(*) FROM gw_"):
        continue
    print("%9.1f ms  %s" % (e["ms"], q))
for e in entries:
    if want and any(want in l for l in e["lines"]):
        start = next((i for i, l in enumerate(e["lines"]) if "actual time=" in l or "never executed" in l), 0)
        print("\n".join(e["lines"][start:]))
        break
' "$2"
}
plan_sched=$(explain_fn "gw_sched_claim('bench-explain', $batch, 60)" "FROM reminders r" 2>&1 || true)
plan_release=$(explain_fn "gw_release_claim('bench-explain', $batch, 60)" "" 2>&1 || true)

# ---------------------------------------------------------------- first occurrences
# BENCH_FIRST reminders saved without next_at while the daemon is down (an import, or a
# restart after one); time from the daemon's start until each has its first occurrence.
t_first="" rss2=""
if [ "$nfirst" -gt 0 ]; then
    psqlq "INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local, rrule)
           SELECT $centre, $cmin + g % $ncontacts, 'bench-first', '$body',
                  CASE WHEN g % 2 = 0 THEN 'rrule' ELSE 'once' END, loc,
                  CASE WHEN g % 2 = 0 THEN 'FREQ=MONTHLY' END
             FROM (SELECT g, date_trunc('minute', now() AT TIME ZONE '$tz') + interval '2 hours'
                             + make_interval(mins => ((g::bigint * 7919) % 40000)::int) AS loc
                     FROM generate_series(1, $nfirst) g) s" >/dev/null
    psqlq "ANALYZE reminders" >/dev/null
    psqlq "SELECT pg_stat_statements_reset()" >/dev/null
    f0=$(psqlq "SELECT extract(epoch FROM clock_timestamp())")
    bench_daemon_start append || true
    while :; do
        IFS='|' read -r el left < <(psqlq "SELECT round((extract(epoch FROM clock_timestamp()) - $f0) * 1000)::bigint,
            (SELECT count(*) FROM reminders WHERE created_by = 'bench-first' AND next_at IS NULL AND status = 'active')")
        [ "$left" = 0 ] && { t_first=$el; break; }
        if [ "$el" -gt $((timeout * 1000)) ]; then
            echo "bench_sched: first occurrences: gave up after ${timeout}s, $left left" >&2
            break
        fi
        sleep 0.2
    done
    rss2=$(peak_rss_mb "$daemon")
    first_wrong=$(psqlq "SELECT count(*) FROM reminders WHERE created_by = 'bench-first'
                           AND (status <> 'active' OR next_at IS DISTINCT FROM start_local AT TIME ZONE '$tz')")
    stats_first=$(psqlq "SELECT f, calls, round(mean::numeric, 1), round(total::numeric), round((total * 1000 / $nfirst)::numeric, 1)
                          FROM (SELECT substring(query FROM 'gw_[a-z_]+') AS f, sum(calls) AS calls,
                                       sum(total_exec_time) / sum(calls) AS mean, sum(total_exec_time) AS total
                                  FROM pg_stat_statements
                                 WHERE dbid = $dbid AND toplevel AND query ~ 'FROM gw_sched_claim\\(|gw_sched_commit\\('
                                 GROUP BY 1) x ORDER BY 1")
    detail_first=""
    if [ -n "${BENCH_DETAIL:-}" ]; then
        detail_first=$(psqlq "SELECT round(total_exec_time::numeric) || ' ms  ' || calls || ' calls  '
                                   || regexp_replace(left(query, 110), '\\s+', ' ', 'g')
                              FROM pg_stat_statements WHERE dbid = $dbid AND NOT toplevel
                             ORDER BY total_exec_time DESC LIMIT 6")
    fi
    bench_daemon_stop
fi

# ---------------------------------------------------------------- idle ticks
# A fresh daemon (fresh plans, the tables analysed) with nothing due: what each tick costs.
psqlq "ANALYZE reminders" >/dev/null
psqlq "ANALYZE reminder_occurrences" >/dev/null
psqlq "ANALYZE deliveries" >/dev/null
bench_daemon_start append || true
sleep 3
psqlq "SELECT pg_stat_statements_reset()" >/dev/null
sleep "${BENCH_IDLE:-10}"
stats_idle=$(psqlq "SELECT f, calls, round(mean::numeric, 1), round(total::numeric)
                      FROM (SELECT substring(query FROM 'gw_[a-z_]+') AS f, sum(calls) AS calls,
                                   sum(total_exec_time) / sum(calls) AS mean, sum(total_exec_time) AS total
                              FROM pg_stat_statements
                             WHERE dbid = $dbid AND toplevel AND query ~ 'FROM gw_(sched|release)_claim\\('
                             GROUP BY 1) x ORDER BY 1")
detail_idle=""
if [ -n "${BENCH_DETAIL:-}" ]; then
    detail_idle=$(psqlq "SELECT round(total_exec_time::numeric) || ' ms  ' || calls || ' calls  '
                               || regexp_replace(left(query, 110), '\\s+', ' ', 'g')
                          FROM pg_stat_statements WHERE dbid = $dbid AND NOT toplevel
                         ORDER BY total_exec_time DESC LIMIT 3")
fi
bench_daemon_stop

# ---------------------------------------------------------------- figures
echo "reminders $nrem + busy $busy over $ncontacts residents; batch_size $batch, interval_ms $interval, route $route; set-up ${setup_s}s"
[ -n "$stalled" ] && echo "busy minute: STALLED: $stalled"
python3 - "$busy" "${t_mat:-}" "${t_rel:-}" "$first_d" "$last_d" "$last_m" "${t_dlv:-}" <<'PY'
import sys
busy = int(sys.argv[1])
f = lambda v: float(v) if v not in ("", None) else None
mat, rel, first_d, last_d, last_m, dlv = (f(v) for v in sys.argv[2:8])
ms = lambda v: v / 1000.0 if v is not None else None
mat, rel, dlv = ms(mat), ms(rel), ms(dlv)
s = lambda v: "+%.2fs" % v if v is not None else "never"
print("busy minute (from its due time): first occurrences committed %s, all %d materialised %s, all queued "
      "in the outbox %s%s" % (s(first_d), busy, s(mat), s(rel), (", all delivered %s" % s(dlv)) if dlv is not None else ""))
print("lateness of the last queued: %s (max(messages.created_at) - due); last occurrences commit began %s"
      % (s(last_m), s(last_d)))
if mat and rel:
    print("throughput: %.0f occurrences/s materialised, %.0f occurrences/s due -> outbox" % (busy / mat, busy / rel))
PY
echo "peak RSS: ${rss} MB (busy minute)${rss2:+, ${rss2} MB (first occurrences, fresh daemon)}"
echo "pg_stat_statements over the busy minute (from due-1s until all queued; idle calls included):"
printf '  %-18s %7s %9s %9s %12s\n' function calls mean_ms total_ms us/occurrence
while IFS='|' read -r f c m t u; do
    [ -n "$f" ] && printf '  %-18s %7s %9s %9s %12s\n' "$f" "$c" "$m" "$t" "$u"
done <<<"$stats_busy"
if [ -n "$detail_busy" ]; then echo "  inner statements by total time:"; sed 's/^/    /' <<<"$detail_busy"; fi
echo "scheduler alive after the burst: $alive"
echo "month's reminders untouched (not leased, not moved, no occurrence): $untouched"
echo "claims with nothing due after the burst (fresh session, auto_explain; statement times, then the plan of the expansion claim's scan):"
echo "  gw_sched_claim:"
sed 's/^/  /' <<<"$plan_sched" | grep -v '^ *Buffers: shared hit=[0-9]*$' || true
echo "  gw_release_claim:"
sed 's/^/  /' <<<"$plan_release"
if [ "$nfirst" -gt 0 ]; then
    if [ -n "$t_first" ]; then
        python3 -c "print('first occurrences: %d reminders with next_at NULL computed %.2fs after the daemon started (%.0f/s); %s wrong' % ($nfirst, $t_first / 1000.0, $nfirst * 1000.0 / max($t_first, 1), '$first_wrong'))"
    else
        echo "first occurrences: not finished"
    fi
    printf '  %-18s %7s %9s %9s %12s\n' function calls mean_ms total_ms us/reminder
    while IFS='|' read -r f c m t u; do
        [ -n "$f" ] && printf '  %-18s %7s %9s %9s %12s\n' "$f" "$c" "$m" "$t" "$u"
    done <<<"$stats_first"
    if [ -n "$detail_first" ]; then echo "  inner statements by total time:"; sed 's/^/    /' <<<"$detail_first"; fi
fi
echo "idle ticks (fresh daemon, nothing due, ${BENCH_IDLE:-10}s):"
printf '  %-18s %7s %9s %9s\n' function calls mean_ms total_ms
while IFS='|' read -r f c m t; do
    [ -n "$f" ] && printf '  %-18s %7s %9s %9s\n' "$f" "$c" "$m" "$t"
done <<<"$stats_idle"
if [ -n "$detail_idle" ]; then echo "  inner statements by total time:"; sed 's/^/    /' <<<"$detail_idle"; fi
echo "daemon log lines (warn+): $(grep -c . "$tmp/gw.log" || true)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)" GiB"}' /proc/meminfo), $(uname -r); PostgreSQL $(psqlq 'show server_version'); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${BENCH_RESULTS:-}" ]; then
    python3 - "$BENCH_RESULTS" "$nrem" "$busy" "$batch" "$route" "${t_mat:-}" "${t_rel:-}" "${last_m:-}" \
        "$nfirst" "${t_first:-}" "${alive%% *}" "$stats_idle" "$stalled" <<'PY'
import sys
out, nrem, busy, batch, route, mat, rel, late, nfirst, tfirst, alive, idle, stalled = sys.argv[1:14]
busy, nfirst = int(busy), int(nfirst)
f = lambda v: float(v) / 1000.0 if v not in ("", None) else None
mat, rel, tfirst = f(mat), f(rel), f(tfirst)
figs = []
figs.append("%d due at once: all materialised %s, all in the outbox %s" % (
    busy, "+%.1f s (%.0f/s)" % (mat, busy / mat) if mat else "never",
    "+%.1f s (%.0f/s)" % (rel, busy / rel) if rel else "never"))
if late:
    figs.append("lateness of the last %s s" % late)
if nfirst:
    figs.append("%d first occurrences (fresh daemon) %s" % (
        nfirst, "%.1f s (%.0f/s)" % (tfirst, nfirst / tfirst) if tfirst else "not finished"))
ticks = {}
for line in idle.splitlines():
    p = line.split("|")
    if len(p) >= 3 and p[0]:
        ticks[p[0]] = p[2]
if ticks:
    figs.append("idle tick " + " + ".join("%s %s ms" % (k.replace("gw_", "").replace("_claim", ""), v)
                                           for k, v in sorted(ticks.items())))
figs.append("alive after the burst: %s" % (alive or "?").lower().rstrip(":"))
if stalled:
    figs.append("STALLED: " + stalled)
with open(out, "a") as fh:
    fh.write("scheduler materialisation (gatewayd)\t%s reminders in the month + %d due in one minute, "
             "batch %s, route %s\t%s\n" % (nrem, busy, batch, route, "; ".join(figs)))
PY
fi
