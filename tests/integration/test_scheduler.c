/*
 * test_scheduler — reminders, alerts and job alerts through the real scheduler (gw_sched.c,
 * sql/004_scheduler.sql) of a real gatewayd against a real PostgreSQL: what a resident receives
 * (the SMS rows with their idempotency key 'dlv:<delivery id>', text, kind), and what the
 * scheduler recorded (reminders.next_at / next_key / status, reminder_occurrences with status
 * and reason, deliveries with status, reason and due_at).
 *
 * One daemon ("main", database t_scheduler_<pid>, [scheduler] interval_ms = 200, simulator
 * latency and delivery reports 1 ms) with two centres in Europe/Paris:
 *   - "Les Tilleuls" on the `sim` route, seeded (`gatewayctl centre seed`), quiet hours off
 *     (00:00-24:00, Sundays and holidays allowed), so that it sends at any time of any day;
 *   - "Centre calme" on a route of its own (`calme`, a second simulator), whose allowed window
 *     [now+60 min, now+120 min) (or 00:30-01:30 after 22:00) never contains the test's "now".
 * Times are minute-granular local wall-clock times read from PostgreSQL; a reminder for the
 * current minute fires at once. Before a reminder is created for "now", the test waits for the
 * next minute when the local second is >= 55 (or the local time 23:59, for the checks that
 * defer to the next midnight). Downtime is simulated: the daemon is stopped, reminders are
 * written as the scheduler would have left them days ago, the daemon is started again.
 * Absence ("nothing more was sent") is checked after a sentinel: an urgent reminder created
 * afterwards whose SMS proves that an expansion and a release pass ran since.
 *
 * The tests run in order and share that state:
 *   1. a once reminder with {prenom} {date} {heure} {lieu};  2. a daily RRULE, and refused
 *   rules and times;  3. --ack: follow-up and OK;  4. downtime: catch-up rules, metrics, no
 *   duplicates after another restart;  5. quiet hours, urgent, cancel;  6. daily cap;
 *   7. STOP with a waiting delivery;  8. alerts (consent, opt-out, expiry);  9. job alerts
 *   grouped, one a day;  10. loan reminders;  11. two nodes, 100 reminders;  12. /metrics;
 *   13. a clean stop.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CENTRE "Les Tilleuls"
#define CALME "Centre calme"
#define TZ "Europe/Paris"
#define OPS_TOKEN "sched-ops-token-0123456789abcdef"
#define WAIT_S 30
/* the local minute now, as a timestamp (SQL) */
#define NL "date_trunc('minute', now() AT TIME ZONE '" TZ "')"
/* an occurrence key from a local timestamp (SQL) */
#define KEYF "'YYYY-MM-DD\"T\"HH24:MI'"
#define SIM_ROUTES                                                                                 \
    "latency_ms = 1\ndlr_delay_ms = 1\n"                                                           \
    "[route calme]\ndriver = sim\nlatency_ms = 1\ndlr_delay_ms = 1\n"                              \
    "[scheduler]\ninterval_ms = 200\n"

static struct {
    char *conninfo;
    char *config, *config_b;
    struct h_daemon *d, *b;
    long long centre, calme;
    int quiet_start, quiet_end; /* Centre calme's allowed window, minutes of the day */
    int sentinels;
    /* for /metrics: the main daemon's last start, node-b's counters at its stop */
    char *t2;
    long long occ_max_t2;
    double b_pending, b_skipped, b_queued, b_errors;
} G;

/* ------------------------------------------------------------------ helpers */

static int str_eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* Polls (every 100 ms, up to WAIT_S) until the first column of the query equals want (or is
 * not NULL when want is NULL); returns the last value seen (malloc'ed, may be NULL). */
#define poll_sql(want, ...) h_poll_sql(G.conninfo, WAIT_S, (want), __VA_ARGS__)

/* poll_sql, failing with `what` when the value never comes. */
#define EXPECT_SQL(want, what, ...)                                                                \
    do {                                                                                           \
        char *got_ = poll_sql((want), __VA_ARGS__);                                                \
        H_ASSERT(str_eq(got_, (want)), "%s:\n  expected %s\n  got      %s (after %d s)", (what),   \
                 (want), got_ ? got_ : "(null)", WAIT_S);                                          \
        free(got_);                                                                                \
    } while (0)

/* The local time now in the centres' zone, "YYYY-MM-DD HH:MI", once the local second is below
 * 55 and the time is not 23:59 (else it waits for the next minute): what is created right after
 * for "now" is still in that minute (and that day) when the scheduler sees it. */
struct lnow {
    char local[17]; /* YYYY-MM-DD HH:MI */
    char date[11];  /* YYYY-MM-DD */
    int hour, minute;
};

static void local_now(struct lnow *n)
{
    for (int tries = 0;; tries++) {
        char *s = h_sql_str(G.conninfo, "SELECT to_char(now() AT TIME ZONE '" TZ
                                        "', 'YYYY-MM-DD HH24:MI') || '|' || "
                                        "extract(second FROM now())::text");
        H_ASSERT(s && strlen(s) > 17 && s[16] == '|', "local time: got '%s'", s ? s : "(null)");
        double sec = strtod(s + 17, NULL);
        memcpy(n->local, s, 16);
        n->local[16] = '\0';
        free(s);
        memcpy(n->date, n->local, 10);
        n->date[10] = '\0';
        n->hour = (int)strtol(n->local + 11, NULL, 10);
        n->minute = (int)strtol(n->local + 14, NULL, 10);
        if ((sec < 55 && !(n->hour == 23 && n->minute == 59)) || tries > 3)
            return;
        h_log("local time %s:%02.0f: waiting for the next minute", n->local, sec);
        h_sleep_ms((int)((60 - sec) * 1000) + 300);
    }
}

/* {heure} of a local "YYYY-MM-DD HH:MI": 9h05, 14h */
static void heure_of(const char *local, char *out, size_t len)
{
    int h = (int)strtol(local + 11, NULL, 10), m = (int)strtol(local + 14, NULL, 10);
    if (m)
        snprintf(out, len, "%dh%02d", h, m);
    else
        snprintf(out, len, "%dh", h);
}

/* {date} of a local "YYYY-MM-DD HH:MI": DD/MM */
static void date_of(const char *local, char *out, size_t len)
{
    snprintf(out, len, "%.2s/%.2s", local + 8, local + 5);
}

/* Occurrence key of a local "YYYY-MM-DD HH:MI": YYYY-MM-DDTHH:MI */
static void key_of(const char *local, char *out, size_t len)
{
    snprintf(out, len, "%.10sT%.5s", local, local + 11);
}

/* "reminder N created for …" → N */
static long long created_id(int rc, char *out, const char *what)
{
    long long id = 0;
    H_ASSERT(rc == 0 && out && sscanf(out, "reminder %lld created", &id) == 1 && id > 0,
             "%s: gatewayctl reminder create: exit %d, stdout '%s', stderr '%s'", what, rc,
             out ? out : "", h_ctl_stderr());
    free(out);
    return id;
}

static long long ctl_once(const char *centre, const char *phone, const char *text, const char *at,
                          const char *flag)
{
    char *out = NULL;
    int rc = flag ? h_ctl(G.config, &out, "reminder", "create", centre, phone, "--text", text,
                          "--at", at, flag, NULL)
                  : h_ctl(G.config, &out, "reminder", "create", centre, phone, "--text", text,
                          "--at", at, NULL);
    return created_id(rc, out, text);
}

static long long count_out(const char *phone)
{
    return h_sql_int(G.conninfo,
                     "SELECT count(*) FROM messages WHERE phone = '%s' AND direction = 'out'",
                     phone);
}

/* Waits until the reminder's first occurrence is released; returns its message id. */
static long long wait_released(long long rid, const char *what)
{
    char *m = poll_sql(NULL,
                       "SELECT message_id FROM reminder_occurrences WHERE reminder_id = %lld AND "
                       "parent_id IS NULL AND status = 'queued' AND message_id IS NOT NULL ORDER "
                       "BY id LIMIT 1",
                       rid);
    if (!m) {
        char *st = h_sql_rows(G.conninfo,
                              "SELECT r.status, coalesce(r.next_key, '-'), coalesce(o.occ_key, "
                              "'-'), coalesce(o.status, '-'), coalesce(d.status, '-'), "
                              "coalesce(d.reason, '-') FROM reminders r LEFT JOIN "
                              "reminder_occurrences o ON o.reminder_id = r.id LEFT JOIN "
                              "deliveries d ON d.occurrence_id = o.id WHERE r.id = %lld",
                              rid);
        h_fail("%s: reminder %lld was not released within %d s; reminder|next_key|occ|occ "
               "status|delivery|reason: %s",
               what, rid, WAIT_S, st);
    }
    long long id = strtoll(m, NULL, 10);
    free(m);
    return id;
}

/* Asserts the text, kind, phone and the idempotency key 'dlv:<delivery>' of message id. */
static void expect_message(long long id, const char *phone, const char *text, const char *kind,
                           const char *what)
{
    char *body = h_sql_str(G.conninfo, "SELECT body FROM messages WHERE id = %lld", id);
    H_ASSERT(str_eq(body, text), "%s: SMS %lld text:\n  expected '%s'\n  got      '%s'", what, id,
             text, body ? body : "(null)");
    free(body);
    char *meta = h_sql_rows(G.conninfo,
                            "SELECT m.direction, m.phone, coalesce(m.kind, '-'), "
                            "m.idempotency_key = 'dlv:' || d.id FROM messages m JOIN deliveries "
                            "d ON d.message_id = m.id WHERE m.id = %lld",
                            id);
    char *want = h_printf("out|%s|%s|t", phone, kind);
    H_ASSERT(str_eq(meta, want),
             "%s: SMS %lld (direction|phone|kind|key is dlv:<delivery>): "
             "expected %s, got %s",
             what, id, want, meta);
    free(meta);
    free(want);
}

static void expect_delivered(long long id, const char *what)
{
    char *st = poll_sql("delivered", "SELECT status FROM messages WHERE id = %lld", id);
    if (!str_eq(st, "delivered")) {
        char *rep = h_undelivered_report(G.conninfo);
        h_fail("%s: SMS %lld is '%s', not delivered after %d s; %s", what, id, st ? st : "?",
               WAIT_S, rep);
    }
    free(st);
}

/* An urgent reminder for the current minute to a phone of its own, and its SMS: proves that an
 * expansion and a release pass both ran after this call. */
static void sentinel(const char *why)
{
    G.sentinels++;
    char phone[24];
    snprintf(phone, sizeof phone, "+336199%05d", G.sentinels);
    long long rid =
        h_sql_int(G.conninfo,
                  "SELECT gw_reminder_create(%lld, '%s', 'test', 'Sentinelle', 'once', " NL
                  ", NULL, NULL, NULL, NULL, true)",
                  G.centre, phone);
    char *what = h_printf("sentinel (%s)", why);
    wait_released(rid, what);
    free(what);
}

#define M_PENDING "passerelle_scheduler_occurrences_total{result=\"pending\"}"
#define M_SKIPPED "passerelle_scheduler_occurrences_total{result=\"skipped\"}"
#define M_QUEUED "passerelle_scheduler_releases_total{result=\"queued\"}"
#define M_QUIET "passerelle_scheduler_releases_total{result=\"deferred_quiet_hours\"}"
#define M_CAP "passerelle_scheduler_releases_total{result=\"deferred_daily_cap\"}"
#define M_JOBS "passerelle_scheduler_releases_total{result=\"deferred_job_alert\"}"
#define M_ERRORS "passerelle_scheduler_errors_total"

/* POST /providers/ROUTE/inbound from=phone&text=text (plain ASCII words); returns the id. */
static long long inbound(const char *route, const char *phone, const char *text)
{
    char *path = h_printf("/providers/%s/inbound", route);
    char *form = h_printf("from=%%2B%s&text=%s", phone + 1, text);
    struct h_resp *r = h_post_form(G.d, path, form);
    H_ASSERT(r->status == 200 && r->json,
             "inbound '%s' from %s on %s: expected 200 {\"id\"}, got "
             "%ld %s%s",
             text, phone, route, r->status, r->body ? r->body : "", r->err);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    free(form);
    free(path);
    return id;
}

static void ctl_ok(const char *what, int rc, char *out)
{
    H_ASSERT(rc == 0, "%s: exit %d, stdout '%s', stderr '%s'", what, rc, out ? out : "",
             h_ctl_stderr());
    free(out);
}

/* ------------------------------------------------------------------ group set-up */

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "scheduler", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port,
                         .conninfo = G.conninfo,
                         .gateway = "ops_token = " OPS_TOKEN "\n",
                         .route_sim = SIM_ROUTES};
    G.config = h_config_write(&c, "main.ini");
    G.centre = h_centre_create(G.config, CENTRE);
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "centre", "seed", CENTRE, NULL);
    H_ASSERT(rc == 0 && strstr(out, "seeded"), "gatewayctl centre seed: exit %d, '%s' %s", rc, out,
             h_ctl_stderr());
    free(out);
    rc = h_ctl(G.config, &out, "centre", "set", CENTRE, "quiet_start=00:00", "quiet_end=24:00",
               "quiet_sundays=no", "quiet_holidays=no", "catchup_min=360", NULL);
    ctl_ok("gatewayctl centre set " CENTRE " (quiet hours off)", rc, out);
    rc = h_ctl(G.config, &out, "centre", "create", CALME, "--route", "calme", NULL);
    H_ASSERT(rc == 0, "gatewayctl centre create " CALME " --route calme: exit %d %s", rc,
             h_ctl_stderr());
    G.calme = strtoll(out, NULL, 10);
    free(out);
    H_ASSERT(G.calme > 0, "centre create " CALME ": no id printed");
    G.d = h_daemon_start("main", G.config, port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    h_daemon_free(G.b);
    G.b = NULL;
    h_daemon_free(G.d);
    G.d = NULL;
    return 0;
}

/* ------------------------------------------------------------------ 1. once, the template */

static void test_once_template(void **state)
{
    (void)state;
    const char *phone = "+33611000001";
    h_sql_exec(G.conninfo,
               "INSERT INTO contacts (centre_id, phone, first_name) VALUES (%lld, '%s', 'Amina')",
               G.centre, phone);
    struct lnow n;
    local_now(&n);
    char out_h[16], out_d[16];
    heure_of(n.local, out_h, sizeof out_h);
    date_of(n.local, out_d, sizeof out_d);
    long long rid;
    {
        char *out = NULL;
        int rc = h_ctl(G.config, &out, "reminder", "create", CENTRE, "06 11 00 00 01", "--text",
                       "Bonjour {prenom}, RDV CAF le {date} à {heure} ({lieu}).", "--at", n.local,
                       "--place", "Mairie annexe", "--by", "referente1", NULL);
        rid = created_id(rc, out, "test 1");
    }
    long long msg = wait_released(rid, "once at the current minute");
    char *want = h_printf("Bonjour Amina, RDV CAF le %s à %s (Mairie annexe).", out_d, out_h);
    expect_message(msg, phone, want, "reminders", "once at the current minute");
    /* the text is what the database renders for that occurrence */
    char *sqltext = h_sql_str(G.conninfo,
                              "SELECT gw_reminder_text(r, '%s'::timestamp AT TIME ZONE '" TZ "') "
                              "FROM reminders r WHERE id = %lld",
                              n.local, rid);
    H_ASSERT(str_eq(sqltext, want), "gw_reminder_text gives '%s', expected '%s'", sqltext, want);
    free(sqltext);
    free(want);
    expect_delivered(msg, "once at the current minute");
    char key[24];
    key_of(n.local, key, sizeof key);
    char *st = h_sql_rows(G.conninfo,
                          "SELECT r.status, r.created_by, o.occ_key, o.status, o.message_id = "
                          "%lld, d.status, d.message_id = %lld, d.kind FROM reminders r JOIN "
                          "reminder_occurrences o ON o.reminder_id = r.id JOIN deliveries d ON "
                          "d.occurrence_id = o.id WHERE r.id = %lld",
                          msg, msg, rid);
    char *w = h_printf("finished|referente1|%s|queued|t|queued|t|reminders", key);
    H_ASSERT(str_eq(st, w),
             "once reminder %lld (reminder|by|occ key|occ status|occ msg|delivery|"
             "dlv msg|kind): expected %s, got %s",
             rid, w, st);
    free(st);
    free(w);
    H_ASSERT(count_out(phone) == 1, "once reminder: expected exactly one SMS to %s, got %lld",
             phone, count_out(phone));
}

/* ------------------------------------------------------------------ 2. daily RRULE */

static void test_rrule_daily(void **state)
{
    (void)state;
    const char *phone = "+33611000002";
    struct lnow n;
    local_now(&n);
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "reminder", "create", CENTRE, phone, "--text",
                   "Pensez au traitement de {heure}.", "--rrule", "FREQ=DAILY", "--start", n.local,
                   NULL);
    long long rid = created_id(rc, out, "test 2");
    long long msg = wait_released(rid, "FREQ=DAILY from the current minute");
    char hh[16];
    heure_of(n.local, hh, sizeof hh);
    char *want = h_printf("Pensez au traitement de %s.", hh);
    expect_message(msg, phone, want, "reminders", "FREQ=DAILY");
    free(want);
    char key[24];
    key_of(n.local, key, sizeof key);
    char *occ = h_sql_rows(G.conninfo,
                           "SELECT occ_key, status FROM reminder_occurrences WHERE reminder_id = "
                           "%lld ORDER BY id",
                           rid);
    char *w = h_printf("%s|queued", key);
    H_ASSERT(str_eq(occ, w), "FREQ=DAILY occurrences: expected %s, got %s", w, occ);
    free(occ);
    free(w);
    /* next: tomorrow, same local time (a time in tomorrow's DST gap moves to the end of it) */
    char *exp = h_sql_str(G.conninfo,
                          "WITH t AS (SELECT '%s'::timestamp + interval '1 day' AS l), "
                          "u AS (SELECT l, (l AT TIME ZONE '" TZ "') AT TIME ZONE '" TZ "' AS rt "
                          "FROM t) SELECT to_char(CASE WHEN rt = l THEN l ELSE "
                          "date_trunc('hour', rt) END, 'YYYY-MM-DD HH24:MI') FROM u",
                          n.local);
    char nkey[24];
    key_of(exp, nkey, sizeof nkey);
    char *wnext = h_printf("active|%s|%s", nkey, exp);
    EXPECT_SQL(wnext, "FREQ=DAILY after its first SMS (status|next_key|next_at local)",
               "SELECT status || '|' || next_key || '|' || to_char(next_at AT TIME ZONE '" TZ
               "', 'YYYY-MM-DD HH24:MI') FROM reminders WHERE id = %lld",
               rid);
    free(wnext);
    free(exp);
    H_ASSERT(count_out(phone) == 1, "FREQ=DAILY: expected one SMS, got %lld", count_out(phone));

    /* refused: an hourly rule, a time that is not one */
    rc = h_ctl(G.config, &out, "reminder", "create", CENTRE, phone, "--text", "x", "--rrule",
               "FREQ=HOURLY", "--start", n.local, NULL);
    H_ASSERT(rc == 2 && strstr(h_ctl_stderr(), "HOURLY") && strstr(h_ctl_stderr(), "daily"),
             "reminder create --rrule FREQ=HOURLY: expected exit 2 saying reminders are at most "
             "daily, got %d '%s'",
             rc, h_ctl_stderr());
    free(out);
    static const char *bad_at[] = {"2026-13-45 10:00", "demain 10h", "2026-02-30 10:00",
                                   "2026-05-04 25:00", ""};
    for (size_t i = 0; i < sizeof bad_at / sizeof bad_at[0]; i++) {
        rc = h_ctl(G.config, &out, "reminder", "create", CENTRE, phone, "--text", "x", "--at",
                   bad_at[i], NULL);
        H_ASSERT(rc == 2 && strstr(h_ctl_stderr(), "YYYY-MM-DD HH:MM"),
                 "reminder create --at '%s': expected exit 2 naming the format, got %d '%s'",
                 bad_at[i], rc, h_ctl_stderr());
        free(out);
    }
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM reminders r JOIN contacts c ON c.id = "
                       "r.contact_id WHERE c.phone = '%s'",
                       phone) == 1,
             "a refused reminder create stored a reminder");
}

/* ------------------------------------------------------------------ 3. ack and follow-up */

static void test_ack_followup(void **state)
{
    (void)state;
    const char *phone = "+33611000003";
    struct lnow n;
    local_now(&n);
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "reminder", "create", CENTRE, phone, "--text",
                   "Atelier CV le {date} à {heure}.", "--at", n.local, "--ack", "--followup-min",
                   "5", NULL);
    long long rid = created_id(rc, out, "test 3");
    long long msg = wait_released(rid, "--ack reminder");
    char dd[16], hh[16];
    date_of(n.local, dd, sizeof dd);
    heure_of(n.local, hh, sizeof hh);
    char *text = h_printf("Atelier CV le %s à %s.", dd, hh);
    expect_message(msg, phone, text, "reminders", "--ack reminder");
    long long parent = h_sql_int(G.conninfo,
                                 "SELECT id FROM reminder_occurrences WHERE reminder_id = %lld "
                                 "AND parent_id IS NULL",
                                 rid);
    /* no OK for 10 minutes (followup_min = 5) */
    h_sql_exec(G.conninfo,
               "UPDATE reminder_occurrences SET due_at = due_at - interval '10 minutes' WHERE id "
               "= %lld",
               parent);
    char *fm = poll_sql(NULL,
                        "SELECT o.message_id FROM reminder_occurrences o WHERE o.parent_id = %lld "
                        "AND o.status = 'queued'",
                        parent);
    H_ASSERT(fm,
             "no follow-up was sent within %d s for occurrence %lld (10 min without OK, "
             "followup_min 5): %s",
             WAIT_S, parent,
             h_sql_rows(G.conninfo,
                        "SELECT id, status, coalesce(followup_at::text, '-') FROM "
                        "reminder_occurrences WHERE reminder_id = %lld",
                        rid));
    long long fmsg = strtoll(fm, NULL, 10);
    free(fm);
    char *ftext = h_printf("Rappel : %s Répondez OK pour confirmer.", text);
    expect_message(fmsg, phone, ftext, "reminders", "follow-up");
    free(ftext);
    EXPECT_SQL("true|true",
               "the original occurrence after its follow-up (followup_at set|not acked)",
               "SELECT (followup_at IS NOT NULL) || '|' || (acked_at IS NULL) FROM "
               "reminder_occurrences WHERE id = %lld",
               parent);
    expect_delivered(fmsg, "follow-up");

    /* the resident answers OK */
    long long in = inbound("sim", phone, "OK");
    char *rep = poll_sql(NULL,
                         "SELECT id FROM messages WHERE idempotency_key = 'flow:%lld:0' AND "
                         "direction = 'out'",
                         in);
    H_ASSERT(rep, "OK after the follow-up: no reply within %d s (flow run: %s)", WAIT_S,
             h_sql_rows(G.conninfo,
                        "SELECT flow, outcome, replies FROM flow_runs WHERE "
                        "message_id = %lld",
                        in));
    char *body = h_sql_str(G.conninfo, "SELECT body FROM messages WHERE id = %s", rep);
    H_ASSERT(str_eq(body, "Merci, c'est noté."), "OK: reply '%s', expected 'Merci, c'est noté.'",
             body);
    free(body);
    free(rep);
    char *acks = h_sql_rows(G.conninfo,
                            "SELECT parent_id IS NULL, acked_at IS NOT NULL, ack_message_id = "
                            "%lld FROM reminder_occurrences WHERE reminder_id = %lld ORDER BY id",
                            in, rid);
    H_ASSERT(str_eq(acks, "t|t|t; f|t|t"),
             "after OK (original; follow-up) as parent?|acked|ack message = the OK: expected "
             "t|t|t; f|t|t, got %s",
             acks);
    free(acks);
    /* no second follow-up, even when the follow-up itself is old */
    h_sql_exec(G.conninfo,
               "UPDATE reminder_occurrences SET due_at = due_at - interval '10 minutes' WHERE "
               "parent_id = %lld",
               parent);
    sentinel("after the OK");
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM reminder_occurrences WHERE reminder_id = "
                       "%lld",
                       rid) == 2 &&
                 count_out(phone) == 3,
             "after the OK: expected 2 occurrences and 3 SMS (reminder, follow-up, reply), got "
             "%lld and %lld",
             h_sql_int(G.conninfo,
                       "SELECT count(*) FROM reminder_occurrences WHERE reminder_id = %lld", rid),
             count_out(phone));
    free(text);
}

/* ------------------------------------------------------------------ 4. downtime */

/* A reminder as the scheduler would have left it before a downtime: created with
 * gw_reminder_create, then next_at (a timestamptz expression), its key, an old updated_at.
 * Everything in one transaction, so that NL is the same local minute throughout. */
static long long downtime_reminder(const char *phone, const char *body, const char *schedule,
                                   const char *start, const char *rrule, const char *appt,
                                   const char *offsets, const char *next_at)
{
    return h_sql_int(G.conninfo,
                     "SELECT gw_reminder_create(%lld, '%s', 'test', '%s', '%s', %s, %s, %s, "
                     "'Maison des services', %s);"
                     "UPDATE reminders SET next_at = %s, next_key = to_char((%s) AT TIME ZONE '" TZ
                     "', " KEYF "), updated_at = now() - interval '8 days', created_at = now() - "
                     "interval '8 days' WHERE id = currval('reminders_id_seq') RETURNING id",
                     G.centre, phone, body, schedule, start ? start : "NULL",
                     rrule ? rrule : "NULL", appt ? appt : "NULL", offsets ? offsets : "NULL",
                     next_at, next_at);
}

#define PH_A "+33611000041"
#define PH_B "+33611000042"
#define PH_C "+33611000043"
#define PH_D "+33611000044"
#define PH_E "+33611000045"

static void test_downtime(void **state)
{
    (void)state;
    h_daemon_stop(G.d);
    /* (a) daily, three occurrences missed: -2d, -1d and -10 min */
    long long ra = downtime_reminder(PH_A, "Traitement du soir ({heure}).", "rrule",
                                     NL " - interval '10 minutes' - interval '7 days'",
                                     "'FREQ=DAILY'", NULL, NULL,
                                     "(" NL " - interval '10 minutes' - interval '2 days') AT "
                                     "TIME ZONE '" TZ "'");
    /* (b) appointment in 3 h, reminded the day before at the same time (~21 h ago) */
    long long rb = downtime_reminder(PH_B, "RDV le {date} à {heure} ({lieu}).", "appointment", NULL,
                                     NULL, NL " + interval '3 hours'", "'[{\"days\":1}]'",
                                     "(" NL " + interval '3 hours' - interval '1 day') AT TIME "
                                     "ZONE '" TZ "'");
    /* (c) appointment 1 h ago, reminded 120 minutes before (3 h ago) */
    long long rc_ = downtime_reminder(PH_C, "RDV le {date} à {heure}.", "appointment", NULL, NULL,
                                      NL " - interval '1 hour'", "'[{\"minutes\":120}]'",
                                      "(" NL " - interval '1 hour') AT TIME ZONE '" TZ
                                      "' - interval '120 minutes'");
    /* (d) once, two days ago */
    long long rd =
        downtime_reminder(PH_D, "Permanence juridique.", "once", NL " - interval '2 days'", NULL,
                          NULL, NULL, "(" NL " - interval '2 days') AT TIME ZONE '" TZ "'");
    /* (e) daily, due 10 hours ago: more than catchup_min (360) */
    long long re = downtime_reminder(
        PH_E, "Traitement du matin.", "rrule", NL " - interval '10 hours' - interval '7 days'",
        "'FREQ=DAILY'", NULL, NULL, "(" NL " - interval '10 hours') AT TIME ZONE '" TZ "'");
    /* what the scheduler must record (keys from the stored local times) */
    char *want_a = h_sql_str(
        G.conninfo,
        "SELECT to_char(start_local + interval '5 days', " KEYF ") || '|skipped|missed; ' || "
        "to_char(start_local + interval '6 days', " KEYF ") || '|skipped|missed; ' || "
        "to_char(start_local + interval '7 days', " KEYF ") || '|queued|-' || ' next ' || "
        "to_char(start_local + interval '8 days', " KEYF ") || ' active' FROM reminders WHERE id "
        "= %lld",
        ra);
    char *want_b = h_sql_str(G.conninfo,
                             "SELECT to_char(appointment_local - interval '1 day', " KEYF
                             ") || '|queued|- next - finished' FROM reminders WHERE id = %lld",
                             rb);
    char *want_c = h_sql_str(G.conninfo,
                             "SELECT to_char(((appointment_local AT TIME ZONE '" TZ
                             "') - interval '2 hours') AT TIME ZONE '" TZ "', " KEYF
                             ") || '|skipped|after_appointment next - finished' FROM reminders "
                             "WHERE id = %lld",
                             rc_);
    char *want_d = h_sql_str(G.conninfo,
                             "SELECT to_char(start_local, " KEYF
                             ") || '|skipped|too_late next - finished' FROM reminders WHERE id = "
                             "%lld",
                             rd);
    char *want_e = h_sql_str(G.conninfo,
                             "SELECT to_char(start_local + interval '7 days', " KEYF
                             ") || '|skipped|missed next ' || to_char(start_local + interval '8 "
                             "days', " KEYF ") || ' active' FROM reminders WHERE id = %lld",
                             re);
    char *appt_b = h_sql_str(G.conninfo,
                             "SELECT to_char(appointment_local, 'YYYY-MM-DD HH24:MI') FROM "
                             "reminders WHERE id = %lld",
                             rb);
#define Q_STATE                                                                                    \
    "SELECT coalesce((SELECT string_agg(o.occ_key || '|' || o.status || '|' || "                   \
    "coalesce(o.reason, '-'), '; ' ORDER BY o.occ_key) FROM reminder_occurrences o WHERE "         \
    "o.reminder_id = r.id), '(none)') || ' next ' || coalesce(r.next_key, '-') || ' ' || "         \
    "r.status FROM reminders r WHERE r.id = %lld"
    h_daemon_restart(G.d);
    struct {
        long long id;
        const char *what, *phone;
        char *want;
        long long sms;
    } cases[] = {
        {ra, "(a) daily, 3 missed", PH_A, want_a, 1},
        {rb, "(b) appointment still ahead", PH_B, want_b, 1},
        {rc_, "(c) appointment passed", PH_C, want_c, 0},
        {rd, "(d) once 2 days late", PH_D, want_d, 0},
        {re, "(e) daily, 10 h late", PH_E, want_e, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *what = h_printf("after the restart, reminder %s (occurrences key|status|reason, "
                              "next key, status)",
                              cases[i].what);
        EXPECT_SQL(cases[i].want, what, Q_STATE, cases[i].id);
        free(what);
    }
    /* the SMS: (a) for the occurrence 10 minutes ago, (b) with the appointment's date */
    long long ma = wait_released(ra, "(a)");
    char *lt = h_sql_str(G.conninfo,
                         "SELECT to_char(start_local, 'YYYY-MM-DD HH24:MI') FROM reminders WHERE "
                         "id = %lld",
                         ra);
    char hh[16], dd[16];
    heure_of(lt, hh, sizeof hh);
    char *ta = h_printf("Traitement du soir (%s).", hh);
    expect_message(ma, PH_A, ta, "reminders", "(a) daily after the downtime");
    long long mb = wait_released(rb, "(b)");
    heure_of(appt_b, hh, sizeof hh);
    date_of(appt_b, dd, sizeof dd);
    char *tb = h_printf("RDV le %s à %s (Maison des services).", dd, hh);
    expect_message(mb, PH_B, tb, "reminders", "(b) appointment after the downtime");
    EXPECT_SQL("t", "(b): the delivery expires at the appointment",
               "SELECT d.expires_at = r.appointment_local AT TIME ZONE '" TZ "' FROM deliveries "
               "d JOIN reminder_occurrences o ON o.id = d.occurrence_id JOIN reminders r ON r.id "
               "= o.reminder_id WHERE r.id = %lld",
               rb);
    /* next_at of (a) is tomorrow at that time, in UTC too */
    EXPECT_SQL("t", "(a): next_at is the next occurrence's instant",
               "SELECT to_char(next_at AT TIME ZONE '" TZ "', " KEYF ") = next_key FROM "
               "reminders WHERE id = %lld",
               ra);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        H_ASSERT(count_out(cases[i].phone) == cases[i].sms,
                 "after the restart, reminder %s: expected %lld SMS, got %lld", cases[i].what,
                 cases[i].sms, count_out(cases[i].phone));
    /* the new process counted what it decided: 2 pending, 5 skipped, nothing else was due */
    double pend = h_metric(G.d, M_PENDING), skip = h_metric(G.d, M_SKIPPED);
    H_ASSERT(pend == 2 && skip == 5,
             "/metrics after the restart: expected occurrences pending 2 and skipped 5, got %.0f "
             "and %.0f",
             pend, skip);
    h_log("after the downtime: occurrences pending %.0f, skipped %.0f", pend, skip);

    /* again: nothing new */
    long long occ_before = h_sql_int(G.conninfo, "SELECT count(*) FROM reminder_occurrences");
    h_daemon_stop(G.d);
    G.t2 = h_sql_str(G.conninfo, "SELECT now()::text");
    G.occ_max_t2 = h_sql_int(G.conninfo, "SELECT coalesce(max(id), 0) FROM reminder_occurrences");
    h_daemon_restart(G.d);
    sentinel("after the second restart");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM reminder_occurrences") == occ_before + 1,
             "the second restart recorded occurrences again: %lld before, %lld after (1 is the "
             "sentinel)",
             occ_before, h_sql_int(G.conninfo, "SELECT count(*) FROM reminder_occurrences"));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *what = h_printf("after a second restart, reminder %s", cases[i].what);
        EXPECT_SQL(cases[i].want, what, Q_STATE, cases[i].id);
        free(what);
        H_ASSERT(count_out(cases[i].phone) == cases[i].sms,
                 "after a second restart, reminder %s: expected %lld SMS, got %lld", cases[i].what,
                 cases[i].sms, count_out(cases[i].phone));
        free(cases[i].want);
    }
    free(lt);
    free(ta);
    free(tb);
    free(appt_b);
}

/* ------------------------------------------------------------------ 5. quiet hours */

static void hm(int minutes, char *out, size_t len)
{
    snprintf(out, len, "%02d:%02d", minutes / 60, minutes % 60);
}

static void test_quiet_hours(void **state)
{
    (void)state;
    struct lnow n;
    local_now(&n);
    int m = n.hour * 60 + n.minute;
    /* an allowed window that does not contain now: [now+60, now+120) the same day, else
     * 00:30-01:30 the next day; never starting in 02:00-02:59 (a DST change) */
    int qs = m + 60, qe = m + 120, tomorrow = 0;
    if (qe > 1440) {
        qs = 30;
        qe = 90;
        tomorrow = 1;
    } else if (qs / 60 == 2) {
        qs = 210;
        qe = 270;
    }
    G.quiet_start = qs;
    G.quiet_end = qe;
    char s_qs[8], s_qe[8];
    hm(qs, s_qs, sizeof s_qs);
    if (qe == 1440)
        snprintf(s_qe, sizeof s_qe, "24:00");
    else
        hm(qe, s_qe, sizeof s_qe);
    char *a1 = h_printf("quiet_start=%s", s_qs), *a2 = h_printf("quiet_end=%s", s_qe);
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "centre", "set", CALME, a1, a2, "quiet_sundays=no",
                   "quiet_holidays=no", NULL);
    ctl_ok("gatewayctl centre set " CALME " (window)", rc, out);
    h_log("now %s; " CALME " sends in [%s, %s)%s", n.local, s_qs, s_qe,
          tomorrow ? " (tomorrow)" : "");
    free(a1);
    free(a2);

    const char *ph_wait = "+33611000051", *ph_urgent = "+33611000052";
    long long rw = ctl_once(CALME, ph_wait, "Distribution alimentaire demain.", n.local, NULL);
    char *want = h_sql_str(G.conninfo,
                           "SELECT extract(epoch FROM (('%s'::date + %d) + make_interval(mins "
                           "=> %d)) AT TIME ZONE '" TZ "')::bigint::text",
                           n.date, tomorrow, qs);
    char *w = h_printf("pending|quiet_hours|%s", want);
    EXPECT_SQL(w, "a once reminder outside " CALME "'s window (delivery status|reason|due_at)",
               "SELECT d.status || '|' || coalesce(d.reason, '-') || '|' || extract(epoch FROM "
               "d.due_at)::bigint FROM deliveries d JOIN reminder_occurrences o ON o.id = "
               "d.occurrence_id WHERE o.reminder_id = %lld",
               rw);
    free(w);
    free(want);
    /* urgent: at once */
    long long ru =
        ctl_once(CALME, ph_urgent, "Fermeture exceptionnelle ce soir.", n.local, "--urgent");
    long long mu = wait_released(ru, "urgent reminder in quiet hours");
    expect_message(mu, ph_urgent, "Fermeture exceptionnelle ce soir.", "reminders",
                   "urgent reminder in quiet hours");
    H_ASSERT(count_out(ph_wait) == 0, "a reminder in quiet hours was sent");
    /* cancel the waiting one */
    char id[24];
    snprintf(id, sizeof id, "%lld", rw);
    rc = h_ctl(G.config, &out, "reminder", "cancel", id, NULL);
    H_ASSERT(rc == 0 && strstr(out, "cancelled"), "gatewayctl reminder cancel %s: exit %d '%s' %s",
             id, rc, out, h_ctl_stderr());
    free(out);
    char *st = h_sql_rows(G.conninfo,
                          "SELECT r.status, o.status, coalesce(o.reason, '-'), d.status, "
                          "coalesce(d.reason, '-') FROM reminders r JOIN reminder_occurrences o "
                          "ON o.reminder_id = r.id JOIN deliveries d ON d.occurrence_id = o.id "
                          "WHERE r.id = %lld",
                          rw);
    H_ASSERT(str_eq(st, "cancelled|cancelled|cancelled|cancelled|cancelled"),
             "after reminder cancel (reminder|occurrence|reason|delivery|reason): expected all "
             "cancelled, got %s",
             st);
    free(st);
    rc = h_ctl(G.config, &out, "reminder", "cancel", "99999999", NULL);
    H_ASSERT(rc == 3, "reminder cancel of an unknown id: expected exit 3, got %d %s", rc,
             h_ctl_stderr());
    free(out);
    /* the list shows it */
    rc = h_ctl(G.config, &out, "reminder", "list", CALME, NULL);
    H_ASSERT(rc == 0 && strstr(out, "cancelled") && strstr(out, ph_wait),
             "reminder list " CALME ": exit %d, expected the cancelled reminder:\n%s", rc, out);
    free(out);
    sentinel("after the cancel");
    H_ASSERT(count_out(ph_wait) == 0, "a cancelled reminder was sent");
}

/* ------------------------------------------------------------------ 6. daily cap */

static void test_daily_cap(void **state)
{
    (void)state;
    const char *phone = "+33611000061";
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "centre", "set", CENTRE, "daily_cap=2", NULL);
    ctl_ok("centre set daily_cap=2", rc, out);
    struct lnow n;
    local_now(&n);
    char *midnight = h_sql_str(G.conninfo, "SELECT extract(epoch FROM (date_trunc('day', now() AT "
                                           "TIME ZONE '" TZ "') + interval '1 day') AT TIME ZONE "
                                           "'" TZ "')::bigint::text");
    h_sql_exec(G.conninfo,
               "SELECT gw_reminder_create(%lld, '%s', 'test', 'Rappel numéro ' || i, 'once', " NL
               ", NULL, NULL, NULL, NULL) FROM generate_series(1, 4) i",
               G.centre, phone);
#define Q_DLV(ph)                                                                                  \
    "SELECT string_agg(d.status || '|' || coalesce(d.reason, '-') || '|' || CASE WHEN d.status "   \
    "= 'pending' THEN extract(epoch FROM d.due_at)::bigint::text ELSE '-' END, '; ' ORDER BY "     \
    "d.status DESC, d.id) FROM deliveries d JOIN contacts c ON c.id = d.contact_id WHERE "         \
    "c.phone = '" ph "'"
    char *w = h_printf("queued|-|-; queued|-|-; pending|daily_cap|%s; pending|daily_cap|%s",
                       midnight, midnight);
    char *q = h_printf(Q_DLV("%s"), phone);
    EXPECT_SQL(w, "4 reminders at once with daily_cap 2 (status|reason|due_at)", "%s", q);
    free(w);
    H_ASSERT(count_out(phone) == 2, "daily_cap 2: expected 2 SMS, got %lld", count_out(phone));
    /* urgent goes out anyway */
    long long ru = h_sql_int(G.conninfo,
                             "SELECT gw_reminder_create(%lld, '%s', 'test', 'Urgent : dossier "
                             "incomplet.', 'once', " NL ", NULL, NULL, NULL, NULL, true)",
                             G.centre, phone);
    wait_released(ru, "an urgent reminder over the daily cap");
    H_ASSERT(count_out(phone) == 3, "daily_cap 2 + urgent: expected 3 SMS, got %lld",
             count_out(phone));
    w = h_printf("queued|-|-; queued|-|-; queued|-|-; pending|daily_cap|%s; pending|daily_cap|%s",
                 midnight, midnight);
    EXPECT_SQL(w, "the capped deliveries still wait", "%s", q);
    free(w);
    free(q);
    free(midnight);
    rc = h_ctl(G.config, &out, "centre", "set", CENTRE, "daily_cap=3", NULL);
    ctl_ok("centre set daily_cap=3", rc, out);
    rc = h_ctl(G.config, &out, "centre", "set", CENTRE, "daily_cap=0", NULL);
    H_ASSERT(rc == 2, "centre set daily_cap=0: expected exit 2, got %d", rc);
    free(out);
}

/* ------------------------------------------------------------------ 7. STOP while waiting */

static void test_stop_waiting(void **state)
{
    (void)state;
    const char *phone = "+33611000071";
    struct lnow n;
    local_now(&n);
    long long rid = ctl_once(CALME, phone, "Atelier couture jeudi.", n.local, NULL);
    EXPECT_SQL("pending|quiet_hours", "a reminder waiting for " CALME "'s window",
               "SELECT d.status || '|' || coalesce(d.reason, '-') FROM deliveries d JOIN "
               "reminder_occurrences o ON o.id = d.occurrence_id WHERE o.reminder_id = %lld",
               rid);
    long long in = inbound("calme", phone, "STOP");
    EXPECT_SQL("cancelled|opted_out|cancelled",
               "the waiting delivery after STOP (delivery status|reason|occurrence status)",
               "SELECT d.status || '|' || coalesce(d.reason, '-') || '|' || o.status FROM "
               "deliveries d JOIN reminder_occurrences o ON o.id = d.occurrence_id WHERE "
               "o.reminder_id = %lld",
               rid);
    char *conf = poll_sql("optout|delivered",
                          "SELECT kind || '|' || status FROM messages WHERE idempotency_key = "
                          "'flow:%lld:0'",
                          in);
    H_ASSERT(str_eq(conf, "optout|delivered"), "STOP: the confirmation (kind|status) is %s",
             conf ? conf : "(none)");
    free(conf);
    sentinel("after STOP");
    H_ASSERT(count_out(phone) == 1,
             "STOP with a waiting reminder: expected only the STOP "
             "confirmation, got %lld SMS",
             count_out(phone));
}

/* ------------------------------------------------------------------ 8. alerts */

#define ALERT_TEXT "Sortie au musée samedi : rendez-vous 14h devant le centre."

static void test_alerts(void **state)
{
    (void)state;
    /* 5 subscribers of 'sortie': 3 consented, 1 consented then opted out, 1 without consent */
    h_sql_exec(G.conninfo,
               "INSERT INTO contacts (centre_id, phone, consent_at, consent_source, opted_out_at) "
               "VALUES (%lld, '+33611000081', now(), 'admin', NULL), (%lld, '+33611000082', now(), "
               "'admin', NULL), (%lld, '+33611000083', now(), 'sms', NULL), (%lld, '+33611000084', "
               "now(), 'sms', now()), (%lld, '+33611000085', NULL, NULL, NULL);"
               "INSERT INTO subscriptions (topic_id, contact_id) SELECT t.id, c.id FROM topics t, "
               "contacts c WHERE t.centre_id = %lld AND t.kind = 'alert' AND t.name = 'sortie' "
               "AND c.centre_id = %lld AND c.phone LIKE '+3361100008_'",
               G.centre, G.centre, G.centre, G.centre, G.centre, G.centre, G.centre);
    char *res = h_sql_str(G.conninfo,
                          "SELECT gw_alert_create(%lld, 'sortie', '" ALERT_TEXT "', NULL, false, "
                          "'referente1', false)->>'recipients'",
                          G.centre);
    H_ASSERT(str_eq(res, "3"), "gw_alert_create to 'sortie': expected 3 recipients, got %s", res);
    free(res);
    EXPECT_SQL("+33611000081|alerts|delivered; +33611000082|alerts|delivered; "
               "+33611000083|alerts|delivered",
               "the alert's SMS (phone|kind|status)",
               "SELECT string_agg(phone || '|' || coalesce(kind, '-') || '|' || status, '; ' ORDER "
               "BY phone) FROM messages WHERE phone LIKE '+3361100008_' AND direction = 'out'");
    char *bodies = h_sql_str(G.conninfo, "SELECT string_agg(DISTINCT body, '/') FROM messages "
                                         "WHERE phone LIKE '+3361100008_' AND direction = 'out'");
    H_ASSERT(str_eq(bodies, ALERT_TEXT), "the alert's text: expected '%s', got '%s'", ALERT_TEXT,
             bodies);
    free(bodies);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages m JOIN deliveries d ON "
                                   "d.message_id = m.id AND m.idempotency_key = 'dlv:' || d.id "
                                   "WHERE d.kind = 'alerts' AND m.phone LIKE '+3361100008_'") == 3,
             "the alert's SMS are not the deliveries' ('dlv:<id>')");

    /* an alert that expires in 2 s, in Centre calme's quiet hours: deferred, then expired */
    h_sql_exec(G.conninfo,
               "INSERT INTO topics (centre_id, kind, name, label) VALUES (%lld, 'alert', 'sortie', "
               "'Sorties');"
               "INSERT INTO contacts (centre_id, phone, consent_at) VALUES (%lld, '+33611000086', "
               "now());"
               "INSERT INTO subscriptions (topic_id, contact_id) SELECT t.id, c.id FROM topics t, "
               "contacts c WHERE t.centre_id = %lld AND t.name = 'sortie' AND c.phone = "
               "'+33611000086'",
               G.calme, G.calme, G.calme);
    long long aid = h_sql_int(G.conninfo,
                              "SELECT (gw_alert_create(%lld, 'sortie', 'Annulation de la sortie "
                              "de ce soir.', now() + interval '2 seconds', false, 'referente1', "
                              "false)->>'id')::bigint",
                              G.calme);
    EXPECT_SQL("pending|quiet_hours", "an alert in quiet hours (status|reason)",
               "SELECT status || '|' || coalesce(reason, '-') FROM deliveries WHERE alert_id = "
               "%lld",
               aid);
    EXPECT_SQL("expired|expired", "the alert after its expiry (status|reason)",
               "SELECT status || '|' || coalesce(reason, '-') FROM deliveries WHERE alert_id = "
               "%lld",
               aid);
    H_ASSERT(count_out("+33611000086") == 0, "an expired alert was sent");
    res = h_sql_str(G.conninfo,
                    "SELECT gw_alert_create(%lld, 'sortie', 'Trop tard.', now() - interval '1 "
                    "second', false, 'referente1', false)->>'error'",
                    G.calme);
    H_ASSERT(str_eq(res, "expired"),
             "gw_alert_create with a past expiry: expected error "
             "expired, got %s",
             res);
    free(res);
}

/* ------------------------------------------------------------------ 9. job alerts */

static void test_job_alerts(void **state)
{
    (void)state;
    h_sql_exec(G.conninfo,
               "INSERT INTO contacts (centre_id, phone, consent_at) VALUES (%lld, '+33611000091', "
               "now()), (%lld, '+33611000092', now());"
               "INSERT INTO subscriptions (topic_id, contact_id) SELECT t.id, c.id FROM topics t, "
               "contacts c WHERE t.centre_id = %lld AND t.kind = 'job' AND t.name = 'cuisine' AND "
               "c.centre_id = %lld AND c.phone IN ('+33611000091', '+33611000092')",
               G.centre, G.centre, G.centre, G.centre);
    /* the same local day for the whole test (not 23:59) */
    struct lnow n;
    local_now(&n);
    char *midnight = h_sql_str(G.conninfo, "SELECT extract(epoch FROM (date_trunc('day', now() AT "
                                           "TIME ZONE '" TZ "') + interval '1 day') AT TIME ZONE "
                                           "'" TZ "')::bigint::text");
    /* two offers in one statement: one SMS each */
    char *alerted = h_sql_str(G.conninfo,
                              "SELECT (gw_job_publish(%lld, 'staff', 't9-1', 'Commis de cuisine', "
                              "'Brasserie du port, CDD 3 mois.', 'cuisine', '04 78 00 00 09', "
                              "NULL)->>'alerted') || ',' || (gw_job_publish(%lld, 'staff', "
                              "'t9-2', 'Pizzaiolo', 'Soirs et week-ends.', 'cuisine', "
                              "'04 78 00 00 10', NULL)->>'alerted')",
                              G.centre, G.centre);
    H_ASSERT(str_eq(alerted, "2,2"), "gw_job_publish x2: expected alerted 2,2, got %s", alerted);
    free(alerted);
    char *list = h_sql_str(G.conninfo,
                           "SELECT string_agg(number || ' ' || title, ' ; ' ORDER BY number) FROM "
                           "jobs WHERE centre_id = %lld AND external_id IN ('t9-1', 't9-2')",
                           G.centre);
    char *want = h_printf("Nouvelles offres : %s. Envoyez JOB + numéro pour le détail.", list);
    free(list);
    const char *phones[] = {"+33611000091", "+33611000092"};
    for (int i = 0; i < 2; i++) {
        char *m = poll_sql(NULL,
                           "SELECT m.id FROM messages m JOIN deliveries d ON d.message_id = m.id "
                           "WHERE m.phone = '%s' AND d.kind = 'jobs'",
                           phones[i]);
        H_ASSERT(m, "job alert to %s: no SMS within %d s", phones[i], WAIT_S);
        expect_message(strtoll(m, NULL, 10), phones[i], want, "jobs", "job alert");
        free(m);
    }
    free(want);
    /* a third offer: one job alert a day, so it waits for the next local midnight */
    h_sql_exec(G.conninfo,
               "SELECT gw_job_publish(%lld, 'staff', 't9-3', 'Chef de partie', 'CDI.', 'cuisine', "
               "'04 78 00 00 11', NULL)",
               G.centre);
    char *w = h_printf("pending|daily_job_alert|%s|1", midnight);
    for (int i = 0; i < 2; i++) {
        char *what =
            h_printf("the third offer's job alert to %s (status|reason|due_at|offers)", phones[i]);
        EXPECT_SQL(w, what,
                   "SELECT d.status || '|' || coalesce(d.reason, '-') || '|' || extract(epoch "
                   "FROM d.due_at)::bigint || '|' || cardinality(d.job_ids) FROM deliveries d "
                   "JOIN contacts c ON c.id = d.contact_id WHERE c.phone = '%s' AND d.kind = "
                   "'jobs' AND d.status <> 'queued'",
                   phones[i]);
        free(what);
    }
    free(w);
    free(midnight);
    sentinel("after the third offer");
    for (int i = 0; i < 2; i++)
        H_ASSERT(count_out(phones[i]) == 1, "job alerts to %s: expected one SMS today, got %lld",
                 phones[i], count_out(phones[i]));
}

/* ------------------------------------------------------------------ 10. loans */

static void test_loan_reminders(void **state)
{
    (void)state;
    const char *phone = "+33611000101";
    long long in = inbound("sim", phone, "PRET+12");
    char *lid = poll_sql(NULL,
                         "SELECT l.id FROM loans l JOIN contacts c ON c.id = l.contact_id WHERE "
                         "c.phone = '%s' AND l.status = 'requested'",
                         phone);
    H_ASSERT(
        lid, "PRET 12: no loan request within %d s (flow run: %s)", WAIT_S,
        h_sql_rows(G.conninfo, "SELECT flow, outcome FROM flow_runs WHERE message_id = %lld", in));
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "--url", G.d->url, "loan", "confirm", lid, "--days", "10", NULL);
    ctl_ok("gatewayctl loan confirm --days 10", rc, out);
    char *want = h_sql_str(G.conninfo,
                           "SELECT 'loan|active|' || to_char((due_at AT TIME ZONE '" TZ
                           "')::date - 1, 'YYYY-MM-DD') || ' 10:00|' || to_char((due_at AT TIME "
                           "ZONE '" TZ "')::date - 1, 'YYYY-MM-DD') || 'T10:00; loan|active|' || "
                           "to_char((due_at AT TIME ZONE '" TZ "')::date + 1, 'YYYY-MM-DD') || ' "
                           "10:00|' || to_char((due_at AT TIME ZONE '" TZ "')::date + 1, "
                           "'YYYY-MM-DD') || 'T10:00' FROM loans WHERE id = %s",
                           lid);
    EXPECT_SQL(want, "the loan's reminders (by|status|start_local|next_key as computed)",
               "SELECT string_agg(created_by || '|' || status || '|' || to_char(start_local, "
               "'YYYY-MM-DD HH24:MI') || '|' || coalesce(next_key, '-'), '; ' ORDER BY "
               "start_local) FROM reminders WHERE loan_id = %s",
               lid);
    free(want);
    char *body = h_sql_str(G.conninfo,
                           "SELECT body FROM reminders WHERE loan_id = %s ORDER BY start_local "
                           "LIMIT 1",
                           lid);
    char *wb = h_sql_str(G.conninfo,
                         "SELECT 'Rappel : Perceuse est à rendre demain (' || to_char(due_at AT "
                         "TIME ZONE '" TZ "', 'DD/MM') || '). Merci !' FROM loans WHERE id = %s",
                         lid);
    H_ASSERT(str_eq(body, wb), "the day-before loan reminder: expected '%s', got '%s'", wb, body);
    free(body);
    free(wb);
    rc = h_ctl(G.config, &out, "--url", G.d->url, "loan", "returned", lid, NULL);
    ctl_ok("gatewayctl loan returned", rc, out);
    EXPECT_SQL("cancelled|-; cancelled|-", "the loan's reminders after its return (status|next)",
               "SELECT string_agg(status || '|' || coalesce(next_key, '-'), '; ' ORDER BY "
               "start_local) FROM reminders WHERE loan_id = %s",
               lid);
    free(lid);
}

/* ------------------------------------------------------------------ 11. two nodes */

static void test_two_nodes(void **state)
{
    (void)state;
    int port = h_free_port();
    struct h_config c = {.port = port,
                         .node_id = "node-b",
                         .conninfo = G.conninfo,
                         .gateway = "ops_token = " OPS_TOKEN "\n",
                         .route_sim = SIM_ROUTES};
    G.config_b = h_config_write(&c, "node-b.ini");
    G.b = h_daemon_start("node-b", G.config_b, port);
    h_sql_exec(G.conninfo,
               "SELECT gw_reminder_create(%lld, '+3362000' || lpad(i::text, 4, '0'), 'test', "
               "'Réunion des résidents ce soir.', 'once', " NL ", NULL, NULL, NULL, NULL) FROM "
               "generate_series(1, 100) i",
               G.centre);
#define Q100 "FROM messages WHERE phone LIKE '+3362000%%' AND direction = 'out'"
    char *got = poll_sql("100", "SELECT count(*) " Q100 " AND status = 'delivered'");
    H_ASSERT(str_eq(got, "100"), "100 reminders on two nodes: %s delivered after %d s; %s", got,
             WAIT_S, h_undelivered_report(G.conninfo));
    free(got);
    sentinel("after the 100");
    char *counts =
        h_sql_rows(G.conninfo, "SELECT count(*), count(DISTINCT phone), count(DISTINCT "
                               "idempotency_key), count(*) FILTER (WHERE idempotency_key = 'dlv:' "
                               "|| (SELECT d.id FROM deliveries d WHERE d.message_id = "
                               "messages.id)) " Q100);
    H_ASSERT(str_eq(counts, "100|100|100|100"),
             "two nodes, 100 reminders (SMS|phones|keys|keys = dlv:<delivery>): expected "
             "100|100|100|100, got %s",
             counts);
    free(counts);
    char *occ = h_sql_rows(G.conninfo,
                           "SELECT count(*), count(*) FILTER (WHERE o.status = 'queued') FROM "
                           "reminder_occurrences o JOIN contacts c ON c.id = o.contact_id WHERE "
                           "c.phone LIKE '+3362000%%'");
    H_ASSERT(str_eq(occ, "100|100"), "two nodes: occurrences (all|queued) %s", occ);
    free(occ);
    char *split = h_sql_rows(G.conninfo, "SELECT a.node, count(*) FROM attempts a JOIN messages m "
                                         "ON m.id = a.message_id WHERE m.phone LIKE '+3362000%%' "
                                         "GROUP BY a.node ORDER BY a.node");
    h_log("two nodes: sends by node: %s", split);
    free(split);
    G.b_pending = h_metric(G.b, M_PENDING);
    G.b_skipped = h_metric(G.b, M_SKIPPED);
    G.b_queued = h_metric(G.b, M_QUEUED);
    G.b_errors = h_metric(G.b, M_ERRORS);
    h_log("node-b: occurrences pending %.0f, releases queued %.0f", G.b_pending, G.b_queued);
    h_daemon_stop(G.b);
}

/* ------------------------------------------------------------------ 12. metrics */

static void test_metrics(void **state)
{
    (void)state;
    /* since the main daemon's last start (and node-b's whole life) */
    long long occ = h_sql_int(G.conninfo,
                              "SELECT count(*) FROM reminder_occurrences WHERE id > %lld AND "
                              "parent_id IS NULL",
                              G.occ_max_t2);
    long long skipped = h_sql_int(G.conninfo,
                                  "SELECT count(*) FROM reminder_occurrences WHERE id > %lld AND "
                                  "parent_id IS NULL AND status = 'skipped'",
                                  G.occ_max_t2);
    long long queued = h_sql_int(G.conninfo,
                                 "SELECT count(*) FROM deliveries WHERE status = 'queued' AND "
                                 "released_at > '%s'",
                                 G.t2);
    struct h_checks ck = {0};
    double pend = h_metric(G.d, M_PENDING) + G.b_pending;
    double skip = h_metric(G.d, M_SKIPPED) + G.b_skipped;
    double q = h_metric(G.d, M_QUEUED) + G.b_queued;
    h_check(&ck, pend == (double)(occ - skipped),
            "occurrences pending (main + node-b) %.0f = occurrences recorded %lld", pend,
            occ - skipped);
    h_check(&ck, skip == (double)skipped, "occurrences skipped (main + node-b) %.0f = %lld", skip,
            skipped);
    h_check(&ck, q == (double)queued,
            "releases queued (main + node-b) %.0f = deliveries queued %lld", q, queued);
    double quiet = h_metric(G.d, M_QUIET), cap = h_metric(G.d, M_CAP), jobs = h_metric(G.d, M_JOBS);
    h_check(&ck, quiet == 3, "deferred for quiet hours: %.0f (tests 5, 7, 8: 3)", quiet);
    h_check(&ck, cap == 2, "deferred for the daily cap: %.0f (test 6: 2)", cap);
    h_check(&ck, jobs == 2, "deferred job alerts: %.0f (test 9: 2)", jobs);
    double errs = h_metric(G.d, M_ERRORS) + G.b_errors;
    h_check(&ck, errs == 0, "scheduler errors (main + node-b): %.0f", errs);
    h_checks_done(&ck, "/metrics");
}

/* ------------------------------------------------------------------ 13. clean stop */

static void test_clean_shutdown(void **state)
{
    (void)state;
    h_daemon_stop(G.d);
}

int main(int argc, char **argv)
{
    h_init("scheduler", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once_template),  cmocka_unit_test(test_rrule_daily),
        cmocka_unit_test(test_ack_followup),   cmocka_unit_test(test_downtime),
        cmocka_unit_test(test_quiet_hours),    cmocka_unit_test(test_daily_cap),
        cmocka_unit_test(test_stop_waiting),   cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_job_alerts),     cmocka_unit_test(test_loan_reminders),
        cmocka_unit_test(test_two_nodes),      cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_clean_shutdown),
    };
    int failures = cmocka_run_group_tests_name("scheduler (one daemon, node-b in test 11)", tests,
                                               group_setup, group_teardown);
    h_exit(failures);
}
