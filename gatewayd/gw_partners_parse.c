/* gw_partners_parse — see gw_partners_parse.h. */
#include "gw_partners_parse.h"
#include "gw_config.h"
#include "gw_send.h"
#include "gw_util.h"
#include "prov_text.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FUTURE_S (400LL * 86400)

/* ---------------------------------------------------------------- signature */

static int header_ok(const char *s, size_t max, const char *allowed_extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(allowed_extra, s[i])))
            return 0;
    return 1;
}

int gw_partners_sig_parse(const char *key, const char *ts, const char *sig, int64_t now,
                          struct gw_partner_sig *h, const char **why)
{
    memset(h, 0, sizeof *h);
    if (!header_ok(key, GW_PARTNER_KEY_ID_MAX - 1, "_-")) {
        *why = key ? "malformed key id" : "no X-Passerelle-Key";
        return -1;
    }
    snprintf(h->key_id, sizeof h->key_id, "%s", key);
    int64_t t;
    if (!header_ok(ts, GW_PARTNER_TS_MAX, "") || gw_parse_i64(ts, 0, INT64_MAX / 2, &t) != GW_OK) {
        *why = ts ? "malformed timestamp" : "no X-Passerelle-Timestamp";
        return -1;
    }
    snprintf(h->ts, sizeof h->ts, "%s", ts);
    h->t = t;
    if (t < now - GW_PARTNER_WINDOW_S || t > now + GW_PARTNER_WINDOW_S) {
        *why = t < now ? "timestamp too old" : "timestamp in the future";
        return -1;
    }
    size_t bin_len = 0;
    if (!sig || strncmp(sig, "v1=", 3) != 0 || strlen(sig + 3) != 2 * sizeof h->sig ||
        sodium_hex2bin(h->sig, sizeof h->sig, sig + 3, 2 * sizeof h->sig, NULL, &bin_len, NULL) !=
            0 ||
        bin_len != sizeof h->sig) {
        *why = sig ? "malformed signature" : "no X-Passerelle-Signature";
        return -1;
    }
    return 0;
}

int gw_partners_sig_verify(const struct gw_partner_sig *h, const char *secret, size_t secret_len,
                           const char *body, size_t len)
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)secret, secret_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)h->ts, strlen(h->ts));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    int ok = sodium_memcmp(mac, h->sig, sizeof mac) == 0;
    sodium_memzero(&st, sizeof st);
    return ok;
}

int gw_partners_sig_check(const char *key, const char *ts, const char *sig, const char *body,
                          size_t len, const char *secret, size_t secret_len, int64_t now,
                          const char **why)
{
    struct gw_partner_sig h;
    if (gw_partners_sig_parse(key, ts, sig, now, &h, why) != 0)
        return -1;
    if (!gw_partners_sig_verify(&h, secret, secret_len, body, len)) {
        *why = "wrong signature";
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- bodies */

/* Characters (code points) of valid UTF-8 (jansson only hands out valid UTF-8). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((uint8_t)*s & 0xC0) != 0x80;
    return n;
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

static void ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

int gw_partners_external_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GW_PARTNER_MAX_EXTERNAL_ID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == ':'))
            return 0;
    }
    return 1;
}

/* A refusal message goes into a JSON answer, and jansson refuses invalid UTF-8 (the answer
 * would become a 500). Two things put some there (both found by fuzz_webhook): a message
 * cut short inside a character (a long unknown field name), and jansson's own syntax errors,
 * which quote the input byte by byte ("invalid escape near '"\xc3'"): gw_utf8_repair. */
#define utf8_repair gw_utf8_repair

static int refuse(struct gw_partner_verdict *v, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(struct gw_partner_verdict *v, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    v->status = status;
    v->code = code;
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    utf8_repair(v->msg);
    return status;
}

/* Only the listed fields; the `required` ones present and of type `want` ('s' string, 'b'
 * boolean); optional ones may also be null. */
struct field {
    const char *name;
    char want;
    int required;
};

static int check_fields(json_t *root, const struct field *f, size_t n, struct gw_partner_verdict *v)
{
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        size_t i = 0;
        while (i < n && strcmp(key, f[i].name))
            i++;
        if (i == n) {
            char list[200] = "";
            for (size_t k = 0; k < n; k++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", k ? ", " : "", f[k].name);
            }
            return refuse(v, 422, "unknown_field", "unknown field '%s' (expected %s)", key, list);
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_object_get(root, f[i].name);
        if ((!x || json_is_null(x)) && f[i].required)
            return refuse(v, 422, "missing_field", "the field '%s' is required", f[i].name);
        if (!x || json_is_null(x))
            continue;
        if (f[i].want == 's' && !json_is_string(x))
            return refuse(v, 422, "bad_field_type", "the field '%s' must be a string", f[i].name);
        if (f[i].want == 'b' && !json_is_boolean(x))
            return refuse(v, 422, "bad_field_type", "the field '%s' must be true or false",
                          f[i].name);
        if (f[i].want == 's' && blank(json_string_value(x)))
            return refuse(v, 422, "empty_field", "the field '%s' is empty", f[i].name);
    }
    return 0;
}

/* text: within the send limits (as it will be sent: maybe transliterated). Returns the text
 * to store (caller frees) or NULL with *v set. */
static char *check_text(const struct gw_config *cfg, const char *field, const char *t,
                        struct gw_partner_verdict *v)
{
    struct prov_text_info info;
    char *s = gw_send_text(cfg, t, strlen(t), &info);
    if (!s) {
        refuse(v, 422, "invalid_text", "the field '%s' is not valid UTF-8", field);
        return NULL;
    }
    if (info.segments > cfg->max_segments) {
        free(s);
        refuse(v, 422, "text_too_long",
               "the field '%s' needs %d SMS segments; the limit is %d (%d GSM-7 characters, or "
               "%d when it needs UCS-2)",
               field, info.segments, cfg->max_segments,
               cfg->max_segments == 1 ? 160 : 153 * cfg->max_segments,
               cfg->max_segments == 1 ? 70 : 67 * cfg->max_segments);
        return NULL;
    }
    return s;
}

/* expires_at: RFC 3339, in the future, at most 400 days away; normalised into out. */
static int check_expires(const json_t *x, int64_t now, char *out, size_t outlen,
                         struct gw_partner_verdict *v)
{
    int64_t t;
    if (gw_parse_rfc3339(json_string_value(x), &t) != GW_OK)
        return refuse(v, 422, "invalid_expires_at",
                      "expires_at must be an RFC 3339 time such as 2026-12-01T18:00:00+01:00");
    if (t <= now)
        return refuse(v, 422, "invalid_expires_at", "expires_at is in the past");
    if (t > now + MAX_FUTURE_S)
        return refuse(v, 422, "invalid_expires_at", "expires_at is more than 400 days away");
    gw_format_rfc3339(t, out, outlen);
    return 0;
}

/* The body as a JSON object (duplicate keys refused), or NULL with *v set (400). */
static json_t *load_object(const char *body, size_t len, struct gw_partner_verdict *v)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        refuse(v, 400, "malformed_json", "malformed JSON at line %d, column %d: %s", jerr.line,
               jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        refuse(v, 400, "malformed_json", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

static int has_topic(const json_t *topics, const char *topic)
{
    for (size_t i = 0; i < json_array_size(topics); i++) {
        const json_t *t = json_array_get(topics, i);
        if (json_is_string(t) && !strcmp(json_string_value(t), topic))
            return 1;
    }
    return 0;
}

static int alert_fill(json_t *root, const json_t *topics, const struct gw_config *cfg, int64_t now,
                      struct gw_partner_alert *a, struct gw_partner_verdict *v)
{
    static const struct field fields[] = {
        {"topic", 's', 1}, {"text", 's', 1}, {"expires_at", 's', 0}, {"urgent", 'b', 0}};
    int st = check_fields(root, fields, sizeof fields / sizeof fields[0], v);
    if (st)
        return st;
    const char *t = json_string_value(json_object_get(root, "topic"));
    if (strlen(t) >= sizeof a->topic)
        return refuse(v, 422, "unknown_topic", "the centre has no alert topic of that name");
    snprintf(a->topic, sizeof a->topic, "%s", t);
    ascii_lower(a->topic);
    if (!has_topic(topics, a->topic)) {
        char *allowed = json_dumps(topics, JSON_COMPACT);
        refuse(v, 403, "topic_not_allowed",
               "this partner may not post to the topic '%s' (allowed: %s)", a->topic,
               allowed ? allowed : "[]");
        free(allowed);
        return 403;
    }
    a->text = check_text(cfg, "text", json_string_value(json_object_get(root, "text")), v);
    if (!a->text)
        return v->status;
    const json_t *x = json_object_get(root, "expires_at");
    if (x && !json_is_null(x)) {
        st = check_expires(x, now, a->expires_at, sizeof a->expires_at, v);
        if (st)
            return st;
    }
    a->urgent = json_is_true(json_object_get(root, "urgent"));
    return 0;
}

int gw_partners_alert_parse(const char *body, size_t len, const json_t *topics,
                            const struct gw_config *cfg, int64_t now, struct gw_partner_alert *a,
                            struct gw_partner_verdict *v)
{
    memset(a, 0, sizeof *a);
    json_t *root = load_object(body, len, v);
    if (!root)
        return v->status;
    int st = alert_fill(root, topics, cfg, now, a, v);
    json_decref(root);
    if (st)
        gw_partner_alert_clear(a);
    return st;
}

void gw_partner_alert_clear(struct gw_partner_alert *a)
{
    free(a->text);
    memset(a, 0, sizeof *a);
}

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static int job_fill(json_t *root, const struct gw_config *cfg, int64_t now,
                    struct gw_partner_job *j, struct gw_partner_verdict *v)
{
    static const struct field fields[] = {{"external_id", 's', 1}, {"title", 's', 1},
                                          {"text", 's', 1},        {"category", 's', 1},
                                          {"contact", 's', 1},     {"expires_at", 's', 1}};
    int st = check_fields(root, fields, sizeof fields / sizeof fields[0], v);
    if (st)
        return st;
    const char *ext = json_string_value(json_object_get(root, "external_id"));
    const char *title = json_string_value(json_object_get(root, "title"));
    const char *contact = json_string_value(json_object_get(root, "contact"));
    if (!gw_partners_external_id_ok(ext))
        return refuse(v, 422, "invalid_external_id",
                      "external_id must be 1 to %d characters among letters, digits and . _ ~ : -",
                      GW_PARTNER_MAX_EXTERNAL_ID);
    if (utf8_chars(title) > GW_PARTNER_MAX_TITLE)
        return refuse(v, 422, "title_too_long", "the title is %zu characters long; the limit is %d",
                      utf8_chars(title), GW_PARTNER_MAX_TITLE);
    if (utf8_chars(contact) > GW_PARTNER_MAX_CONTACT)
        return refuse(v, 422, "contact_too_long",
                      "the contact is %zu characters long; the limit is %d", utf8_chars(contact),
                      GW_PARTNER_MAX_CONTACT);
    const char *cat = json_string_value(json_object_get(root, "category"));
    if (strlen(cat) >= sizeof j->category)
        return refuse(v, 422, "unknown_category", "the centre has no job category of that name");
    snprintf(j->category, sizeof j->category, "%s", cat);
    ascii_lower(j->category);
    st = check_expires(json_object_get(root, "expires_at"), now, j->expires_at,
                       sizeof j->expires_at, v);
    if (st)
        return st;
    j->text = check_text(cfg, "text", json_string_value(json_object_get(root, "text")), v);
    if (!j->text)
        return v->status;
    snprintf(j->external_id, sizeof j->external_id, "%s", ext);
    j->title = dup_or_die(title);
    j->contact = dup_or_die(contact);
    return 0;
}

int gw_partners_job_parse(const char *body, size_t len, const struct gw_config *cfg, int64_t now,
                          struct gw_partner_job *j, struct gw_partner_verdict *v)
{
    memset(j, 0, sizeof *j);
    json_t *root = load_object(body, len, v);
    if (!root)
        return v->status;
    int st = job_fill(root, cfg, now, j, v);
    json_decref(root);
    if (st)
        gw_partner_job_clear(j);
    return st;
}

void gw_partner_job_clear(struct gw_partner_job *j)
{
    free(j->title);
    free(j->text);
    free(j->contact);
    memset(j, 0, sizeof *j);
}
