/*
 * ussd_req.c — USSD aggregator callback parser and reply-screen formatter.
 *
 * The rules are listed at the top of ussd_req.h; this file follows them in order:
 *   ussd_req_parse: size check, then one pass over the '&'-separated pairs (decode the name,
 *   decode the value, store it if the name is one of the mapping's), then the required fields.
 *   ussd_screen: transliterate, then one walk over the characters that maps what GSM-7 lacks
 *   to '?', counts septets and remembers the cut candidates, then the copy.
 */
#include "ussd_req.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prov_text.h"

const struct ussd_fields ussd_fields_africastalking = {
    .session = "sessionId",
    .service = "serviceCode",
    .phone = "phoneNumber",
    .text = "text",
    .network = "networkCode",
};

enum { UF_SESSION, UF_SERVICE, UF_PHONE, UF_TEXT, UF_NETWORK, UF_COUNT };

static void ur_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ur_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Strict UTF-8: one code point at s[0..avail). Returns its length (1..4) or 0 when the bytes
 * are not well-formed (Unicode Table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF, no truncated sequence). Same rules as providers/prov_text.c, whose decoder is
 * private.
 */
static size_t ur_utf8_next(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned char b0 = s[0], lo = 0x80, hi = 0xBF;
    size_t n, i;
    uint32_t c;

    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
        c = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        c = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        c = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    c = (c << 6) | (s[1] & 0x3Fu);
    for (i = 2; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    *cp = c;
    return n;
}

static int ur_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Form-decode s[0..n) into dst (room for n bytes: decoding never grows). Returns the decoded
 * length, or -1 with *bad = offset of the '%' in s when an escape is malformed.
 */
static long ur_form_decode(const char *s, size_t n, char *dst, size_t *bad)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3 || ur_hex((unsigned char)s[i + 1]) < 0 ||
                ur_hex((unsigned char)s[i + 2]) < 0) {
                *bad = i;
                return -1;
            }
            c = (unsigned char)(ur_hex((unsigned char)s[i + 1]) * 16 +
                                ur_hex((unsigned char)s[i + 2]));
            i += 2;
        }
        dst[o++] = (char)c;
    }
    return (long)o;
}

/* Valid UTF-8 without C0 controls (NUL included) or DEL. */
static int ur_clean_utf8(const char *v, size_t n)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        size_t k = ur_utf8_next(s + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || cp == 0x7F)
            return 0;
        i += k;
    }
    return 1;
}

/* Trim spaces (only ' ') on both sides of v[0..*n): returns the new start, updates *n. */
static const char *ur_trim(const char *v, size_t *n)
{
    while (*n > 0 && v[0] == ' ') {
        v++;
        (*n)--;
    }
    while (*n > 0 && v[*n - 1] == ' ')
        (*n)--;
    return v;
}

/* Copy v[0..n) into dst NUL-terminated; the caller checked that n + 1 bytes fit. */
static void ur_store(char *dst, const char *v, size_t n)
{
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Split the decoded text into r->steps. Returns USSD_OK or an error code (err written). */
static int ur_split_text(const char *name, const char *v, size_t n, struct ussd_req *r,
                         char *err, size_t errlen)
{
    size_t start = 0, i;

    r->nsteps = 0;
    if (n == 0)
        return USSD_OK;
    if (n > USSD_TEXT_MAX) {
        ur_err(err, errlen, "%s has more than %d bytes", name, USSD_TEXT_MAX);
        return USSD_ETOOLONG;
    }
    for (i = 0; i <= n; i++) {
        const char *step;
        size_t sl;

        if (i < n && v[i] != '*')
            continue;
        if (r->nsteps == USSD_MAX_STEPS) {
            ur_err(err, errlen, "%s has more than %d steps", name, USSD_MAX_STEPS);
            return USSD_ETOOLONG;
        }
        sl = i - start;
        step = ur_trim(v + start, &sl);
        if (sl >= USSD_STEP_MAX) {
            ur_err(err, errlen, "%s step %d has more than %d bytes", name, r->nsteps + 1,
                   USSD_STEP_MAX - 1);
            return USSD_ETOOLONG;
        }
        ur_store(r->steps[r->nsteps], step, sl);
        r->nsteps++;
        start = i + 1;
    }
    return USSD_OK;
}

/* Check and store the decoded value of known field `k`. */
static int ur_field(int k, const char *name, char *v, size_t n, struct ussd_req *r, char *err,
                    size_t errlen)
{
    static const size_t cap[UF_COUNT] = {
        [UF_SESSION] = sizeof r->session, [UF_SERVICE] = sizeof r->service,
        [UF_PHONE] = sizeof r->phone,     [UF_TEXT] = 0,
        [UF_NETWORK] = sizeof r->network,
    };
    char *dst = NULL;
    const char *t;
    size_t i;

    if (memchr(v, '\0', n) != NULL) {
        ur_err(err, errlen, "field %s contains a NUL byte", name);
        return USSD_EINVAL;
    }
    if (!ur_clean_utf8(v, n)) {
        ur_err(err, errlen, "field %s is not valid UTF-8 or contains a control character",
               name);
        return USSD_EINVAL;
    }
    switch (k) {
    case UF_TEXT:
        return ur_split_text(name, v, n, r, err, errlen);
    case UF_SESSION:
        for (i = 0; i < n; i++) {
            if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7F) {
                ur_err(err, errlen, "field %s must be printable ASCII without spaces", name);
                return USSD_EINVAL;
            }
        }
        dst = r->session;
        break;
    case UF_PHONE:
        /* a raw '+' ("+33612...") arrives decoded as a space */
        if (n >= 2 && v[0] == ' ' && v[1] >= '0' && v[1] <= '9')
            v[0] = '+';
        dst = r->phone;
        break;
    case UF_SERVICE:
        dst = r->service;
        break;
    default:
        dst = r->network;
        break;
    }
    t = ur_trim(v, &n);
    if (n >= cap[k]) {
        ur_err(err, errlen, "field %s has more than %zu bytes", name, cap[k] - 1);
        return USSD_ETOOLONG;
    }
    ur_store(dst, t, n);
    return USSD_OK;
}

int ussd_req_parse(const struct ussd_fields *f, const char *body, size_t len,
                   struct ussd_req *out, char *err, size_t errlen)
{
    struct ussd_req r;
    char key[USSD_BODY_MAX], val[USSD_BODY_MAX];
    const char *names[UF_COUNT];
    int seen[UF_COUNT] = {0};
    size_t pos = 0;
    int k, rc;

    ur_err(err, errlen, "%s", "");
    if (f == NULL || out == NULL || (body == NULL && len > 0)) {
        ur_err(err, errlen, "%s", "no mapping, output or body");
        return USSD_EINVAL;
    }
    if (len > USSD_BODY_MAX) {
        ur_err(err, errlen, "body has more than %d bytes", USSD_BODY_MAX);
        return USSD_ETOOLONG;
    }
    names[UF_SESSION] = f->session;
    names[UF_SERVICE] = f->service;
    names[UF_PHONE] = f->phone;
    names[UF_TEXT] = f->text;
    names[UF_NETWORK] = f->network;
    memset(&r, 0, sizeof r);

    while (pos < len) {
        const char *pair = body + pos, *amp = memchr(pair, '&', len - pos), *eq;
        size_t plen = amp != NULL ? (size_t)(amp - pair) : len - pos, klen, vlen, bad = 0;
        long kn, vn;

        pos += plen + 1;
        if (plen == 0)
            continue;
        eq = memchr(pair, '=', plen);
        klen = eq != NULL ? (size_t)(eq - pair) : plen;
        vlen = eq != NULL ? plen - klen - 1 : 0;
        kn = ur_form_decode(pair, klen, key, &bad);
        if (kn < 0) {
            ur_err(err, errlen, "bad %%-escape at byte %zu", (size_t)(pair - body) + bad);
            return USSD_EINVAL;
        }
        vn = ur_form_decode(eq != NULL ? eq + 1 : pair + plen, vlen, val, &bad);
        if (vn < 0) {
            ur_err(err, errlen, "bad %%-escape at byte %zu",
                   (size_t)(pair - body) + klen + 1 + bad);
            return USSD_EINVAL;
        }
        for (k = 0; k < UF_COUNT; k++) {
            if (names[k] != NULL && strlen(names[k]) == (size_t)kn &&
                memcmp(names[k], key, (size_t)kn) == 0)
                break;
        }
        if (k == UF_COUNT)
            continue; /* not ours */
        if (seen[k]) {
            ur_err(err, errlen, "repeated field %s", names[k]);
            return USSD_EINVAL;
        }
        seen[k] = 1;
        rc = ur_field(k, names[k], val, (size_t)vn, &r, err, errlen);
        if (rc != USSD_OK)
            return rc;
    }

    if (r.session[0] == '\0') {
        ur_err(err, errlen, "missing field %s",
               names[UF_SESSION] != NULL ? names[UF_SESSION] : "session");
        return USSD_EMISSING;
    }
    if (r.phone[0] == '\0') {
        ur_err(err, errlen, "missing field %s",
               names[UF_PHONE] != NULL ? names[UF_PHONE] : "phone");
        return USSD_EMISSING;
    }
    *out = r;
    return USSD_OK;
}

/*
 * Screens. After transliteration every character becomes either itself (1 or 2 septets, at
 * most 2 UTF-8 bytes per septet) or '?', so the part of the screen that fits in 182 septets
 * fits in a local buffer of 2 * 182 bytes. The walk stops at the first character that does
 * not fit, remembering that character when it is a separator (a cut there drops it and loses
 * nothing), the last '\n' with at least 91 septets before it and the last space with at least
 * one septet before it, each as a byte offset into the local buffer.
 */
int ussd_screen(int final, const char *text, char *out, size_t outlen)
{
    char g[2 * USSD_SCREEN_SEPTETS];
    const unsigned char *s;
    char *t;
    size_t tl = 0, i = 0, o = 0, cut, nl = 0, sp = 0, need;
    unsigned int septets = 0;
    int over = 0, have_nl = 0, have_sp = 0;

    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (text == NULL)
        return -1;
    t = prov_text_transliterate(text, strlen(text), &tl);
    if (t == NULL)
        return -1;
    s = (const unsigned char *)t;
    while (i < tl) {
        uint32_t cp;
        size_t k = ur_utf8_next(s + i, tl - i, &cp);
        size_t wb;
        int w;

        if (k == 0) { /* cannot happen: prov_text_transliterate validated it */
            free(t);
            return -1;
        }
        w = prov_text_gsm_septets(cp);
        if (cp == '\n' && septets >= USSD_SCREEN_SEPTETS / 2) {
            nl = o;
            have_nl = 1;
        } else if (cp == ' ' && septets > 0) {
            sp = o;
            have_sp = 1;
        }
        if (septets + (unsigned int)(w == 0 ? 1 : w) > USSD_SCREEN_SEPTETS) {
            over = 1;
            break;
        }
        wb = w == 0 ? 1 : k;
        if (o + wb > sizeof g) { /* cannot happen: at most 2 bytes per septet (see above) */
            free(t);
            return -1;
        }
        if (w == 0)
            g[o] = '?';
        else
            memcpy(g + o, s + i, k);
        o += wb;
        septets += (unsigned int)(w == 0 ? 1 : w);
        i += k;
    }
    free(t);

    cut = o;
    if (over)
        cut = have_nl ? nl : have_sp ? sp : o;
    need = 4 + cut + 1;
    if (out == NULL || outlen < need)
        return -1;
    memcpy(out, final ? "END " : "CON ", 4);
    memcpy(out + 4, g, cut);
    out[4 + cut] = '\0';
    return (int)(4 + cut);
}
