/* libFuzzer target: partner webhooks (gatewayd/gw_partners_parse.c) — the signature headers and
 * the alert and job bodies, with the real text encoder behind them.
 *
 * Input: "key\ntimestamp\nsignature\nsecret\nbody" (a missing line is a missing header; the
 * body is the rest, any bytes). Checks, besides memory safety:
 *   - a request the check accepts is in time, well-formed, and carries the HMAC a plain
 *     libsodium computation gives; a refusal always says why (for the log);
 *   - a request signed here with the secret over "timestamp.body", its timestamp anywhere
 *     in the 5-minute window, always verifies; flipping one byte of its body, of its signature
 *     header or of the secret never does (except turning a hex digit a-f into A-F: the hex is
 *     read case-insensitively, so the signature is the same); a timestamp one second outside
 *     the window never does;
 *   - an accepted alert / job satisfies what the database function relies on (lower-case
 *     topic or category, allowed topic, valid external_id, bounded title and contact, a
 *     future expires_at within 400 days, a text within the segment limit); a refusal has a
 *     400/403/422 status, a known code and a non-empty message that is valid UTF-8 (it goes
 *     into a JSON answer: jansson refuses anything else, and the answer would become a 500).
 */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_partners_parse.h"
#include "gw_util.h"
#include "prov_text.h"

#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_webhook: invariant failed at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct gw_config *cfg;
static json_t *topics;

static const char *const whys[] = {
    "no X-Passerelle-Key",       "malformed key id",    "no X-Passerelle-Timestamp",
    "malformed timestamp",       "timestamp too old",   "timestamp in the future",
    "no X-Passerelle-Signature", "malformed signature", "wrong signature"};
static const char *const codes[] = {"malformed_json",     "unknown_field",       "missing_field",
                                    "bad_field_type",     "empty_field",         "unknown_topic",
                                    "topic_not_allowed",  "invalid_text",        "text_too_long",
                                    "invalid_expires_at", "invalid_external_id", "title_too_long",
                                    "contact_too_long",   "unknown_category"};

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, list[i]))
            return 1;
    return 0;
}

static int utf8_valid(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

static size_t code_points(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((uint8_t)*s & 0xC0) != 0x80;
    return n;
}

static int has_upper(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return 1;
    return 0;
}

static void hmac_hex(const char *secret, size_t slen, const char *ts, const char *body, size_t len,
                     char hex[65])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)secret, slen);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, 65, mac, sizeof mac);
}

static void check_text(const char *t)
{
    struct prov_text_info ti;
    CHECK(t && prov_text_analyse(t, strlen(t), &ti) == 0);
    CHECK(ti.segments >= 1 && ti.segments <= cfg->max_segments);
}

static void check_expires(const char *s)
{
    int64_t t;
    CHECK(gw_parse_rfc3339(s, &t) == GW_OK);
    CHECK(t > NOW && t <= NOW + 400LL * 86400);
    CHECK(s[strlen(s) - 1] == 'Z');
}

static void check_refusal(int st, const struct gw_partner_verdict *v)
{
    CHECK(st == 400 || st == 403 || st == 422);
    CHECK(v->status == st);
    CHECK(in_list(v->code, codes, sizeof codes / sizeof codes[0]));
    CHECK(v->msg[0] && utf8_valid(v->msg));
}

static void bodies(const char *body, size_t len)
{
    struct gw_partner_verdict v;
    struct gw_partner_alert a;
    int st = gw_partners_alert_parse(body, len, topics, cfg, NOW, &a, &v);
    if (st == 0) {
        CHECK(!has_upper(a.topic));
        int allowed = 0;
        for (size_t i = 0; i < json_array_size(topics); i++)
            allowed |= !strcmp(json_string_value(json_array_get(topics, i)), a.topic);
        CHECK(allowed);
        check_text(a.text);
        if (a.expires_at[0])
            check_expires(a.expires_at);
        CHECK(a.urgent == 0 || a.urgent == 1);
        gw_partner_alert_clear(&a);
    } else {
        check_refusal(st, &v);
        CHECK(!a.text);
    }
    struct gw_partner_job j;
    st = gw_partners_job_parse(body, len, cfg, NOW, &j, &v);
    if (st == 0) {
        CHECK(gw_partners_external_id_ok(j.external_id));
        CHECK(j.title && utf8_valid(j.title) && code_points(j.title) <= GW_PARTNER_MAX_TITLE);
        CHECK(j.contact && utf8_valid(j.contact) &&
              code_points(j.contact) <= GW_PARTNER_MAX_CONTACT);
        CHECK(j.category[0] && !has_upper(j.category) && utf8_valid(j.category));
        check_text(j.text);
        check_expires(j.expires_at);
        gw_partner_job_clear(&j);
    } else {
        check_refusal(st, &v);
        CHECK(st != 403 && !j.title && !j.text && !j.contact);
    }
}

/* The next line of [*p, end) as a new C string (NULL when there is none left). */
static char *line(const uint8_t **p, const uint8_t *end)
{
    if (*p >= end)
        return NULL;
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl)
        return NULL;
    char *s = strndup((const char *)*p, (size_t)(nl - *p));
    if (!s)
        abort();
    *p = nl + 1;
    return s;
}

static int in_list_why(const char *why)
{
    return in_list(why, whys, sizeof whys / sizeof whys[0]);
}

static void signatures(const char *key, const char *ts, const char *sig, const char *secret,
                       size_t slen, const char *body, size_t len, uint32_t h)
{
    /* whatever came in */
    const char *why = NULL;
    struct gw_partner_sig hs;
    int pr = gw_partners_sig_parse(key, ts, sig, NOW, &hs, &why);
    CHECK(pr == 0 || in_list_why(why));
    if (pr != 0)
        CHECK(!hs.key_id[0] || (key && !strcmp(hs.key_id, key)));
    why = NULL;
    int rc = gw_partners_sig_check(key, ts, sig, body, len, secret, slen, NOW, &why);
    CHECK(rc == 0 || in_list_why(why));
    CHECK(rc != 0 || pr == 0);
    if (rc == 0) {
        CHECK(!strcmp(hs.key_id, key) && !strcmp(hs.ts, ts));
        CHECK(hs.t >= NOW - GW_PARTNER_WINDOW_S && hs.t <= NOW + GW_PARTNER_WINDOW_S);
        char want[65], got[65];
        hmac_hex(secret, slen, ts, body, len, want);
        CHECK(strlen(sig) == 67 && !strncmp(sig, "v1=", 3));
        for (int i = 0; i < 64; i++)
            got[i] =
                (char)((sig[3 + i] >= 'A' && sig[3 + i] <= 'F') ? sig[3 + i] + 32 : sig[3 + i]);
        got[64] = '\0';
        CHECK(!strcmp(want, got));
    }

    /* signed here, anywhere in the window */
    int delta = (int)(h % (2 * GW_PARTNER_WINDOW_S + 1)) - GW_PARTNER_WINDOW_S;
    int key_ok = gw_partners_sig_parse(key, NULL, NULL, NOW, &hs, &why) != 0 &&
                 !strcmp(why, "no X-Passerelle-Timestamp");
    const char *k = key_ok ? key : "partner-1";
    char ts2[24], sig2[68], hex[65];
    snprintf(ts2, sizeof ts2, "%lld", NOW + delta);
    hmac_hex(secret, slen, ts2, body, len, hex);
    snprintf(sig2, sizeof sig2, "v1=%s", hex);
    rc = gw_partners_sig_check(k, ts2, sig2, body, len, secret, slen, NOW, &why);
    CHECK(rc == 0);

    /* one byte of the body flipped */
    if (len > 0) {
        char *b = malloc(len);
        if (!b)
            abort();
        memcpy(b, body, len);
        b[(h >> 10) % len] ^= (char)(1 + (h >> 20) % 255);
        CHECK(gw_partners_sig_check(k, ts2, sig2, b, len, secret, slen, NOW, &why) != 0);
        CHECK(!strcmp(why, "wrong signature"));
        free(b);
    }
    /* one byte of the signature header flipped */
    {
        char s2[68];
        memcpy(s2, sig2, sizeof s2);
        size_t pos = (h >> 8) % 67;
        char orig = s2[pos];
        s2[pos] ^= (char)(1 + (h >> 16) % 255);
        int same = pos >= 3 && orig >= 'a' && orig <= 'f' && s2[pos] == orig - 32;
        int r2 = gw_partners_sig_check(k, ts2, s2, body, len, secret, slen, NOW, &why);
        CHECK(same ? r2 == 0 : r2 != 0);
    }
    /* one byte of the secret flipped */
    if (slen > 0) {
        char *s = malloc(slen);
        if (!s)
            abort();
        memcpy(s, secret, slen);
        s[(h >> 12) % slen] ^= (char)(1 + (h >> 24) % 255);
        CHECK(gw_partners_sig_check(k, ts2, sig2, body, len, s, slen, NOW, &why) != 0);
        free(s);
    }
    /* one second outside the window, either way (correctly signed) */
    for (int side = -1; side <= 1; side += 2) {
        snprintf(ts2, sizeof ts2, "%lld", NOW + side * (GW_PARTNER_WINDOW_S + 1));
        hmac_hex(secret, slen, ts2, body, len, hex);
        snprintf(sig2, sizeof sig2, "v1=%s", hex);
        CHECK(gw_partners_sig_check(k, ts2, sig2, body, len, secret, slen, NOW, &why) != 0);
        CHECK(!strcmp(why, side < 0 ? "timestamp too old" : "timestamp in the future"));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        char err[256];
        if (sodium_init() < 0 ||
            gw_config_parse("[route sim]\ndriver = sim\n", &cfg, err, sizeof err) != 0)
            abort();
        topics = json_pack("[s,s,s]", "sortie", "meteo", "fermeture-mairie");
    }
    uint32_t h = 2166136261u; /* FNV-1a of the input: where to flip, which timestamp */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;

    const uint8_t *p = data, *end = data + size;
    char *key = line(&p, end), *ts = key ? line(&p, end) : NULL, *sig = ts ? line(&p, end) : NULL;
    char *secret_line = sig ? line(&p, end) : NULL;
    size_t slen = secret_line ? strlen(secret_line) : 0;
    size_t len = (size_t)(end - p);
    char *body = malloc(len ? len : 1); /* exactly the body: overreads show */
    if (!body)
        abort();
    memcpy(body, p, len);

    signatures(key, ts, sig, secret_line ? secret_line : "", slen, body, len, h);
    bodies(body, len);

    free(body);
    free(key);
    free(ts);
    free(sig);
    free(secret_line);
    return 0;
}
