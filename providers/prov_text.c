/*
 * prov_text.c — SMS text encoding (see prov_text.h for the contract).
 *
 * Three pieces:
 *   - a strict UTF-8 decoder (utf8_decode),
 *   - the GSM 03.38 default alphabet and its extension table (3GPP TS 23.038 §6.2.1 and
 *     §6.2.1.1), used to decide GSM-7 vs UCS-2 and to count septets,
 *   - a per-code-point transliteration table for French/typographic characters.
 */
#include "prov_text.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One SMS holds 140 octets: 160 septets or 70 UCS-2 units. A concatenated part loses 6 octets
 * to the UDH (IEI 0x00, 8-bit reference), which leaves 153 septets (after fill bits) or 67
 * UCS-2 units. */
#define GSM7_SINGLE_MAX 160u
#define GSM7_PART_MAX 153u
#define UCS2_SINGLE_MAX 70u
#define UCS2_PART_MAX 67u

/* Marks position 0x1B of the default alphabet: the escape to the extension table, not a
 * character. Outside Unicode, and the lookup skips that slot anyway. */
#define GSM7_NO_CHAR 0xFFFFFFFFu

/*
 * GSM 03.38 default alphabet, indexed by the septet value, holding the Unicode code point
 * that 3GPP TS 23.038 §6.2.1 assigns to it. 127 characters: 0x1B is the escape.
 * Note 0x09 is LATIN CAPITAL LETTER C WITH CEDILLA in the current spec (older handsets
 * rendered it as the small ç; we follow the spec, so ç is not GSM-7 and is transliterated).
 */
static const uint32_t gsm7_default[128] = {
    /* 0x00 */ 0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC,
    /*         @       £       $       ¥       è       é       ù       ì      */
    /* 0x08 */ 0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5,
    /*         ò       Ç       LF      Ø       ø       CR      Å       å      */
    /* 0x10 */ 0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
    /*         Δ       _       Φ       Γ       Λ       Ω       Π       Ψ      */
    /* 0x18 */ 0x03A3, 0x0398, 0x039E, GSM7_NO_CHAR, 0x00C6, 0x00E6, 0x00DF, 0x00C9,
    /*         Σ       Θ       Ξ       ESC           Æ       æ       ß       É      */
    /* 0x20 */ 0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027,
    /*         SP      !       "       #       ¤       %       &       '      */
    /* 0x28 */ 0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
    /*         (       )       *       +       ,       -       .       /      */
    /* 0x30 */ 0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037,
    /* 0x38 */ 0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F,
    /*         8       9       :       ;       <       =       >       ?      */
    /* 0x40 */ 0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047,
    /*         ¡       A       B       C       D       E       F       G      */
    /* 0x48 */ 0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F,
    /* 0x50 */ 0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057,
    /* 0x58 */ 0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
    /*         X       Y       Z       Ä       Ö       Ñ       Ü       §      */
    /* 0x60 */ 0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067,
    /*         ¿       a       b       c       d       e       f       g      */
    /* 0x68 */ 0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F,
    /* 0x70 */ 0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077,
    /* 0x78 */ 0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
    /*         x       y       z       ä       ö       ñ       ü       à      */
};

/*
 * GSM 03.38 extension table (3GPP TS 23.038 §6.2.1.1): each is sent as ESC (0x1B) followed
 * by the septet shown, so it costs 2 septets. Only the characters defined in the default
 * (non-national) extension table; CR2 (0x0D) and SS2 (0x1B) are control codes, not characters.
 */
static const uint32_t gsm7_extension[] = {
    0x000C, /* 0x0A FORM FEED */
    0x005E, /* 0x14 ^ */
    0x007B, /* 0x28 { */
    0x007D, /* 0x29 } */
    0x005C, /* 0x2F \ */
    0x005B, /* 0x3C [ */
    0x007E, /* 0x3D ~ */
    0x005D, /* 0x3E ] */
    0x007C, /* 0x40 | */
    0x20AC, /* 0x65 € */
};

/* The cost of each ASCII code point, derived from the two tables above (and checked against
 * them by the unit tests through prov_text_gsm_septets): most texts are mostly ASCII, and this
 * spares a scan of both tables per character. */
static const unsigned char ascii_septets[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0,
};

int prov_text_gsm_septets(unsigned int cp)
{
    size_t i;

    if (cp < 128)
        return ascii_septets[cp];

    /* Anything above U+10FFFF is not a character; this also keeps the ESC placeholder
     * (GSM7_NO_CHAR) from ever matching a caller-supplied value. */
    if (cp > 0x10FFFFu) {
        return 0;
    }
    for (i = 0; i < sizeof gsm7_default / sizeof gsm7_default[0]; i++) {
        if (i != 0x1B && gsm7_default[i] == cp) {
            return 1;
        }
    }
    for (i = 0; i < sizeof gsm7_extension / sizeof gsm7_extension[0]; i++) {
        if (gsm7_extension[i] == cp) {
            return 2;
        }
    }
    return 0;
}

const char *prov_encoding_name(enum prov_encoding e)
{
    return e == PROV_ENC_GSM7 ? "gsm7" : "ucs2";
}

/*
 * Strict UTF-8 decoder for one code point at s[0..avail). Returns the number of bytes used
 * (1..4) and stores the code point, or 0 when the bytes are not well-formed UTF-8.
 *
 * Follows Unicode Table 3-7 ("Well-Formed UTF-8 Byte Sequences"): the lead byte fixes the
 * length, and the allowed range of the *second* byte is narrowed for four lead bytes, which
 * is what rejects every invalid form without decoding first and checking afterwards:
 *   C0, C1, 80..BF, F5..FF as lead     -> invalid (overlong 2-byte / stray continuation / >4)
 *   E0 A0..BF ..                       -> excludes overlong 3-byte (E0 80..9F)
 *   ED 80..9F ..                       -> excludes UTF-16 surrogates U+D800..U+DFFF (ED A0..BF)
 *   F0 90..BF .. ..                    -> excludes overlong 4-byte (F0 80..8F)
 *   F4 80..8F .. ..                    -> excludes code points above U+10FFFF
 * All other continuation bytes must be 80..BF. A sequence cut short by the end of the buffer
 * is invalid (truncated).
 */
static size_t utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned char b0 = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
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
        if (b0 == 0xE0) {
            lo = 0xA0;
        } else if (b0 == 0xED) {
            hi = 0x9F;
        }
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        c = b0 & 0x07u;
        if (b0 == 0xF0) {
            lo = 0x90;
        } else if (b0 == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (avail < n) {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    c = (c << 6) | (s[1] & 0x3Fu);
    for (i = 2; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    *cp = c;
    return n;
}

/*
 * Segment counting for a multi-part message. We cannot just divide: a character must not be
 * split across two parts (an ESC+septet pair in GSM-7, a surrogate pair in UCS-2), so a part
 * that has one free slot left when a 2-wide character comes is closed with that slot unused
 * and the character starts the next part. We therefore walk the characters and fill parts of
 * `cap` units greedily. The walk is only consulted when the whole text does not fit in a
 * single SMS (160 septets / 70 units); otherwise the answer is 1.
 */
struct part_walk {
    size_t parts; /* parts opened so far (>= 1) */
    size_t fill;  /* units used in the current part */
};

static void part_walk_add(struct part_walk *w, size_t width, size_t cap)
{
    if (w->fill + width > cap) {
        w->parts++;
        w->fill = width;
    } else {
        w->fill += width;
    }
}

static int clamp_segments(size_t parts)
{
    return parts > (size_t)INT_MAX ? INT_MAX : (int)parts;
}

int prov_text_analyse(const char *text, size_t len, struct prov_text_info *out)
{
    const unsigned char *s = (const unsigned char *)text;
    struct part_walk gsm = {1, 0}, ucs = {1, 0};
    size_t chars = 0, septets = 0, units16 = 0, pos = 0;
    int all_gsm = 1;

    if (out == NULL || (text == NULL && len > 0)) {
        return PROV_TEXT_EINVAL;
    }
    while (pos < len) {
        uint32_t cp;
        size_t n = utf8_decode(s + pos, len - pos, &cp);
        size_t w16;

        if (n == 0) {
            return PROV_TEXT_EINVAL;
        }
        pos += n;
        chars++;

        /* UCS-2 side: code points above the BMP need a surrogate pair (2 units). */
        w16 = cp > 0xFFFFu ? 2 : 1;
        units16 += w16;
        part_walk_add(&ucs, w16, UCS2_PART_MAX);

        /* GSM-7 side: stop counting at the first character GSM-7 cannot carry. */
        if (all_gsm) {
            int sep = prov_text_gsm_septets(cp);
            if (sep == 0) {
                all_gsm = 0;
            } else {
                septets += (size_t)sep;
                part_walk_add(&gsm, (size_t)sep, GSM7_PART_MAX);
            }
        }
    }

    out->chars = chars;
    if (all_gsm) {
        out->encoding = PROV_ENC_GSM7;
        out->units = septets;
        out->segments = septets <= GSM7_SINGLE_MAX ? 1 : clamp_segments(gsm.parts);
    } else {
        out->encoding = PROV_ENC_UCS2;
        out->units = units16;
        out->segments = units16 <= UCS2_SINGLE_MAX ? 1 : clamp_segments(ucs.parts);
    }
    return 0;
}

/*
 * Transliteration table: code point -> ASCII replacement (every replacement is GSM-7 default
 * alphabet, so one substitution never introduces another non-GSM character and the function
 * is idempotent). Only characters that are NOT already GSM-7 appear here: é è à ù ì ò É Ç
 * æ Æ ñ ü ... are left as they are. Keep each replacement no longer in bytes than the UTF-8 of
 * its source where possible; the code does not rely on it (it measures before allocating).
 */
struct translit {
    uint32_t cp;
    const char *repl;
};

static const struct translit translit_table[] = {
    {0x0060, "'"},   /* ` grave accent (not in GSM-7) */
    {0x00A0, " "},   /* no-break space */
    {0x00AB, "\""},  /* « */
    {0x00B7, "."},   /* · middle dot */
    {0x00BB, "\""},  /* » */
    {0x00C0, "A"},   /* À */
    {0x00C1, "A"},   /* Á */
    {0x00C2, "A"},   /* Â */
    {0x00C3, "A"},   /* Ã */
    {0x00C8, "E"},   /* È */
    {0x00CA, "E"},   /* Ê */
    {0x00CB, "E"},   /* Ë */
    {0x00CC, "I"},   /* Ì (only the small ì is GSM-7) */
    {0x00CD, "I"},   /* Í */
    {0x00CE, "I"},   /* Î */
    {0x00CF, "I"},   /* Ï */
    {0x00D2, "O"},   /* Ò (only the small ò is GSM-7) */
    {0x00D3, "O"},   /* Ó */
    {0x00D4, "O"},   /* Ô */
    {0x00D5, "O"},   /* Õ */
    {0x00D9, "U"},   /* Ù (only the small ù is GSM-7) */
    {0x00DA, "U"},   /* Ú */
    {0x00DB, "U"},   /* Û */
    {0x00E1, "a"},   /* á */
    {0x00E2, "a"},   /* â */
    {0x00E3, "a"},   /* ã */
    {0x00E7, "c"},   /* ç (GSM-7 has only the capital Ç) */
    {0x00EA, "e"},   /* ê */
    {0x00EB, "e"},   /* ë */
    {0x00ED, "i"},   /* í */
    {0x00EE, "i"},   /* î */
    {0x00EF, "i"},   /* ï */
    {0x00F3, "o"},   /* ó */
    {0x00F4, "o"},   /* ô */
    {0x00F5, "o"},   /* õ */
    {0x00FA, "u"},   /* ú */
    {0x00FB, "u"},   /* û */
    {0x00FF, "y"},   /* ÿ */
    {0x0152, "OE"},  /* Œ */
    {0x0153, "oe"},  /* œ */
    {0x0178, "Y"},   /* Ÿ */
    {0x2010, "-"},   /* ‐ hyphen */
    {0x2011, "-"},   /* ‑ non-breaking hyphen */
    {0x2013, "-"},   /* – en dash */
    {0x2014, "-"},   /* — em dash */
    {0x2018, "'"},   /* ‘ */
    {0x2019, "'"},   /* ’ (the French apostrophe) */
    {0x201A, "'"},   /* ‚ */
    {0x201C, "\""},  /* “ */
    {0x201D, "\""},  /* ” */
    {0x201E, "\""},  /* „ */
    {0x2026, "..."}, /* … */
    {0x202F, " "},   /* narrow no-break space (French: before ; : ! ? and inside « ») */
    {0x2032, "'"},   /* ′ prime */
};

static const char *translit_lookup(uint32_t cp)
{
    size_t i;

    for (i = 0; i < sizeof translit_table / sizeof translit_table[0]; i++) {
        if (translit_table[i].cp == cp) {
            return translit_table[i].repl;
        }
    }
    return NULL;
}

/*
 * One pass over the input. With dst == NULL it only validates and measures (*needed gets the
 * output byte length); with dst it writes exactly that many bytes. Returns 0, or -1 on
 * invalid UTF-8 or a size overflow. Unmapped characters are copied byte for byte.
 */
static int translit_pass(const unsigned char *s, size_t len, char *dst, size_t *needed)
{
    size_t pos = 0, o = 0;

    while (pos < len) {
        uint32_t cp;
        size_t n = utf8_decode(s + pos, len - pos, &cp);
        const char *repl;
        const void *src;
        size_t m;

        if (n == 0) {
            return -1;
        }
        repl = translit_lookup(cp);
        if (repl != NULL) {
            src = repl;
            m = strlen(repl);
        } else {
            src = s + pos;
            m = n;
        }
        if (m > SIZE_MAX - 1 - o) {
            return -1;
        }
        if (dst != NULL) {
            memcpy(dst + o, src, m);
        }
        o += m;
        pos += n;
    }
    *needed = o;
    return 0;
}

char *prov_text_transliterate(const char *text, size_t len, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t need = 0, wrote = 0;
    char *dst;

    if (text == NULL && len > 0) {
        return NULL;
    }
    if (len > 0 && translit_pass(s, len, NULL, &need) != 0) {
        return NULL;
    }
    dst = malloc(need + 1);
    if (dst == NULL) {
        return NULL;
    }
    if (len > 0 && (translit_pass(s, len, dst, &wrote) != 0 || wrote != need)) {
        free(dst); /* cannot happen: same input, same table */
        return NULL;
    }
    dst[need] = '\0';
    if (out_len != NULL) {
        *out_len = need;
    }
    return dst;
}
