/*
 * gw_flows — the daemon side of the two-way keyword flows and the USSD menu (issue 4).
 *
 * The flows themselves run in PostgreSQL (gatewayd/sql/002_flows.sql, gw_flow_run and gw_ussd)
 * inside the transaction that stores the inbound message, so a message, what its flow changed
 * and the replies it decided on are committed together. This module does what the database
 * cannot:
 *   - after each new inbound SMS (the outbox's inbound hook): enqueue the replies on the route
 *     the message came in by (idempotency key "flow:<message id>:<n>", kind 'replies', or
 *     'optout' for the STOP confirmation) and tell the centre's routes that keep their own
 *     blacklist about a STOP/START;
 *   - a sweep (at start, then every 30 s) that enqueues again the replies of flow runs of the
 *     last 10 minutes that have no queued message yet (a crash or an outage between the two
 *     commits): the idempotency keys make it exact;
 *   - POST /ussd/{centre}: the aggregator's callback (field names from [ussd]), answered with
 *     a "CON …"/"END …" screen made GSM-7 and cut at 182 characters;
 *   - staff actions on loans (confirm, refuse, returned) that text the resident.
 *
 * Ownership: borrows base, db, outbox, config and http (they outlive it).
 */
#ifndef GW_FLOWS_H
#define GW_FLOWS_H

#include <stdint.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct gw_db;
struct gw_outbox;
struct gw_config;
struct gw_http;
struct gw_flows;

/* Registers the outbox's inbound hook and the /ussd/ route. */
struct gw_flows *gw_flows_new(struct event_base *base, struct gw_db *db, struct gw_outbox *o,
                              const struct gw_config *cfg, struct gw_http *http);
/* Starts the reply sweep. */
void gw_flows_start(struct gw_flows *f);
void gw_flows_free(struct gw_flows *f);

/* A staff action on loan `loan`: "confirm" (due in `days`, 0 = the centre's default),
 * "refuse" or "returned". Answers req with {"loan","status","sms":"queued"} or an error. */
void gw_flows_loan_action(struct gw_flows *f, struct evhttp_request *req, int64_t loan,
                          const char *action, int days);

void gw_flows_metrics(struct gw_flows *f, struct evbuffer *out);

#endif
