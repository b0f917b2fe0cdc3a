/*
 * gw_partners_parse — the pure half of the partner webhooks (gw_partners.h): the signature
 * headers and the validation of the POST /api/v1/alerts and /api/v1/jobs bodies. No I/O, no
 * clock (the caller passes "now"), no global state, so that it is unit-testable and fuzzable
 * on its own (tests/unit/test_partners_parse.c, tests/fuzz/fuzz_webhook.c).
 *
 * Signature (the contract in gw_partners.h): X-Passerelle-Key is 1..63 letters, digits, '_'
 * or '-'; X-Passerelle-Timestamp is 1..20 digits, Unix seconds within WINDOW either way of
 * now; X-Passerelle-Signature is "v1=" and 64 hex digits (either case) of
 * HMAC-SHA256(secret, "<timestamp>.<body>"), compared in constant time. The checks are split
 * in two because the daemon must look the partner (and its secret) up in between.
 *
 * Ownership: every out-parameter is the caller's; strings in the parsed bodies are copies,
 * freed by the matching _clear function (which accepts a cleared or zeroed struct).
 */
#ifndef GW_PARTNERS_PARSE_H
#define GW_PARTNERS_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config;

#define GW_PARTNER_WINDOW_S 300  /* accepted clock difference, either way */
#define GW_PARTNER_KEY_ID_MAX 64 /* buffer size: at most 63 characters */
#define GW_PARTNER_TS_MAX 20
#define GW_PARTNER_SIG_BYTES 32 /* HMAC-SHA256 */
#define GW_PARTNER_MAX_EXTERNAL_ID 100
#define GW_PARTNER_MAX_TITLE 100   /* characters (code points) */
#define GW_PARTNER_MAX_CONTACT 100 /* characters (code points) */

/* The three signature headers, checked for form and time. */
struct gw_partner_sig {
    char key_id[GW_PARTNER_KEY_ID_MAX];
    char ts[GW_PARTNER_TS_MAX + 1]; /* as sent: it is what was signed */
    int64_t t;                      /* its value */
    uint8_t sig[GW_PARTNER_SIG_BYTES];
};

/*
 * Checks the headers (any may be NULL: missing) in the daemon's order: key id, timestamp,
 * window, signature format. Returns 0 with *h filled, or -1 with *why set to a static English
 * reason for the log only ("no X-Passerelle-Key", "malformed timestamp", "timestamp too old",
 * …): the partner must get the same 401 whatever failed. *h is always written: on -1,
 * h->key_id holds the key id when that header itself was well-formed (for the log), else "".
 */
int gw_partners_sig_parse(const char *key, const char *ts, const char *sig, int64_t now,
                          struct gw_partner_sig *h, const char **why)
    __attribute__((warn_unused_result));

/* 1 when h->sig is HMAC-SHA256(secret, h->ts "." body) (constant-time compare), else 0. */
int gw_partners_sig_verify(const struct gw_partner_sig *h, const char *secret, size_t secret_len,
                           const char *body, size_t len) __attribute__((warn_unused_result));

/* Both of the above: 0 when the request is signed with secret and in time, else -1 with
 * *why ("wrong signature" when only the HMAC differs). */
int gw_partners_sig_check(const char *key, const char *ts, const char *sig, const char *body,
                          size_t len, const char *secret, size_t secret_len, int64_t now,
                          const char **why) __attribute__((warn_unused_result));

/* 1 when s is a valid external_id: 1..100 of letters, digits and . _ ~ : - */
int gw_partners_external_id_ok(const char *s);

/* A refusal of a body: HTTP status (400, 403, 422), code (static) and message. The message
 * is always valid UTF-8: a byte that is not (a long message cut inside a character, jansson
 * quoting part of one in a syntax error) becomes '?'. */
struct gw_partner_verdict {
    int status;
    const char *code;
    char msg[400];
};

/* A validated alert body. */
struct gw_partner_alert {
    char topic[128];     /* lower-cased; one of the partner's topics */
    char *text;          /* as it will be sent (maybe transliterated) */
    char expires_at[32]; /* normalised RFC 3339 ("…Z"), or "" when absent */
    int urgent;
};

/* A validated job body (every field required). */
struct gw_partner_job {
    char external_id[GW_PARTNER_MAX_EXTERNAL_ID + 1];
    char *title, *text, *contact; /* text as it will be sent */
    char category[128];           /* lower-cased */
    char expires_at[32];          /* normalised RFC 3339 ("…Z") */
};

/*
 * Parse and validate a body of POST /api/v1/alerts: {"topic","text","expires_at"?,"urgent"?}.
 * topics is the partner's JSON array of allowed topics (lower-case strings; borrowed);
 * now is the wall clock in Unix seconds (expires_at must be after it, within 400 days).
 * Returns 0 with *a filled (free with gw_partner_alert_clear), or the status with *v set and
 * *a cleared.
 */
int gw_partners_alert_parse(const char *body, size_t len, const json_t *topics,
                            const struct gw_config *cfg, int64_t now, struct gw_partner_alert *a,
                            struct gw_partner_verdict *v) __attribute__((warn_unused_result));
void gw_partner_alert_clear(struct gw_partner_alert *a);

/* The same for POST /api/v1/jobs: {"external_id","title","text","category","contact",
 * "expires_at"}. Free with gw_partner_job_clear. */
int gw_partners_job_parse(const char *body, size_t len, const struct gw_config *cfg, int64_t now,
                          struct gw_partner_job *j, struct gw_partner_verdict *v)
    __attribute__((warn_unused_result));
void gw_partner_job_clear(struct gw_partner_job *j);

#endif
