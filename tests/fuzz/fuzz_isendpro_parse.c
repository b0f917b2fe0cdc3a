/*
 * fuzz_isendpro_parse.c — libFuzzer target for providers/prov_isendpro_parse.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iproviders providers/prov_isendpro_parse.c \
 *         tests/fuzz/fuzz_isendpro_parse.c -ljansson -o fuzz_isendpro_parse \
 *     && ./fuzz_isendpro_parse -max_total_time=60
 *
 * Input: byte 0 picks the HTTP status (high bit set: one of 16 usual statuses; otherwise
 * byte * 5, 0..635), byte 1 picks a wrapper (the rest raw, or spliced into an iSendPro-shaped
 * JSON skeleton so the fuzzer reaches the element code without having to invent {"etat":…}),
 * the remaining bytes are the body. The body is copied into an exact-size heap buffer with no
 * NUL, so reading past `len` is caught by ASan.
 *
 * abort()s when one of these properties breaks:
 *   1. rc is 0 or -1; http_status is echoed; temporary == (status <= 0 || 429 || 5xx).
 *   2. error is NUL-terminated, printable ASCII, and non-empty exactly when rc == -1.
 *   3. rc == -1 leaves no items, no general error, general_ok 0.
 *   4. items == NULL exactly when n == 0; n cannot exceed the body length.
 *   5. every string (tel, message, general's) is NUL-terminated inside its array, valid UTF-8,
 *      without control characters; items have a non-empty tel, the general error an empty one.
 *   6. kind matches code for every item and for the general slot (0/11/21, else OTHER_ERROR),
 *      never TEMPORARY; parts >= 0; the general slot without general_error reads code -1.
 *   7. prov_isp_find on an item's own tel returns an item at or before it (first match), and
 *      finds it whenever that tel is a plain digit string of a sane length (but "0", "00").
 *   8. parsing is deterministic (a second parse gives the same items).
 *   9. credit: rc 0 gives a finite amount and quantity >= -1; rc -1 gives 0 and -1.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov_isendpro_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int usual_status[16] = {0,   200, 400, 500, 429, 503, 401, 403,
                                     404, 204, 301, 502, 599, 600, -1,  201};

static const char *const wrap_pre[] = {
    "",
    "{\"etat\":{\"etat\":[",
    "{\"etat\":{\"etat\":{\"code\":",
    "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":",
    "{\"etat\":{\"credit\":",
    "{\"etat\":",
    "{\"etat\":{\"etat\":[{\"code\":",
    "{\"etat\":{\"code\":\"0\",\"message\":",
};
static const char *const wrap_post[] = {
    "", "]}}", "}}}", "}]}}", "}}", "}", ",\"tel\":\"33612345678\"}]}}", "}}",
};

static int temporary_status(int s)
{
    return s <= 0 || s == 429 || (s >= 500 && s <= 599);
}

static int kind_for(int code)
{
    return code == 0    ? PROV_ISP_SENT
           : code == 11 ? PROV_ISP_BLACKLISTED
           : code == 21 ? PROV_ISP_INVALID_NUMBER
                        : PROV_ISP_OTHER_ERROR;
}

/* NUL inside cap, valid UTF-8 (shortest form, no surrogates), no C0 controls or DEL. */
static void check_text(const char *s, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len, i = 0;

    if (memchr(s, '\0', cap) == NULL) {
        abort();
    }
    len = strlen(s);
    while (i < len) {
        unsigned int c = u[i], cp, need, k;
        if (c < 0x80u) {
            if (c < 0x20u || c == 0x7Fu) {
                abort();
            }
            i++;
            continue;
        }
        if (c >= 0xC2u && c <= 0xDFu) {
            need = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0u && c <= 0xEFu) {
            need = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0u && c <= 0xF4u) {
            need = 3;
            cp = c & 0x07u;
        } else {
            abort();
        }
        if (i + need >= len) {
            abort();
        }
        for (k = 1; k <= need; k++) {
            if ((u[i + k] & 0xC0u) != 0x80u) {
                abort();
            }
            cp = (cp << 6) | (u[i + k] & 0x3Fu);
        }
        if ((need == 2 && cp < 0x800u) || (need == 3 && (cp < 0x10000u || cp > 0x10FFFFu)) ||
            (cp >= 0xD800u && cp <= 0xDFFFu)) {
            abort();
        }
        i += need + 1;
    }
}

static void check_item(const struct prov_isp_item *it)
{
    check_text(it->tel, sizeof it->tel);
    check_text(it->message, sizeof it->message);
    if ((int)it->kind != kind_for(it->code) || it->kind == PROV_ISP_TEMPORARY) {
        abort();
    }
    if (it->parts < 0) {
        abort();
    }
}

static int same_item(const struct prov_isp_item *a, const struct prov_isp_item *b)
{
    return a->code == b->code && a->kind == b->kind && a->parts == b->parts &&
           strcmp(a->tel, b->tel) == 0 && strcmp(a->message, b->message) == 0;
}

static int plain_digits(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 20) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct prov_isp_result r, r2;
    const char *pre, *post;
    size_t len, plen, qlen, i;
    char *body;
    int status, rc, rc2, credit_rc;
    double euros;
    long qty;

    if (size < 2) {
        return 0;
    }
    status = (data[0] & 0x80u) ? usual_status[data[0] & 0x0Fu] : (int)data[0] * 5;
    pre = wrap_pre[data[1] % (sizeof wrap_pre / sizeof wrap_pre[0])];
    post = wrap_post[data[1] % (sizeof wrap_post / sizeof wrap_post[0])];
    data += 2;
    size -= 2;

    plen = strlen(pre);
    qlen = strlen(post);
    len = plen + size + qlen;
    body = malloc(len > 0 ? len : 1);
    if (body == NULL) {
        return 0;
    }
    memcpy(body, pre, plen);
    if (size > 0) {
        memcpy(body + plen, data, size);
    }
    memcpy(body + plen + size, post, qlen);

    rc = prov_isp_parse(status, body, len, &r);

    /* 1 */
    if ((rc != 0 && rc != -1) || r.http_status != status ||
        r.temporary != temporary_status(status)) {
        abort();
    }
    /* 2 */
    if (memchr(r.error, '\0', sizeof r.error) == NULL || (rc == 0) != (r.error[0] == '\0')) {
        abort();
    }
    for (i = 0; r.error[i] != '\0'; i++) {
        if (r.error[i] < 0x20 || r.error[i] >= 0x7F) {
            abort();
        }
    }
    /* 3 */
    if (rc == -1 && (r.n != 0 || r.items != NULL || r.general_error != 0 || r.general_ok != 0)) {
        abort();
    }
    /* 4 */
    if ((r.n == 0) != (r.items == NULL) || r.n > len || r.general_ok < 0) {
        abort();
    }
    /* 5, 6 */
    check_item(&r.general);
    if (r.general_error) {
        if (r.general.tel[0] != '\0' || r.general.code == 0) {
            abort();
        }
    } else if (r.general.code != -1 || r.general.tel[0] != '\0' || r.general.message[0] != '\0') {
        abort();
    }
    for (i = 0; i < r.n; i++) {
        check_item(&r.items[i]);
        if (r.items[i].tel[0] == '\0') {
            abort();
        }
    }
    /* 7 */
    for (i = 0; i < r.n; i++) {
        const struct prov_isp_item *f = prov_isp_find(&r, r.items[i].tel);
        if (f != NULL && (f < r.items || f > &r.items[i])) {
            abort();
        }
        if (f == NULL && plain_digits(r.items[i].tel) && strcmp(r.items[i].tel, "0") != 0 &&
            strcmp(r.items[i].tel, "00") != 0) {
            abort();
        }
    }
    if (prov_isp_find(&r, "+33612345678") != NULL && r.n == 0) {
        abort();
    }
    /* 8 */
    rc2 = prov_isp_parse(status, body, len, &r2);
    if (rc2 != rc || r2.n != r.n || r2.general_error != r.general_error ||
        r2.general_ok != r.general_ok || !same_item(&r.general, &r2.general) ||
        strcmp(r.error, r2.error) != 0) {
        abort();
    }
    for (i = 0; i < r.n; i++) {
        if (!same_item(&r.items[i], &r2.items[i])) {
            abort();
        }
    }
    prov_isp_result_free(&r2);
    prov_isp_result_free(&r);
    if (r.items != NULL || r.n != 0) {
        abort();
    }

    /* 9 */
    credit_rc = prov_isp_parse_credit(body, len, &euros, &qty);
    if (credit_rc == 0) {
        if (!isfinite(euros) || qty < -1) {
            abort();
        }
    } else if (credit_rc != -1 || euros != 0.0 || qty != -1) {
        abort();
    }

    free(body);
    return 0;
}
