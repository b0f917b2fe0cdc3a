/*
 * gw_limit — token buckets by key (a client address, an API key's prefix): `rate` tokens a
 * second, at most `burst` kept. Used for the per-address limit of the public endpoints
 * (gw_http) and the per-key limit of the send API (gw_api). Pure: the caller passes the time,
 * so the unit tests drive it. Idle buckets (full again) are dropped as the table grows, so a
 * scan from many addresses does not grow memory without bound.
 */
#ifndef GW_LIMIT_H
#define GW_LIMIT_H

#include <stddef.h>

struct gw_limit;

/* rate <= 0: unlimited (every take succeeds, nothing is stored). burst < 1 becomes 1. */
struct gw_limit *gw_limit_new(double rate, double burst);
/* Change the rate and burst (SIGHUP); existing buckets keep their tokens, capped by burst. */
void gw_limit_set(struct gw_limit *l, double rate, double burst);
/* Take one token for key at time now (seconds, monotonic). Returns 1 when allowed; 0 when the
 * bucket is empty, with *retry_after (if not NULL) the seconds until a token is back. */
int gw_limit_take(struct gw_limit *l, const char *key, double now, double *retry_after);
/* Buckets currently kept (for tests and /metrics). */
size_t gw_limit_size(const struct gw_limit *l);
void gw_limit_free(struct gw_limit *l);

#endif
