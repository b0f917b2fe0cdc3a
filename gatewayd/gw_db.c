/* gw_db — see gw_db.h. */
#include "gw_db.h"
#include "gw_log.h"
#include "gw_util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

struct query {
    TAILQ_ENTRY(query) link;
    char *sql;
    int nparams;
    char **params;
    gw_db_cb cb;
    void *arg;
    int64_t t0_us;
};
TAILQ_HEAD(query_list, query);

struct conn {
    struct gw_db *db;
    int idx;
    enum conn_state state;
    PGconn *pg;
    struct event *ev_read;  /* persistent while connected */
    struct event *ev_write; /* one-shot, for flushing */
    struct event *ev_retry; /* reconnect timer */
    int backoff_ms;
    struct query *cur;
    PGresult *result; /* result being accumulated for cur */
    PGresult *error;  /* first error result for cur */
};

struct gw_db {
    struct event_base *base;
    char *conninfo;
    int nconn;
    struct conn *conns;
    struct query_list pending;
    int npending;
    int closing;
    int was_up;
    void (*state_fn)(void *, int);
    void *state_arg;
    struct gw_db_stats stats;
};

const double gw_db_rtt_bounds_ms[7] = {1, 5, 10, 50, 100, 500, 1000};

static void conn_connect(struct conn *c);
static void dispatch(struct gw_db *db);

static void query_free(struct query *q)
{
    if (!q)
        return;
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static int count_up(const struct gw_db *db)
{
    int n = 0;
    for (int i = 0; i < db->nconn; i++)
        if (db->conns[i].state == C_IDLE || db->conns[i].state == C_BUSY)
            n++;
    return n;
}

static void note_state(struct gw_db *db)
{
    int up = count_up(db) > 0;
    if (up == db->was_up)
        return;
    db->was_up = up;
    if (up)
        gw_info("db", "database connection up");
    else
        gw_error("db", "database unavailable: every connection is down, retrying with backoff");
    if (db->state_fn)
        db->state_fn(db->state_arg, up);
}

static void record_rtt(struct gw_db *db, int64_t t0_us, int failed)
{
    int64_t us = gw_now_us() - t0_us;
    db->stats.queries++;
    if (failed)
        db->stats.errors++;
    db->stats.rtt_us_sum += (uint64_t)(us > 0 ? us : 0);
    double ms = (double)us / 1000.0;
    int b = 0;
    while (b < 7 && ms > gw_db_rtt_bounds_ms[b])
        b++;
    db->stats.rtt_buckets[b]++;
}

static void complete(struct gw_db *db, struct query *q, PGresult *res, const char *err)
{
    record_rtt(db, q->t0_us, err != NULL);
    if (q->cb)
        q->cb(q->arg, res, err);
    query_free(q);
}

/* Fail every statement still waiting for a connection (used when the whole pool is down, so
 * that callers learn at once instead of waiting for a reconnect that may take long). */
static void fail_pending(struct gw_db *db, const char *why)
{
    while (!TAILQ_EMPTY(&db->pending)) {
        struct query *q = TAILQ_FIRST(&db->pending);
        TAILQ_REMOVE(&db->pending, q, link);
        db->npending--;
        complete(db, q, NULL, why);
    }
}

static void conn_close(struct conn *c)
{
    if (c->ev_read) {
        event_free(c->ev_read);
        c->ev_read = NULL;
    }
    if (c->ev_write) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    if (c->result) {
        PQclear(c->result);
        c->result = NULL;
    }
    if (c->error) {
        PQclear(c->error);
        c->error = NULL;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = C_DOWN;
}

static void schedule_reconnect(struct conn *c)
{
    if (c->db->closing)
        return;
    int delay = c->backoff_ms;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 250;
    if (c->backoff_ms > 10000)
        c->backoff_ms = 10000;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(c->ev_retry, &tv);
}

/* The connection broke (or never came up). Whatever statement was running has an unknown
 * outcome: its callback hears "connection lost" and must treat it as not acknowledged. */
static void conn_lost(struct conn *c, const char *why)
{
    struct gw_db *db = c->db;
    int was_up = c->state == C_IDLE || c->state == C_BUSY;
    struct query *q = c->cur;
    c->cur = NULL;
    if (was_up)
        gw_warn("db", "connection %d lost: %s", c->idx, why);
    else
        gw_debug("db", "connection %d failed: %s", c->idx, why);
    conn_close(c);
    schedule_reconnect(c);
    if (q)
        complete(db, q, NULL, "connection to the database lost");
    if (count_up(db) == 0)
        fail_pending(db, "database unavailable");
    note_state(db);
}

static const char *pg_err(PGconn *pg)
{
    const char *e = pg ? PQerrorMessage(pg) : "out of memory";
    return e && *e ? e : "unknown error";
}

static void finish_query(struct conn *c)
{
    struct gw_db *db = c->db;
    struct query *q = c->cur;
    PGresult *res = c->result, *err = c->error;
    c->cur = NULL;
    c->result = NULL;
    c->error = NULL;
    c->state = C_IDLE;
    if (err) {
        char msg[512];
        const char *state = PQresultErrorField(err, PG_DIAG_SQLSTATE);
        snprintf(msg, sizeof msg, "%s%s%s", state ? state : "", state ? ": " : "",
                 PQresultErrorMessage(err));
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        gw_warn("db", "statement failed: %s", msg);
        complete(db, q, err, msg);
    } else {
        complete(db, q, res, NULL);
    }
    PQclear(res);
    PQclear(err);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, pg_err(c->pg));
        return;
    }
    /* Drain notifications (LISTEN) we do not use yet, so they do not pile up. */
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
    if (c->state != C_BUSY) {
        if (PQstatus(c->pg) == CONNECTION_BAD)
            conn_lost(c, pg_err(c->pg));
        return;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            finish_query(c);
            dispatch(c->db);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            if (!c->error)
                c->error = r;
            else
                PQclear(r);
        } else {
            if (c->result)
                PQclear(c->result);
            c->result = r;
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        conn_lost(c, pg_err(c->pg));
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    int r = PQflush(c->pg);
    if (r < 0)
        conn_lost(c, pg_err(c->pg));
    else if (r > 0)
        event_add(c->ev_write, NULL);
}

static void notice_receiver(void *arg, const PGresult *res)
{
    (void)arg;
    gw_debug("db", "notice: %s", PQresultErrorMessage(res));
}

static void conn_ready(struct conn *c)
{
    int fd = PQsocket(c->pg);
    if (c->ev_read)
        event_free(c->ev_read);
    if (c->ev_write)
        event_free(c->ev_write);
    c->ev_read = event_new(c->db->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->ev_write = event_new(c->db->base, fd, EV_WRITE, on_write, c);
    event_add(c->ev_read, NULL);
    PQsetNoticeReceiver(c->pg, notice_receiver, NULL);
    c->state = C_IDLE;
    c->backoff_ms = 0;
    c->db->stats.reconnects++;
    gw_debug("db", "connection %d ready", c->idx);
    note_state(c->db);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg);

/* Wait for the socket to become readable or writable, as PQconnectPoll asked. The socket can
 * change between polls (libpq tries the next host/address), so the event is rebuilt each time. */
static void connect_wait(struct conn *c, PostgresPollingStatusType st)
{
    if (c->ev_read) {
        event_free(c->ev_read);
        c->ev_read = NULL;
    }
    short what = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
    c->ev_read = event_new(c->db->base, PQsocket(c->pg), what, on_connect_io, c);
    struct timeval tv = {10, 0}; /* connect timeout */
    event_add(c->ev_read, &tv);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct conn *c = arg;
    if (what & EV_TIMEOUT) {
        conn_lost(c, "connect timed out");
        return;
    }
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    switch (st) {
    case PGRES_POLLING_OK:
        conn_ready(c);
        dispatch(c->db);
        break;
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        connect_wait(c, st);
        break;
    default:
        conn_lost(c, pg_err(c->pg));
        break;
    }
}

static void conn_connect(struct conn *c)
{
    /* The conninfo (string or URI) is expanded from "dbname"; the session speaks UTC so that
     * every timestamp we render is unambiguous. */
    const char *const keys[] = {"dbname", "options", "application_name", NULL};
    const char *const vals[] = {c->db->conninfo, "-c TimeZone=UTC", "gatewayd", NULL};
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, pg_err(c->pg));
        return;
    }
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_lost(c, pg_err(c->pg));
        return;
    }
    c->state = C_CONNECTING;
    connect_wait(c, PGRES_POLLING_WRITING);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

static void conn_send(struct conn *c, struct query *q)
{
    c->cur = q;
    c->state = C_BUSY;
    if (!PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL,
                           NULL, 0)) {
        /* Not sent at all: safe to give the statement to another connection. */
        c->cur = NULL;
        TAILQ_INSERT_HEAD(&c->db->pending, q, link);
        c->db->npending++;
        conn_lost(c, pg_err(c->pg));
        return;
    }
    int r = PQflush(c->pg);
    if (r < 0)
        conn_lost(c, pg_err(c->pg));
    else if (r > 0)
        event_add(c->ev_write, NULL);
}

static void dispatch(struct gw_db *db)
{
    for (int i = 0; i < db->nconn && !TAILQ_EMPTY(&db->pending); i++) {
        struct conn *c = &db->conns[i];
        if (c->state != C_IDLE)
            continue;
        struct query *q = TAILQ_FIRST(&db->pending);
        TAILQ_REMOVE(&db->pending, q, link);
        db->npending--;
        conn_send(c, q);
    }
}

struct gw_db *gw_db_new(struct event_base *base, const char *conninfo, int pool_size)
{
    struct gw_db *db = calloc(1, sizeof *db);
    if (!db)
        abort();
    db->base = base;
    db->conninfo = strdup(conninfo);
    db->nconn = pool_size > 0 ? pool_size : 1;
    db->conns = calloc((size_t)db->nconn, sizeof *db->conns);
    if (!db->conninfo || !db->conns)
        abort();
    TAILQ_INIT(&db->pending);
    for (int i = 0; i < db->nconn; i++) {
        db->conns[i].db = db;
        db->conns[i].idx = i;
        db->conns[i].ev_retry = evtimer_new(base, on_retry, &db->conns[i]);
    }
    return db;
}

void gw_db_start(struct gw_db *db)
{
    for (int i = 0; i < db->nconn; i++)
        if (db->conns[i].state == C_DOWN)
            conn_connect(&db->conns[i]);
}

void gw_db_on_state(struct gw_db *db, void (*fn)(void *arg, int up), void *arg)
{
    db->state_fn = fn;
    db->state_arg = arg;
}

int gw_db_up(const struct gw_db *db)
{
    return count_up(db) > 0;
}

int gw_db_pending(const struct gw_db *db)
{
    int n = db->npending;
    for (int i = 0; i < db->nconn; i++)
        if (db->conns[i].cur)
            n++;
    return n;
}

const struct gw_db_stats *gw_db_stats(const struct gw_db *db)
{
    return &db->stats;
}

int gw_db_query(struct gw_db *db, const char *sql, int nparams, const char *const *params,
                gw_db_cb cb, void *arg)
{
    if (db->closing)
        return GW_ECLOSED;
    if (count_up(db) == 0)
        return GW_EDOWN;
    struct query *q = calloc(1, sizeof *q);
    if (!q)
        abort();
    q->sql = strdup(sql);
    q->nparams = nparams;
    q->params = calloc((size_t)(nparams > 0 ? nparams : 1), sizeof(char *));
    if (!q->sql || !q->params)
        abort();
    for (int i = 0; i < nparams; i++) {
        if (params[i]) {
            q->params[i] = strdup(params[i]);
            if (!q->params[i])
                abort();
        }
    }
    q->cb = cb;
    q->arg = arg;
    q->t0_us = gw_now_us();
    TAILQ_INSERT_TAIL(&db->pending, q, link);
    db->npending++;
    dispatch(db);
    return GW_OK;
}

void gw_db_free(struct gw_db *db)
{
    if (!db)
        return;
    db->closing = 1;
    for (int i = 0; i < db->nconn; i++) {
        struct conn *c = &db->conns[i];
        struct query *q = c->cur;
        c->cur = NULL;
        conn_close(c);
        if (q)
            complete(db, q, NULL, "shutting down");
        event_free(c->ev_retry);
    }
    fail_pending(db, "shutting down");
    free(db->conns);
    free(db->conninfo);
    free(db);
}

int64_t gw_db_int(const PGresult *res, int row, int col)
{
    int64_t v = 0;
    if (PQgetisnull(res, row, col) || gw_parse_i64(PQgetvalue(res, row, col), INT64_MIN,
                                                   INT64_MAX, &v) != GW_OK)
        return 0;
    return v;
}
