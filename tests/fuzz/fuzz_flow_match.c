/*
 * fuzz_flow_match.c — libFuzzer target for flows/flow_match.
 *
 *   clang -g -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iflows \
 *         flows/flow_match.c tests/fuzz/fuzz_flow_match.c -lunistring -o fuzz_flow_match \
 *         && ./fuzz_flow_match -max_total_time=60
 *
 * Feeds arbitrary bytes to flow_normalize and flow_match and abort()s when:
 *   1. normalize fails (-1) although the input is valid UTF-8 and the buffer is large enough,
 *      or succeeds on invalid UTF-8;
 *   2. the normalised text is not [a-z0-9] words joined by single spaces (no leading or
 *      trailing space), or its length differs from the return value;
 *   3. normalize is not idempotent, or the exact-size buffer boundary is wrong
 *      (len + 1 bytes works, len bytes fails);
 *   4. flow is out of [FLOW_NONE, FLOW_COUNT), or differs from the return value;
 *      keyword/args are not NUL-terminated in their arrays; args are not normalised text;
 *      typo is not 0/1; FLOW_NONE comes with a non-empty keyword/args/typo;
 *   5. matching the normalised text gives a different result than matching the raw text
 *      (except the '?'-only message, which normalises to "" and is HELP).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "flow_match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* [a-z0-9]+ separated by single spaces, or "" */
static void check_normal(const char *s, size_t n)
{
    if (strlen(s) != n)
        abort();
    if (n > 0 && (s[0] == ' ' || s[n - 1] == ' '))
        abort();
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ') {
            if (i > 0 && s[i - 1] == ' ')
                abort();
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            abort();
        }
    }
}

static void check_match(const struct flow_match *m, int r)
{
    if (r != m->flow || m->flow < FLOW_NONE || m->flow >= FLOW_COUNT)
        abort();
    if (memchr(m->keyword, '\0', sizeof m->keyword) == NULL)
        abort();
    if (memchr(m->args, '\0', sizeof m->args) == NULL)
        abort();
    if (m->typo != 0 && m->typo != 1)
        abort();
    check_normal(m->args, strlen(m->args));
    if (m->flow == FLOW_NONE) {
        if (m->keyword[0] != '\0' || m->args[0] != '\0' || m->typo != 0)
            abort();
    } else if (m->keyword[0] == '\0') {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    int valid = u8_check(data, size) == NULL;
    /* NFKD expands a code point to at most 18, case folding to at most 3 each, and each
     * yields at most 2 output bytes: 128 bytes per input byte is a safe upper bound. */
    size_t cap = 128 * size + 16;
    char *out = malloc(cap), *again = malloc(cap);
    struct flow_match m, m2;
    int n, n2, r, r2;

    if (out == NULL || again == NULL)
        abort();
    n = flow_normalize(in, size, out, cap);
    if ((n >= 0) != valid)
        abort();

    r = flow_match(in, size, &m);
    check_match(&m, r);

    if (n >= 0) {
        check_normal(out, (size_t)n);
        /* idempotent */
        n2 = flow_normalize(out, (size_t)n, again, cap);
        if (n2 != n || memcmp(out, again, (size_t)n + 1) != 0)
            abort();
        /* exact buffer boundary */
        if (flow_normalize(in, size, again, (size_t)n + 1) != n || strcmp(again, out) != 0)
            abort();
        if (flow_normalize(in, size, again, (size_t)n) != -1 || again[0] != '\0')
            abort();
        /* matching only depends on the normalised text (except the '?'-only message) */
        r2 = flow_match(out, (size_t)n, &m2);
        check_match(&m2, r2);
        if (n == 0) {
            if (m.flow != FLOW_NONE && m.flow != FLOW_HELP)
                abort();
        } else if (m.flow != m2.flow || m.typo != m2.typo || strcmp(m.keyword, m2.keyword) != 0 ||
                   strcmp(m.args, m2.args) != 0) {
            abort();
        }
    } else if (m.flow != FLOW_NONE) {
        abort();
    }
    free(out);
    free(again);
    return 0;
}
