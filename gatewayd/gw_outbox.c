/* gw_outbox — see gw_outbox.h. */
#include "gw_outbox.h"
#include "flow_match.h"
#include <unistr.h>
#include <sodium.h>
#include "gw_config.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_util.h"
#include "prov_phone.h"
#include "prov_text.h"
#include "provider.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define ENQ_MAX_BATCH 1000
/* Enqueue batches in flight at once. One is best: concurrent inserting transactions contend
 * on the same right-hand index pages and WAL locks (measured on 2 cores, enqueue only, 256
 * clients: 1 writer 10,500 messages/s, 2 writers 8,500, 4 writers 7,700), and while the one
 * batch commits the next one grows. */
#define ENQ_MAX_RUNNING 1
#define WRITE_MAX_BATCH 2000
#define QUEUE_STATS_MS 5000

struct route;

/* A message handed to a driver and not yet answered. */
struct inflight {
    int64_t id;
    int64_t token;
    int64_t centre_id;
    int attempts;
    int64_t started_ms; /* wall clock, for the attempts table */
    int64_t t0_us;      /* monotonic, for the latency histogram */
    struct route *route;
    int early_dlr; /* a delivery report came before the send's answer: 1 delivered, 2 not */
    char *early_detail;
    prov_done_fn early_done; /* its acknowledgement (see struct row_ack) */
    void *early_arg;
    UT_hash_handle hh;
};

/* A delivery report's acknowledgement: the driver answers its provider (or deletes the report
 * from the SIM) only once the row that carries the report is written, so that a report we said
 * we had is never lost in a crash. Keyed by that row (in o->rec, o->dlr or o->writing). */
struct row_ack {
    json_t *row;
    prov_done_fn done;
    void *arg;
    UT_hash_handle hh;
};

struct route {
    struct gw_outbox *o;
    char *name;
    const char *driver;
    const struct prov_ops *ops;
    void *priv;
    struct prov_host host;
    struct prov_conf conf;
    double rate;
    int concurrency;
    int in_flight;
    int claiming;
    int more_due;     /* the last claim was full: more may be due right now */
    int claim_limit;  /* rows asked by the claim in flight */
    int handoff_held; /* room promised to the enqueue batch in flight (see "hand-off") */
    double tokens;
    int64_t tokens_ms;
    struct event *ev_kick;
    struct event *ev_tick;
    int64_t queued, due; /* from the periodic queue count */
    /* Circuit breaker (see route_health below). */
    enum { BR_CLOSED, BR_OPEN, BR_HALF_OPEN } breaker;
    int fails;       /* consecutive temporary failures */
    int cooldown_ms; /* current pause before the next probe */
    int64_t open_until_ms;
    int driver_down; /* the driver itself says it is not up (modem gone) */
    uint64_t opened; /* times the circuit opened */
    int resumed;     /* resume_routes ran for this route */
    uint64_t accepted, tempfail, permfail, claimed, handed;
    struct gw_hist latency;
    char last_error[160];
    /* SIGHUP changed the driver's options: re-create it with these once nothing is in flight
     * (claims pause meanwhile). Owned by the caller of gw_outbox_reconfigure. */
    const struct gw_route_conf *next;
    const struct gw_route_conf *rc; /* its section: breaker and callback settings */
    struct event *ev_swap;          /* runs route_swap outside the driver's own callbacks */
};

/* An accepted outcome still waiting in the writer's next batch (o->rec), by message id: a
 * delivery report for it that arrives meanwhile rides on the same row (see host_dlr). */
struct pending_rec {
    int64_t id;
    json_t *row; /* borrowed from o->rec */
    UT_hash_handle hh;
};

struct enq_item {
    gw_enqueue_cb cb;
    void *arg;
};

struct enq_batch {
    struct gw_outbox *o;
    json_t *rows;
    struct enq_item *items;
    size_t n;
    int *held; /* per route (o->routes order): room offered to this batch's hand-off */
};

struct gw_outbox {
    struct event_base *base;
    struct gw_db *db;
    const struct gw_config *cfg;
    struct route *routes;
    size_t nroutes;
    struct inflight *inflight; /* by message id */

    /* group commit of enqueues */
    json_t *enq_rows;
    struct enq_item *enq_items;
    size_t enq_n, enq_cap;
    int enq_running;
    struct event *ev_enq;

    /* serial writer of outcomes and delivery reports */
    json_t *rec;
    struct pending_rec *rec_by_id; /* accepted outcomes in rec */
    json_t *dlr;
    json_t *writing;      /* batch in flight (kept to retry after a failure) */
    struct row_ack *acks; /* reports waiting for their row to be written */
    const char *writing_sql;
    int write_failures;
    int catching_up;        /* writing what was kept during a database outage: no claims yet */
    struct event *ev_write; /* deferred flush */
    struct event *ev_write_retry; /* backoff after a failure */

    struct event *ev_stats;
    int stats_running;

    int draining;
    void (*drained)(void *);
    void *drained_arg;

    int64_t started_ms; /* wall clock at creation: "before this run" for resume */
    uint64_t transitions[10];
    uint64_t enq_batches, enq_nrows, write_batches, write_rows;
    uint64_t inbound_received, inbound_duplicates;

    gw_inbound_hook inbound_hook; /* the flow engine's follow-up of a stored inbound SMS */
    void *inbound_hook_arg;
};

static const char *const state_names[10] = {"queued",      "sending",  "sent",    "delivered",
                                            "undelivered", "failed",   "expired", "cancelled",
                                            "received",    "opted_out"};

static void count_state(struct gw_outbox *o, const char *state)
{
    for (int i = 0; i < 10; i++)
        if (!strcmp(state_names[i], state)) {
            o->transitions[i]++;
            return;
        }
}

static void log_state(int64_t id, int64_t centre, const char *route, const char *phone,
                      const char *state, int segments, const char *error)
{
    if (!gw_log_enabled(GW_LOG_INFO))
        return;
    char masked[32];
    prov_phone_mask(phone, masked, sizeof masked);
    gw_log_msg(id, centre, route, masked, state, segments, error);
}

static void check_drained(struct gw_outbox *o);
static void writer_flush(struct gw_outbox *o);
static void dispatch(struct route *r, int64_t id, int64_t centre_id, const char *phone,
                     const char *text, const char *enc, int seg, int att, int64_t token);
static struct route *route_by_name(struct gw_outbox *o, const char *name);
static int route_healthy(const struct route *r);
static void route_kick(struct route *r);
static void resume_routes(struct gw_outbox *o);

/* ---------------------------------------------------------------- enqueue (group commit) */

/* Hand-off. A message the API accepts used to wait for its route's next claim: a second
 * statement, which leased its queue row and read it back. When a route has room right now,
 * the enqueue batch claims its due messages in the same transaction instead (gw_enqueue, 012):
 * the rows come back with a lease token and go straight to the driver.
 *
 * A route is offered only when its claim could take the messages at once anyway: up, circuit
 * closed, not rate-limited (a claim spends the tokens), not paused for a driver restart, no
 * outcome left unwritten, and its last claim was not full. gw_enqueue then also checks that no
 * due row waits in the route's queue (a retry, a message whose send_at has come, an expired
 * lease, another node's message), so that new messages never overtake them. The room offered (concurrency minus
 * what is in flight, held by other batches or asked by a claim in flight, at most batch_size)
 * is held until the batch's answer, so that claims and hand-offs together never exceed the
 * route's concurrency. */
static int handoff_room(const struct route *r)
{
    const struct gw_outbox *o = r->o;
    if (!o->cfg->handoff || o->draining || o->write_failures > 0 || o->catching_up ||
        !route_healthy(r) || r->rate > 0 || r->next || r->more_due)
        return 0;
    int room = r->concurrency - r->in_flight - r->handoff_held - (r->claiming ? r->claim_limit : 0);
    return room > o->cfg->batch_size ? o->cfg->batch_size : room;
}

/* The JSON offer {"route": room, …} for a batch of n messages (NULL: none); the room is held
 * in b->held until enq_done. */
static char *handoff_offer(struct gw_outbox *o, struct enq_batch *b, size_t n)
{
    json_t *offer = NULL;
    for (size_t k = 0; k < o->nroutes; k++) {
        struct route *r = &o->routes[k];
        int room = handoff_room(r);
        if (room <= 0)
            continue;
        if ((size_t)room > n)
            room = (int)n;
        if (!b->held) {
            b->held = calloc(o->nroutes, sizeof *b->held);
            offer = json_object();
            if (!b->held || !offer)
                abort();
        }
        b->held[k] = room;
        r->handoff_held += room;
        json_object_set_new(offer, r->name, json_integer(room));
    }
    if (!offer)
        return NULL;
    char *s = json_dumps(offer, JSON_COMPACT);
    json_decref(offer);
    return s;
}

static void enq_done(void *arg, PGresult *res, const char *err)
{
    struct enq_batch *b = arg;
    struct gw_outbox *o = b->o;
    o->enq_running--;
    for (size_t k = 0; b->held && k < o->nroutes; k++)
        o->routes[k].handoff_held -= b->held[k];
    if (err) {
        int code =
            strstr(err, "connection") || strstr(err, "unavailable") || strstr(err, "shutting down")
                ? GW_EDOWN
                : GW_ESQL;
        for (size_t i = 0; i < b->n; i++)
            b->items[i].cb(b->items[i].arg, code, 0, 0, NULL, 0, NULL);
    } else {
        int rows = PQntuples(res);
        size_t answered = 0;
        /* routes with a new message left in the queue: their claim takes it now */
        char *waiting = calloc(o->nroutes ? o->nroutes : 1, 1);
        if (!waiting)
            abort();
        for (int r = 0; r < rows; r++) {
            int64_t i = 0, id = 0;
            if (gw_parse_i64(PQgetvalue(res, r, 0), 0, (int64_t)b->n - 1, &i) != GW_OK)
                continue;
            if (!PQgetisnull(res, r, 1))
                id = gw_db_int(res, r, 1);
            int created = PQgetvalue(res, r, 2)[0] == 't';
            const char *status = PQgetvalue(res, r, 3);
            int64_t seg = 1;
            seg = gw_db_int(res, r, 4);
            const char *enc = PQgetvalue(res, r, 5);
            if (created) {
                count_state(o, "queued");
                json_t *row = json_array_get(b->rows, (size_t)i);
                log_state(id, json_integer_value(json_object_get(row, "centre_id")),
                          PQgetvalue(res, r, 6), json_string_value(json_object_get(row, "phone")),
                          "queued", (int)seg, NULL);
            }
            struct enq_item *it = &b->items[i];
            if (it->cb) {
                it->cb(it->arg, GW_OK, id, created, status, (int)seg, enc);
                it->cb = NULL;
                answered++;
            }
            struct route *rt = created ? route_by_name(o, PQgetvalue(res, r, 6)) : NULL;
            if (rt && !PQgetisnull(res, r, 7)) {
                /* handed off: claimed for this node in the same transaction */
                json_t *row = json_array_get(b->rows, (size_t)i);
                rt->handed++;
                dispatch(rt, id, json_integer_value(json_object_get(row, "centre_id")),
                         json_string_value(json_object_get(row, "phone")),
                         json_string_value(json_object_get(row, "body")), enc, (int)seg, 1,
                         gw_db_int(res, r, 7));
            } else if (rt) {
                waiting[rt - o->routes] = 1;
            }
        }
        for (size_t i = 0; i < b->n; i++) /* should not happen: every row has a result */
            if (b->items[i].cb)
                b->items[i].cb(b->items[i].arg, GW_ESQL, 0, 0, NULL, 0, NULL);
        (void)answered;
        /* A message left in the queue wakes every route, as before the hand-off: the one it
         * is for, or a healthy one that takes over a down route's messages (gw_claim's
         * failover). When the hand-off took them all, no claim is needed. */
        int wake = b->held == NULL;
        for (size_t i = 0; i < o->nroutes; i++)
            wake |= waiting[i];
        for (size_t i = 0; wake && i < o->nroutes; i++) {
            o->routes[i].more_due = 1;
            route_kick(&o->routes[i]);
        }
        free(waiting);
    }
    json_decref(b->rows);
    free(b->held);
    free(b->items);
    free(b);
    if (o->enq_n)
        event_active(o->ev_enq, EV_TIMEOUT, 0);
    check_drained(o);
}

/* Activated by the first enqueue of a loop pass: libevent runs it after the events that were
 * already active in that pass (the other requests that arrived together), so that all of them
 * share one INSERT and one commit. While ENQ_MAX_RUNNING batches are in flight, requests keep
 * accumulating and the next batch takes them all when one finishes. */
static void enq_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_outbox *o = arg;
    while (o->enq_n && o->enq_running < ENQ_MAX_RUNNING) {
        struct enq_batch *b = calloc(1, sizeof *b);
        if (!b)
            abort();
        b->o = o;
        size_t n = o->enq_n > ENQ_MAX_BATCH ? ENQ_MAX_BATCH : o->enq_n;
        b->n = n;
        b->items = malloc(n * sizeof *b->items);
        if (!b->items)
            abort();
        memcpy(b->items, o->enq_items, n * sizeof *b->items);
        if (n == o->enq_n) {
            b->rows = o->enq_rows;
            o->enq_rows = json_array();
        } else {
            b->rows = json_array();
            json_t *rest = json_array();
            for (size_t i = 0; i < o->enq_n; i++) {
                json_t *row = json_array_get(o->enq_rows, i);
                if (i < n) {
                    json_array_append(b->rows, row);
                } else {
                    json_object_set_new(row, "i", json_integer((json_int_t)(i - n)));
                    json_array_append(rest, row);
                }
            }
            json_decref(o->enq_rows);
            o->enq_rows = rest;
        }
        memmove(o->enq_items, o->enq_items + n, (o->enq_n - n) * sizeof *o->enq_items);
        o->enq_n -= n;
        char *js = json_dumps(b->rows, JSON_COMPACT);
        char *offer = handoff_offer(o, b, n);
        char lease[16];
        snprintf(lease, sizeof lease, "%d", o->cfg->lease_seconds);
        const char *params[5] = {js, o->cfg->default_route, o->cfg->node_id, lease, offer};
        int rc = gw_db_query(o->db, "SELECT * FROM gw_enqueue($1::json, $2, $3, $4::int, $5::json)",
                             5, params, enq_done, b);
        free(js);
        free(offer);
        if (rc != GW_OK) {
            for (size_t k = 0; b->held && k < o->nroutes; k++)
                o->routes[k].handoff_held -= b->held[k];
            for (size_t i = 0; i < b->n; i++)
                b->items[i].cb(b->items[i].arg, GW_EDOWN, 0, 0, NULL, 0, NULL);
            json_decref(b->rows);
            free(b->held);
            free(b->items);
            free(b);
            continue;
        }
        o->enq_running++;
        o->enq_batches++;
        o->enq_nrows += n;
    }
}

int gw_outbox_enqueue(struct gw_outbox *o, const struct gw_enqueue *e, gw_enqueue_cb cb, void *arg)
{
    if (!gw_db_up(o->db))
        return GW_EDOWN;
    if (o->enq_n == o->enq_cap) {
        o->enq_cap = o->enq_cap ? o->enq_cap * 2 : 256;
        o->enq_items = realloc(o->enq_items, o->enq_cap * sizeof *o->enq_items);
        if (!o->enq_items)
            abort();
    }
    json_t *row = json_object();
    json_object_set_new(row, "i", json_integer((json_int_t)o->enq_n));
    json_object_set_new(row, "centre_id", json_integer(e->centre_id));
    json_object_set_new(row, "phone", json_string(e->phone));
    json_object_set_new(row, "body", json_string(e->text));
    json_object_set_new(row, "segments", json_integer(e->segments));
    json_object_set_new(row, "encoding", json_string(e->encoding));
    json_object_set_new(row, "route", e->route ? json_string(e->route) : json_null());
    json_object_set_new(row, "idem", e->idem ? json_string(e->idem) : json_null());
    if (e->kind)
        json_object_set_new(row, "kind", json_string(e->kind));
    if (e->send_at > 0) {
        char ts[32];
        gw_format_rfc3339(e->send_at, ts, sizeof ts);
        json_object_set_new(row, "send_at", json_string(ts));
    } else {
        json_object_set_new(row, "send_at", json_null());
    }
    json_array_append_new(o->enq_rows, row);
    o->enq_items[o->enq_n].cb = cb;
    o->enq_items[o->enq_n].arg = arg;
    o->enq_n++;
    if (o->enq_n == 1)
        event_active(o->ev_enq, EV_TIMEOUT, 0);
    return GW_OK;
}

/* ---------------------------------------------------------------- serial writer */

static void ack_add(struct gw_outbox *o, json_t *row, prov_done_fn done, void *arg)
{
    if (!done)
        return;
    struct row_ack *a;
    HASH_FIND_PTR(o->acks, &row, a);
    if (a) { /* a later report replaced the one this row carried: that one is settled */
        a->done(a->arg, 0, 0);
    } else {
        a = calloc(1, sizeof *a);
        if (!a)
            abort();
        a->row = row;
        HASH_ADD_PTR(o->acks, row, a);
    }
    a->done = done;
    a->arg = arg;
}

/* The reports carried by the rows of batch are written (err 0), or will not be soon (err < 0:
 * the driver answers with a retryable error; the rows themselves are kept and written later,
 * so the provider's retry is a harmless repeat). */
static void acks_settle(struct gw_outbox *o, json_t *batch, int err)
{
    if (!o->acks || !batch)
        return;
    for (size_t i = 0; i < json_array_size(batch); i++) {
        json_t *row = json_array_get(batch, i);
        struct row_ack *a;
        HASH_FIND_PTR(o->acks, &row, a);
        if (a) {
            HASH_DEL(o->acks, a);
            a->done(a->arg, err, 0);
            free(a);
        }
    }
}

/* Every report still waiting is answered with a retryable error (database outage, shutdown). */
static void acks_fail_all(struct gw_outbox *o)
{
    struct row_ack *a, *tmp;
    HASH_ITER(hh, o->acks, a, tmp)
    {
        HASH_DEL(o->acks, a);
        a->done(a->arg, GW_EDOWN, 0);
        free(a);
    }
}

static void writer_done(void *arg, PGresult *res, const char *err)
{
    struct gw_outbox *o = arg;
    if (err) {
        /* Keep the batch: recording outcomes is idempotent (the lease token fences a second
         * application), so it is retried until the database answers. A batch the database
         * rejects as such (not a connection problem) is dropped after a few tries; the leases
         * then expire and the messages are sent again (at-least-once). */
        o->write_failures++;
        /* the providers waiting on these reports retry rather than wait for the database */
        acks_fail_all(o);
        int conn = strstr(err, "connection") || strstr(err, "unavailable");
        if (!conn && o->write_failures >= 5) {
            gw_error("outbox", "dropping a batch of %zu results the database rejects: %s",
                     json_array_size(o->writing), err);
            json_decref(o->writing);
            o->writing = NULL;
            o->write_failures = 0;
            writer_flush(o);
            return;
        }
        if (strstr(err, "shutting down")) {
            json_decref(o->writing);
            o->writing = NULL;
            return;
        }
        gw_warn("outbox", "could not record %zu results (%s); retrying",
                json_array_size(o->writing), err);
        struct timeval tv = {0, 500000};
        evtimer_add(o->ev_write_retry, &tv);
        return;
    }
    if (o->write_failures > 0) {
        o->write_failures = 0;
        o->catching_up = 1;
    }
    int rows = PQntuples(res);
    for (int r = 0; r < rows; r++) {
        int64_t id = 0, centre = 0, seg = 1;
        id = gw_db_int(res, r, 0);
        centre = gw_db_int(res, r, 1);
        seg = gw_db_int(res, r, 4);
        const char *status = PQgetvalue(res, r, 2);
        count_state(o, status);
        log_state(id, centre, PQgetvalue(res, r, 5), PQgetvalue(res, r, 3), status, (int)seg,
                  PQgetisnull(res, r, 6) ? NULL : PQgetvalue(res, r, 6));
    }
    acks_settle(o, o->writing, 0);
    json_decref(o->writing);
    o->writing = NULL;
    writer_flush(o);
    if (o->catching_up && !o->writing) {
        /* Claims were paused while outcomes waited for the database: some may be of messages
         * whose lease expired meanwhile. Only now that every one of them is written (the
         * writer found nothing more to take) can a claim no longer take such a message and
         * send it again. */
        o->catching_up = 0;
        for (size_t i = 0; i < o->nroutes; i++)
            route_kick(&o->routes[i]);
    }
    check_drained(o);
}

/* The first n rows of o->rec leave for the database: reports can no longer ride on them. */
static void pending_forget(struct gw_outbox *o, size_t n)
{
    if (n == json_array_size(o->rec)) {
        struct pending_rec *p, *tmp;
        HASH_ITER(hh, o->rec_by_id, p, tmp)
        {
            HASH_DEL(o->rec_by_id, p);
            free(p);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(o->rec, i);
        int64_t id = json_integer_value(json_object_get(row, "id"));
        struct pending_rec *p;
        HASH_FIND(hh, o->rec_by_id, &id, sizeof id, p);
        if (p && p->row == row) {
            HASH_DEL(o->rec_by_id, p);
            free(p);
        }
    }
}

static void writer_flush(struct gw_outbox *o)
{
    if (o->writing)
        return;
    json_t **src = json_array_size(o->rec) ? &o->rec : json_array_size(o->dlr) ? &o->dlr : NULL;
    if (!src)
        return;
    o->writing_sql =
        src == &o->rec ? "SELECT * FROM gw_record($1::json)" : "SELECT * FROM gw_dlr($1::json)";
    if (src == &o->rec)
        pending_forget(o, json_array_size(o->rec) <= WRITE_MAX_BATCH ? json_array_size(o->rec)
                                                                     : WRITE_MAX_BATCH);
    if (json_array_size(*src) <= WRITE_MAX_BATCH) {
        o->writing = *src;
        *src = json_array();
    } else {
        o->writing = json_array();
        json_t *rest = json_array();
        for (size_t i = 0; i < json_array_size(*src); i++)
            json_array_append(i < WRITE_MAX_BATCH ? o->writing : rest, json_array_get(*src, i));
        json_decref(*src);
        *src = rest;
    }
    o->write_batches++;
    o->write_rows += json_array_size(o->writing);
    char *js = json_dumps(o->writing, JSON_COMPACT);
    const char *params[1] = {js};
    int rc = gw_db_query(o->db, o->writing_sql, 1, params, writer_done, o);
    free(js);
    if (rc != GW_OK) {
        acks_fail_all(o);
        if (rc == GW_ECLOSED) {
            json_decref(o->writing);
            o->writing = NULL;
            return;
        }
        o->write_failures++; /* pauses claims until the backlog is written */
        struct timeval tv = {0, 500000};
        evtimer_add(o->ev_write_retry, &tv);
    }
}

static void on_write_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_outbox *o = arg;
    if (!o->writing) {
        writer_flush(o);
        return;
    }
    char *js = json_dumps(o->writing, JSON_COMPACT);
    const char *params[1] = {js};
    int rc = gw_db_query(o->db, o->writing_sql, 1, params, writer_done, o);
    free(js);
    if (rc == GW_EDOWN) {
        o->write_failures++;
        struct timeval tv = {1, 0};
        evtimer_add(o->ev_write_retry, &tv);
    }
}

static void on_write_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    writer_flush(arg);
}

/* Something waits to be written. A busy writer takes it with its next batch; an idle one starts
 * a batch WRITE_DEFER_US later rather than at once, so that a delivery report that follows its
 * outcome closely (a fast provider, the simulator) finds the outcome still pending and rides on
 * its row (see host_dlr). */
#define WRITE_DEFER_US 1000
static void writer_kick(struct gw_outbox *o)
{
    if (o->writing || evtimer_pending(o->ev_write, NULL))
        return;
    struct timeval tv = {0, WRITE_DEFER_US};
    evtimer_add(o->ev_write, &tv);
}

/* ---------------------------------------------------------------- driver callbacks */

/*
 * Route health. A route whose sends keep failing temporarily (breaker_failures in a row: HTTP
 * 5xx, timeouts, a modem that does not answer) is "opened" like a circuit breaker: this node
 * stops claiming for it and lets the other routes of each centre take its due messages
 * (gw_claim's failover). After a cool-down one message is let through as a probe ("half-open");
 * its success closes the circuit, its failure reopens it for twice as long (at most 10 min).
 * A driver that reports itself down (status "state" != "up") counts as open too.
 */
#define BREAKER_MAX_COOLDOWN_MS 600000

static int route_healthy(const struct route *r)
{
    return r->breaker == BR_CLOSED && !r->driver_down;
}

static void breaker_failure(struct route *r)
{
    const struct gw_route_conf *rc = r->rc;
    r->fails++;
    if (r->breaker == BR_HALF_OPEN) {
        r->cooldown_ms = r->cooldown_ms * 2 > BREAKER_MAX_COOLDOWN_MS ? BREAKER_MAX_COOLDOWN_MS
                                                                      : r->cooldown_ms * 2;
    } else if (r->breaker == BR_CLOSED && r->fails >= rc->breaker_failures) {
        r->cooldown_ms = rc->breaker_cooldown_ms;
        r->opened++;
    } else {
        return;
    }
    r->breaker = BR_OPEN;
    r->open_until_ms = gw_now_ms() + r->cooldown_ms;
    gw_warn(r->name,
            "route down after %d failures in a row (%s); other routes take its "
            "messages; next try in %d s",
            r->fails, r->last_error, r->cooldown_ms / 1000);
}

static void breaker_success(struct route *r)
{
    r->fails = 0;
    if (r->breaker != BR_CLOSED) {
        r->breaker = BR_CLOSED;
        gw_info(r->name, "route recovered");
    }
}

static void resume_routes(struct gw_outbox *o);
static void route_swap(struct route *r);

static void on_swap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct route *r = arg;
    if (r->next && r->in_flight == 0)
        route_swap(r);
}

/* Re-create a route's driver with the options SIGHUP brought (r->next), now that none of its
 * sends is in flight. The old instance goes first (a modem cannot be opened twice); new options
 * it refuses leave the old ones in place. */
static void route_swap(struct route *r)
{
    const struct gw_route_conf *rc = r->next;
    struct prov_conf nc = {.n = rc->n,
                           .keys = (const char *const *)rc->keys,
                           .values = (const char *const *)rc->values};
    r->ops->destroy(r->priv);
    r->priv = NULL;
    char derr[256] = "";
    if (r->ops->create(&nc, &r->host, &r->priv, derr, sizeof derr) == 0) {
        r->conf = nc;
        gw_info(r->name, "driver started again with the new options (SIGHUP)");
    } else {
        gw_error(r->name, "SIGHUP: the new options are refused (%s); going on with the old ones",
                 derr);
        if (r->ops->create(&r->conf, &r->host, &r->priv, derr, sizeof derr) != 0) {
            /* it worked at start: only a vanished resource (a key file) gets here */
            gw_error(r->name,
                     "cannot start the driver again with its old options either (%s): "
                     "stopping",
                     derr);
            abort();
        }
    }
    r->next = NULL;
    r->driver_down = 0;
    r->resumed = 0; /* the simulator's pending reports died with the old instance */
    resume_routes(r->o);
    route_kick(r);
}

static void host_outcome(void *ctx, const struct prov_result *res)
{
    struct route *r = ctx;
    struct gw_outbox *o = r->o;
    struct inflight *f;
    HASH_FIND(hh, o->inflight, &res->msg_id, sizeof res->msg_id, f);
    if (!f || f->route != r) {
        gw_warn(r->name ? r->name : "route", "outcome for message %lld which is not in flight",
                (long long)res->msg_id);
        return;
    }
    HASH_DEL(o->inflight, f);
    r->in_flight--;
    if (r->next && r->in_flight == 0) /* not from inside the driver's own callback */
        event_active(r->ev_swap, EV_TIMEOUT, 0);
    gw_hist_observe(&r->latency, (double)(gw_now_us() - f->t0_us) / 1e6);

    const char *outcome = "accepted";
    int final = 1;
    int64_t delay = 0;
    if (res->outcome != PROV_ACCEPTED)
        snprintf(r->last_error, sizeof r->last_error, "%s%s%s",
                 res->error_code ? res->error_code : "error", res->error_msg ? ": " : "",
                 res->error_msg ? res->error_msg : "");
    switch (res->outcome) {
    case PROV_ACCEPTED:
        r->accepted++;
        breaker_success(r);
        break;
    case PROV_TEMPFAIL:
        r->tempfail++;
        breaker_failure(r);
        outcome = "tempfail";
        final = f->attempts >= o->cfg->max_attempts;
        delay = gw_backoff_ms(f->attempts, o->cfg->backoff_base_ms, o->cfg->backoff_max_ms,
                              gw_random32());
        break;
    case PROV_PERMFAIL:
    default:
        r->permfail++;
        outcome = "permfail";
        breaker_success(r); /* the provider answered: the route works */
        break;
    }
    char errbuf[300] = "";
    if (res->outcome != PROV_ACCEPTED) {
        snprintf(errbuf, sizeof errbuf, "%s%s", res->error_msg ? res->error_msg : "send failed",
                 res->outcome == PROV_TEMPFAIL && final ? " (no attempts left)" : "");
    }
    json_t *row = json_pack("{s:I,s:I,s:s,s:b,s:I,s:I,s:s,s:s}", "id", (json_int_t)f->id, "token",
                            (json_int_t)f->token, "outcome", outcome, "final", final, "delay_ms",
                            (json_int_t)delay, "started_ms", (json_int_t)f->started_ms, "route",
                            r->name, "node", o->cfg->node_id);
    if (res->provider_ref)
        json_object_set_new(row, "provider_ref", json_string(res->provider_ref));
    if (res->optout)
        json_object_set_new(row, "optout", json_true());
    if (res->outcome != PROV_ACCEPTED) {
        json_object_set_new(row, "error_code",
                            json_string(res->error_code ? res->error_code : "error"));
        json_object_set_new(row, "error", json_string(errbuf));
    }
    json_array_append_new(o->rec, row);
    if (res->outcome == PROV_ACCEPTED && f->early_dlr) {
        /* the report that overtook this answer rides on it, as in host_dlr */
        json_object_set_new(row, "dlr", json_boolean(f->early_dlr == 1));
        if (f->early_detail)
            json_object_set_new(row, "dlr_detail", json_string(f->early_detail));
        ack_add(o, row, f->early_done, f->early_arg);
    } else if (res->outcome == PROV_ACCEPTED) {
        struct pending_rec *p;
        HASH_FIND(hh, o->rec_by_id, &f->id, sizeof f->id, p);
        if (!p) {
            p = calloc(1, sizeof *p);
            if (!p)
                abort();
            p->id = f->id;
            HASH_ADD(hh, o->rec_by_id, id, sizeof p->id, p);
        }
        p->row = row;
    } else if (f->early_dlr) {
        /* not accepted after all (the answer was lost): the resend gets a report of its own */
        gw_info(r->name, "delivery report for message %lld dropped: its send ended %s",
                (long long)f->id, outcome);
        if (f->early_done)
            f->early_done(f->early_arg, 0, 0);
    }
    free(f->early_detail);
    free(f);
    writer_kick(o);
    if (r->more_due && !o->draining)
        route_kick(r);
    check_drained(o);
}

static void host_dlr(void *ctx, const struct prov_dlr *d, prov_done_fn done, void *arg)
{
    struct route *r = ctx;
    struct gw_outbox *o = r->o;
    json_t *row;
    if (done && o->write_failures > 0) {
        /* the database is away: the provider retries later; the report is still kept */
        done(arg, GW_EDOWN, 0);
        done = NULL;
    }
    if (d->msg_id > 0) {
        /* The report overtook the provider's answer to the send (a slow answer, a report sent
         * at once): the message is still in flight here, and in the database it is not 'sent'
         * yet, so gw_dlr would drop the report and the message would stay 'sent' for ever.
         * Keep it with the send until its outcome comes. */
        struct inflight *f;
        HASH_FIND(hh, o->inflight, &d->msg_id, sizeof d->msg_id, f);
        if (f && f->route == r) {
            f->early_dlr = d->delivered ? 1 : 2;
            free(f->early_detail);
            f->early_detail = d->detail ? strdup(d->detail) : NULL;
            if (f->early_done) /* a second report replaces the first */
                f->early_done(f->early_arg, 0, 0);
            f->early_done = done;
            f->early_arg = arg;
            return;
        }
    }
    if (d->msg_id > 0) {
        /* Its accepted outcome has not left for the database yet: one row carries both (one
         * update of the message instead of two). The report's route must be the sender's. */
        struct pending_rec *p;
        HASH_FIND(hh, o->rec_by_id, &d->msg_id, sizeof d->msg_id, p);
        if (p && !strcmp(json_string_value(json_object_get(p->row, "route")), r->name)) {
            json_object_set_new(p->row, "dlr", json_boolean(d->delivered));
            if (d->detail)
                json_object_set_new(p->row, "dlr_detail", json_string(d->detail));
            ack_add(o, p->row, done, arg);
            HASH_DEL(o->rec_by_id, p); /* a second report goes its own way, after this one */
            free(p);
            return;
        }
    }
    if (d->msg_id > 0)
        row = json_pack("{s:I,s:s,s:b}", "id", (json_int_t)d->msg_id, "route", r->name, "delivered",
                        d->delivered);
    else if (d->provider_ref)
        row = json_pack("{s:s,s:s,s:b}", "route", r->name, "ref", d->provider_ref, "delivered",
                        d->delivered);
    else {
        if (done)
            done(arg, 0, 0); /* nothing to find it by: nothing to keep */
        return;
    }
    if (d->detail)
        json_object_set_new(row, "detail", json_string(d->detail));
    json_array_append_new(o->dlr, row);
    ack_add(o, row, done, arg);
    writer_kick(o);
}

struct inbound_ctx {
    struct route *r;
    prov_done_fn done;
    void *arg;
    char phone[24];
    char *text;
    int segments;
};

static void inbound_stored(void *arg, PGresult *res, const char *err)
{
    struct inbound_ctx *c = arg;
    struct gw_outbox *o = c->r->o;
    if (err) {
        c->done(c->arg, GW_EDOWN, 0);
    } else if (PQntuples(res) == 0) {
        c->done(c->arg, GW_ENOTFOUND, 0);
    } else {
        int64_t id = 0, centre = 0;
        id = gw_db_int(res, 0, 0);
        centre = gw_db_int(res, 0, 1);
        int created = PQgetvalue(res, 0, 2)[0] == 't';
        if (created) {
            o->inbound_received++;
            count_state(o, "received");
            log_state(id, centre, c->r->name, c->phone, "received", c->segments, NULL);
        } else {
            o->inbound_duplicates++;
            gw_info(c->r->name, "duplicate inbound message %lld dropped", (long long)id);
        }
        /* stored, and the flow's effects with it: the provider may forget the message now */
        c->done(c->arg, GW_OK, id);
        if (created && o->inbound_hook && !PQgetisnull(res, 0, 3)) {
            json_t *run = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
            if (run)
                o->inbound_hook(o->inbound_hook_arg, id, centre, c->phone, c->r->name, run);
            json_decref(run);
        }
    }
    free(c->text);
    free(c);
}

/* What a network gave as text, made valid UTF-8 (PostgreSQL refuses anything else): each
 * invalid byte becomes U+FFFD, NULs are dropped. An inbound SMS is never lost to its bytes. */
static char *utf8_clean(const char *s, size_t len, int *changed)
{
    char *out = malloc(len * 3 + 1);
    if (!out)
        abort();
    size_t o = 0;
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    *changed = 0;
    while (p < end) {
        ucs4_t uc;
        int n = u8_mbtoucr(&uc, p, (size_t)(end - p));
        if (n < 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p += n == -2 ? (size_t)(end - p) : 1;
            *changed = 1;
        } else if (uc == 0) {
            p += n;
            *changed = 1;
        } else {
            memcpy(out + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        }
    }
    out[o] = '\0';
    return out;
}

static void host_inbound(void *ctx, const struct prov_inbound *in, prov_done_fn done, void *arg)
{
    struct route *r = ctx;
    struct gw_outbox *o = r->o;
    struct inbound_ctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->r = r;
    c->done = done;
    c->arg = arg;
    /* Keep what the network gave when it is not a number libphonenumber knows (short codes,
     * alphanumeric senders): an inbound message is never dropped for its sender's format. */
    if (prov_phone_normalize(in->from, o->cfg->default_region, c->phone, sizeof c->phone) != 0)
        snprintf(c->phone, sizeof c->phone, "%s", in->from);
    int changed;
    c->text = utf8_clean(in->text ? in->text : "", in->text ? strlen(in->text) : 0, &changed);
    if (changed)
        gw_warn(r->name, "inbound SMS with bytes that are not UTF-8: stored with U+FFFD instead");
    char ts[32] = "", seg[12];
    if (in->received_at > 0)
        gw_format_rfc3339(in->received_at, ts, sizeof ts);
    struct prov_text_info ti = {.encoding = PROV_ENC_GSM7, .segments = 1};
    if (prov_text_analyse(c->text, strlen(c->text), &ti) != 0)
        ti = (struct prov_text_info){.encoding = PROV_ENC_UCS2, .segments = 1};
    c->segments = ti.segments;
    snprintf(seg, sizeof seg, "%d", ti.segments);
    /* The keyword is matched here; the flow runs in the same transaction as the storing. */
    struct flow_match m;
    char norm[FLOW_ARGS_MAX];
    size_t tl = strlen(c->text);
    flow_match(c->text, tl, &m);
    if (flow_normalize(c->text, tl < 1024 ? tl : 1024, norm, sizeof norm) < 0)
        norm[0] = '\0';
    const char *params[10] = {r->name,
                              c->phone,
                              c->text,
                              in->provider_ref,
                              in->received_at > 0 ? ts : NULL,
                              prov_encoding_name(ti.encoding),
                              seg,
                              m.keyword,
                              m.args,
                              norm};
    int rc = gw_db_query(o->db,
                         "SELECT * FROM gw_inbound_flow($1, $2, $3, $4, $5, $6, $7::int, $8, $9, "
                         "$10)",
                         10, params, inbound_stored, c);
    if (rc != GW_OK) {
        free(c->text);
        free(c);
        done(arg, GW_EDOWN, 0);
    }
}

static void host_log(void *ctx, int level, const char *fmt, ...)
{
    struct route *r = ctx;
    char obj[80];
    snprintf(obj, sizeof obj, "route %s", r->name);
    va_list ap;
    va_start(ap, fmt);
    gw_vlog((enum gw_log_level)level, obj, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- dispatcher */

static void refill_tokens(struct route *r)
{
    if (r->rate <= 0)
        return;
    int64_t now = gw_now_ms();
    double burst = r->rate < 1 ? 1 : r->rate;
    r->tokens += (double)(now - r->tokens_ms) * r->rate / 1000.0;
    if (r->tokens > burst)
        r->tokens = burst;
    r->tokens_ms = now;
}

static struct route *route_by_name(struct gw_outbox *o, const char *name)
{
    for (size_t k = 0; k < o->nroutes; k++)
        if (!strcmp(o->routes[k].name, name))
            return &o->routes[k];
    return NULL;
}

/* A message claimed for this node (by a claim or a hand-off) goes to the route's driver. */
static void dispatch(struct route *r, int64_t id, int64_t centre_id, const char *phone,
                     const char *text, const char *enc, int seg, int att, int64_t token)
{
    struct gw_outbox *o = r->o;
    struct inflight *f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->id = id;
    f->centre_id = centre_id;
    f->token = token;
    f->attempts = att;
    f->route = r;
    f->started_ms = gw_wall_ms();
    f->t0_us = gw_now_us();
    struct inflight *dup;
    HASH_FIND(hh, o->inflight, &f->id, sizeof f->id, dup);
    if (dup) {
        /* Our own earlier lease expired while the driver still holds the message: leave
         * the new claim alone, its lease will expire and it is retried after the driver's
         * answer is recorded. */
        gw_warn(r->name, "message %lld claimed while still in flight here", (long long)f->id);
        free(f);
        return;
    }
    HASH_ADD(hh, o->inflight, id, sizeof f->id, f);
    r->in_flight++;
    count_state(o, "sending");
    log_state(f->id, f->centre_id, r->name, phone, "sending", seg, NULL);
    struct prov_msg m = {
        .id = f->id,
        .centre_id = f->centre_id,
        .to = phone,
        .text = text,
        .encoding = strcmp(enc, "ucs2") == 0 ? PROV_ENC_UCS2 : PROV_ENC_GSM7,
        .segments = seg,
        .attempt = att,
    };
    if (r->ops->send(r->priv, &m) != 0) {
        struct prov_result fail = {.msg_id = id,
                                   .outcome = PROV_TEMPFAIL,
                                   .error_code = "route_busy",
                                   .error_msg = "the route did not take the message"};
        host_outcome(r, &fail);
    }
}

static void claim_done(void *arg, PGresult *res, const char *err)
{
    struct route *r = arg;
    r->claiming = 0;
    if (err) {
        if (!strstr(err, "shutting down"))
            gw_warn(r->name, "claim failed: %s", err);
        return;
    }
    int n = PQntuples(res);
    r->claimed += (uint64_t)n;
    r->more_due = n > 0 && n >= r->claim_limit;
    if (r->rate > 0)
        r->tokens -= n;
    for (int i = 0; i < n; i++) {
        dispatch(r, gw_db_int(res, i, 0), gw_db_int(res, i, 1), PQgetvalue(res, i, 2),
                 PQgetvalue(res, i, 3), PQgetvalue(res, i, 5), (int)gw_db_int(res, i, 4),
                 (int)gw_db_int(res, i, 6), gw_db_int(res, i, 7));
    }
    if (r->more_due)
        route_kick(r);
}

static void route_claim(struct route *r)
{
    struct gw_outbox *o = r->o;
    if (r->claiming || o->draining || !gw_db_up(o->db) || r->driver_down || r->next)
        return;
    /* Outcomes we could not write yet (the database was away) may be of messages whose lease
     * has expired meanwhile: claiming before they are written would send those again. */
    if (o->write_failures > 0 || o->catching_up)
        return;
    int limit = r->concurrency - r->in_flight - r->handoff_held;
    if (r->breaker == BR_OPEN) {
        if (gw_now_ms() < r->open_until_ms)
            return;
        r->breaker = BR_HALF_OPEN;
    }
    if (r->breaker == BR_HALF_OPEN) {
        if (r->in_flight > 0)
            return; /* the probe is still out */
        limit = 1;
    }
    if (limit > o->cfg->batch_size)
        limit = o->cfg->batch_size;
    if (r->rate > 0) {
        refill_tokens(r);
        if (r->tokens < limit)
            limit = (int)floor(r->tokens);
        if (limit <= 0) {
            /* wait for the next token */
            double wait_ms = (1.0 - r->tokens) * 1000.0 / r->rate;
            struct timeval tv = {(long)(wait_ms / 1000), (long)fmod(wait_ms, 1000.0) * 1000};
            event_add(r->ev_kick, &tv);
            return;
        }
    }
    if (limit <= 0)
        return;
    char lim[16], lease[16];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(lease, sizeof lease, "%d", o->cfg->lease_seconds);
    /* A healthy route takes over the due messages of this node's routes that are down. */
    json_t *fo = json_array();
    if (route_healthy(r))
        for (size_t i = 0; i < o->nroutes; i++) {
            const struct route *x = &o->routes[i];
            /* a half-open route keeps its messages: its probe needs one */
            if (x != r && (x->breaker == BR_OPEN || x->driver_down))
                json_array_append_new(fo, json_string(x->name));
        }
    char *fos = json_dumps(fo, JSON_COMPACT);
    json_decref(fo);
    /* JSON array → text[] on the server side */
    const char *params[5] = {o->cfg->node_id, r->name, lim, lease, fos};
    r->claiming = 1;
    r->claim_limit = limit;
    if (gw_db_query(o->db,
                    "SELECT * FROM gw_claim($1, $2, $3::int, $4::int,"
                    " ARRAY(SELECT json_array_elements_text($5::json)))",
                    5, params, claim_done, r) != GW_OK)
        r->claiming = 0;
    free(fos);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    route_claim(arg);
}

static void route_kick(struct route *r)
{
    if (!r->o->draining)
        event_active(r->ev_kick, EV_TIMEOUT, 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct route *r = arg;
    if (r->ops->status) {
        json_t *st = json_object();
        r->ops->status(r->priv, st);
        const char *state = json_string_value(json_object_get(st, "state"));
        int down = state && strcmp(state, "up") != 0;
        if (down != r->driver_down)
            gw_log(down ? GW_LOG_WARN : GW_LOG_INFO, r->name, "route %s", down ? "down" : "up");
        r->driver_down = down;
        json_decref(st);
    }
    route_claim(r);
}

/* ---------------------------------------------------------------- queue statistics */

static void stats_done(void *arg, PGresult *res, const char *err)
{
    struct gw_outbox *o = arg;
    o->stats_running = 0;
    if (err)
        return;
    for (size_t i = 0; i < o->nroutes; i++)
        o->routes[i].queued = o->routes[i].due = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        for (size_t i = 0; i < o->nroutes; i++) {
            if (strcmp(o->routes[i].name, PQgetvalue(res, r, 0)) != 0)
                continue;
            o->routes[i].queued = gw_db_int(res, r, 1);
            o->routes[i].due = gw_db_int(res, r, 2);
        }
    }
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_outbox *o = arg;
    if (o->stats_running || !gw_db_up(o->db))
        return;
    resume_routes(o);
    if (gw_db_query(o->db,
                    "SELECT route, count(*), count(*) FILTER (WHERE due_at <= now())"
                    " FROM outbox_queue GROUP BY route",
                    0, NULL, stats_done, o) == GW_OK)
        o->stats_running = 1;
}

/* ---------------------------------------------------------------- life cycle */

struct gw_outbox *gw_outbox_new(struct event_base *base, struct gw_db *db,
                                const struct gw_config *cfg, char *err, size_t errlen)
{
    struct gw_outbox *o = calloc(1, sizeof *o);
    if (!o)
        abort();
    o->base = base;
    o->db = db;
    o->cfg = cfg;
    o->started_ms = gw_wall_ms();
    o->enq_rows = json_array();
    o->rec = json_array();
    o->dlr = json_array();
    o->ev_enq = event_new(base, -1, 0, enq_flush, o);
    o->ev_write = evtimer_new(base, on_write_deferred, o);
    o->ev_write_retry = evtimer_new(base, on_write_retry, o);
    o->ev_stats = event_new(base, -1, EV_PERSIST, on_stats, o);
    o->routes = calloc(cfg->nroutes, sizeof *o->routes);
    if (!o->routes)
        abort();
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct gw_route_conf *rc = &cfg->routes[i];
        struct route *r = &o->routes[i];
        r->o = o;
        r->rc = rc;
        r->name = rc->name;
        r->driver = rc->driver;
        r->rate = rc->rate;
        r->concurrency = rc->concurrency;
        r->tokens = rc->rate > 0 ? (rc->rate < 1 ? 1 : rc->rate) : 0;
        r->tokens_ms = gw_now_ms();
        r->conf.n = rc->n;
        r->conf.keys = (const char *const *)rc->keys;
        r->conf.values = (const char *const *)rc->values;
        r->host = (struct prov_host){.ctx = r,
                                     .base = base,
                                     .route = rc->name,
                                     .outcome = host_outcome,
                                     .dlr = host_dlr,
                                     .inbound = host_inbound,
                                     .log = host_log};
        r->ev_kick = event_new(base, -1, 0, on_kick, r);
        r->ev_swap = event_new(base, -1, 0, on_swap, r);
        r->ev_tick = event_new(base, -1, EV_PERSIST, on_tick, r);
        o->nroutes++;
        r->ops = prov_find(rc->driver);
        if (!r->ops) {
            snprintf(err, errlen, "route %s: unknown driver '%s'", rc->name, rc->driver);
            gw_outbox_free(o);
            return NULL;
        }
        char derr[256] = "";
        if (r->ops->create(&r->conf, &r->host, &r->priv, derr, sizeof derr) != 0) {
            snprintf(err, errlen, "route %s: %s", rc->name, derr);
            r->ops = NULL;
            gw_outbox_free(o);
            return NULL;
        }
    }
    return o;
}

static void resume_done(void *arg, PGresult *res, const char *err)
{
    struct route *r = arg;
    if (err) {
        gw_warn(r->name, "could not list messages awaiting a delivery report: %s", err);
        return;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        r->ops->resume(r->priv, gw_db_int(res, i, 0),
                       PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1));
    if (n)
        gw_info(r->name, "%d message%s accepted before a restart still await a delivery report", n,
                n > 1 ? "s" : "");
}

/* Ask drivers that keep provider-side state in memory (the simulator) to pick up what they had
 * accepted on this node before a restart. Runs once, as soon as the database answers. */
static void resume_routes(struct gw_outbox *o)
{
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        if (!r->ops->resume || r->resumed)
            continue;
        char since[32];
        snprintf(since, sizeof since, "%lld", (long long)o->started_ms);
        const char *p[3] = {r->name, o->cfg->node_id, since};
        if (gw_db_query(o->db,
                        "SELECT m.id, m.provider_ref FROM messages m"
                        " WHERE m.route = $1 AND m.status = 'sent' AND m.direction = 'out'"
                        "   AND EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = m.id"
                        "                  AND a.outcome = 'accepted' AND a.node = $2"
                        "                  AND a.finished_at < to_timestamp($3::bigint / 1000.0))",
                        3, p, resume_done, r) == GW_OK)
            r->resumed = 1;
    }
}

void gw_outbox_start(struct gw_outbox *o)
{
    struct timeval tv = {o->cfg->poll_interval_ms / 1000, (o->cfg->poll_interval_ms % 1000) * 1000};
    for (size_t i = 0; i < o->nroutes; i++) {
        event_add(o->routes[i].ev_tick, &tv);
        route_kick(&o->routes[i]);
    }
    struct timeval st = {QUEUE_STATS_MS / 1000, 0};
    event_add(o->ev_stats, &st);
    event_active(o->ev_stats, EV_TIMEOUT, 0);
}

static void check_drained(struct gw_outbox *o)
{
    if (!o->draining || !o->drained)
        return;
    int idle = HASH_COUNT(o->inflight) == 0 && o->enq_running == 0 && !o->writing &&
               json_array_size(o->rec) == 0 && json_array_size(o->dlr) == 0;
    if (idle || !gw_db_up(o->db)) {
        void (*done)(void *) = o->drained;
        o->drained = NULL;
        done(o->drained_arg);
    }
}

void gw_outbox_drain(struct gw_outbox *o, void (*done)(void *arg), void *arg)
{
    o->draining = 1;
    o->drained = done;
    o->drained_arg = arg;
    for (size_t i = 0; i < o->nroutes; i++) {
        event_del(o->routes[i].ev_tick);
        event_del(o->routes[i].ev_kick);
    }
    check_drained(o);
}

void gw_outbox_free(struct gw_outbox *o)
{
    if (!o)
        return;
    /* reports not written yet are answered (retry later) while their drivers still exist */
    acks_fail_all(o);
    struct inflight *f, *tmp;
    HASH_ITER(hh, o->inflight, f, tmp)
    {
        if (f->early_done) {
            f->early_done(f->early_arg, GW_EDOWN, 0);
            f->early_done = NULL;
        }
    }
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        if (r->ops)
            r->ops->destroy(r->priv);
        event_free(r->ev_kick);
        event_free(r->ev_tick);
        event_free(r->ev_swap);
    }
    free(o->routes);
    HASH_ITER(hh, o->inflight, f, tmp)
    {
        HASH_DEL(o->inflight, f);
        free(f->early_detail);
        free(f);
    }
    for (size_t i = 0; i < o->enq_n; i++)
        o->enq_items[i].cb(o->enq_items[i].arg, GW_EDOWN, 0, 0, NULL, 0, NULL);
    free(o->enq_items);
    json_decref(o->enq_rows);
    struct pending_rec *p, *ptmp;
    HASH_ITER(hh, o->rec_by_id, p, ptmp)
    {
        HASH_DEL(o->rec_by_id, p);
        free(p);
    }
    json_decref(o->rec);
    json_decref(o->dlr);
    json_decref(o->writing);
    event_free(o->ev_enq);
    event_free(o->ev_write);
    event_free(o->ev_write_retry);
    event_free(o->ev_stats);
    free(o);
}

/* ---------------------------------------------------------------- HTTP, status, metrics */

void gw_outbox_provider_http(struct gw_outbox *o, struct evhttp_request *req, const char *tail)
{
    const char *slash = strchr(tail, '/');
    size_t len = slash ? (size_t)(slash - tail) : strlen(tail);
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        if (strlen(r->name) != len || strncmp(r->name, tail, len) != 0)
            continue;
        const struct gw_route_conf *rc = r->rc;
        if (rc && rc->callback_allow) {
            char *addr = NULL;
            ev_uint16_t port = 0;
            struct evhttp_connection *conn = evhttp_request_get_connection(req);
            if (conn)
                evhttp_connection_get_peer(conn, &addr, &port);
            if (!addr || !gw_addr_in_list(rc->callback_allow, addr)) {
                gw_warn(r->name, "callback from %s refused: not in callback_allow",
                        addr ? addr : "?");
                gw_http_error(req, 403, "forbidden", "this address may not call route %s", r->name);
                return;
            }
        }
        if (rc && rc->callback_secret) {
            const char *h = gw_http_header(req, "X-Passerelle-Callback-Secret");
            char *q = h ? NULL : gw_http_query_param(req, "secret");
            const char *given = h ? h : q;
            size_t n = strlen(rc->callback_secret);
            int ok =
                given && strlen(given) == n && sodium_memcmp(given, rc->callback_secret, n) == 0;
            free(q);
            if (!ok) {
                gw_warn(r->name, "callback without the right secret refused");
                gw_http_error(req, 401, "unauthorized", "missing or wrong callback secret");
                return;
            }
        }
        if (!r->ops->http || r->ops->http(r->priv, req, slash ? slash + 1 : "") != 0)
            gw_http_error(req, 404, "not_found", "route %s has no endpoint '%s'", r->name,
                          slash ? slash + 1 : "");
        return;
    }
    gw_http_error(req, 404, "not_found", "no route named '%.*s' on this node", (int)len, tail);
}

int gw_outbox_ussd(struct gw_outbox *o, const char *route, const char *code,
                   void (*done)(void *arg, int err, const char *reply), void *arg)
{
    struct route *r = route_by_name(o, route);
    if (!r)
        return GW_ENOTFOUND;
    if (!r->ops->ussd)
        return GW_EINVAL;
    return r->ops->ussd(r->priv, code, done, arg) == 0 ? GW_OK : GW_EDOWN;
}

json_t *gw_outbox_status(struct gw_outbox *o)
{
    json_t *all = json_object();
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        json_t *s = json_object();
        json_object_set_new(s, "driver", json_string(r->driver));
        json_object_set_new(s, "state", json_string("up"));
        if (r->ops->status)
            r->ops->status(r->priv, s);
        static const char *const br[] = {"closed", "open", "half-open"};
        json_object_set_new(s, "circuit", json_string(br[r->breaker]));
        if (r->breaker != BR_CLOSED)
            json_object_set_new(s, "state", json_string("down"));
        json_object_set_new(s, "circuit_opened", json_integer((json_int_t)r->opened));
        json_object_set_new(s, "in_flight", json_integer(r->in_flight));
        json_object_set_new(s, "queued", json_integer(r->queued));
        json_object_set_new(s, "due", json_integer(r->due));
        json_object_set_new(s, "rate", json_real(r->rate));
        json_object_set_new(s, "concurrency", json_integer(r->concurrency));
        if (r->last_error[0])
            json_object_set_new(s, "last_error", json_string(r->last_error));
        json_object_set_new(all, r->name, s);
    }
    return all;
}

int gw_outbox_routes_ok(struct gw_outbox *o)
{
    int ok = 1;
    json_t *st = gw_outbox_status(o);
    const char *k;
    json_t *v;
    json_object_foreach(st, k, v)
    {
        const char *s = json_string_value(json_object_get(v, "state"));
        if (!s || strcmp(s, "up") != 0)
            ok = 0;
    }
    json_decref(st);
    return ok;
}

void gw_outbox_metrics(struct gw_outbox *o, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_message_transitions_total", "counter",
                   "Messages that entered each state (on this node).");
    for (int i = 0; i < 10; i++)
        evbuffer_add_printf(out, "passerelle_message_transitions_total{state=\"%s\"} %llu\n",
                            state_names[i], (unsigned long long)o->transitions[i]);
    gw_metric_head(out, "passerelle_queue_depth", "gauge",
                   "Outgoing messages waiting in the outbox queue, by route (due: due now).");
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        evbuffer_add_printf(out, "passerelle_queue_depth{route=\"%s\",when=\"all\"} %lld\n",
                            r->name, (long long)r->queued);
        evbuffer_add_printf(out, "passerelle_queue_depth{route=\"%s\",when=\"due\"} %lld\n",
                            r->name, (long long)r->due);
    }
    /* Health that drivers report (state, credit, modem signal) as gauges. */
    gw_metric_head(out, "passerelle_route_up", "gauge", "1 when the route is up.");
    json_t *st = gw_outbox_status(o);
    const char *rname;
    json_t *rv;
    json_object_foreach(st, rname, rv)
    {
        const char *state = json_string_value(json_object_get(rv, "state"));
        evbuffer_add_printf(out, "passerelle_route_up{route=\"%s\"} %d\n", rname,
                            state && !strcmp(state, "up"));
    }
    static const char *const gauges[][2] = {
        {"credit_euros", "Provider credit left, in euros."},
        {"credit_sms", "Provider credit left, in SMS."},
        {"signal_percent", "Modem signal strength."},
    };
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        int head = 0;
        json_object_foreach(st, rname, rv)
        {
            json_t *v = json_object_get(rv, gauges[g][0]);
            if (!json_is_number(v))
                continue;
            if (!head) {
                char name[64];
                snprintf(name, sizeof name, "passerelle_route_%s", gauges[g][0]);
                gw_metric_head(out, name, "gauge", gauges[g][1]);
                head = 1;
            }
            evbuffer_add_printf(out, "passerelle_route_%s{route=\"%s\"} %g\n", gauges[g][0], rname,
                                json_number_value(v));
        }
    }
    json_decref(st);
    gw_metric_head(out, "passerelle_in_flight", "gauge", "Messages handed to a route, unanswered.");
    for (size_t i = 0; i < o->nroutes; i++)
        evbuffer_add_printf(out, "passerelle_in_flight{route=\"%s\"} %d\n", o->routes[i].name,
                            o->routes[i].in_flight);
    gw_metric_head(out, "passerelle_send_attempts_total", "counter",
                   "Send attempts by route and outcome.");
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        evbuffer_add_printf(out,
                            "passerelle_send_attempts_total{route=\"%s\",outcome=\"accepted\"} "
                            "%llu\n"
                            "passerelle_send_attempts_total{route=\"%s\",outcome=\"tempfail\"} "
                            "%llu\n"
                            "passerelle_send_attempts_total{route=\"%s\",outcome=\"permfail\"} "
                            "%llu\n",
                            r->name, (unsigned long long)r->accepted, r->name,
                            (unsigned long long)r->tempfail, r->name,
                            (unsigned long long)r->permfail);
    }
    gw_metric_head(out, "passerelle_claimed_total", "counter",
                   "Messages taken for sending by this node, by route and how: by a claim of "
                   "due messages, or handed off by the enqueue that stored them.");
    for (size_t i = 0; i < o->nroutes; i++) {
        struct route *r = &o->routes[i];
        evbuffer_add_printf(out,
                            "passerelle_claimed_total{route=\"%s\",by=\"claim\"} %llu\n"
                            "passerelle_claimed_total{route=\"%s\",by=\"handoff\"} %llu\n",
                            r->name, (unsigned long long)r->claimed, r->name,
                            (unsigned long long)r->handed);
    }
    gw_metric_head(out, "passerelle_send_latency_seconds", "histogram",
                   "Time from hand-over to a route to its answer.");
    for (size_t i = 0; i < o->nroutes; i++) {
        char labels[96];
        snprintf(labels, sizeof labels, "route=\"%s\"", o->routes[i].name);
        gw_hist_render(out, "passerelle_send_latency_seconds", labels, &o->routes[i].latency);
    }
    gw_metric_head(out, "passerelle_batches_total", "counter",
                   "Database batches written by the outbox (enqueue: API sends; write: outcomes "
                   "and delivery reports).");
    evbuffer_add_printf(out,
                        "passerelle_batches_total{kind=\"enqueue\"} %llu\n"
                        "passerelle_batches_total{kind=\"write\"} %llu\n",
                        (unsigned long long)o->enq_batches, (unsigned long long)o->write_batches);
    gw_metric_head(out, "passerelle_batch_rows_total", "counter", "Rows in those batches.");
    evbuffer_add_printf(out,
                        "passerelle_batch_rows_total{kind=\"enqueue\"} %llu\n"
                        "passerelle_batch_rows_total{kind=\"write\"} %llu\n",
                        (unsigned long long)o->enq_nrows, (unsigned long long)o->write_rows);
    gw_metric_head(out, "passerelle_inbound_total", "counter", "Inbound SMS stored / duplicates.");
    evbuffer_add_printf(out,
                        "passerelle_inbound_total{result=\"stored\"} %llu\n"
                        "passerelle_inbound_total{result=\"duplicate\"} %llu\n",
                        (unsigned long long)o->inbound_received,
                        (unsigned long long)o->inbound_duplicates);
}

void gw_outbox_set_inbound_hook(struct gw_outbox *o, gw_inbound_hook fn, void *arg)
{
    o->inbound_hook = fn;
    o->inbound_hook_arg = arg;
}

int gw_outbox_optout(struct gw_outbox *o, const char *route, const char *e164, int opted_out)
{
    struct route *r = route_by_name(o, route);
    if (!r || !r->ops->optout)
        return 0;
    r->ops->optout(r->priv, e164, opted_out);
    return 1;
}

/* Whether the driver's own options (not the core's: rate, breaker, callbacks…) are the same. */
static int same_options(const struct prov_conf *a, const struct gw_route_conf *b)
{
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (prov_conf_core_key(a->keys[i]))
            continue;
        na++;
        const char *v = prov_conf_get(
            &(struct prov_conf){b->n, (const char *const *)b->keys, (const char *const *)b->values},
            a->keys[i], NULL);
        if (!v || strcmp(v, a->values[i]))
            return 0;
    }
    for (size_t i = 0; i < b->n; i++)
        nb += !prov_conf_core_key(b->keys[i]);
    return na == nb;
}

int gw_outbox_reconfigure(struct gw_outbox *o, const struct gw_route_conf *rc)
{
    struct route *r = route_by_name(o, rc->name);
    if (!r)
        return GW_ENOTFOUND;
    if (strcmp(r->driver, rc->driver) != 0)
        return GW_EINVAL;
    if (same_options(&r->conf, rc) && !r->next) {
        r->rc = rc; /* breaker and callback settings apply at once */
        return 1;
    }
    if (o->draining)
        return GW_OK;
    gw_info(r->name,
            "SIGHUP: new driver options; the driver starts again once its %d "
            "send%s in flight %s answered",
            r->in_flight, r->in_flight == 1 ? "" : "s", r->in_flight == 1 ? "is" : "are");
    r->next = rc;
    r->rc = rc;
    if (r->in_flight == 0)
        route_swap(r);
    return 1;
}

int gw_outbox_set_limits(struct gw_outbox *o, const char *route, double rate, int concurrency)
{
    struct route *r = route_by_name(o, route);
    if (!r)
        return GW_ENOTFOUND;
    if (r->rate != rate || r->concurrency != concurrency)
        gw_info(r->name, "limits now %g/s, %d in flight (were %g/s, %d)", rate, concurrency,
                r->rate, r->concurrency);
    r->rate = rate;
    r->concurrency = concurrency;
    if (!o->draining)
        route_kick(r);
    return GW_OK;
}
