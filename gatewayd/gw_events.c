/* gw_events — see gw_events.h. */
#include "gw_events.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_util.h"
#include "prov_phone.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define TICK_MS 250          /* poll period while a client is connected */
#define KEEPALIVE_MS 15000   /* ": keepalive" after this long without a write */
#define PAGE 1000            /* rows per query (LIMIT in the SQL below) */
#define TID_MARGIN_BLOCKS 64 /* see "Reading only the end of the table" */
#define SETTLE_MIN_MS 1000   /* a missing id waits at least this long before it is skipped */
#define GAP_WARN_MS 30000    /* say so when one waits longer */
#define CATCHUP_PAUSE_BYTES (1u << 20) /* no catch-up page while more than this is unsent */
#define SLOW_CLIENT_BYTES (8u << 20)   /* a client that lets this much pile up is dropped */
#define WRITE_TIMEOUT_S 30             /* a client that reads nothing for this long is dropped */

/*
 * Why the stream never skips nor repeats an event.
 *
 * message_events.id comes from a sequence, but transactions commit in any order: the claim of
 * one route may draw ids 100-120 and commit after the outcome writer committed id 121. A
 * reader that saw 121 and moved its cursor there would never see 100-120. So the poller keeps
 * a horizon: every id at or below it is final — visible, or never to be committed (a rolled
 * back transaction, or ids a PostgreSQL crash made the sequence jump over). Clients are only
 * ever given ids up to the horizon, in order, so a cursor (the SSE id) is exact.
 *
 * The horizon moves over every id that is visible and contiguous. A missing id (a hole before
 * a visible one, or a drawn id not yet visible at the end) is pending: we keep the snapshot of
 * the query that saw it (pg_current_snapshot(), refreshed during SETTLE_MIN_MS so that a
 * transaction that had drawn the id but had no xid yet is in it) and skip the id only once
 * every transaction in that snapshot's in-progress list is finished as seen from a later
 * statement's snapshot (pg_visible_in_snapshot): whatever they committed is visible to that
 * statement, so an id still missing from it will never appear. Holes are rare (rollbacks), so
 * the second of latency they cost does not matter; ids drawn by transactions still running
 * are simply waited for.
 *
 * Starting cold (first client, or after a time without any), the horizon is the sequence's
 * last value, settled the same way before any client is served: a client without
 * Last-Event-ID starts there ("from now"); one that resumes catches up from its id.
 *
 * Reading only the end of the table. The BRIN index on id would serve "id > horizon", but
 * the ranges not yet summarised (all recent ones, until autovacuum gets there) are always
 * read in full, so the live poll reads the heap from a block number instead: a TID range
 * scan from TID_MARGIN_BLOCKS before the lowest block of the rows it found last time (an
 * append-only table puts new rows at its end, in roughly id order). A row stored further back
 * (free space reused) shows up as a hole, and before a hole is skipped the poll runs once over
 * the id range with the index, which finds it. The poll does nothing at all while the sequence
 * has not moved past the horizon.
 */

struct client {
    TAILQ_ENTRY(client) link;
    struct gw_events *ev;
    struct evhttp_request *req; /* NULL once the stream ended */
    uint64_t serial;
    int64_t cursor;        /* last id given (or filtered out); -1: the horizon, once known */
    int listed;            /* in ev->clients (the stream started) */
    int busy;              /* a query (centre lookup, catch-up) is in flight */
    int gone;              /* freed when the query in flight returns */
    int64_t catchup_upper; /* the horizon the catch-up in flight stops at */
    int64_t last_write_ms;
    int64_t centre_id; /* 0: any */
    char *centre_arg;  /* as given, until resolved */
    char *route, *state;
    char suffix[5]; /* "": any */
};
TAILQ_HEAD(client_list, client);

enum hstate { H_COLD, H_INIT, H_SETTLING, H_READY };

struct gw_events {
    struct event_base *base;
    struct gw_db *db;
    struct gw_http *http;
    struct event *tick;
    int ticking;
    struct client_list clients;
    int nclients;  /* streams started */
    int nstarting; /* waiting for their centre lookup */
    int closing;
    uint64_t serial;

    enum hstate hstate;
    int poll_busy;
    int poll_brin; /* the poll in flight reads by id range (index), not by block */
    int brin_next; /* the next poll must */
    int64_t horizon;
    int64_t tid_block;
    /* the pending missing id (or the cold start's horizon): ids pend_lo..pend_hi */
    int64_t pend_lo, pend_hi, pend_since_ms;
    char *pend_snap;
    /* the phone suffixes of the live poll in flight; bit i of the row's mask = suffix i */
    char sent_suffix[GW_EVENTS_MAX_CLIENTS][5];
    int nsent_suffix;

    int64_t last_err_log_ms;
    uint64_t events_sent, gaps_skipped;
};

/* ------------------------------------------------------------------ SQL */

/* Columns of every event query. */
enum {
    COL_SNAP,
    COL_LAST_ID,
    COL_SETTLED,
    COL_ID,
    COL_BLK,
    COL_AT,
    COL_MESSAGE,
    COL_CENTRE,
    COL_CENTRE_NAME,
    COL_ROUTE,
    COL_PHONE,
    COL_STATE,
    COL_SEGMENTS,
    COL_DETAIL,
    COL_DIRECTION,
    COL_MASK
};

/* $1 ids after, $2 up to, $3 phone suffixes (text[]: bit i of the last column says whether
 * the real number ends with suffix i), $4 the pending snapshot to check (or NULL). One row
 * with a NULL id when nothing matched, so that the snapshot columns always come back. */
#define EVENTS_SQL(where)                                                                          \
    "WITH meta AS MATERIALIZED (SELECT pg_current_snapshot() AS snap,"                             \
    " coalesce(pg_sequence_last_value('message_events_id_seq'), 0) AS last_id)"                    \
    " SELECT meta.snap::text, meta.last_id,"                                                       \
    " ($4::pg_snapshot IS NULL OR NOT EXISTS (SELECT 1 FROM pg_snapshot_xip($4::pg_snapshot) x"    \
    "   WHERE NOT pg_visible_in_snapshot(x, meta.snap))), ev.*"                                    \
    " FROM meta LEFT JOIN LATERAL ("                                                               \
    "  SELECT e.id, (e.ctid::text::point)[0]::bigint,"                                             \
    "   to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"                    \
    "   e.message_id, e.centre_id, c.name, coalesce(e.route, m.route), m.phone, e.status,"         \
    "   m.segments, e.detail, m.direction,"                                                        \
    "   (SELECT coalesce(bit_or(1::bigint << (u.o - 1)::int), 0)"                                  \
    "      FROM unnest($3::text[]) WITH ORDINALITY u(s, o)"                                        \
    "     WHERE right(m.phone, length(u.s)) = u.s)"                                                \
    "  FROM message_events e"                                                                      \
    "  LEFT JOIN messages m ON m.id = e.message_id"                                                \
    "  LEFT JOIN centres c ON c.id = e.centre_id"                                                  \
    "  WHERE " where " AND meta.last_id > $1"                                                      \
    "  ORDER BY e.id LIMIT 1000) ev ON true"                                                       \
    " ORDER BY ev.id"

/* The live poll from a block on ($5): `id + 0` keeps the planner off the BRIN index. */
static const char SQL_LIVE_TID[] =
    EVENTS_SQL("e.ctid >= $5::tid AND e.id + 0 > $1 AND e.id + 0 <= $2");

/* By id range (BRIN), with optional filters $5 centre id, $6 route, $7 state, $8 phone
 * suffix: catch-ups, and the live poll before a hole is skipped. */
static const char SQL_RANGE[] =
    EVENTS_SQL("e.id > $1 AND e.id <= $2"
               " AND ($5::bigint IS NULL OR e.centre_id = $5)"
               " AND ($6::text IS NULL OR coalesce(e.route, m.route) = $6)"
               " AND ($7::text IS NULL OR e.status = $7)"
               " AND ($8::text IS NULL OR right(m.phone, length($8)) = $8)");

static const char SQL_INIT[] =
    "SELECT coalesce(pg_sequence_last_value('message_events_id_seq'), 0),"
    " pg_current_snapshot()::text,"
    " greatest(pg_relation_size('message_events') / current_setting('block_size')::bigint - "
    "64, 0)";

static const char SQL_SETTLE[] =
    "SELECT pg_current_snapshot()::text, NOT EXISTS (SELECT 1 FROM"
    " pg_snapshot_xip($1::pg_snapshot) x WHERE NOT pg_visible_in_snapshot(x,"
    " pg_current_snapshot()))";

static const char SQL_CENTRE[] = "SELECT id FROM centres WHERE name = $1 OR id::text = $1"
                                 " ORDER BY name = $1 DESC LIMIT 1";

static const char *const known_states[] = {"queued",    "sending",     "sent",
                                           "delivered", "undelivered", "failed",
                                           "expired",   "cancelled",   "received"};

/* ------------------------------------------------------------------ helpers */

static void db_error(struct gw_events *ev, const char *what, const char *err)
{
    int64_t now = gw_now_ms();
    if (now - ev->last_err_log_ms < 10000)
        return;
    ev->last_err_log_ms = now;
    gw_warn("events", "%s: %s (retrying)", what, err);
}

static void set_pending(struct gw_events *ev, int64_t lo, int64_t hi, const char *snap)
{
    ev->pend_lo = lo;
    ev->pend_hi = hi;
    ev->pend_since_ms = gw_now_ms();
    free(ev->pend_snap);
    ev->pend_snap = snap ? strdup(snap) : NULL;
    if (snap && !ev->pend_snap)
        abort();
}

static void refresh_pending_snap(struct gw_events *ev, const char *snap)
{
    char *s = strdup(snap);
    if (!s)
        abort();
    free(ev->pend_snap);
    ev->pend_snap = s;
}

static void clear_pending(struct gw_events *ev)
{
    ev->pend_lo = ev->pend_hi = 0;
    free(ev->pend_snap);
    ev->pend_snap = NULL;
}

static void go_cold(struct gw_events *ev)
{
    ev->hstate = H_COLD;
    ev->brin_next = 0;
    clear_pending(ev);
}

static struct bufferevent *client_bev(struct client *c)
{
    struct evhttp_connection *evcon = c->req ? evhttp_request_get_connection(c->req) : NULL;
    return evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
}

static size_t client_unsent(struct client *c)
{
    struct bufferevent *bev = client_bev(c);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void client_free(struct client *c)
{
    free(c->centre_arg);
    free(c->route);
    free(c->state);
    free(c);
}

/* Takes the client out of the list; frees it now, or when its query returns. */
static void client_drop(struct client *c)
{
    struct gw_events *ev = c->ev;
    if (c->listed) {
        TAILQ_REMOVE(&ev->clients, c, link);
        c->listed = 0;
        ev->nclients--;
    }
    c->gone = 1;
    if (!c->busy)
        client_free(c);
}

/* Ends the stream (the terminating chunk goes out; the connection stays for keep-alive). */
static void client_end(struct client *c)
{
    if (c->req) {
        gw_http_on_close(c->ev->http, c->req, NULL, NULL);
        evhttp_send_reply_end(c->req); /* also frees a request whose connection is gone */
        c->req = NULL;
    }
    client_drop(c);
}

/* The client's connection is being freed (it closed, a write failed, or the server goes). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct client *c = arg;
    gw_info("events", "client %" PRIu64 " disconnected", c->serial);
    /* A request libevent detached from its dead connection is ours to free; one still
     * attached is freed by libevent right after this callback. */
    if (c->req && !evhttp_request_get_connection(c->req))
        evhttp_send_reply_end(c->req);
    c->req = NULL;
    client_drop(c);
}

static void client_write(struct client *c, struct evbuffer *b)
{
    if (!c->req || evbuffer_get_length(b) == 0)
        return;
    evhttp_send_reply_chunk(c->req, b);
    c->last_write_ms = gw_now_ms();
}

static int row_id_null(const PGresult *res, int row)
{
    return PQgetisnull(res, row, COL_ID);
}

/* Rows with an event (the query always returns the meta row). */
static int event_rows(const PGresult *res)
{
    int n = PQntuples(res);
    return n == 0 || row_id_null(res, 0) ? 0 : n;
}

static const char *cell(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* sbit: the bit of the row's mask that is this client's suffix, -1 when it has none. */
static int row_matches(const struct client *c, const PGresult *res, int row, int sbit)
{
    if (c->centre_id && gw_db_int(res, row, COL_CENTRE) != c->centre_id)
        return 0;
    if (c->route) {
        const char *r = cell(res, row, COL_ROUTE);
        if (!r || strcmp(r, c->route) != 0)
            return 0;
    }
    if (c->state && strcmp(PQgetvalue(res, row, COL_STATE), c->state) != 0)
        return 0;
    if (sbit >= 0 && !((gw_db_int(res, row, COL_MASK) >> sbit) & 1))
        return 0;
    return 1;
}

static int is_error_state(const char *s)
{
    return !strcmp(s, "failed") || !strcmp(s, "undelivered") || !strcmp(s, "cancelled") ||
           !strcmp(s, "expired");
}

static void format_event(struct evbuffer *b, const PGresult *res, int row)
{
    const char *state = PQgetvalue(res, row, COL_STATE);
    const char *phone = cell(res, row, COL_PHONE);
    char masked[32];
    prov_phone_mask(phone ? phone : "", masked, sizeof masked);
    const char *name = cell(res, row, COL_CENTRE_NAME);
    const char *route = cell(res, row, COL_ROUTE);
    const char *detail = cell(res, row, COL_DETAIL);
    const char *dir = cell(res, row, COL_DIRECTION);
    int64_t id = gw_db_int(res, row, COL_ID);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "at", json_string(PQgetvalue(res, row, COL_AT)));
    json_object_set_new(o, "message_id", json_integer(gw_db_int(res, row, COL_MESSAGE)));
    json_object_set_new(o, "centre_id", json_integer(gw_db_int(res, row, COL_CENTRE)));
    json_object_set_new(o, "centre", name ? json_string(name) : json_null());
    json_object_set_new(o, "route", route ? json_string(route) : json_null());
    json_object_set_new(o, "phone", json_string(masked));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(
        o, "segments",
        json_integer(cell(res, row, COL_SEGMENTS) ? gw_db_int(res, row, COL_SEGMENTS) : 0));
    if (detail)
        json_object_set_new(o, is_error_state(state) ? "error" : "detail", json_string(detail));
    json_object_set_new(o, "direction", json_string(dir ? dir : "out"));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        abort();
    evbuffer_add_printf(b, "id: %lld\nevent: message\ndata: %s\n\n", (long long)id, s);
    free(s);
}

/* Sends the rows [0, n) with cursor < id <= upto that match, then moves the cursor to upto. */
static void client_deliver(struct client *c, const PGresult *res, int n, int sbit, int64_t upto)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    for (int i = 0; i < n; i++) {
        int64_t id = gw_db_int(res, i, COL_ID);
        if (id <= c->cursor)
            continue;
        if (id > upto)
            break;
        if (row_matches(c, res, i, sbit)) {
            format_event(b, res, i);
            c->ev->events_sent++;
        }
    }
    client_write(c, b);
    evbuffer_free(b);
    if (upto > c->cursor)
        c->cursor = upto;
}

/* ------------------------------------------------------------------ catching up */

static void catchup_send(struct client *c);

static void catchup_done(void *arg, PGresult *res, const char *err)
{
    struct client *c = arg;
    c->busy = 0;
    if (c->gone) {
        client_free(c);
        return;
    }
    if (err) {
        db_error(c->ev, "catching a client up", err);
        return; /* again on the next tick */
    }
    int n = event_rows(res);
    int64_t upto = n == PAGE ? gw_db_int(res, n - 1, COL_ID) : c->catchup_upper;
    client_deliver(c, res, n, c->suffix[0] ? 0 : -1, upto);
    if (n == PAGE)
        catchup_send(c);
}

/* One page of the client's own history query, from its cursor to the horizon. */
static void catchup_send(struct client *c)
{
    struct gw_events *ev = c->ev;
    if (c->busy || c->gone || !c->req || ev->hstate != H_READY || c->cursor < 0 ||
        c->cursor >= ev->horizon || client_unsent(c) > CATCHUP_PAUSE_BYTES)
        return;
    char after[24], upto[24], centre[24], suffixes[16];
    snprintf(after, sizeof after, "%lld", (long long)c->cursor);
    snprintf(upto, sizeof upto, "%lld", (long long)ev->horizon);
    snprintf(centre, sizeof centre, "%lld", (long long)c->centre_id);
    snprintf(suffixes, sizeof suffixes, "{%s}", c->suffix);
    const char *p[8] = {after,
                        upto,
                        suffixes,
                        NULL,
                        c->centre_id ? centre : NULL,
                        c->route,
                        c->state,
                        c->suffix[0] ? c->suffix : NULL};
    if (gw_db_query(ev->db, SQL_RANGE, 8, p, catchup_done, c) == GW_OK) {
        c->busy = 1;
        c->catchup_upper = ev->horizon;
    }
}

/* ------------------------------------------------------------------ the shared poller */

static void poll_send(struct gw_events *ev);

static void live_done(void *arg, PGresult *res, const char *err)
{
    struct gw_events *ev = arg;
    ev->poll_busy = 0;
    int was_brin = ev->poll_brin;
    ev->brin_next = 0;
    if (err) {
        db_error(ev, "reading message_events", err);
        return;
    }
    if (ev->hstate != H_READY)
        return;
    if (ev->nclients == 0 && ev->nstarting == 0) {
        go_cold(ev);
        return;
    }
    int n = event_rows(res);
    const char *snap = PQgetvalue(res, 0, COL_SNAP);
    int64_t last_id = gw_db_int(res, 0, COL_LAST_ID);
    int settled = PQgetvalue(res, 0, COL_SETTLED)[0] == 't';
    int64_t now = gw_now_ms();
    int64_t h = ev->horizon, h_old = ev->horizon;
    int i = 0;
    for (;;) {
        while (i < n && gw_db_int(res, i, COL_ID) <= h) /* (a range poll may overlap) */
            i++;
        while (i < n && gw_db_int(res, i, COL_ID) == h + 1) {
            h++;
            i++;
        }
        int64_t end; /* the last missing id of the hole after h */
        if (i < n)
            end = gw_db_int(res, i, COL_ID) - 1;
        else if (n < PAGE && last_id > h)
            end = last_id; /* drawn, not visible yet */
        else {
            clear_pending(ev);
            break;
        }
        if (ev->pend_lo != h + 1) {
            set_pending(ev, h + 1, end, snap);
            break;
        }
        if (now - ev->pend_since_ms < SETTLE_MIN_MS) {
            refresh_pending_snap(ev, snap);
            break;
        }
        if (!settled) {
            if (now - ev->pend_since_ms > GAP_WARN_MS && now - ev->last_err_log_ms > GAP_WARN_MS) {
                ev->last_err_log_ms = now;
                gw_warn("events",
                        "message event %lld is still not committed after %lld s (a "
                        "long transaction?); the stream waits for it",
                        (long long)(h + 1), (long long)((now - ev->pend_since_ms) / 1000));
            }
            break;
        }
        if (!was_brin) {
            ev->brin_next = 1; /* maybe stored before the block we read from: look by id */
            break;
        }
        int64_t to = end < ev->pend_hi ? end : ev->pend_hi;
        gw_debug("events", "message event ids %lld-%lld were never committed; skipped",
                 (long long)(h + 1), (long long)to);
        ev->gaps_skipped += (uint64_t)(to - h);
        h = to;
        clear_pending(ev);
    }
    /* Where the next poll reads from: a margin before the lowest block of what it found
     * (never backwards: a row stored further back is found by the range poll of a hole). */
    if (n > 0) {
        int64_t low = INT64_MAX;
        for (int k = 0; k < n; k++) {
            int64_t b = gw_db_int(res, k, COL_BLK);
            if (b < low)
                low = b;
        }
        if (low - TID_MARGIN_BLOCKS > ev->tid_block)
            ev->tid_block = low - TID_MARGIN_BLOCKS;
    }
    ev->horizon = h;
    if (h > h_old) {
        struct client *c;
        TAILQ_FOREACH(c, &ev->clients, link)
        {
            if (c->busy || !c->req || c->cursor < h_old)
                continue; /* behind: catches up with its own query */
            int sbit = -1;
            if (c->suffix[0]) {
                for (int s = 0; s < ev->nsent_suffix; s++)
                    if (!strcmp(ev->sent_suffix[s], c->suffix))
                        sbit = s;
                if (sbit < 0)
                    continue; /* joined after the poll was sent */
            }
            client_deliver(c, res, n, sbit, h);
        }
    }
    if (n == PAGE || ev->brin_next)
        poll_send(ev);
}

static void poll_send(struct gw_events *ev)
{
    if (ev->poll_busy || ev->hstate != H_READY || ev->closing)
        return;
    /* The distinct phone suffixes the clients filter on. */
    char arr[GW_EVENTS_MAX_CLIENTS * 6 + 3];
    size_t len = 0;
    arr[len++] = '{';
    ev->nsent_suffix = 0;
    struct client *c;
    TAILQ_FOREACH(c, &ev->clients, link)
    {
        if (!c->suffix[0])
            continue;
        int dup = 0;
        for (int s = 0; s < ev->nsent_suffix; s++)
            dup |= !strcmp(ev->sent_suffix[s], c->suffix);
        if (dup || ev->nsent_suffix == GW_EVENTS_MAX_CLIENTS)
            continue;
        memcpy(ev->sent_suffix[ev->nsent_suffix], c->suffix, sizeof c->suffix);
        len += (size_t)snprintf(arr + len, sizeof arr - len, "%s%s", ev->nsent_suffix ? "," : "",
                                c->suffix);
        ev->nsent_suffix++;
    }
    snprintf(arr + len, sizeof arr - len, "}");
    char after[24], block[40];
    snprintf(after, sizeof after, "%lld", (long long)ev->horizon);
    snprintf(block, sizeof block, "(%lld,0)", (long long)ev->tid_block);
    int brin = ev->brin_next;
    const char *p[8] = {
        after, "9223372036854775807", arr, ev->pend_snap, brin ? NULL : block, NULL, NULL, NULL};
    int rc = brin ? gw_db_query(ev->db, SQL_RANGE, 8, p, live_done, ev)
                  : gw_db_query(ev->db, SQL_LIVE_TID, 5, p, live_done, ev);
    if (rc == GW_OK) {
        ev->poll_busy = 1;
        ev->poll_brin = brin;
    }
}

static void set_ready(struct gw_events *ev)
{
    ev->hstate = H_READY;
    clear_pending(ev);
    struct client *c;
    TAILQ_FOREACH(c, &ev->clients, link)
    {
        if (c->cursor < 0)
            c->cursor = ev->horizon;
    }
    gw_debug("events", "stream ready from message event %lld", (long long)ev->horizon);
}

static void settle_done(void *arg, PGresult *res, const char *err)
{
    struct gw_events *ev = arg;
    ev->poll_busy = 0;
    if (err) {
        db_error(ev, "checking transactions", err);
        return;
    }
    if (ev->hstate != H_SETTLING)
        return;
    if (ev->nclients == 0 && ev->nstarting == 0) {
        go_cold(ev);
        return;
    }
    if (gw_now_ms() - ev->pend_since_ms < SETTLE_MIN_MS)
        refresh_pending_snap(ev, PQgetvalue(res, 0, 0));
    else if (PQgetvalue(res, 0, 1)[0] == 't')
        set_ready(ev);
}

static void init_done(void *arg, PGresult *res, const char *err)
{
    struct gw_events *ev = arg;
    ev->poll_busy = 0;
    if (ev->hstate != H_INIT)
        return;
    if (err) {
        ev->hstate = H_COLD;
        db_error(ev, "starting the stream", err);
        return;
    }
    if (ev->nclients == 0 && ev->nstarting == 0) {
        go_cold(ev);
        return;
    }
    ev->horizon = gw_db_int(res, 0, 0);
    ev->tid_block = gw_db_int(res, 0, 2);
    set_pending(ev, ev->horizon, ev->horizon, PQgetvalue(res, 0, 1));
    ev->hstate = H_SETTLING;
}

static void advance(struct gw_events *ev)
{
    if (ev->poll_busy || ev->closing)
        return;
    switch (ev->hstate) {
    case H_COLD:
        if (gw_db_query(ev->db, SQL_INIT, 0, NULL, init_done, ev) == GW_OK) {
            ev->poll_busy = 1;
            ev->hstate = H_INIT;
        }
        break;
    case H_SETTLING: {
        const char *p[1] = {ev->pend_snap};
        if (gw_db_query(ev->db, SQL_SETTLE, 1, p, settle_done, ev) == GW_OK)
            ev->poll_busy = 1;
        break;
    }
    case H_READY:
        poll_send(ev);
        break;
    case H_INIT:
        break;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_events *ev = arg;
    if (ev->nclients == 0 && ev->nstarting == 0) {
        event_del(ev->tick);
        ev->ticking = 0;
        if (!ev->poll_busy)
            go_cold(ev);
        return;
    }
    int64_t now = gw_now_ms();
    struct client *c, *next;
    for (c = TAILQ_FIRST(&ev->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (client_unsent(c) > SLOW_CLIENT_BYTES) {
            gw_warn("events",
                    "client %" PRIu64 " reads too slowly (%zu bytes waiting); "
                    "ending its stream",
                    c->serial, client_unsent(c));
            client_end(c);
            continue;
        }
        if (now - c->last_write_ms >= KEEPALIVE_MS) {
            struct evbuffer *b = evbuffer_new();
            if (!b)
                abort();
            evbuffer_add_printf(b, ": keepalive\n\n");
            client_write(c, b);
            evbuffer_free(b);
        }
    }
    advance(ev);
    TAILQ_FOREACH(c, &ev->clients, link)
    catchup_send(c);
}

/* ------------------------------------------------------------------ requests */

static void stream_start(struct gw_events *ev, struct client *c)
{
    struct evhttp_request *req = c->req;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon) { /* the client left while we looked its centre up */
        evhttp_send_reply_end(req);
        c->req = NULL;
        client_drop(c);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(req, 200, "OK");
    gw_http_on_close(ev->http, req, on_close, c);
    /* evhttp's 30 s read timeout would end a stream the client has nothing to say on; a
     * client that stops reading still meets the write timeout (and SLOW_CLIENT_BYTES). */
    struct timeval wtv = {WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wtv);
    TAILQ_INSERT_TAIL(&ev->clients, c, link);
    c->listed = 1;
    ev->nclients++;
    if (c->cursor < 0 && ev->hstate == H_READY)
        c->cursor = ev->horizon;
    char what[400];
    snprintf(what, sizeof what, "%s%.200s%s%.64s%s%s%s", c->centre_arg ? ", centre " : "",
             c->centre_arg ? c->centre_arg : "", c->route ? ", route " : "",
             c->route ? c->route : "", c->state ? ", state " : "", c->state ? c->state : "",
             c->suffix[0] ? ", a phone suffix" : "");
    gw_info("events", "client %" PRIu64 " connected (from %s%s)", c->serial,
            c->cursor >= 0 ? "an event id" : "now", what);
    struct evbuffer *b = evbuffer_new();
    if (!b)
        abort();
    evbuffer_add_printf(b, "retry: 2000\n: passerelle message events\n\n");
    client_write(c, b);
    evbuffer_free(b);
    if (!ev->ticking) {
        struct timeval tv = {0, TICK_MS * 1000};
        event_add(ev->tick, &tv);
        ev->ticking = 1;
    }
    advance(ev);
    catchup_send(c);
}

static void centre_done(void *arg, PGresult *res, const char *err)
{
    struct client *c = arg;
    struct gw_events *ev = c->ev;
    c->busy = 0;
    ev->nstarting--;
    if (err || ev->closing) {
        gw_http_error(c->req, 503, err ? "database_unavailable" : "shutting_down", "%s",
                      err ? "the database is not available; try again" : "the daemon is stopping");
        c->req = NULL;
        client_drop(c);
        return;
    }
    if (PQntuples(res) != 1) {
        gw_http_error(c->req, 404, "unknown_centre", "no centre named '%s'", c->centre_arg);
        c->req = NULL;
        client_drop(c);
        return;
    }
    c->centre_id = gw_db_int(res, 0, 0);
    stream_start(ev, c);
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

void gw_events_handle(struct gw_events *ev, struct evhttp_request *req)
{
    if (ev->closing) {
        gw_http_error(req, 503, "shutting_down", "the daemon is stopping");
        return;
    }
    if (ev->nclients + ev->nstarting >= GW_EVENTS_MAX_CLIENTS) {
        gw_http_error(req, 503, "too_many_clients", "at most %d event streams at once",
                      GW_EVENTS_MAX_CLIENTS);
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (query && evhttp_parse_query_str(query, &params) < 0) {
        gw_http_error(req, 400, "bad_request", "malformed query string");
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->ev = ev;
    c->cursor = -1;
    const char *after = NULL, *bad = NULL;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &params, next)
    {
        char **dst = NULL;
        if (!strcmp(kv->key, "centre"))
            dst = &c->centre_arg;
        else if (!strcmp(kv->key, "route"))
            dst = &c->route;
        else if (!strcmp(kv->key, "state"))
            dst = &c->state;
        else if (!strcmp(kv->key, "phone_suffix")) {
            size_t n = strlen(kv->value);
            if (n < 2 || n > 4 || !all_digits(kv->value)) {
                bad = "phone_suffix";
                break;
            }
            memcpy(c->suffix, kv->value, n + 1);
        } else if (!strcmp(kv->key, "after"))
            after = kv->value;
        else {
            bad = kv->key;
            break;
        }
        if (dst) {
            free(*dst);
            *dst = strdup(kv->value);
            if (!*dst)
                abort();
        }
    }
    int status = 0;
    const char *code = NULL;
    char msg[160] = "";
    if (bad && strcmp(bad, "phone_suffix") != 0) {
        status = 400;
        code = "unknown_parameter";
        snprintf(msg, sizeof msg,
                 "unknown parameter '%.60s' (centre, route, state, "
                 "phone_suffix, after)",
                 bad);
    } else if (bad) {
        status = 422;
        code = "invalid_phone_suffix";
        snprintf(msg, sizeof msg, "phone_suffix is the last 2 to 4 digits of the number");
    } else if (c->state) {
        size_t k = 0, n = sizeof known_states / sizeof known_states[0];
        while (k < n && strcmp(known_states[k], c->state) != 0)
            k++;
        if (k == n) {
            status = 422;
            code = "invalid_state";
            snprintf(msg, sizeof msg,
                     "state is one of queued, sending, sent, delivered, "
                     "undelivered, failed, expired, cancelled, received");
        }
    }
    if (!status && ((c->route && (!*c->route || strlen(c->route) > 64)) ||
                    (c->centre_arg && (!*c->centre_arg || strlen(c->centre_arg) > 200)))) {
        status = 422;
        code = "invalid_filter";
        snprintf(msg, sizeof msg,
                 "centre and route must not be empty (nor over 200 and 64 "
                 "characters)");
    }
    const char *last = gw_http_header(req, "Last-Event-ID");
    if (!status && (last || after)) {
        int64_t v;
        if (gw_parse_i64(last ? last : after, 0, INT64_MAX, &v) != GW_OK) {
            status = 422;
            code = last ? "invalid_last_event_id" : "invalid_after";
            snprintf(msg, sizeof msg, "%s must be an event id (a whole number, 0 or more)",
                     last ? "Last-Event-ID" : "after");
        } else {
            c->cursor = v;
        }
    }
    evhttp_clear_headers(&params);
    if (!status && !gw_db_up(ev->db)) {
        status = 503;
        code = "database_unavailable";
        snprintf(msg, sizeof msg, "the database is not available; try again");
    }
    if (status) {
        gw_http_error(req, status, code, "%s", msg);
        client_free(c);
        return;
    }
    c->req = req;
    c->serial = ++ev->serial;
    c->last_write_ms = gw_now_ms();
    if (!c->centre_arg) {
        stream_start(ev, c);
        return;
    }
    const char *p[1] = {c->centre_arg};
    if (gw_db_query(ev->db, SQL_CENTRE, 1, p, centre_done, c) != GW_OK) {
        gw_http_error(req, 503, "database_unavailable",
                      "the database is not available; try "
                      "again");
        client_free(c);
        return;
    }
    c->busy = 1;
    ev->nstarting++;
    if (!ev->ticking) {
        struct timeval tv = {0, TICK_MS * 1000};
        event_add(ev->tick, &tv);
        ev->ticking = 1;
    }
}

/* ------------------------------------------------------------------ life cycle */

struct gw_events *gw_events_new(struct event_base *base, struct gw_db *db, struct gw_http *http)
{
    struct gw_events *ev = calloc(1, sizeof *ev);
    if (!ev)
        abort();
    ev->base = base;
    ev->db = db;
    ev->http = http;
    TAILQ_INIT(&ev->clients);
    ev->tick = event_new(base, -1, EV_PERSIST, on_tick, ev);
    if (!ev->tick)
        abort();
    return ev;
}

void gw_events_close_all(struct gw_events *ev)
{
    if (!ev)
        return;
    ev->closing = 1;
    if (ev->ticking) {
        event_del(ev->tick);
        ev->ticking = 0;
    }
    int n = ev->nclients;
    while (!TAILQ_EMPTY(&ev->clients))
        client_end(TAILQ_FIRST(&ev->clients));
    if (n)
        gw_info("events", "ended %d event stream%s", n, n > 1 ? "s" : "");
}

void gw_events_free(struct gw_events *ev)
{
    if (!ev)
        return;
    gw_events_close_all(ev);
    event_free(ev->tick);
    free(ev->pend_snap);
    free(ev);
}

void gw_events_metrics(const struct gw_events *ev, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_events_clients", "gauge",
                   "Operator event streams (GET /ops/events) connected.");
    evbuffer_add_printf(out, "passerelle_events_clients %d\n", ev->nclients);
    gw_metric_head(out, "passerelle_events_sent_total", "counter",
                   "Message events written to operator event streams.");
    evbuffer_add_printf(out, "passerelle_events_sent_total %llu\n",
                        (unsigned long long)ev->events_sent);
    gw_metric_head(out, "passerelle_events_skipped_ids_total", "counter",
                   "Message event ids never committed (rolled back), passed over by the stream.");
    evbuffer_add_printf(out, "passerelle_events_skipped_ids_total %llu\n",
                        (unsigned long long)ev->gaps_skipped);
}
