/* gw_send — see gw_send.h. */
#include "gw_send.h"
#include "gw_config.h"
#include "gw_util.h"
#include "prov_phone.h"
#include "prov_text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDEMPOTENCY_KEY 200
#define MAX_FUTURE_SECONDS (400LL * 86400)

#define FAIL(st, cd, ...)                                                                          \
    do {                                                                                           \
        status = (st);                                                                             \
        *code = (cd);                                                                              \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        goto out;                                                                                  \
    } while (0)

int gw_send_parse(const char *body, size_t len, const struct gw_config *cfg,
                      gw_phone_fn normalize, void *narg, struct gw_send_req *r, const char **code,
                      char *msg, size_t msglen)
{
    int status = 0;
    memset(r, 0, sizeof *r);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        *code = "malformed_json";
        snprintf(msg, msglen, "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        gw_utf8_repair(msg); /* jansson quotes the input byte by byte */
        return 400;
    }
    if (!json_is_object(root)) {
        FAIL(400, "malformed_json", "the body must be a JSON object");
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "to") && strcmp(key, "text") && strcmp(key, "send_at") &&
            strcmp(key, "idempotency_key")) {
            FAIL(400, "unknown_field",
                 "unknown field '%s' (expected to, text, send_at, idempotency_key)", key);
        }
    }
    json_t *to = json_object_get(root, "to");
    json_t *text = json_object_get(root, "text");
    json_t *at = json_object_get(root, "send_at");
    json_t *idem = json_object_get(root, "idempotency_key");
    if (!to || !text) {
        FAIL(400, "missing_field", "the field '%s' is required", !to ? "to" : "text");
    }
    if (!json_is_string(to) || !json_is_string(text) ||
        (at && !json_is_null(at) && !json_is_string(at)) ||
        (idem && !json_is_null(idem) && !json_is_string(idem))) {
        FAIL(400, "bad_field_type", "to, text, send_at and idempotency_key must be strings");
    }
    int prc = normalize(narg, json_string_value(to), r->phone, sizeof r->phone);
    if (prc != PROV_PHONE_OK) {
        FAIL(422, "invalid_phone", "'to' is not a mobile number we can text: %s",
             prov_phone_strerror(prc));
    }
    size_t tlen = json_string_length(text);
    const char *t = json_string_value(text);
    int blank = 1;
    for (size_t i = 0; i < tlen && blank; i++)
        blank = t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r';
    if (blank) {
        FAIL(422, "empty_text", "the text is empty");
    }
    if (memchr(t, '\0', tlen)) {
        FAIL(422, "invalid_text", "the text contains a NUL character");
    }
    struct prov_text_info info;
    r->text = gw_send_text(cfg, t, tlen, &info);
    if (!r->text) {
        FAIL(422, "invalid_text", "the text is not valid UTF-8");
    }
    if (info.segments > cfg->max_segments) {
        FAIL(422, "text_too_long",
             "the text needs %d SMS segments; the limit is %d (%d GSM-7 characters, or "
             "%d when it needs UCS-2)",
             info.segments, cfg->max_segments,
             cfg->max_segments == 1 ? 160 : 153 * cfg->max_segments,
             cfg->max_segments == 1 ? 70 : 67 * cfg->max_segments);
    }
    r->segments = info.segments;
    r->encoding = prov_encoding_name(info.encoding);
    r->send_at = 0;
    if (at && json_is_string(at)) {
        int64_t ts;
        if (gw_parse_rfc3339(json_string_value(at), &ts) != GW_OK) {
            FAIL(422, "invalid_send_at",
                 "send_at must be an RFC 3339 time such as 2026-12-01T10:00:00+01:00");
        }
        if (ts > gw_wall_ms() / 1000 + MAX_FUTURE_SECONDS) {
            FAIL(422, "invalid_send_at", "send_at is more than 400 days away");
        }
        r->send_at = ts;
    }
    if (idem && json_is_string(idem)) {
        size_t n = json_string_length(idem);
        if (n == 0 || n > MAX_IDEMPOTENCY_KEY) {
            FAIL(422, "invalid_idempotency_key", "idempotency_key must be 1 to %d characters",
                 MAX_IDEMPOTENCY_KEY);
        }
        r->idem = strndup(json_string_value(idem), n);
        if (!r->idem)
            abort();
    }
out:
    json_decref(root);
    if (status) {
        gw_send_req_clear(r);
        gw_utf8_repair(msg); /* a message cut short inside a character */
    }
    return status;
}
#undef FAIL

void gw_send_req_clear(struct gw_send_req *r)
{
    free(r->text);
    free(r->idem);
    r->text = r->idem = NULL;
}

char *gw_send_text(const struct gw_config *cfg, const char *t, size_t tlen,
                   struct prov_text_info *info)
{
    if (prov_text_analyse(t, tlen, info) != 0)
        return NULL;
    /* Transliterate (ê → e, « » → ") only when it makes the whole text GSM-7 without costing
     * more segments: a text that must stay UCS-2 (an emoji, Arabic) is kept as written. */
    if (cfg->transliterate && info->encoding == PROV_ENC_UCS2) {
        size_t nlen;
        char *tr = prov_text_transliterate(t, tlen, &nlen);
        struct prov_text_info ti;
        if (tr && prov_text_analyse(tr, nlen, &ti) == 0 && ti.encoding == PROV_ENC_GSM7 &&
            ti.segments <= info->segments) {
            *info = ti;
            return tr;
        }
        free(tr);
    }
    char *copy = strndup(t, tlen);
    if (!copy)
        abort();
    return copy;
}
