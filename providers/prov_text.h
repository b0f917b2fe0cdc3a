/*
 * prov_text — SMS text encoding: decides GSM 03.38 (7-bit default alphabet plus its
 * extension table) or UCS-2, counts segments, and optionally transliterates common French
 * characters that GSM-7 lacks (ê → e, œ → oe, « » → ") so a French text stays in GSM-7.
 *
 * Pure functions, no allocation except prov_text_transliterate (caller frees).
 * All input is UTF-8. Invalid UTF-8 is reported as PROV_TEXT_EINVAL.
 */
#ifndef PROV_TEXT_H
#define PROV_TEXT_H

#include <stddef.h>

enum prov_encoding { PROV_ENC_GSM7 = 0, PROV_ENC_UCS2 = 1 };

#define PROV_TEXT_EINVAL (-1)

struct prov_text_info {
    enum prov_encoding encoding;
    size_t chars; /* user-visible characters (Unicode code points) */
    size_t units; /* GSM-7 septets (extension chars count 2) or UCS-2 16-bit units */
    int segments; /* 1 when units fit one SMS (160 / 70), else ceil(units / 153 or 67) */
};

/* Analyse UTF-8 `text` of `len` bytes. Returns 0 and fills *out, or PROV_TEXT_EINVAL for
 * invalid UTF-8. Empty text is valid: 0 units, 1 segment. A multi-part GSM-7 text never splits
 * an escape pair across segments (count as the 3GPP rule: 153 septets per part). Characters
 * outside the BMP count as 2 UCS-2 units. */
int prov_text_analyse(const char *text, size_t len, struct prov_text_info *out)
    __attribute__((warn_unused_result));

/* Returns a newly allocated UTF-8 string (caller frees with free()) where characters outside
 * GSM-7 that have a common French/typographic equivalent are replaced (ê→e, â→a, î→i, ô→o,
 * û→u, ë→e, ï→i, ç→c (GSM has only Ç), œ→oe, Œ→OE, «»“”„→", ‘’‚→', …→..., –—→-,
 * non-breaking spaces→space, etc.). Characters with no equivalent are kept unchanged (the text
 * then stays UCS-2; callers should use the result only when it turns the text into GSM-7). NULL on
 * invalid UTF-8 or out of memory. *out_len receives the byte length if non-NULL. */
char *prov_text_transliterate(const char *text, size_t len, size_t *out_len);

/* True when the single Unicode code point `cp` is in the GSM 03.38 default alphabet (1 septet)
 * or its extension table (2 septets): returns 1, 2, or 0 when not representable. */
int prov_text_gsm_septets(unsigned int cp);

const char *prov_encoding_name(enum prov_encoding e); /* "gsm7" or "ucs2" */

#endif
