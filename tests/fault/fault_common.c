/* fault_common — see fault_common.h. */
#include "fault_common.h"

#include <curl/curl.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CENTRE "Centre des Tilleuls"
#define KEYID "Fk3yFaultInjectionPasserelle7"
#define ISP_TIMEOUT_MS 1500
#define PREFIX "fault"

static const char *const kind_names[F_NKINDS] = {"api", "inbound", "modem_in", "reminder"};

/* Inbound keywords (each gets exactly one reply: the centre is seeded, the senders differ). */
static const char *const KEYWORDS[] = {
    "AIDE", "aide", "INFO", "JOB", "ALERTE", "STOP", "Bonjour, je voudrais un rendez-vous"};
#define NKEYWORDS ((int)(sizeof KEYWORDS / sizeof KEYWORDS[0]))

/* ------------------------------------------------------------------ small things */

int f_rand(struct f_world *w, int lo, int hi)
{
    return lo + (int)((unsigned)rand_r(&w->rnd) % (unsigned)(hi - lo + 1));
}

double f_randf(struct f_world *w, double lo, double hi)
{
    return lo + (hi - lo) * ((double)rand_r(&w->rnd) / ((double)RAND_MAX + 1.0));
}

void f_note(struct f_world *w, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(w->fault_log);
    snprintf(w->fault_log + n, sizeof w->fault_log - n, "\n    t=%5.1fs %s", f_load_elapsed(w),
             line);
    h_log("fault: %s", line);
}

static void phone_of(int kind, int idx, char *out, size_t len)
{
    /* one number per request, one block per kind: no loop protection, daily cap or
     * once-a-day help reply gets in the way, and a STOP touches nothing else */
    snprintf(out, len, "+336%d%07d", kind + 1, idx + 1);
}

static void reminder_text(int idx, char *out, size_t len)
{
    snprintf(out, len, "Rappel " PREFIX " %d : atelier numerique demain a 14h.", idx);
}

/* ------------------------------------------------------------------ the world */

struct f_world *f_world_start(int argc, char **argv, const struct f_opts *o)
{
    char name[64];
    snprintf(name, sizeof name, "fault_%s", o->name);
    r_init(name, argc, argv);
    struct f_world *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->o = *o;
    const char *s = getenv("FAULT_SEED");
    if (s && *s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (*end || end == s) {
            fprintf(stderr, "[%s] FAULT_SEED must be a decimal number, not '%s'\n", name, s);
            exit(1);
        }
        w->seed = (unsigned)v;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        w->seed = (unsigned)(ts.tv_nsec ^ (long)getpid() << 16) % 1000000000u;
    }
    w->rnd = w->seed;
    h_log("seed %u (run again with FAULT_SEED=%u for the same schedule of requests and faults)",
          w->seed, w->seed);
    snprintf(w->prefix, sizeof w->prefix, "%s", PREFIX);
    pthread_mutex_init(&w->mu, NULL);

    const char *base = h_test_pg();
    if (o->private_pg) {
        w->pg = h_pg_new();
        base = w->pg->conninfo;
    }
    w->conninfo = h_db_create(base, o->name, NULL);
    w->port = h_free_port();
    char *routes;
    if (o->modem) {
        w->phone_dir = r_dummy_new("phone");
        routes = h_printf("[route modem]\ndriver = gammu\nconnection = none\nmodel = dummy\n"
                          "device = %s\npoll_interval_ms = 500\nreconnect_max_ms = 1000\n"
                          "breaker_cooldown_ms = 1000\n",
                          w->phone_dir);
    } else {
        /* delivery reports retried like a real provider's callbacks (every 0.5 s, 60 times):
         * a report that finds the daemon down is not lost to the test */
        char *dlr = h_printf("http://127.0.0.1:%d/providers/isp/dlr", w->port);
        const char *args[] = {"--keyid",
                              KEYID,
                              "--dlr-url",
                              dlr,
                              "--dlr-delay-ms",
                              "200",
                              "--dlr-retries",
                              "60",
                              "--dlr-retry-ms",
                              "500",
                              NULL};
        w->mock = r_mock_start("isendpro_mock", args);
        free(dlr);
        routes = h_printf("[route isp]\ndriver = isendpro\nurl = %s/cgi-bin\nkeyid = " KEYID "\n"
                          "timeout_ms = %d\ncredit_poll_s = 0\nbreaker_cooldown_ms = 1000\n"
                          "[route sim]\ndriver = sim\nlatency_ms = 5\ndlr_delay_ms = 50\n",
                          w->mock->url, ISP_TIMEOUT_MS);
    }
    char *all = h_printf("%s[scheduler]\ninterval_ms = 200\n", routes);
    /* max_attempts: a message must outlive the faults (each lasts seconds, the backoff is at
     * most 1 s and the circuit breaker pauses a failing route), so it must not end `failed` */
    w->config = r_config("fault.ini", w->port, w->conninfo, NULL, "max_attempts = 40\n", all);
    free(routes);
    free(all);
    const char *croutes[] = {o->modem ? "modem" : "isp", NULL};
    w->centre = r_centre_create(w->config, CENTRE, croutes);
    char *out = NULL;
    int rc;
    if (!o->modem) {
        /* the simulator takes the inbound keywords; replies go back the way they came */
        rc = h_ctl(w->config, &out, "centre", "routes", CENTRE, "--kind", "replies", "sim", NULL);
        H_ASSERT(rc == 0, "gatewayctl centre routes --kind replies sim: exit %d %s", rc,
                 h_ctl_stderr());
        free(out);
    }
    rc = h_ctl(w->config, &out, "centre", "seed", CENTRE, NULL);
    H_ASSERT(rc == 0, "gatewayctl centre seed: exit %d %s", rc, h_ctl_stderr());
    free(out);
    rc = h_ctl(w->config, &out, "centre", "set", CENTRE, "quiet_start=00:00", "quiet_end=24:00",
               "quiet_sundays=no", "quiet_holidays=no", "catchup_min=360", NULL);
    H_ASSERT(rc == 0, "gatewayctl centre set (quiet hours off): exit %d %s", rc, h_ctl_stderr());
    free(out);
    w->key = h_key_create(w->config, CENTRE);
    w->d = h_daemon_start("gatewayd", w->config, w->port);
    return w;
}

int f_exit(struct f_world *w, int failures)
{
    (void)w;
    r_exit(failures);
}

/* ------------------------------------------------------------------ the load thread */

struct http_out {
    long status;
    char *body;
    char err[CURL_ERROR_SIZE];
};

static void http_post(const char *url, const char *authz, const char *ctype, const char *body,
                      struct http_out *o)
{
    memset(o, 0, sizeof *o);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(o->err, sizeof o->err, "curl_easy_init failed");
        return;
    }
    struct h_buf b = {0};
    struct curl_slist *h = NULL;
    char line[300];
    if (authz) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", authz);
        h = curl_slist_append(h, line);
    }
    snprintf(line, sizeof line, "Content-Type: %s", ctype);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, o->err);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &o->status);
    else if (!o->err[0])
        snprintf(o->err, sizeof o->err, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    o->body = b.data;
}

struct loader {
    struct f_world *w;
    unsigned rnd;
    PGconn *pg;
    char *api_url, *inbound_url;
    double t0;
};

/* A client's pause before it sends a request again: 0.2 s, doubling up to 2 s. */
static double retry_delay(const struct f_op *op)
{
    double d = 0.2;
    for (int i = 1; i < op->tries && d < 2; i++)
        d *= 2;
    return d < 2 ? d : 2;
}

/* An answer that says "try again": none (connection refused or broken), 503, 429, 502/504. */
static int retryable(long status)
{
    return status == 0 || status == 503 || status == 429 || status == 502 || status == 504;
}

static void op_answer(struct f_op *op, long status, const char *body, const char *err,
                      long ok_status)
{
    op->last_status = status;
    if (status == ok_status) {
        json_t *j = body ? json_loads(body, 0, NULL) : NULL;
        json_t *id = json_object_get(j, "id");
        if (json_is_integer(id)) {
            op->id = (long long)json_integer_value(id);
            op->state = 1;
        } else {
            op->state = 2;
            snprintf(op->last, sizeof op->last, "HTTP %ld without an id: %.100s", status,
                     body ? body : "");
        }
        json_decref(j);
    } else if (retryable(status)) {
        snprintf(op->last, sizeof op->last, "%s%ld %.100s",
                 status ? "HTTP " : "no answer: ", status, status ? (body ? body : "") : err);
        op->next_try = h_now() + retry_delay(op);
    } else {
        op->state = 2;
        snprintf(op->last, sizeof op->last, "HTTP %ld %.120s", status, body ? body : "");
    }
}

static void run_api(struct loader *L, struct f_op *op)
{
    char phone[20], text[80], idem[48];
    phone_of(F_API, op->idx, phone, sizeof phone);
    snprintf(text, sizeof text, "Votre dossier %d est pret, passez au centre.", op->idx);
    snprintf(idem, sizeof idem, PREFIX "-api-%d", op->idx);
    json_t *b = json_pack("{s:s,s:s,s:s}", "to", phone, "text", text, "idempotency_key", idem);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    struct http_out o;
    http_post(L->api_url, L->w->key, "application/json", body, &o);
    op_answer(op, o.status, o.body, o.err, 202);
    free(o.body);
    free(body);
}

static void run_inbound(struct loader *L, struct f_op *op)
{
    char phone[20], id[48];
    phone_of(F_INBOUND, op->idx, phone, sizeof phone);
    snprintf(id, sizeof id, PREFIX "-in-%d", op->idx);
    const char *kw = KEYWORDS[op->idx % NKEYWORDS];
    char *ep = curl_easy_escape(NULL, phone, 0);
    char *et = curl_easy_escape(NULL, kw, 0);
    char *body = h_printf("from=%s&text=%s&id=%s", ep, et, id);
    curl_free(ep);
    curl_free(et);
    struct http_out o;
    http_post(L->inbound_url, NULL, "application/x-www-form-urlencoded", body, &o);
    op_answer(op, o.status, o.body, o.err, 200);
    free(o.body);
    free(body);
}

static void run_modem_in(struct loader *L, struct f_op *op)
{
    char phone[20];
    phone_of(F_MODEM_IN, op->idx, phone, sizeof phone);
    char *c = r_dummy_sms_content(1, phone, NULL, KEYWORDS[op->idx % NKEYWORDS]);
    /* locations 100.. (the driver deletes each file once the message is stored) */
    if (r_dummy_try_put_file(L->w->phone_dir, 1, 100 + op->idx, c) == 0) {
        op->state = 1;
    } else {
        /* the phone is gone: the network keeps the SMS until it is back */
        snprintf(op->last, sizeof op->last, "cannot write to the phone: %s", strerror(errno));
        op->next_try = h_now() + retry_delay(op);
    }
    free(c);
}

static void run_reminder(struct loader *L, struct f_op *op)
{
    if (L->pg && PQstatus(L->pg) != CONNECTION_OK) {
        PQfinish(L->pg);
        L->pg = NULL;
    }
    if (!L->pg) {
        L->pg = PQconnectdb(L->w->conninfo);
        if (PQstatus(L->pg) != CONNECTION_OK) {
            snprintf(op->last, sizeof op->last, "connect: %.140s", PQerrorMessage(L->pg));
            PQfinish(L->pg);
            L->pg = NULL;
            op->next_try = h_now() + retry_delay(op);
            return;
        }
    }
    char phone[20], text[96], centre[24];
    phone_of(F_REMINDER, op->idx, phone, sizeof phone);
    reminder_text(op->idx, text, sizeof text);
    snprintf(centre, sizeof centre, "%lld", L->w->centre);
    const char *p[3] = {centre, phone, text};
    /* what `gatewayctl reminder create CENTRE PHONE --text T --at <this minute>` runs, made
     * idempotent by its unique text (a commit whose answer was lost is not created twice) */
    PGresult *r = PQexecParams(L->pg,
                               "SELECT gw_reminder_create(c.id, $2, 'fault', $3, 'once',"
                               " date_trunc('minute', now() AT TIME ZONE c.timezone), NULL, NULL,"
                               " NULL, NULL) FROM centres c WHERE c.id = $1::bigint AND NOT EXISTS"
                               " (SELECT 1 FROM reminders r WHERE r.centre_id = c.id AND r.body ="
                               " $3)",
                               3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        op->state = 1;
        if (PQntuples(r) == 1)
            op->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    } else {
        snprintf(op->last, sizeof op->last, "SQL: %.140s", PQresultErrorMessage(r));
        op->next_try = h_now() + retry_delay(op);
        PQfinish(L->pg);
        L->pg = NULL;
    }
    PQclear(r);
}

static void run_op(struct loader *L, struct f_op *op)
{
    if (op->tries++ > 0)
        L->w->http_retries++;
    switch (op->kind) {
    case F_API:
        run_api(L, op);
        break;
    case F_INBOUND:
        run_inbound(L, op);
        break;
    case F_MODEM_IN:
        run_modem_in(L, op);
        break;
    default:
        run_reminder(L, op);
        break;
    }
}

static struct f_op *new_op(struct loader *L)
{
    struct f_world *w = L->w;
    double total = 0;
    for (int k = 0; k < F_NKINDS; k++)
        total += w->o.rate[k];
    double x = total * ((double)rand_r(&L->rnd) / ((double)RAND_MAX + 1.0));
    int kind = 0;
    for (kind = 0; kind < F_NKINDS - 1; kind++) {
        if (x < w->o.rate[kind])
            break;
        x -= w->o.rate[kind];
    }
    while (w->o.rate[kind] <= 0)
        kind = (kind + 1) % F_NKINDS;
    pthread_mutex_lock(&w->mu);
    if (w->nops == w->capops) {
        w->capops = w->capops ? 2 * w->capops : 1024;
        w->ops = realloc(w->ops, (size_t)w->capops * sizeof *w->ops);
        if (!w->ops)
            abort();
    }
    struct f_op *op = &w->ops[w->nops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->idx = (int)w->by_kind[kind]++;
    pthread_mutex_unlock(&w->mu);
    return op;
}

static void *load_main(void *arg)
{
    struct loader *L = arg;
    struct f_world *w = L->w;
    double total = 0;
    for (int k = 0; k < F_NKINDS; k++)
        total += w->o.rate[k];
    double next_new = h_now(), next_report = h_now() + 5;
    int scan = 0;
    for (;;) {
        double now = h_now();
        struct f_op *due = NULL;
        int pending = 0;
        /* one pending request whose retry is due, round-robin */
        for (int i = 0; i < w->nops; i++) {
            struct f_op *op = &w->ops[(scan + i) % w->nops];
            if (op->state != 0)
                continue;
            pending++;
            if (!due && op->next_try <= now) {
                due = op;
                scan = (scan + i + 1) % w->nops;
            }
        }
        if (now >= next_report) {
            int acked = 0;
            for (int i = 0; i < w->nops; i++)
                acked += w->ops[i].state == 1;
            h_log("load: t=%.0fs %d requests started, %d acknowledged, %d waiting for an answer, "
                  "%lld sent again",
                  now - L->t0, w->nops, acked, pending, w->http_retries);
            next_report = now + 5;
        }
        if (due) {
            run_op(L, due);
        } else if (now < w->load_end && now >= next_new) {
            run_op(L, new_op(L));
            next_new += 1.0 / total;
            if (next_new < now - 1)
                next_new = now - 1; /* after a stall, catch up for one second at most */
        } else if ((now >= w->load_end && pending == 0) || now > w->retry_deadline) {
            break;
        } else {
            h_sleep_ms(5);
        }
    }
    if (L->pg)
        PQfinish(L->pg);
    free(L->api_url);
    free(L->inbound_url);
    free(L);
    return NULL;
}

void f_load_start(struct f_world *w)
{
    struct loader *L = calloc(1, sizeof *L);
    if (!L)
        abort();
    L->w = w;
    L->rnd = w->seed * 2654435761u + 1;
    L->api_url = h_printf("%s/api/v1/messages", w->d->url);
    L->inbound_url = h_printf("%s/providers/sim/inbound", w->d->url);
    L->t0 = h_now();
    w->load_end = L->t0 + w->o.load_s;
    w->retry_deadline = w->load_end + 180;
    h_log("load for %.0f s: per second %.1f API sends, %.1f inbound SMS (simulator), %.1f inbound "
          "SMS (modem), %.1f reminders",
          w->o.load_s, w->o.rate[F_API], w->o.rate[F_INBOUND], w->o.rate[F_MODEM_IN],
          w->o.rate[F_REMINDER]);
    H_ASSERT(pthread_create(&w->thr, NULL, load_main, L) == 0, "pthread_create failed");
    w->thr_started = 1;
}

double f_load_elapsed(const struct f_world *w)
{
    return w->thr_started ? h_now() - (w->load_end - w->o.load_s) : 0;
}

void f_sleep_until(const struct f_world *w, double t)
{
    while (f_load_elapsed(w) < t)
        h_sleep_ms(20);
}

void f_load_finish(struct f_world *w, double retry_s)
{
    w->retry_deadline = w->load_end + retry_s;
    pthread_join(w->thr, NULL);
    w->thr_started = 0;
    long long acked[F_NKINDS] = {0}, all[F_NKINDS] = {0};
    for (int i = 0; i < w->nops; i++) {
        all[w->ops[i].kind]++;
        acked[w->ops[i].kind] += w->ops[i].state == 1;
    }
    h_log("load finished: %d requests (api %lld/%lld, inbound %lld/%lld, modem inbound %lld/%lld, "
          "reminders %lld/%lld acknowledged), %lld sent again",
          w->nops, acked[F_API], all[F_API], acked[F_INBOUND], all[F_INBOUND], acked[F_MODEM_IN],
          all[F_MODEM_IN], acked[F_REMINDER], all[F_REMINDER], w->http_retries);
}

void f_kill9_restart(struct f_world *w)
{
    H_ASSERT(w->nkills < 64, "too many kills");
    long long rows = h_sql_int(w->conninfo, "SELECT count(*) FROM messages");
    h_daemon_kill9(w->d);
    /* taken once the process is gone: a send the peer accepted before this instant may have
     * been accepted by the killed process (its outcome lost), one after it cannot */
    w->kills[w->nkills++] = h_wall();
    f_note(w, "kill -9 (%lld messages stored)", rows);
    h_daemon_restart(w->d);
    w->restarts++;
    w->faults++;
    f_note(w, "restarted, /healthz 200");
}

/* ------------------------------------------------------------------ accounting */

struct peer_rec {
    long long id;
    double at;
};

static int cmp_rec(const void *a, const void *b)
{
    const struct peer_rec *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* "2026-01-02T03:04:05.678Z" → seconds since the epoch */
static double iso_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

static long long tracker_id(json_t *v)
{
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

/* ids from "1,2,3" (malloc'ed array, sorted) */
static long long *parse_ids(const char *csv, int *n)
{
    *n = 0;
    if (!csv || !*csv)
        return calloc(1, sizeof(long long));
    int cap = 1;
    for (const char *p = csv; *p; p++)
        cap += *p == ',';
    long long *a = calloc((size_t)cap, sizeof *a);
    if (!a)
        abort();
    const char *p = csv;
    while (*p) {
        char *end;
        a[(*n)++] = strtoll(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p)
            break;
    }
    qsort(a, (size_t)*n, sizeof *a, cmp_ll);
    return a;
}

static int has_id(const long long *a, int n, long long id)
{
    return bsearch(&id, a, (size_t)n, sizeof *a, cmp_ll) != NULL;
}

struct peer_view {
    long long records;   /* sends the peer accepted (for our messages) */
    long long dups;      /* accepted more than once, explained by nothing */
    long long resent;    /* accepted more than once after a lost answer or a crash */
    long long no_record; /* accepted in the database, unknown to the peer */
    long long orphans;   /* known to the peer, never accepted in the database */
    char examples[1024];
};

static void add_example(struct peer_view *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_example(struct peer_view *v, const char *fmt, ...)
{
    size_t n = strlen(v->examples);
    if (n > sizeof v->examples - 200)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->examples + n, sizeof v->examples - n, fmt, ap);
    va_end(ap);
}

/*
 * The mock's view. "Sent twice" is two accepted sends (two /_mock/sent records) of one message.
 * A second one is at-least-once, not a bug, when the daemon cannot have known of the first:
 *  - its answer was lost: a request for that tracker the mock processed but answered with a
 *    500, a reset or nothing (error500/reset/timeout with "process": true), or too late (slow
 *    with a delay of at least the route's timeout_ms), or an attempt the daemon recorded as a
 *    timeout or a broken connection (under load the daemon may read an answer too late);
 *  - a kill -9 fell between the two sends (the accepted outcome was not written yet).
 * Anything else is a duplicate.
 */
static void isp_view(struct f_world *w, struct peer_view *v)
{
    json_t *sent = r_mock_get(w->mock, "sent");
    json_t *reqs = r_mock_get(w->mock, "requests");
    size_t ns = json_array_size(sent);
    struct peer_rec *recs = calloc(ns + 1, sizeof *recs);
    if (!recs)
        abort();
    size_t i;
    json_t *e;
    json_array_foreach(sent, i, e)
    {
        recs[i].id = tracker_id(json_object_get(e, "tracker"));
        recs[i].at = iso_time(json_string_value(json_object_get(e, "at")));
    }
    qsort(recs, ns, sizeof *recs, cmp_rec);
    /* lost answers, one entry per tracker of each such request */
    size_t lcap = 64, nl = 0;
    long long *lost = malloc(lcap * sizeof *lost);
    json_array_foreach(reqs, i, e)
    {
        if (!json_is_true(json_object_get(e, "processed")))
            continue;
        const char *fault = json_string_value(json_object_get(e, "fault"));
        json_t *dl = json_object_get(e, "delay_ms");
        int is_lost = fault && (!strcmp(fault, "error500") || !strcmp(fault, "reset") ||
                                !strcmp(fault, "timeout") ||
                                (!strcmp(fault, "slow") && json_is_integer(dl) &&
                                 json_integer_value(dl) >= ISP_TIMEOUT_MS));
        if (!is_lost)
            continue;
        json_t *t = json_object_get(json_object_get(e, "fields"), "tracker");
        size_t k, nt = json_is_array(t) ? json_array_size(t) : 1;
        for (k = 0; k < nt; k++) {
            if (nl == lcap) {
                lcap *= 2;
                lost = realloc(lost, lcap * sizeof *lost);
            }
            lost[nl++] = tracker_id(json_is_array(t) ? json_array_get(t, k) : t);
        }
    }
    /* the daemon's side: a send that ended in a timeout or a broken connection may have been
     * accepted (the mock answered, too late for a daemon busy elsewhere): one id per such
     * attempt, added to the lost answers */
    char *to_csv = h_sql_str(w->conninfo,
                             "SELECT string_agg(a.message_id::text, ',') FROM attempts a JOIN "
                             "messages m ON m.id = a.message_id WHERE m.centre_id = %lld AND "
                             "a.route = 'isp' AND a.outcome = 'tempfail' AND a.error_code IN "
                             "('timeout', 'network')",
                             w->centre);
    int nto;
    long long *to = parse_ids(to_csv, &nto);
    free(to_csv);
    for (int k = 0; k < nto; k++) {
        if (nl == lcap) {
            lcap *= 2;
            lost = realloc(lost, lcap * sizeof *lost);
        }
        lost[nl++] = to[k];
    }
    free(to);
    qsort(lost, nl, sizeof *lost, cmp_ll);
    char *acc_csv = h_sql_str(w->conninfo,
                              "SELECT string_agg(DISTINCT a.message_id::text, ',') FROM attempts a"
                              " JOIN messages m ON m.id = a.message_id WHERE m.centre_id = %lld"
                              " AND a.route = 'isp' AND a.outcome = 'accepted'",
                              w->centre);
    int nacc;
    long long *acc = parse_ids(acc_csv, &nacc);
    free(acc_csv);
    v->records = (long long)ns;
    for (size_t a = 0; a < ns;) {
        size_t b = a;
        while (b < ns && recs[b].id == recs[a].id)
            b++;
        long long id = recs[a].id;
        long long extra = (long long)(b - a) - 1;
        if (!has_id(acc, nacc, id)) {
            v->orphans++;
            add_example(v, " [%lld: %zu peer record(s), no accepted attempt]", id, b - a);
        }
        if (extra > 0) {
            long long nlost = 0;
            for (size_t k = 0; k < nl; k++)
                nlost += lost[k] == id;
            long long crash = 0;
            for (size_t k = a; k + 1 < b; k++)
                for (int q = 0; q < w->nkills; q++)
                    if (w->kills[q] > recs[k].at && w->kills[q] < recs[k + 1].at) {
                        crash++;
                        break;
                    }
            long long expl = nlost + crash < extra ? nlost + crash : extra;
            v->resent += expl;
            if (extra > expl) {
                v->dups += extra - expl;
                add_example(v,
                            " [%lld: %zu peer records, %lld lost answer(s) or timeout(s), "
                            "%lld kill(s) between]",
                            id, b - a, nlost, crash);
            }
        }
        a = b;
    }
    for (int k = 0; k < nacc; k++) {
        struct peer_rec key = {acc[k], -1e18};
        size_t lo = 0, hi = ns;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cmp_rec(&recs[mid], &key) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo >= ns || recs[lo].id != acc[k]) {
            v->no_record++;
            add_example(v, " [%lld: accepted attempt, no peer record]", acc[k]);
        }
    }
    free(acc);
    free(lost);
    free(recs);
    json_decref(sent);
    json_decref(reqs);
}

/* For messages of route isp left 'sent': what became of the mock's delivery reports for them,
 * and the first kill after the last one (a report answered 2xx and then lost is a bug, not
 * something to wait for). */
static char *stuck_reports(struct f_world *w)
{
    char *csv = h_sql_str(w->conninfo,
                          "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM "
                          "messages WHERE centre_id = %lld AND direction = 'out' AND route = "
                          "'isp' AND status = 'sent' ORDER BY id LIMIT 10) x",
                          w->centre);
    if (!csv)
        return h_printf("%s", "");
    int n;
    long long *ids = parse_ids(csv, &n);
    free(csv);
    json_t *dlrs = r_mock_get(w->mock, "dlr");
    char out[1500] = "";
    size_t len = 0;
    for (int k = 0; k < n && len < sizeof out - 200; k++) {
        json_t *mine = r_mock_by_tracker(dlrs, ids[k]);
        len += (size_t)snprintf(out + len, sizeof out - len, " [message %lld:", ids[k]);
        size_t i;
        json_t *e;
        double last = 0;
        json_array_foreach(mine, i, e)
        {
            json_t *hs = json_object_get(e, "http_status");
            const char *done = json_string_value(json_object_get(e, "done_at"));
            last = iso_time(done);
            len +=
                (size_t)snprintf(out + len, sizeof out - len, " report %s at %s -> HTTP %lld",
                                 json_string_value(json_object_get(e, "state")), done ? done : "-",
                                 json_is_integer(hs) ? (long long)json_integer_value(hs) : 0LL);
        }
        if (json_array_size(mine) == 0)
            len += (size_t)snprintf(out + len, sizeof out - len, " no report from the mock");
        for (int q = 0; q < w->nkills; q++)
            if (last > 0 && w->kills[q] >= last) {
                len += (size_t)snprintf(out + len, sizeof out - len, "; kill -9 %.0f ms after it",
                                        (w->kills[q] - last) * 1e3);
                break;
            }
        len += (size_t)snprintf(out + len, sizeof out - len, "]");
        json_decref(mine);
    }
    json_decref(dlrs);
    free(ids);
    return h_printf("%s", out);
}

/* routes.ROUTE.FIELD of /healthz as an integer (-1 when missing) */
static long long health_int(struct f_world *w, const char *route, const char *field)
{
    json_t *rt = r_route_health(w->d, route, NULL);
    json_t *v = json_object_get(rt, field);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(rt);
    return n;
}

/* ------------------------------------------------------------------ settling */

struct settle {
    struct f_world *w;
    long long want_in, want_rem, want_api;
    char state[512];
    char last[512];
    double stable_since;
    int done;
};

#define GOOD_FINAL "(status = CASE WHEN route = 'modem' THEN 'sent' ELSE 'delivered' END)"

static int settled(void *arg)
{
    struct settle *s = arg;
    struct f_world *w = s->w;
    char *st = h_sql_str(
        w->conninfo,
        "SELECT concat_ws(' ',"
        " 'out', (SELECT count(*) FROM messages WHERE centre_id = %lld AND direction = 'out'),"
        " 'good', (SELECT count(*) FROM messages WHERE centre_id = %lld AND direction = 'out' AND"
        "   " GOOD_FINAL "),"
        " 'busy', (SELECT count(*) FROM messages WHERE centre_id = %lld AND direction = 'out' AND"
        "   status IN ('queued', 'sending')),"
        " 'queue', (SELECT count(*) FROM outbox_queue),"
        " 'in', (SELECT count(*) FROM messages WHERE centre_id = %lld AND direction = 'in'),"
        " 'runs', (SELECT count(*) FROM flow_runs WHERE centre_id = %lld),"
        " 'decided', (SELECT coalesce(sum(jsonb_array_length(replies)), 0) FROM flow_runs WHERE"
        "   centre_id = %lld),"
        " 'reminder_sms', (SELECT count(*) FROM messages WHERE centre_id = %lld AND direction ="
        "   'out' AND body LIKE 'Rappel " PREFIX " %%'),"
        /* reminders and deliveries a killed daemon had leased wait for their lease to end
         * (gw_sched.c LEASE_S) before another pass takes them */
        " 'sched_leased', (SELECT count(*) FROM reminders WHERE lease_until > now())"
        "   + (SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_until > now()))",
        w->centre, w->centre, w->centre, w->centre, w->centre, w->centre, w->centre);
    long long out = 0, good = 0, busy = 0, queue = 0, in = 0, runs = 0, decided = 0, rsms = 0,
              leased = 0;
    sscanf(st ? st : "",
           "out %lld good %lld busy %lld queue %lld in %lld runs %lld decided %lld "
           "reminder_sms %lld sched_leased %lld",
           &out, &good, &busy, &queue, &in, &runs, &decided, &rsms, &leased);
    int inbox_empty = 1;
    if (w->phone_dir)
        inbox_empty = r_dummy_count(w->phone_dir, 1, NULL) == 0;
    snprintf(s->state, sizeof s->state, "%s%s", st ? st : "?",
             inbox_empty ? "" : " (the phone's inbox is not empty)");
    free(st);
    if (out == good && busy == 0 && queue == 0 && in == s->want_in && runs == in &&
        rsms == s->want_rem && out == s->want_api + s->want_rem + decided && inbox_empty) {
        s->done = 1;
        return 1;
    }
    /* nothing moves any more: stop waiting, the checks say what is wrong */
    if (strcmp(s->state, s->last) != 0) {
        snprintf(s->last, sizeof s->last, "%s", s->state);
        s->stable_since = h_now();
    } else if (busy == 0 && queue == 0 && leased == 0 && h_now() - s->stable_since > 20) {
        return 1;
    }
    return 0;
}

static int health_ok(void *arg)
{
    struct f_world *w = arg;
    struct h_resp *r = h_get(w->d, "/healthz", NULL);
    const char *db = h_jstr(r->json, "db");
    int ok = r->status == 200 && db && !strcmp(db, "up");
    h_resp_free(r);
    return ok;
}

/* ------------------------------------------------------------------ verify */

void f_verify(struct f_world *w)
{
    struct f_opts *o = &w->o;
    long long C = w->centre;
    long long all[F_NKINDS] = {0}, acked[F_NKINDS] = {0}, refused = 0;
    char refused_ex[600] = "", pending_ex[600] = "";
    size_t api_cap = 16;
    char *api_ids = malloc(api_cap);
    api_ids[0] = '\0';
    size_t api_len = 0;
    for (int i = 0; i < w->nops; i++) {
        struct f_op *op = &w->ops[i];
        all[op->kind]++;
        if (op->state == 1) {
            acked[op->kind]++;
            if (op->kind == F_API) {
                while (api_len + 24 >= api_cap) {
                    api_cap *= 2;
                    api_ids = realloc(api_ids, api_cap);
                }
                api_len += (size_t)snprintf(api_ids + api_len, api_cap - api_len, "%s%lld",
                                            api_len ? "," : "", op->id);
            }
        } else {
            char *ex = op->state == 2 ? refused_ex : pending_ex;
            size_t n = strlen(ex);
            if (n < 400)
                snprintf(ex + n, 600 - n, " [%s %d: %s]", kind_names[op->kind], op->idx, op->last);
            refused += op->state == 2;
        }
    }
    int healthy = h_poll(60, 250, health_ok, w);
    struct settle s = {.w = w,
                       .want_in = acked[F_INBOUND] + acked[F_MODEM_IN],
                       .want_rem = acked[F_REMINDER],
                       .want_api = acked[F_API],
                       .stable_since = h_now()};
    double t0 = h_now();
    int in_time = h_poll(240, 500, settled, &s);
    h_log("settled after %.0f s%s: %s", h_now() - t0,
          s.done ? "" : (in_time ? " (nothing moves any more)" : " (deadline)"), s.state);

    /* the figures */
    const char *ck = w->prefix;
    long long api_rows = h_sql_int(w->conninfo,
                                   "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                   "idempotency_key LIKE '%s-api-%%'",
                                   C, ck);
    long long api_match =
        api_len ? h_sql_int(w->conninfo,
                            "SELECT count(*) FROM messages WHERE id IN (%s) AND centre_id = %lld "
                            "AND idempotency_key LIKE '%s-api-%%'",
                            api_ids, C, ck)
                : 0;
    long long in_rows = h_sql_int(w->conninfo,
                                  "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                  "direction = 'in'",
                                  C);
    long long in_distinct = h_sql_int(w->conninfo,
                                      "SELECT count(DISTINCT phone) FROM messages WHERE centre_id ="
                                      " %lld AND direction = 'in'",
                                      C);
    long long in_sim_refs = h_sql_int(w->conninfo,
                                      "SELECT count(DISTINCT inbound_ref) FROM messages WHERE "
                                      "centre_id = %lld AND direction = 'in' AND inbound_ref LIKE "
                                      "'%s-in-%%'",
                                      C, ck);
    long long unanswered = h_sql_int(w->conninfo,
                                     "SELECT count(*) FROM messages m WHERE m.centre_id = %lld AND"
                                     " m.direction = 'in' AND NOT EXISTS (SELECT 1 FROM flow_runs"
                                     " f WHERE f.message_id = m.id AND jsonb_array_length("
                                     "f.replies) > 0)",
                                     C);
    long long decided = h_sql_int(w->conninfo,
                                  "SELECT coalesce(sum(jsonb_array_length(replies)), 0) FROM "
                                  "flow_runs WHERE centre_id = %lld",
                                  C);
    long long replies = h_sql_int(w->conninfo,
                                  "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                  "direction = 'out' AND idempotency_key LIKE 'flow:%%'",
                                  C);
    long long replies_mismatch =
        h_sql_int(w->conninfo,
                  "SELECT count(*) FROM flow_runs f WHERE f.centre_id = %lld AND "
                  "jsonb_array_length(f.replies) <> (SELECT count(*) FROM messages m WHERE "
                  "m.centre_id = f.centre_id AND m.idempotency_key LIKE 'flow:' || f.message_id || "
                  "':%%')",
                  C);
    long long rem_rows = h_sql_int(w->conninfo,
                                   "SELECT count(*) FROM reminders WHERE centre_id = %lld AND body "
                                   "LIKE 'Rappel %s %%'",
                                   C, ck);
    long long rem_sms = h_sql_int(w->conninfo,
                                  "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                  "direction = 'out' AND body LIKE 'Rappel %s %%'",
                                  C, ck);
    long long rem_sms_distinct = h_sql_int(w->conninfo,
                                           "SELECT count(DISTINCT body) FROM messages WHERE "
                                           "centre_id = %lld AND direction = 'out' AND body LIKE "
                                           "'Rappel %s %%'",
                                           C, ck);
    long long out_rows = h_sql_int(w->conninfo,
                                   "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                   "direction = 'out'",
                                   C);
    long long good = h_sql_int(w->conninfo,
                               "SELECT count(*) FROM messages WHERE centre_id = %lld AND direction"
                               " = 'out' AND " GOOD_FINAL,
                               C);
    char *by_status = h_sql_rows(w->conninfo,
                                 "SELECT route, status, count(*) FROM messages WHERE centre_id = "
                                 "%lld AND direction = 'out' GROUP BY 1, 2 ORDER BY 1, 2",
                                 C);
    long long multi_acc = h_sql_int(w->conninfo,
                                    "SELECT count(*) FROM (SELECT a.message_id FROM attempts a JOIN"
                                    " messages m ON m.id = a.message_id WHERE m.centre_id = %lld "
                                    "AND a.outcome = 'accepted' GROUP BY 1 HAVING count(*) > 1) x",
                                    C);
    long long good_no_acc = h_sql_int(w->conninfo,
                                      "SELECT count(*) FROM messages m WHERE m.centre_id = %lld AND"
                                      " m.direction = 'out' AND " GOOD_FINAL " AND NOT EXISTS"
                                      " (SELECT 1 FROM attempts a WHERE a.message_id = m.id AND"
                                      " a.outcome = 'accepted')",
                                      C);
    long long reclaimed = h_sql_int(w->conninfo,
                                    "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                                    "direction = 'out' AND attempts > 1",
                                    C);
    long long queue = h_sql_int(w->conninfo, "SELECT count(*) FROM outbox_queue");
    char *outcomes = h_sql_rows(w->conninfo,
                                "SELECT a.route, a.outcome, coalesce(a.error_code, '-'), count(*)"
                                " FROM attempts a JOIN messages m ON m.id = a.message_id WHERE"
                                " m.centre_id = %lld GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                                C);

    /* the peers */
    struct peer_view pv = {0};
    long long sim_db = h_sql_int(w->conninfo,
                                 "SELECT count(*) FROM attempts a JOIN messages m ON m.id = "
                                 "a.message_id WHERE m.centre_id = %lld AND a.route = 'sim' AND "
                                 "a.outcome = 'accepted'",
                                 C);
    long long modem_db = h_sql_int(w->conninfo,
                                   "SELECT count(*) FROM attempts a JOIN messages m ON m.id = "
                                   "a.message_id WHERE m.centre_id = %lld AND a.route = 'modem' "
                                   "AND a.outcome = 'accepted'",
                                   C);
    long long sim_peer = -1, modem_peer = -1;
    if (w->mock)
        isp_view(w, &pv);
    if (!o->modem && w->restarts == 0)
        sim_peer = health_int(w, "sim", "accepted");
    if (o->modem)
        modem_peer = health_int(w, "modem", "sent");
    long long peer_accepted =
        pv.records + (sim_peer >= 0 ? sim_peer : sim_db) + (modem_peer >= 0 ? modem_peer : 0);
    long long sim_extra = sim_peer >= 0 ? sim_peer - sim_db : 0;
    long long modem_extra = modem_peer >= 0 ? modem_peer - modem_db : 0;
    long long dups =
        pv.dups + multi_acc + (sim_extra > 0 ? sim_extra : 0) + (modem_extra > 0 ? modem_extra : 0);

    h_log("outbound by route and status: %s", by_status);
    h_log("attempts (route|outcome|error|count): %s", outcomes);
    h_log("peers: mock %lld records (%lld resent after a lost answer or a crash, %lld "
          "unexplained, %lld accepted without a record, %lld records never accepted)%s; simulator "
          "%lld accepted (database %lld)%s; modem %lld sent (database %lld)",
          pv.records, pv.resent, pv.dups, pv.no_record, pv.orphans, pv.examples, sim_peer, sim_db,
          w->restarts ? " (its counter restarts with the daemon: the database's count is used)"
                      : "",
          modem_peer, modem_db);

    /* the table */
    fprintf(stderr,
            "[%s] counts (seed %u)\n"
            "  | scenario | api 202 | inbound | replies | reminders | sent | accepted | %s | "
            "duplicates | resent | client retries | faults | restarts |\n"
            "  | %s | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %d | "
            "%d |\n"
            "  faults:%s\n",
            h_name(), w->seed, o->modem ? "final (sent)" : "delivered", o->name, acked[F_API],
            in_rows, replies, rem_sms, out_rows, peer_accepted, good, dups, pv.resent,
            w->http_retries, w->faults, w->restarts, w->fault_log[0] ? w->fault_log : " none");
    fflush(stderr);

    /* the checks */
    struct h_checks c = {0};
    h_check(&c,
            acked[F_API] == all[F_API] && acked[F_INBOUND] == all[F_INBOUND] &&
                acked[F_MODEM_IN] == all[F_MODEM_IN] && acked[F_REMINDER] == all[F_REMINDER],
            "every request was acknowledged in the end (api %lld/%lld, inbound %lld/%lld, modem "
            "inbound %lld/%lld, reminders %lld/%lld); refused %lld:%s; never answered:%s",
            acked[F_API], all[F_API], acked[F_INBOUND], all[F_INBOUND], acked[F_MODEM_IN],
            all[F_MODEM_IN], acked[F_REMINDER], all[F_REMINDER], refused,
            refused_ex[0] ? refused_ex : " none", pending_ex[0] ? pending_ex : " none");
    h_check(&c, healthy, "/healthz answers 200 with db up again");
    h_check(&c, api_rows == acked[F_API] && api_match == acked[F_API],
            "one row per acknowledged API send: %lld sends got a 202, %lld rows carry their "
            "idempotency keys, %lld of the 202 ids are such rows",
            acked[F_API], api_rows, api_match);
    h_check(&c,
            in_rows == acked[F_INBOUND] + acked[F_MODEM_IN] && in_distinct == in_rows &&
                in_sim_refs == acked[F_INBOUND],
            "every inbound SMS stored once: %lld acknowledged or put in the phone, %lld stored "
            "(%lld senders, %lld simulator ids)",
            acked[F_INBOUND] + acked[F_MODEM_IN], in_rows, in_distinct, in_sim_refs);
    h_check(
        &c, unanswered == 0 && replies_mismatch == 0 && replies == decided,
        "every inbound SMS answered: %lld without a flow run or a reply decided, %lld flow runs "
        "whose replies are not all queued, %lld replies for %lld decided",
        unanswered, replies_mismatch, replies, decided);
    h_check(&c,
            rem_rows == acked[F_REMINDER] && rem_sms == rem_rows && rem_sms_distinct == rem_rows,
            "one SMS per reminder: %lld created, %lld reminders, %lld SMS (%lld texts)",
            acked[F_REMINDER], rem_rows, rem_sms, rem_sms_distinct);
    h_check(&c, out_rows == acked[F_API] + rem_sms + replies,
            "no other outgoing message: %lld = %lld API + %lld reminders + %lld replies", out_rows,
            acked[F_API], rem_sms, replies);
    if (!h_check(&c, good == out_rows, "every outgoing message %s: %lld of %lld (%s)",
                 o->modem ? "sent (the dummy phone has no delivery reports)" : "delivered", good,
                 out_rows, by_status)) {
        char *rep = h_undelivered_report(w->conninfo);
        h_check(&c, 0, "the others: %s", rep);
        free(rep);
        if (w->mock) {
            char *why = stuck_reports(w);
            if (*why)
                h_check(&c, 0, "delivery reports of the isp messages left 'sent':%s", why);
            free(why);
        }
    }
    h_check(&c, multi_acc == 0 && good_no_acc == 0,
            "one accepted attempt per message: %lld with more, %lld in a final state without any",
            multi_acc, good_no_acc);
    if (w->mock)
        h_check(&c, pv.dups == 0 && pv.no_record == 0 && pv.orphans == 0,
                "the iSendPro mock accepted each message once, or again only after a lost answer "
                "or a crash: %lld records, %lld resent so, %lld unexplained, %lld accepted "
                "attempts it has no record of, %lld records never accepted:%s",
                pv.records, pv.resent, pv.dups, pv.no_record, pv.orphans,
                pv.examples[0] ? pv.examples : " none");
    if (sim_peer >= 0)
        h_check(&c, sim_peer == sim_db,
                "the simulator accepted as many sends as the database has accepted attempts on "
                "it: %lld and %lld",
                sim_peer, sim_db);
    if (modem_peer >= 0)
        h_check(&c, modem_peer == modem_db,
                "the modem sent as many messages as the database has accepted attempts on it: "
                "%lld and %lld",
                modem_peer, modem_db);
    h_check(&c, queue == 0, "outbox_queue empty: %lld rows", queue);
    h_log("%lld messages were claimed more than once", reclaimed);
    h_daemon_stop_check(w->d, &c);
    free(api_ids);
    free(by_status);
    free(outcomes);
    h_checks_done(&c, h_name());
}
