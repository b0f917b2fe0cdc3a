/*
 * gw_admin — the admin UI's back end (issue 6): the static UI (admin/www, at /admin/) and the
 * JSON API at /admin/api/ (contract: admin/API.md).
 *
 * Security: staff passwords are argon2id (libsodium crypto_pwhash_str), verified on a short-
 * lived thread so the event loop never blocks; failed logins are limited per account (5 in 15
 * min) and per address (20 in 15 min), and a wrong current password given to POST me/password
 * (one's own password change) counts as one; sessions are random tokens in an HttpOnly,
 * SameSite=Strict cookie (Secure with [admin] secure_cookies), stored hashed, with idle and
 * absolute expiry; every state-changing request needs the session's CSRF token in
 * X-CSRF-Token. Every query is scoped to the session's centre (an object of another centre is
 * 404, like a missing one); roles (admin, referent, staff, viewer) are checked per endpoint;
 * every change is written to audit_log.
 *
 * Most endpoints are one call of gw_admin_call (gatewayd/sql/006_admin.sql); those that need
 * C (phone numbers, RRULE previews, SMS text analysis, sending) are handled here.
 *
 * Ownership: borrows everything it is given.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

struct event_base;
struct evbuffer;
struct gw_db;
struct gw_outbox;
struct gw_flows;
struct gw_config;
struct gw_http;
struct gw_admin;

struct gw_admin *gw_admin_new(struct event_base *base, struct gw_db *db, struct gw_outbox *o,
                              struct gw_flows *flows, const struct gw_config *cfg,
                              struct gw_http *http);
void gw_admin_free(struct gw_admin *a);
void gw_admin_metrics(struct gw_admin *a, struct evbuffer *out);

#endif
