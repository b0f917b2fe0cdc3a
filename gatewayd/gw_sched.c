/* gw_sched — see gw_sched.h. */
#include "gw_sched.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_send.h"
#include "gw_util.h"
#include "prov_text.h"
#include "sched_time.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A claimed batch of reminders or deliveries is this node's for this long: after a crash, another
 * pass takes it again once it ends (the work between claim and commit takes milliseconds; a
 * commit after the lease ended is refused by its token, never applied twice). */
#define LEASE_S 30
#define MAX_CATCHUP_STEPS 1000 /* occurrences walked after a downtime before jumping ahead */
#define MAX_OFFSETS 16

struct gw_sched {
    struct event_base *base;
    struct gw_db *db;
    const struct gw_config *cfg;
    struct event *ev_tick;
    struct event *ev_retention; /* hourly: message texts past the centres' retention period */
    int stopping;
    int exp_running, rel_running;
    int exp_more, rel_more; /* the last batch came back full: go again at once */
    /* metrics */
    uint64_t occ_pending, occ_skipped, reminders_finished, errors, purged;
    uint64_t sent, deferred_quiet, deferred_cap, deferred_jobs, cancelled;
    double last_lag_s; /* how late (vs. its due time) the latest released delivery went out */
};

static void schedule_tick(struct gw_sched *s, int ms);

/* ---------------------------------------------------------------- time helpers */

/* "YYYY-MM-DD HH:MI" → local */
static int parse_local(const char *t, struct sched_local *l)
{
    if (!t || sscanf(t, "%d-%d-%d %d:%d", &l->year, &l->month, &l->day, &l->hour, &l->minute) != 5)
        return -1;
    return 0;
}

static void key_of(const char *tz, int64_t at, char *out, size_t len)
{
    struct sched_local l;
    if (sched_utc_to_local(tz, at, &l, NULL) != 0)
        snprintf(out, len, "@%lld", (long long)at);
    else
        snprintf(out, len, "%04d-%02d-%02dT%02d:%02d", l.year, l.month, l.day, l.hour, l.minute);
}

struct rem {
    long long id, token;
    const char *tz, *schedule, *rrule;
    struct sched_local start, appt;
    int has_start, has_appt;
    int64_t appt_utc;
    int64_t offs[MAX_OFFSETS]; /* appointment: occurrence times, sorted */
    int noffs;
    int catchup_min;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Appointment offsets [{"days":1,"time":"18:00"}, {"minutes":120}] → sorted UTC times. */
static int appointment_times(struct rem *r, const char *offsets, char *err, size_t errlen)
{
    if (sched_local_to_utc(r->tz, &r->appt, &r->appt_utc) != 0) {
        snprintf(err, errlen, "appointment time not valid in %s", r->tz);
        return -1;
    }
    json_t *a = json_loads(offsets ? offsets : "", 0, NULL);
    size_t i;
    json_t *o;
    r->noffs = 0;
    json_array_foreach(a, i, o)
    {
        if (r->noffs == MAX_OFFSETS)
            break;
        json_t *days = json_object_get(o, "days"), *mins = json_object_get(o, "minutes");
        const char *tm = json_string_value(json_object_get(o, "time"));
        if (json_is_integer(days)) {
            /* the appointment's local date minus `days`, at `time` (default: same time) */
            int64_t noon;
            struct sched_local d = r->appt;
            d.hour = 12;
            d.minute = 0;
            if (sched_local_to_utc(r->tz, &d, &noon) != 0)
                continue;
            struct sched_local back;
            if (sched_utc_to_local(r->tz, noon - json_integer_value(days) * 86400, &back, NULL))
                continue;
            back.hour = r->appt.hour;
            back.minute = r->appt.minute;
            if (tm && sscanf(tm, "%d:%d", &back.hour, &back.minute) != 2)
                continue;
            if (sched_local_to_utc(r->tz, &back, &r->offs[r->noffs]) == 0)
                r->noffs++;
        } else if (json_is_integer(mins)) {
            r->offs[r->noffs++] = r->appt_utc - json_integer_value(mins) * 60;
        }
    }
    json_decref(a);
    if (r->noffs == 0) {
        snprintf(err, errlen, "no usable offset in %s", offsets ? offsets : "null");
        return -1;
    }
    qsort(r->offs, (size_t)r->noffs, sizeof r->offs[0], cmp_i64);
    return 0;
}

/* The first occurrence strictly after `after`: 1 found (*at), 0 none left, -1 error. */
static int occ_next(const struct rem *r, int64_t after, int64_t *at, char *err, size_t errlen)
{
    if (!strcmp(r->schedule, "once")) {
        if (sched_local_to_utc(r->tz, &r->start, at) != 0) {
            snprintf(err, errlen, "time not valid in %s", r->tz);
            return -1;
        }
        return *at > after;
    }
    if (!strcmp(r->schedule, "rrule"))
        return sched_rrule_next(r->tz, r->rrule, &r->start, after, at, err, errlen);
    for (int i = 0; i < r->noffs; i++) {
        if (r->offs[i] > after) {
            *at = r->offs[i];
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- expansion */

static void add_occ(json_t *occ, const char *tz, int64_t at, const char *status, const char *reason)
{
    char key[32];
    key_of(tz, at, key, sizeof key);
    json_t *o = json_pack("{s:s,s:I,s:s}", "key", key, "at", (json_int_t)at, "status", status);
    if (reason)
        json_object_set_new(o, "reason", json_string(reason));
    json_array_append_new(occ, o);
}

/* Decide one leased reminder (row `i` of the claim). Returns the commit row. */
static json_t *expand_one(struct gw_sched *s, PGresult *res, int i, int64_t now)
{
    struct rem r = {0};
    r.id = gw_db_int(res, i, 0);
    r.tz = PQgetvalue(res, i, 1);
    r.schedule = PQgetvalue(res, i, 2);
    r.has_start = !PQgetisnull(res, i, 3) && parse_local(PQgetvalue(res, i, 3), &r.start) == 0;
    r.rrule = PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4);
    r.has_appt = !PQgetisnull(res, i, 5) && parse_local(PQgetvalue(res, i, 5), &r.appt) == 0;
    const char *offsets = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
    int has_next = !PQgetisnull(res, i, 7);
    int64_t next_at = has_next ? (int64_t)strtod(PQgetvalue(res, i, 7), NULL) : 0;
    r.catchup_min = (int)gw_db_int(res, i, 9);
    int64_t updated = (int64_t)strtod(PQgetvalue(res, i, 10), NULL);
    r.token = gw_db_int(res, i, 11);

    json_t *row = json_pack("{s:I,s:I}", "id", (json_int_t)r.id, "token", (json_int_t)r.token);
    json_t *occ = json_array();
    json_object_set_new(row, "occ", occ);
    char err[160] = "";
    int ok = 1;
    if (!strcmp(r.schedule, "appointment"))
        ok = r.has_appt && appointment_times(&r, offsets, err, sizeof err) == 0;
    else
        ok = r.has_start;
    int64_t at = 0;
    int found = ok ? 0 : -1;
    if (ok && !has_next) {
        /* first computation (new or edited): from the time it was saved, the minute it was
         * saved in included (a reminder "at 10:00" saved at 10:00:40 still goes out) */
        found = occ_next(&r, updated - updated % 60 - 1, &at, err, sizeof err);
    } else if (ok) {
        /* due: next_at and every later occurrence up to now are candidates */
        int64_t cands[MAX_CATCHUP_STEPS];
        int n = 0;
        cands[n++] = next_at;
        int64_t t = next_at;
        found = 1;
        while (n < MAX_CATCHUP_STEPS && (found = occ_next(&r, t, &at, err, sizeof err)) == 1 &&
               at <= now) {
            cands[n++] = at;
            t = at;
        }
        if (found == 1 && at <= now) /* walked too far: jump to the first one after now */
            found = occ_next(&r, now, &at, err, sizeof err);
        int64_t late = now - cands[n - 1];
        int is_appt = !strcmp(r.schedule, "appointment");
        for (int k = 0; k < n; k++) {
            const char *status = "skipped", *reason = "missed";
            if (k == n - 1) {
                if (is_appt) {
                    if (now < r.appt_utc)
                        status = "pending", reason = NULL;
                    else
                        reason = "after_appointment";
                } else if (late <= (int64_t)r.catchup_min * 60) {
                    status = "pending", reason = NULL;
                } else if (!strcmp(r.schedule, "once")) {
                    reason = "too_late";
                }
            } else if (is_appt && now >= r.appt_utc) {
                reason = "after_appointment";
            }
            add_occ(occ, r.tz, cands[k], status, reason);
            if (!strcmp(status, "pending"))
                s->occ_pending++;
            else
                s->occ_skipped++;
        }
        if (n > 1 || late > 60)
            gw_info("scheduler", "reminder %lld: %d occurrence(s) were due while nothing ran; "
                                 "the latest is %s",
                    r.id, n, late <= (int64_t)r.catchup_min * 60 || r.appt_utc > now ? "sent"
                                                                                     : "skipped");
    }
    if (found < 0) {
        s->errors++;
        gw_warn("scheduler", "reminder %lld cannot be computed (%s): it is finished", r.id, err);
    }
    if (found == 1) {
        char key[32];
        key_of(r.tz, at, key, sizeof key);
        json_object_set_new(row, "next_at", json_integer(at));
        json_object_set_new(row, "next_key", json_string(key));
        json_object_set_new(row, "finished", json_false());
    } else {
        if (found == 0 && !has_next)
            gw_warn("scheduler", "reminder %lld has no occurrence after it was saved (its time "
                                 "has passed): it is finished without sending anything",
                    r.id);
        json_object_set_new(row, "next_at", json_null());
        json_object_set_new(row, "finished", json_true());
        s->reminders_finished++;
    }
    return row;
}

static void expansion_committed(void *arg, PGresult *res, const char *err)
{
    (void)res;
    struct gw_sched *s = arg;
    s->exp_running = 0;
    if (err) {
        s->errors++;
        s->exp_more = 0;
        gw_warn("scheduler", "recording occurrences failed (%s); the leases expire and the "
                             "reminders are taken again",
                err);
    }
    if (s->exp_more && !s->stopping)
        schedule_tick(s, 0);
}

static void expansion_claimed(void *arg, PGresult *res, const char *err)
{
    struct gw_sched *s = arg;
    if (err || PQntuples(res) == 0) {
        s->exp_running = 0;
        s->exp_more = 0;
        if (err)
            s->errors++;
        return;
    }
    int64_t now = gw_wall_ms() / 1000;
    json_t *batch = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(batch, expand_one(s, res, i, now));
    s->exp_more = PQntuples(res) >= s->cfg->sched_batch_size;
    char *j = json_dumps(batch, JSON_COMPACT);
    json_decref(batch);
    const char *p[1] = {j};
    if (gw_db_query(s->db, "SELECT gw_sched_commit($1::json)", 1, p, expansion_committed, s) !=
        GW_OK) {
        s->exp_running = 0;
        s->exp_more = 0;
    }
    free(j);
}

/* ---------------------------------------------------------------- release */

/* Per-resident counts inside one release batch (the claim gives what was sent before it). */
struct counts {
    long long contact;
    int sent, jobs;
};

static struct counts *counts_for(struct counts *c, int *n, long long contact, int sent, int jobs)
{
    for (int i = 0; i < *n; i++)
        if (c[i].contact == contact)
            return &c[i];
    c[*n] = (struct counts){contact, sent, jobs};
    return &c[(*n)++];
}

/* The first allowed time of the local day after `now`. */
static int64_t next_day_allowed(const char *tz, const struct sched_quiet *q, int64_t now)
{
    struct sched_local l;
    int64_t midnight, out;
    if (sched_utc_to_local(tz, now, &l, NULL) != 0)
        return now + 86400;
    l.hour = 23;
    l.minute = 59;
    if (sched_local_to_utc(tz, &l, &midnight) != 0)
        return now + 86400;
    midnight += 60; /* 00:00 the next day */
    if (sched_next_allowed(tz, q, midnight, &out) != 0)
        return midnight;
    return out;
}

static void release_committed(void *arg, PGresult *res, const char *err)
{
    struct gw_sched *s = arg;
    s->rel_running = 0;
    if (err) {
        s->errors++;
        s->rel_more = 0;
        gw_warn("scheduler", "queueing deliveries failed (%s); the leases expire and they are "
                             "taken again",
                err);
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            if (!strcmp(PQgetvalue(res, i, 2), "queued"))
                s->sent++;
            else
                s->cancelled++;
        }
    }
    if (s->rel_more && !s->stopping)
        schedule_tick(s, 0);
}

static void release_claimed(void *arg, PGresult *res, const char *err)
{
    struct gw_sched *s = arg;
    if (err || PQntuples(res) == 0) {
        s->rel_running = 0;
        s->rel_more = 0;
        if (err)
            s->errors++;
        return;
    }
    int64_t now = gw_wall_ms() / 1000;
    int nrows = PQntuples(res);
    struct counts *counts = calloc((size_t)nrows, sizeof *counts);
    if (!counts)
        abort();
    int ncounts = 0;
    json_t *batch = json_array();
    for (int i = 0; i < nrows; i++) {
        long long id = gw_db_int(res, i, 0);
        long long contact = gw_db_int(res, i, 2);
        const char *kind = PQgetvalue(res, i, 4);
        const char *body = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5);
        int urgent = PQgetvalue(res, i, 6)[0] == 't';
        const char *tz = PQgetvalue(res, i, 7);
        struct sched_quiet q = {.start_min = (int)gw_db_int(res, i, 8),
                                .end_min = (int)gw_db_int(res, i, 9),
                                .sundays_quiet = PQgetvalue(res, i, 10)[0] == 't',
                                .holidays_quiet = PQgetvalue(res, i, 11)[0] == 't'};
        int cap = (int)gw_db_int(res, i, 12);
        struct counts *c =
            counts_for(counts, &ncounts, contact, (int)gw_db_int(res, i, 13), (int)gw_db_int(res, i, 14));
        double due = strtod(PQgetvalue(res, i, 15), NULL);
        long long token = gw_db_int(res, i, 16);
        json_t *row = json_pack("{s:I,s:I}", "id", (json_int_t)id, "token", (json_int_t)token);
        int64_t allowed = now;
        const char *defer = NULL;
        if (!urgent && sched_next_allowed(tz, &q, now, &allowed) != 0)
            allowed = now;
        if (!body || !*body) {
            defer = "no_text";
            allowed = now + 60;
        } else if (allowed > now) {
            defer = "quiet_hours";
            s->deferred_quiet++;
        } else if (!urgent && c->sent >= cap) {
            defer = "daily_cap";
            allowed = next_day_allowed(tz, &q, now);
            s->deferred_cap++;
        } else if (!strcmp(kind, "jobs") && c->jobs >= 1) {
            defer = "daily_job_alert";
            allowed = next_day_allowed(tz, &q, now);
            s->deferred_jobs++;
        }
        if (defer) {
            json_object_set_new(row, "action", json_string("defer"));
            json_object_set_new(row, "at", json_integer(allowed));
            json_object_set_new(row, "reason", json_string(defer));
        } else {
            struct prov_text_info info;
            char *t = gw_send_text(s->cfg, body, strlen(body), &info);
            if (!t) {
                json_decref(row);
                continue;
            }
            json_object_set_new(row, "action", json_string("send"));
            json_object_set_new(row, "text", json_string(t));
            json_object_set_new(row, "segments", json_integer(info.segments));
            json_object_set_new(row, "encoding", json_string(prov_encoding_name(info.encoding)));
            free(t);
            if (!urgent)
                c->sent++;
            if (!strcmp(kind, "jobs"))
                c->jobs++;
            s->last_lag_s = (double)now - due;
        }
        json_array_append_new(batch, row);
    }
    free(counts);
    s->rel_more = nrows >= s->cfg->sched_batch_size;
    char *j = json_dumps(batch, JSON_COMPACT);
    json_decref(batch);
    const char *p[2] = {j, s->cfg->default_route};
    if (gw_db_query(s->db, "SELECT * FROM gw_release_commit($1::json, $2)", 2, p,
                    release_committed, s) != GW_OK) {
        s->rel_running = 0;
        s->rel_more = 0;
    }
    free(j);
}

/* ---------------------------------------------------------------- retention */

#define RETENTION_EVERY_S 3600
#define RETENTION_BATCH "20000"

static void retention_done(void *arg, PGresult *res, const char *err)
{
    struct gw_sched *s = arg;
    int64_t n = (!err && PQntuples(res) == 1) ? gw_db_int(res, 0, 0) : 0;
    if (err)
        gw_warn("retention", "purge failed (%s); tried again in an hour", err);
    else if (n > 0)
        gw_info("retention", "%lld message texts past their centre's retention period purged",
                (long long)n);
    s->purged += (uint64_t)n;
    /* a full batch: more is waiting, go on in a minute rather than an hour */
    struct timeval tv = {n >= 20000 ? 60 : RETENTION_EVERY_S, 0};
    if (!s->stopping)
        evtimer_add(s->ev_retention, &tv);
}

static void on_retention(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_sched *s = arg;
    const char *p[1] = {RETENTION_BATCH};
    if (gw_db_query(s->db, "SELECT gw_retention_run($1::int)", 1, p, retention_done, s) != GW_OK) {
        struct timeval tv = {300, 0};
        evtimer_add(s->ev_retention, &tv);
    }
}

/* ---------------------------------------------------------------- the timer */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_sched *s = arg;
    if (s->stopping)
        return;
    char node[128], lim[16], lease[16];
    snprintf(node, sizeof node, "%s", s->cfg->node_id);
    snprintf(lim, sizeof lim, "%d", s->cfg->sched_batch_size);
    snprintf(lease, sizeof lease, "%d", LEASE_S);
    const char *p[3] = {node, lim, lease};
    if (!s->exp_running &&
        gw_db_query(s->db, "SELECT * FROM gw_sched_claim($1, $2::int, $3::int)", 3, p,
                    expansion_claimed, s) == GW_OK)
        s->exp_running = 1;
    if (!s->rel_running &&
        gw_db_query(s->db, "SELECT * FROM gw_release_claim($1, $2::int, $3::int)", 3, p,
                    release_claimed, s) == GW_OK)
        s->rel_running = 1;
    /* Always re-armed: a commit that found more to do moves it to "now" (evtimer_add on a
     * pending timer reschedules it); a claim that comes back short re-arms nothing itself, so
     * without this the scheduler would stop after a burst. */
    schedule_tick(s, s->cfg->sched_interval_ms);
}

static void schedule_tick(struct gw_sched *s, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->ev_tick, &tv);
}

struct gw_sched *gw_sched_new(struct event_base *base, struct gw_db *db,
                              const struct gw_config *cfg)
{
    struct gw_sched *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->base = base;
    s->db = db;
    s->cfg = cfg;
    s->ev_tick = evtimer_new(base, on_tick, s);
    s->ev_retention = evtimer_new(base, on_retention, s);
    return s;
}

void gw_sched_start(struct gw_sched *s)
{
    if (s->cfg->sched_enabled) {
        schedule_tick(s, 200);
        struct timeval tv = {60, 0}; /* the first purge a minute after start */
        evtimer_add(s->ev_retention, &tv);
    }
    else
        gw_info("scheduler", "disabled on this node ([scheduler] enabled = no)");
}

void gw_sched_stop(struct gw_sched *s)
{
    s->stopping = 1;
    evtimer_del(s->ev_tick);
    evtimer_del(s->ev_retention);
}

void gw_sched_free(struct gw_sched *s)
{
    if (!s)
        return;
    event_free(s->ev_tick);
    event_free(s->ev_retention);
    free(s);
}

void gw_sched_metrics(struct gw_sched *s, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_scheduler_occurrences_total", "counter",
                   "Reminder occurrences materialised, by result.");
    evbuffer_add_printf(out,
                        "passerelle_scheduler_occurrences_total{result=\"pending\"} %llu\n"
                        "passerelle_scheduler_occurrences_total{result=\"skipped\"} %llu\n",
                        (unsigned long long)s->occ_pending, (unsigned long long)s->occ_skipped);
    gw_metric_head(out, "passerelle_scheduler_releases_total", "counter",
                   "Deliveries (reminders, alerts, job alerts) queued, cancelled or deferred.");
    evbuffer_add_printf(
        out,
        "passerelle_scheduler_releases_total{result=\"queued\"} %llu\n"
        "passerelle_scheduler_releases_total{result=\"cancelled\"} %llu\n"
        "passerelle_scheduler_releases_total{result=\"deferred_quiet_hours\"} %llu\n"
        "passerelle_scheduler_releases_total{result=\"deferred_daily_cap\"} %llu\n"
        "passerelle_scheduler_releases_total{result=\"deferred_job_alert\"} %llu\n",
        (unsigned long long)s->sent, (unsigned long long)s->cancelled,
        (unsigned long long)s->deferred_quiet, (unsigned long long)s->deferred_cap,
        (unsigned long long)s->deferred_jobs);
    gw_metric_head(out, "passerelle_scheduler_release_lag_seconds", "gauge",
                   "How late the latest released delivery was queued after its due time.");
    evbuffer_add_printf(out, "passerelle_scheduler_release_lag_seconds %.3f\n", s->last_lag_s);
    gw_metric_head(out, "passerelle_retention_purged_total", "counter",
                   "Message texts purged after their centre's retention period.");
    evbuffer_add_printf(out, "passerelle_retention_purged_total %llu\n",
                        (unsigned long long)s->purged);
    gw_metric_head(out, "passerelle_scheduler_errors_total", "counter",
                   "Scheduler passes or reminders that failed.");
    evbuffer_add_printf(out, "passerelle_scheduler_errors_total %llu\n",
                        (unsigned long long)s->errors);
}
