/*
 * gw_partners — signed webhooks of partner organisations (issue 5): a partner of a centre
 * (created with `gatewayctl partner create`) posts alerts to the topics it was given and, when
 * allowed, publishes and withdraws job offers:
 *
 *   POST   /api/v1/alerts                 {"topic","text","expires_at"?,"urgent"?}  → 202
 *   POST   /api/v1/jobs                   {"external_id","title","text","category",
 *                                          "contact","expires_at"}                 → 201 / 200
 *   DELETE /api/v1/jobs/{external_id}                                              → 200 / 404
 *
 * Every request carries X-Passerelle-Key (the key id), X-Passerelle-Timestamp (Unix seconds,
 * within 5 minutes of our clock either way) and X-Passerelle-Signature: v1=<hex
 * HMAC-SHA256("<timestamp>.<body>") keyed with the partner's secret>, compared in constant time.
 * Any failure there is the same 401, whatever part failed (the log says which).
 *
 * Partners are cached in memory for 30 s (a revoked key stops working within that time; the
 * database function that performs the request checks revocation again, so nothing is
 * written for a revoked partner). Each partner has a token bucket of rate_per_min requests a
 * minute (429 with Retry-After beyond it). An Idempotency-Key header makes a retried request
 * replay the first successful answer; the answer is recorded in the transaction that makes the
 * effect (gw_partner_request in sql/005_partners.sql).
 *
 * Ownership: borrows db, config and http (they outlive it). Pending database callbacks must
 * have run (gw_db_free) before gw_partners_free.
 */
#ifndef GW_PARTNERS_H
#define GW_PARTNERS_H

struct evbuffer;
struct gw_config;
struct gw_db;
struct gw_http;
struct gw_partners;

/* Registers the routes above on http. */
struct gw_partners *gw_partners_new(struct gw_db *db, const struct gw_config *cfg,
                                    struct gw_http *http);
void gw_partners_free(struct gw_partners *p);

/* passerelle_webhook_requests_total{result=…} */
void gw_partners_metrics(struct gw_partners *p, struct evbuffer *out);

#endif
