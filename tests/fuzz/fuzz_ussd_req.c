/*
 * fuzz_ussd_req.c — libFuzzer target for flows/ussd_req (USSD callback parser, reply screens).
 *
 *   clang -g -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iflows -Iproviders \
 *         flows/ussd_req.c providers/prov_text.c tests/fuzz/fuzz_ussd_req.c -o fuzz_ussd_req \
 *         && ./fuzz_ussd_req -max_total_time=60
 *
 * Feeds arbitrary bytes as a request body, with the Africa's Talking field names and with a
 * custom mapping, and abort()s when:
 *   1. the result is not one of the four codes, the reason is not NUL-terminated inside its
 *      buffer, a success has a reason or a failure has none, or a failure touched *out;
 *   2. a parsed request breaks its contract: every string NUL-terminated inside its array;
 *      session 1..64 bytes of printable ASCII without spaces; phone non-empty and trimmed;
 *      0 <= nsteps <= 16; steps trimmed, and all strings valid UTF-8 without control
 *      characters; parsing again gives the same bytes;
 *   3. a body over USSD_BODY_MAX bytes is not refused with USSD_ETOOLONG.
 * Then the input up to its first NUL is a screen text: ussd_screen must fail exactly when it
 * is not valid UTF-8, and otherwise give "CON "/"END " + GSM-7 text of at most 182 septets,
 * its length as return value, within USSD_SCREEN_MAX, the exact-size buffer working and one
 * byte less failing; a text already GSM-7 and within 182 septets comes back unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov_text.h"
#include "ussd_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct ussd_fields custom_fields = {
    .session = "session_id",
    .service = "service_code",
    .phone = "msisdn",
    .text = "ussd_string",
    .network = NULL,
};

static int valid_utf8(const char *s, size_t n)
{
    struct prov_text_info info;
    return prov_text_analyse(s, n, &info) == 0;
}

/* NUL-terminated inside its array, valid UTF-8, no control characters; returns the length */
static size_t check_str(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    size_t n, i;

    if (nul == NULL)
        abort();
    n = (size_t)(nul - s);
    if (!valid_utf8(s, n))
        abort();
    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            abort();
    }
    return n;
}

static void check_trimmed(const char *s, size_t n)
{
    if (n > 0 && (s[0] == ' ' || s[n - 1] == ' '))
        abort();
}

static void check_parse(const struct ussd_fields *f, const char *in, size_t size)
{
    struct ussd_req r, sentinel, again;
    char err[96], err2[96];
    size_t n, i;
    int rc;

    memset(&r, 0xA5, sizeof r);
    sentinel = r;
    memset(err, 'x', sizeof err);
    rc = ussd_req_parse(f, in, size, &r, err, sizeof err);
    if (memchr(err, '\0', sizeof err) == NULL)
        abort();
    if (size > USSD_BODY_MAX && rc != USSD_ETOOLONG)
        abort();
    if (rc != USSD_OK) {
        if (rc != USSD_EMISSING && rc != USSD_EINVAL && rc != USSD_ETOOLONG)
            abort();
        if (err[0] == '\0' || memcmp(&r, &sentinel, sizeof r) != 0)
            abort();
        return;
    }
    if (err[0] != '\0')
        abort();

    n = check_str(r.session, sizeof r.session);
    if (n < 1 || n > 64)
        abort();
    for (i = 0; i < n; i++) {
        if (r.session[i] <= 0x20 || r.session[i] >= 0x7F)
            abort();
    }
    n = check_str(r.phone, sizeof r.phone);
    if (n == 0)
        abort();
    check_trimmed(r.phone, n);
    check_trimmed(r.service, check_str(r.service, sizeof r.service));
    check_trimmed(r.network, check_str(r.network, sizeof r.network));
    if (f->network == NULL && r.network[0] != '\0')
        abort();
    if (r.nsteps < 0 || r.nsteps > USSD_MAX_STEPS)
        abort();
    for (i = 0; i < (size_t)r.nsteps; i++) {
        n = check_str(r.steps[i], USSD_STEP_MAX);
        check_trimmed(r.steps[i], n);
        if (memchr(r.steps[i], '*', n) != NULL)
            abort();
    }

    /* deterministic: the fields we promise to fill are the same the second time */
    memset(&again, 0, sizeof again);
    if (ussd_req_parse(f, in, size, &again, err2, sizeof err2) != USSD_OK)
        abort();
    if (strcmp(r.session, again.session) != 0 || strcmp(r.phone, again.phone) != 0 ||
        strcmp(r.service, again.service) != 0 || strcmp(r.network, again.network) != 0 ||
        r.nsteps != again.nsteps)
        abort();
    for (i = 0; i < (size_t)r.nsteps; i++) {
        if (strcmp(r.steps[i], again.steps[i]) != 0)
            abort();
    }
}

static void check_screen(const char *text, int final)
{
    char out[USSD_SCREEN_MAX], small[USSD_SCREEN_MAX];
    struct prov_text_info in_info, out_info;
    size_t tl = strlen(text);
    int valid = prov_text_analyse(text, tl, &in_info) == 0;
    int n = ussd_screen(final, text, out, sizeof out);

    if (!valid) {
        if (n != -1 || out[0] != '\0')
            abort();
        return;
    }
    if (n < 4 || n > USSD_SCREEN_MAX - 1 || strlen(out) != (size_t)n)
        abort();
    if (memcmp(out, final ? "END " : "CON ", 4) != 0)
        abort();
    if (prov_text_analyse(out + 4, (size_t)n - 4, &out_info) != 0)
        abort();
    if (out_info.encoding != PROV_ENC_GSM7 || out_info.units > USSD_SCREEN_SEPTETS)
        abort();
    /* already a GSM-7 screen: nothing to change or cut */
    if (in_info.encoding == PROV_ENC_GSM7 && in_info.units <= USSD_SCREEN_SEPTETS &&
        ((size_t)n - 4 != tl || memcmp(out + 4, text, tl) != 0))
        abort();
    /* exact buffer size */
    if (ussd_screen(final, text, small, (size_t)n + 1) != n || strcmp(small, out) != 0)
        abort();
    if (ussd_screen(final, text, small, (size_t)n) != -1 || small[0] != '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *text;

    check_parse(&ussd_fields_africastalking, in, size);
    check_parse(&custom_fields, in, size);

    text = malloc(size + 1);
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    check_screen(text, size > 0 && (data[0] & 1));
    free(text);
    return 0;
}
