/*
 * fuzz_text.c — libFuzzer target for providers/prov_text.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iproviders providers/prov_text.c \
 *         tests/fuzz/fuzz_text.c -o fuzz_text && ./fuzz_text -max_total_time=60
 *
 * Feeds arbitrary bytes to prov_text_analyse and prov_text_transliterate, analyses the
 * transliterated text, and abort()s when one of these properties breaks:
 *
 *   1. analyse succeeds  <=>  transliterate returns non-NULL (same UTF-8 validity rule).
 *   2. The transliterated text is NUL-terminated at out_len and is itself valid UTF-8.
 *   3. Transliteration never removes characters (out.chars >= in.chars).
 *   4. A GSM-7 input is returned byte-for-byte unchanged (only non-GSM characters are mapped),
 *      so transliteration never turns a GSM-7 text into UCS-2.
 *   5. Transliteration is idempotent (every replacement is plain GSM-7).
 *   6. Each analysis is self-consistent: chars <= units <= 2 * chars; segments == 1 exactly
 *      when units fit one SMS; otherwise segments lies between plain division by the part
 *      size and division by (part size - 1) (at most one unit is wasted per part by the
 *      no-split rule).
 *
 * NOT asserted: "the transliterated text never has more units than the original". That is
 * false by design: "œ" is 1 UCS-2 unit but "oe" is 2 septets; "…😀" is 3 UCS-2 units but
 * "...😀" is 5. Segments are not monotonic either: 70 × "…" is 1 UCS-2 segment, while its
 * transliteration is 210 septets = 2 GSM-7 segments.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_info(const struct prov_text_info *info)
{
    size_t single = info->encoding == PROV_ENC_GSM7 ? 160 : 70;
    size_t part = info->encoding == PROV_ENC_GSM7 ? 153 : 67;
    size_t segs;

    if (info->encoding != PROV_ENC_GSM7 && info->encoding != PROV_ENC_UCS2) {
        abort();
    }
    if (info->units < info->chars || info->units > 2 * info->chars) {
        abort();
    }
    if (info->segments < 1) {
        abort();
    }
    segs = (size_t)info->segments;
    if ((info->units <= single) != (segs == 1)) {
        abort();
    }
    if (segs > 1) {
        if (segs < (info->units + part - 1) / part) {
            abort();
        }
        if (segs > (info->units - 1) / (part - 1) + 1) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct prov_text_info in, out;
    size_t tlen = 0, t2len = 0;
    char *t, *t2;
    int rc;

    /* prov_text_gsm_septets on an arbitrary 32-bit value */
    if (size >= 4) {
        uint32_t v;
        int s;
        memcpy(&v, data, sizeof v);
        s = prov_text_gsm_septets(v);
        if (s < 0 || s > 2 || (v > 0x10FFFFu && s != 0)) {
            abort();
        }
    }

    rc = prov_text_analyse(text, size, &in);
    t = prov_text_transliterate(text, size, &tlen);

    if (rc != 0) { /* 1 */
        if (rc != PROV_TEXT_EINVAL || t != NULL) {
            abort();
        }
        return 0;
    }
    if (t == NULL) {
        abort();
    }
    check_info(&in);

    if (t[tlen] != '\0') { /* 2 */
        abort();
    }
    if (prov_text_analyse(t, tlen, &out) != 0) {
        abort();
    }
    check_info(&out);

    if (out.chars < in.chars) { /* 3 */
        abort();
    }

    if (in.encoding == PROV_ENC_GSM7) { /* 4 */
        if (tlen != size || (size > 0 && memcmp(t, data, size) != 0)) {
            abort();
        }
        if (out.encoding != PROV_ENC_GSM7 || out.units != in.units || out.segments != in.segments) {
            abort();
        }
    }
    if (out.encoding == PROV_ENC_UCS2 && in.encoding != PROV_ENC_UCS2) {
        abort();
    }

    t2 = prov_text_transliterate(t, tlen, &t2len); /* 5 */
    if (t2 == NULL || t2len != tlen || memcmp(t2, t, tlen) != 0) {
        abort();
    }

    free(t2);
    free(t);
    return 0;
}
