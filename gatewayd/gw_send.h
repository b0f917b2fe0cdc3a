/*
 * gw_send — parsing and validation of a send request body (POST /api/v1/messages): JSON shape,
 * phone number, text encoding and segments, send_at, idempotency key. Pure (no I/O), so that
 * it is unit-testable and fuzzable on its own.
 */
#ifndef GW_SEND_H
#define GW_SEND_H

#include <stddef.h>
#include <stdint.h>

struct gw_config;

/* A validated send request (POST /api/v1/messages). */
struct gw_send_req {
    char phone[24];  /* E.164 */
    char *text;      /* as it will be sent (maybe transliterated) */
    char *idem;      /* idempotency key or NULL */
    int64_t send_at; /* Unix seconds, 0 = now */
    int segments;
    const char *encoding; /* "gsm7" / "ucs2" (static) */
};

/* Normalises a phone number into out (prov_phone_normalize's contract). */
typedef int (*gw_phone_fn)(void *arg, const char *in, char *out, size_t outlen);

/* Parse and validate a send body. Returns 0 with *r filled (free with gw_send_req_clear), or
 * the HTTP status (400, 422) with *code (static) and msg set and *r empty. Pure: no I/O. */
int gw_send_parse(const char *body, size_t len, const struct gw_config *cfg,
                      gw_phone_fn normalize, void *narg, struct gw_send_req *r, const char **code,
                      char *msg, size_t msglen) __attribute__((warn_unused_result));
void gw_send_req_clear(struct gw_send_req *r);

struct prov_text_info;
/* The text as it will be sent: a new copy (free it), transliterated when the configuration
 * allows it and that makes the text GSM-7 without more segments; *info describes the result.
 * NULL when t is not valid UTF-8. */
char *gw_send_text(const struct gw_config *cfg, const char *t, size_t len,
                   struct prov_text_info *info);

#endif
