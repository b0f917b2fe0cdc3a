/*
 * gw_outbox — the outbox: durable enqueue (group commit), the dispatcher that claims due
 * messages per route and hands them to the route drivers, the recording of outcomes and
 * delivery reports, and the routes themselves (driver instances and their limits).
 *
 * Flow (DESIGN.md §3): enqueue → outbox_queue row (committed before the caller hears back)
 * → claim (FOR UPDATE SKIP LOCKED, lease moves due_at forward, token fences) → ops->send →
 * outcome → gw_record (sent / queued again with backoff / failed) → delivery report → gw_dlr.
 *
 * Batching: every enqueue made during one pass of the event loop goes into one INSERT (one
 * commit); outcomes and delivery reports are written by one serial writer in batches, so a
 * delivery report can never be applied before the outcome that precedes it on this node.
 *
 * Ownership: the outbox borrows db and config (they outlive it) and owns the routes.
 */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stdint.h>
#include <stddef.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct gw_db;
struct gw_config;
struct gw_outbox;
struct json_t;

struct gw_enqueue {
    int64_t centre_id;
    const char *phone; /* E.164 */
    const char *text;
    int segments;
    const char *encoding; /* "gsm7" / "ucs2" */
    int64_t send_at;      /* Unix seconds; 0 = now */
    const char *idem;     /* idempotency key or NULL */
    const char *route;    /* NULL = the centre's first route for `kind`, else the default route */
    const char *kind;     /* kind of traffic ("replies", "reminders", "alerts"); NULL = "all" */
};

/* err: 0, GW_EDOWN (not stored: database unavailable), GW_ESQL.
 * status: "queued" for a new message; for a repeated idempotency key the first message's
 * current status (created = 0); "opted_out" (id 0) when the number opted out. */
typedef void (*gw_enqueue_cb)(void *arg, int err, int64_t id, int created, const char *status,
                              int segments, const char *encoding);

struct gw_outbox *gw_outbox_new(struct event_base *base, struct gw_db *db,
                                const struct gw_config *cfg, char *err, size_t errlen);
void gw_outbox_start(struct gw_outbox *o);
/* Stop claiming; call done(arg) once nothing is in flight and everything is written (or the
 * database is gone). */
void gw_outbox_drain(struct gw_outbox *o, void (*done)(void *arg), void *arg);
void gw_outbox_free(struct gw_outbox *o);

int gw_outbox_enqueue(struct gw_outbox *o, const struct gw_enqueue *e, gw_enqueue_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* /providers/{route}/{subpath} → the route driver's http handler. */
void gw_outbox_provider_http(struct gw_outbox *o, struct evhttp_request *req, const char *tail);

/* Operator USSD through a route. Returns 0 (done called later), GW_ENOTFOUND (no such
 * route), GW_EINVAL (the route cannot do USSD) or another negative code (refused at once). */
int gw_outbox_ussd(struct gw_outbox *o, const char *route, const char *code,
                   void (*done)(void *arg, int err, const char *reply), void *arg)
    __attribute__((warn_unused_result));

/* Called once for each new inbound SMS after it was stored together with its flow run
 * (gw_inbound_flow): run is the flow's result ({"outcome","replies","optout"?,…}, borrowed). */
typedef void (*gw_inbound_hook)(void *arg, int64_t msg_id, int64_t centre_id, const char *phone,
                                const char *route, struct json_t *run);
void gw_outbox_set_inbound_hook(struct gw_outbox *o, gw_inbound_hook fn, void *arg);

/* Tell route `route` (when it keeps its own blacklist, e.g. iSendPro) that e164 opted out (1)
 * or back in (0). Returns 1 when the route was told, 0 when it has no such list or is unknown. */
int gw_outbox_optout(struct gw_outbox *o, const char *route, const char *e164, int opted_out);

/* New rate and concurrency limits for a route (SIGHUP reload). GW_ENOTFOUND: no such route. */
/* SIGHUP: route rc->name's section as read again. Its breaker and callback settings apply at
 * once; when its driver options changed, the route stops claiming, lets its sends in flight
 * finish, then re-creates its driver with them. Returns 1: rc is in use (it must stay valid for
 * the outbox's life); GW_EINVAL: the driver itself changed (a restart is needed), nothing
 * applied; GW_ENOTFOUND: a route it does not have. */
struct gw_route_conf;
int gw_outbox_reconfigure(struct gw_outbox *o, const struct gw_route_conf *rc);
int gw_outbox_set_limits(struct gw_outbox *o, const char *route, double rate, int concurrency);

/* {"sim":{"driver":"sim","state":"up","in_flight":…,"queued":…}, …} */
struct json_t *gw_outbox_status(struct gw_outbox *o);
void gw_outbox_metrics(struct gw_outbox *o, struct evbuffer *out);
/* 1 when every route is up (for /healthz "status"). */
int gw_outbox_routes_ok(struct gw_outbox *o);

#endif
