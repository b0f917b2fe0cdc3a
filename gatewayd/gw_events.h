/*
 * gw_events — the live stream of message state changes for operators: GET /ops/events, a
 * Server-Sent Events stream of the rows of message_events (sending, sent, delivered, failed,
 * cancelled, received, queued by a retry…), one `event: message` per row, its `id:` being
 * message_events.id, with the phone number masked. gatewayctl tail reads it.
 *
 * One poller per daemon reads the table every 250 ms while at least one client is connected
 * and fans the new rows out to the clients that are up to date; a client that resumes from an
 * older id (Last-Event-ID or ?after=) first catches up with queries of its own. The poller
 * only hands out ids it knows to be final — committed, or never to be committed — so that a
 * client sees every event exactly once and in id order, even though concurrent transactions
 * commit their ids out of order (see the block comment in gw_events.c).
 *
 * Ownership: gw_events_new borrows base, db and http, which must outlive it. The caller authorises
 * the request (operator token) before gw_events_handle, which then owns the reply. A client
 * that goes away is noticed (connection close callback, or a failed write) and its state
 * freed. gw_events_close_all ends every stream (shutdown); gw_events_free must run after
 * gw_db_free (pending query callbacks find their state) and before the HTTP server is freed.
 * Loop thread only.
 */
#ifndef GW_EVENTS_H
#define GW_EVENTS_H

struct event_base;
struct evbuffer;
struct evhttp_request;
struct gw_db;
struct gw_events;

/* At most this many streams at once; the next gets 503 too_many_clients. */
#define GW_EVENTS_MAX_CLIENTS 32

struct gw_http;
struct gw_events *gw_events_new(struct event_base *base, struct gw_db *db, struct gw_http *http);
void gw_events_free(struct gw_events *ev);

/* GET /ops/events[?centre=&route=&state=&phone_suffix=&after=] with an optional Last-Event-ID
 * header: validates the parameters (422/404 with the usual JSON error), then starts the
 * stream (200 text/event-stream) or answers 503 (too many clients, database down, stopping). */
void gw_events_handle(struct gw_events *ev, struct evhttp_request *req);

/* Ends every stream cleanly and refuses new ones (SIGTERM). */
void gw_events_close_all(struct gw_events *ev);

/* passerelle_events_clients (gauge) and the stream's counters. */
void gw_events_metrics(const struct gw_events *ev, struct evbuffer *out);

#endif
