/*
 * gw_util — small shared helpers: error codes, retry backoff, time, RFC 3339 parsing.
 */
#ifndef GW_UTIL_H
#define GW_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One error convention: 0 on success, a negative GW_E… code otherwise. */
enum {
    GW_OK = 0,
    GW_EINVAL = -1, /* bad argument / input */
    GW_EDOWN = -2,  /* database (or peer) unavailable */
    GW_ENOMEM = -3,
    GW_ESQL = -4, /* the database refused a statement */
    GW_ENOTFOUND = -5,
    GW_ECLOSED = -6, /* shutting down */
};

/* Exponential backoff with jitter, for retry number `attempt` (1 = first retry):
 * d = min(max_ms, base_ms * 2^(attempt-1)); result is uniformly in [d/2, d] using `rnd`
 * (any 32-bit random value). Never below 1 ms; never above max_ms. */
int64_t gw_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, uint32_t rnd);

/* Monotonic and wall clocks in milliseconds / microseconds. */
int64_t gw_now_ms(void);  /* CLOCK_MONOTONIC */
int64_t gw_now_us(void);  /* CLOCK_MONOTONIC */
int64_t gw_wall_ms(void); /* CLOCK_REALTIME */

/* Parse an RFC 3339 timestamp ("2026-12-01T10:00:00+01:00", "...Z", optional fraction) into
 * Unix seconds (fraction dropped). Returns 0 or GW_EINVAL. */
int gw_parse_rfc3339(const char *s, int64_t *out) __attribute__((warn_unused_result));
/* Format Unix seconds as "2026-12-01T09:00:00Z" into buf (>= 21 bytes). */
void gw_format_rfc3339(int64_t t, char *buf, size_t len);

/* strtoll wrapper: whole string must be a base-10 integer within [min, max]. */
int gw_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
    __attribute__((warn_unused_result));

/* Random 32-bit value, not for secrets (backoff jitter, the simulator): a fast generator seeded
 * from libsodium. Keys, tokens and passwords use randombytes_buf. */
uint32_t gw_random32(void);

/* Address lists ("10.0.0.5, 192.168.1.0/24, ::1"): 0 when every item is an IPv4/IPv6 address
 * or an IPv4 CIDR, else -1. gw_addr_in_list: 1 when addr (numeric) matches an item. */
int gw_addr_list_check(const char *list);
int gw_addr_in_list(const char *list, const char *addr);

/* Makes s valid UTF-8 in place: each byte that is not part of a valid sequence (as jansson
 * checks it) becomes '?'. For error messages that quote input or were cut short. */
void gw_utf8_repair(char *s);

#endif
