/*
 * prov_isendpro_parse.c — parser for iSendPro HTTP API answers.
 *
 * Why this file is so lenient: iSendPro publishes no schema for its answers, and its own
 * official examples (OpenAPI v1.1.1, PHP/Java SDKs) disagree with each other. Everything below
 * comes from shared/reference/isendpro.md, "Responses":
 *
 *   success   HTTP 200  {"etat":{"etat":[{"code":0,"tel":"33612345678","message":"…",
 *                                         "smslong":"2"}, …]}}
 *   error     HTTP 400  {"etat":{"etat":[{"code":"…","message":"…"}]}}
 *   variants  etat.etat is a single object instead of an array   {"etat":{"etat":{…}}}
 *             the inner level is dropped                         {"etat":{"code":"0",…}}
 *             "code" is an integer or a string ("0", "11", " 21 ")
 *             "tel" is a string or a JSON number
 *             an element WITHOUT tel is a general error (it concerns the whole request);
 *             WITH tel it is that number's outcome; one answer can mix both.
 *   tolerated (not in the reference, harmless): {"etat":[…]} (the array one level up), a
 *             UTF-8 byte-order mark before the JSON, an outer "code"/"tel" next to an inner
 *             "etat" (kept as one more element so an error is never dropped).
 *
 * Classification: code 0 = sent, 11 = blacklisted (opted out), 21 = number not assigned, any
 * other value = permanent error. A missing or unparseable code is -1 (OTHER_ERROR): an element
 * is only ever "sent" when it says 0 in so many words ("0", " 0 ", 0, 0.0).
 *
 * Temporary failures come from the transport, not the body: HTTP 5xx, 429 and 0 (no answer)
 * set `temporary` whatever the body holds (an HTML error page on a 500 is normal). A body that
 * cannot be understood on any other status is a permanent failure of every number — with a
 * 200 the SMS may have gone out, and failing permanently never sends it twice.
 *
 * Robustness: bodies are length-delimited (never read past len), strings are copied into
 * fixed arrays with truncation on a UTF-8 boundary and control characters replaced, numbers
 * are converted without strtod/locale and with overflow checks.
 */
#include "prov_isendpro_parse.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ----------------------------------------------------------------------- */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Trims ASCII whitespace around [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_space((unsigned char)(*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((unsigned char)(*s)[*len - 1])) {
        (*len)--;
    }
}

/* Copies len bytes of valid UTF-8 into dst[cap] (cap >= 1): truncates on a character boundary,
 * replaces control characters (and NUL) by spaces, always NUL-terminates. */
static void copy_text(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    size_t i;

    if (n < len) {
        while (n > 0 && ((unsigned char)src[n] & 0xC0u) == 0x80u) {
            n--; /* src[n] would start the cut: back up to the lead byte of that character */
        }
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20u || c == 0x7Fu) ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

/* Strict base-10 integer: optional whitespace, optional '-', 1..18 digits, whitespace. No '+',
 * no "0x", no trailing text. Returns 0 and *out, or -1. */
static int parse_int_text(const char *s, size_t len, long long *out)
{
    long long v = 0;
    size_t i = 0, digits = 0;
    int neg = 0;

    trim(&s, &len);
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || ++digits > 18) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (digits == 0) {
        return -1;
    }
    *out = neg ? -v : v;
    return 0;
}

/* Decimal without exponent, '.' or ',' as separator, optional '-': "12.34", "12,5", " 7 ", ".5".
 * Locale-independent. Returns 0 and *out, or -1. */
static int parse_decimal_text(const char *s, size_t len, double *out)
{
    double v = 0.0, scale = 1.0;
    size_t i = 0, digits = 0;
    int neg = 0, frac = 0;

    trim(&s, &len);
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < len; i++) {
        char c = s[i];
        if ((c == '.' || c == ',') && !frac) {
            frac = 1;
            continue;
        }
        if (c < '0' || c > '9' || ++digits > 30) {
            return -1;
        }
        if (frac) {
            scale /= 10.0;
            v += (c - '0') * scale;
        } else {
            v = v * 10.0 + (c - '0');
        }
    }
    if (digits == 0 || !isfinite(v)) {
        return -1;
    }
    *out = neg ? -v : v;
    return 0;
}

/* An integer from a JSON integer, an integral real, or a string of digits. */
static int json_to_ll(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = (long long)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < -1e15 || d > 1e15 || (double)(long long)d != d) {
            return -1;
        }
        *out = (long long)d;
        return 0;
    }
    if (json_is_string(v)) {
        return parse_int_text(json_string_value(v), json_string_length(v), out);
    }
    return -1;
}

static enum prov_isp_kind kind_of(int code)
{
    switch (code) {
    case 0:
        return PROV_ISP_SENT;
    case 11:
        return PROV_ISP_BLACKLISTED;
    case 21:
        return PROV_ISP_INVALID_NUMBER;
    default:
        return PROV_ISP_OTHER_ERROR;
    }
}

static void item_init(struct prov_isp_item *it)
{
    memset(it, 0, sizeof *it);
    it->code = -1;
    it->kind = PROV_ISP_OTHER_ERROR;
}

static int is_temporary_status(int status)
{
    return status <= 0 || status == 429 || (status >= 500 && status <= 599);
}

/* ---- one element ------------------------------------------------------------------------- */

static void read_code(const json_t *v, struct prov_isp_item *it)
{
    long long c;

    if (v != NULL && json_to_ll(v, &c) == 0 && c >= INT_MIN && c <= INT_MAX) {
        it->code = (int)c;
    } else {
        it->code = -1; /* absent or unparseable: never "sent" */
    }
    it->kind = kind_of(it->code);
}

/* Fills it->tel; returns 1 when the element names a number. */
static int read_tel(const json_t *v, struct prov_isp_item *it)
{
    it->tel[0] = '\0';
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        trim(&s, &len);
        copy_text(it->tel, sizeof it->tel, s, len);
    } else if (json_is_integer(v)) {
        snprintf(it->tel, sizeof it->tel, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d >= 0 && d < 1e17 && (double)(long long)d == d) {
            snprintf(it->tel, sizeof it->tel, "%lld", (long long)d);
        }
    }
    return it->tel[0] != '\0';
}

static void read_message(const json_t *v, struct prov_isp_item *it)
{
    it->message[0] = '\0';
    if (json_is_string(v)) {
        copy_text(it->message, sizeof it->message, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        snprintf(it->message, sizeof it->message, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
}

static void read_parts(const json_t *elem, struct prov_isp_item *it)
{
    const json_t *v = json_object_get(elem, "smslong");
    long long p;

    if (v == NULL) {
        v = json_object_get(elem, "nb_sms"); /* /comptage */
    }
    it->parts = (v != NULL && json_to_ll(v, &p) == 0 && p >= 0 && p <= INT_MAX) ? (int)p : 0;
}

/* Parses one element object; returns 1 when it carries a tel. */
static int read_element(const json_t *elem, struct prov_isp_item *it)
{
    item_init(it);
    read_code(json_object_get(elem, "code"), it);
    read_message(json_object_get(elem, "message"), it);
    read_parts(elem, it);
    return read_tel(json_object_get(elem, "tel"), it);
}

/* ---- the answer -------------------------------------------------------------------------- */

static void set_error(struct prov_isp_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Formats r->error and keeps it printable ASCII (jansson quotes raw input bytes in its text). */
static void set_error(struct prov_isp_result *r, const char *fmt, ...)
{
    va_list ap;
    size_t i;

    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    for (i = 0; i < sizeof r->error && r->error[i] != '\0'; i++) {
        unsigned char c = (unsigned char)r->error[i];
        if (c < 0x20u || c >= 0x7Fu) {
            r->error[i] = '?';
        }
    }
    if (r->error[0] == '\0') {
        snprintf(r->error, sizeof r->error, "unreadable answer");
    }
}

static int has_element_key(const json_t *obj)
{
    return json_object_get(obj, "code") != NULL || json_object_get(obj, "tel") != NULL ||
           json_object_get(obj, "message") != NULL;
}

/* Appends (with a new reference) the result elements of `etat` to `list`. Returns NULL on
 * success or a static text saying what is wrong. */
static const char *collect_elements(json_t *etat, json_t *list)
{
    json_t *inner;
    size_t i;

    if (json_is_array(etat)) {
        inner = etat;
    } else if (json_is_object(etat)) {
        inner = json_object_get(etat, "etat");
        if (inner == NULL) {
            if (!has_element_key(etat)) {
                return "\"etat\" holds no result element";
            }
            return json_array_append(list, etat) == 0 ? NULL : "out of memory";
        }
        if (json_object_get(etat, "code") != NULL || json_object_get(etat, "tel") != NULL) {
            if (json_array_append(list, etat) != 0) {
                return "out of memory";
            }
        }
        if (json_is_object(inner)) {
            return json_array_append(list, inner) == 0 ? NULL : "out of memory";
        }
        if (!json_is_array(inner)) {
            return "\"etat.etat\" is neither an array nor an object";
        }
    } else {
        return "\"etat\" is neither an object nor an array";
    }
    for (i = 0; i < json_array_size(inner); i++) {
        if (json_array_append(list, json_array_get(inner, i)) != 0) {
            return "out of memory";
        }
    }
    return NULL;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* Skips a UTF-8 BOM and reports whether anything but whitespace is left. */
static int skip_bom_has_content(const char **body, size_t *len)
{
    size_t i;

    if (*len >= 3 && memcmp(*body, "\xEF\xBB\xBF", 3) == 0) {
        *body += 3;
        *len -= 3;
    }
    for (i = 0; i < *len; i++) {
        if (!is_space((unsigned char)(*body)[i])) {
            return 1;
        }
    }
    return 0;
}

static void result_reset(struct prov_isp_result *r)
{
    free(r->items);
    r->items = NULL;
    r->n = 0;
    r->general_error = 0;
    r->general_ok = 0;
    item_init(&r->general);
}

int prov_isp_parse(int http_status, const char *body, size_t len, struct prov_isp_result *out)
{
    json_error_t jerr;
    json_t *root = NULL, *etat, *list = NULL;
    const char *why;
    size_t i, count;

    if (out == NULL) {
        return -1;
    }
    memset(out, 0, sizeof *out);
    item_init(&out->general);
    out->http_status = http_status;
    out->temporary = is_temporary_status(http_status);

    if (body == NULL || !skip_bom_has_content(&body, &len)) {
        set_error(out, "empty body (HTTP %d)", http_status);
        return -1;
    }
    root = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        set_error(out, "not JSON (HTTP %d, line %d col %d: %s)", http_status, jerr.line,
                  jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        set_error(out, "JSON is %s, not an object (HTTP %d)", json_type_name(root), http_status);
        goto fail;
    }
    etat = json_object_get(root, "etat");
    if (etat == NULL) {
        set_error(out, "no \"etat\" member (HTTP %d)", http_status);
        goto fail;
    }
    list = json_array();
    if (list == NULL) {
        set_error(out, "out of memory");
        goto fail;
    }
    why = collect_elements(etat, list);
    if (why != NULL) {
        set_error(out, "%s (HTTP %d)", why, http_status);
        goto fail;
    }
    count = json_array_size(list);
    if (count == 0) {
        set_error(out, "no result element (HTTP %d)", http_status);
        goto fail;
    }
    for (i = 0; i < count; i++) {
        if (!json_is_object(json_array_get(list, i))) {
            set_error(out, "result element %zu is %s, not an object (HTTP %d)", i,
                      json_type_name(json_array_get(list, i)), http_status);
            goto fail;
        }
    }
    out->items = calloc(count, sizeof *out->items);
    if (out->items == NULL) {
        set_error(out, "out of memory");
        goto fail;
    }
    for (i = 0; i < count; i++) {
        struct prov_isp_item it;
        if (read_element(json_array_get(list, i), &it)) {
            out->items[out->n++] = it;
        } else if (it.code != 0) {
            if (!out->general_error) {
                out->general = it;
                out->general_error = 1;
            }
        } else {
            out->general_ok++;
        }
    }
    if (out->n == 0) {
        free(out->items);
        out->items = NULL;
    }
    json_decref(list);
    json_decref(root);
    return 0;

fail:
    result_reset(out);
    json_decref(list);
    json_decref(root);
    return -1;
}

void prov_isp_result_free(struct prov_isp_result *r)
{
    if (r != NULL) {
        free(r->items);
        r->items = NULL;
        r->n = 0;
    }
}

/* ---- number matching --------------------------------------------------------------------- */

struct isp_num {
    char d[24]; /* digits only: international without '+', or national without the trunk 0 */
    size_t n;
    int national;
};

/* Returns 0 and fills *out, or -1 when s is not a plausible phone number. */
static int normalise(const char *s, struct isp_num *out)
{
    char raw[24];
    size_t n = 0, i;
    int plus = 0;

    while (is_space((unsigned char)*s)) {
        s++;
    }
    if (*s == '+') {
        plus = 1;
        s++;
    }
    for (; *s != '\0'; s++) {
        if (*s >= '0' && *s <= '9') {
            if (n >= sizeof raw - 1) {
                return -1;
            }
            raw[n++] = *s;
        } else if (!(is_space((unsigned char)*s) || *s == '.' || *s == '-' || *s == '(' ||
                     *s == ')' || *s == '/')) {
            return -1;
        }
    }
    i = 0;
    out->national = 0;
    if (!plus && n >= 2 && raw[0] == '0' && raw[1] == '0') {
        i = 2; /* 00 international prefix */
    } else if (!plus && n >= 1 && raw[0] == '0') {
        i = 1; /* national: drop the trunk 0 */
        out->national = 1;
    }
    if (n - i == 0) {
        return -1;
    }
    out->n = n - i;
    memcpy(out->d, raw + i, out->n);
    out->d[out->n] = '\0';
    return 0;
}

static int same_number(const struct isp_num *a, const struct isp_num *b)
{
    /* Country codes whose numbers iSendPro (French numbering plan) accepts in national form. */
    static const char *const fr_cc[] = {"33", "262", "508", "590", "594", "596"};
    const struct isp_num *nat, *intl;
    size_t k;

    if (a->national == b->national) {
        return a->n == b->n && memcmp(a->d, b->d, a->n) == 0;
    }
    nat = a->national ? a : b;
    intl = a->national ? b : a;
    for (k = 0; k < sizeof fr_cc / sizeof fr_cc[0]; k++) {
        size_t cl = strlen(fr_cc[k]);
        if (intl->n == cl + nat->n && memcmp(intl->d, fr_cc[k], cl) == 0 &&
            memcmp(intl->d + cl, nat->d, nat->n) == 0) {
            return 1;
        }
    }
    return 0;
}

const struct prov_isp_item *prov_isp_find(const struct prov_isp_result *r, const char *e164)
{
    struct isp_num want, have;
    size_t i;

    if (r == NULL || e164 == NULL || r->items == NULL || normalise(e164, &want) != 0) {
        return NULL;
    }
    for (i = 0; i < r->n; i++) {
        const struct prov_isp_item *it = &r->items[i];
        if (strnlen(it->tel, sizeof it->tel) >= sizeof it->tel - 1) {
            continue; /* possibly truncated: never match a guess */
        }
        if (normalise(it->tel, &have) == 0 && same_number(&want, &have)) {
            return it;
        }
    }
    return NULL;
}

/* ---- credit ------------------------------------------------------------------------------ */

/* The object holding "credit": etat itself, etat.etat, or the first such element of an array. */
static const json_t *credit_holder(const json_t *etat)
{
    const json_t *inner;
    size_t i;

    if (json_is_object(etat)) {
        if (json_object_get(etat, "credit") != NULL) {
            return etat;
        }
        inner = json_object_get(etat, "etat");
    } else {
        inner = etat;
    }
    if (json_is_object(inner)) {
        return json_object_get(inner, "credit") != NULL ? inner : NULL;
    }
    for (i = 0; i < json_array_size(inner); i++) { /* 0 when not an array */
        const json_t *e = json_array_get(inner, i);
        if (json_is_object(e) && json_object_get(e, "credit") != NULL) {
            return e;
        }
    }
    return NULL;
}

int prov_isp_parse_credit(const char *body, size_t len, double *euros, long *quantity)
{
    json_t *root;
    const json_t *holder, *c, *q;
    double e;
    long long qv;
    int rc = -1;

    if (euros == NULL || quantity == NULL) {
        return -1;
    }
    *euros = 0.0;
    *quantity = -1;
    if (body == NULL || !skip_bom_has_content(&body, &len)) {
        return -1;
    }
    root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (root == NULL) {
        return -1;
    }
    holder = json_is_object(root) ? credit_holder(json_object_get(root, "etat")) : NULL;
    if (holder == NULL) {
        goto out;
    }
    c = json_object_get(holder, "credit");
    if (json_is_integer(c)) {
        e = (double)json_integer_value(c);
    } else if (json_is_real(c)) {
        e = json_real_value(c);
    } else if (!json_is_string(c) ||
               parse_decimal_text(json_string_value(c), json_string_length(c), &e) != 0) {
        goto out;
    }
    if (!isfinite(e)) {
        goto out;
    }
    q = json_object_get(holder, "quantite");
    *euros = e;
    if (q != NULL && json_to_ll(q, &qv) == 0 && qv >= 0 && qv <= LONG_MAX) {
        *quantity = (long)qv;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
