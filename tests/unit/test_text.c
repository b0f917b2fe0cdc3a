/*
 * test_text.c — unit tests for providers/prov_text (GSM-7 / UCS-2 analysis, segments,
 * strict UTF-8, French transliteration).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "prov_text.h"

/*
 * The GSM 03.38 default alphabet typed again from 3GPP TS 23.038 §6.2.1, independently of the
 * implementation's table, as the characters themselves (UTF-8) rather than code points, in
 * septet order 0x00..0x7F with 0x1B (ESC) left out: 127 characters.
 */
static const char *const spec_default[] = {
    "@", "£",  "$", "¥", "è", "é", "ù", "ì", "ò", "Ç", "\n", "Ø",           "ø", "\r", "Å", "å",
    "Δ", "_",  "Φ", "Γ", "Λ", "Ω", "Π", "Ψ", "Σ", "Θ", "Ξ",  /* ESC */ "Æ", "æ", "ß",  "É", " ",
    "!", "\"", "#", "¤", "%", "&", "'", "(", ")", "*", "+",  ",",           "-", ".",  "/", "0",
    "1", "2",  "3", "4", "5", "6", "7", "8", "9", ":", ";",  "<",           "=", ">",  "?", "¡",
    "A", "B",  "C", "D", "E", "F", "G", "H", "I", "J", "K",  "L",           "M", "N",  "O", "P",
    "Q", "R",  "S", "T", "U", "V", "W", "X", "Y", "Z", "Ä",  "Ö",           "Ñ", "Ü",  "§", "¿",
    "a", "b",  "c", "d", "e", "f", "g", "h", "i", "j", "k",  "l",           "m", "n",  "o", "p",
    "q", "r",  "s", "t", "u", "v", "w", "x", "y", "z", "ä",  "ö",           "ñ", "ü",  "à",
};

/* The extension table (3GPP TS 23.038 §6.2.1.1): ESC + septet, 2 septets each. */
static const char *const spec_extension[] = {
    "\f", "^", "{", "}", "\\", "[", "~", "]", "|", "€",
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A tiny independent UTF-8 decoder for the test's own tables (input known valid). */
static unsigned int decode_one(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        return u[0];
    }
    if (u[0] < 0xE0) {
        return ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    }
    if (u[0] < 0xF0) {
        return ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    }
    return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
}

/* Builds a heap string of `n` copies of `unit` (a UTF-8 string); caller frees. */
static char *repeat(const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * n + 1);
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++) {
        memcpy(s + i * ul, unit, ul);
    }
    s[ul * n] = '\0';
    return s;
}

/* Concatenates up to three strings into a new heap string; caller frees. */
static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);

    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc);
    s[la + lb + lc] = '\0';
    return s;
}

static struct prov_text_info analyse_ok(const char *s)
{
    struct prov_text_info info;
    memset(&info, 0xA5, sizeof info);
    assert_int_equal(prov_text_analyse(s, strlen(s), &info), 0);
    return info;
}

static void expect_gsm(const char *s, size_t chars, size_t units, int segments)
{
    struct prov_text_info info = analyse_ok(s);
    assert_int_equal(info.encoding, PROV_ENC_GSM7);
    assert_int_equal(info.chars, chars);
    assert_int_equal(info.units, units);
    assert_int_equal(info.segments, segments);
}

static void expect_ucs2(const char *s, size_t chars, size_t units, int segments)
{
    struct prov_text_info info = analyse_ok(s);
    assert_int_equal(info.encoding, PROV_ENC_UCS2);
    assert_int_equal(info.chars, chars);
    assert_int_equal(info.units, units);
    assert_int_equal(info.segments, segments);
}

static void expect_invalid(const char *bytes, size_t len)
{
    struct prov_text_info info;
    size_t out_len = 12345;

    assert_int_equal(prov_text_analyse(bytes, len, &info), PROV_TEXT_EINVAL);
    assert_null(prov_text_transliterate(bytes, len, &out_len));
}

/* ---- the alphabet ---------------------------------------------------------------------- */

static void test_default_alphabet_is_one_septet(void **state)
{
    size_t i;
    (void)state;
    assert_int_equal(N_ELEMS(spec_default), 127);
    for (i = 0; i < N_ELEMS(spec_default); i++) {
        unsigned int cp = decode_one(spec_default[i]);
        if (prov_text_gsm_septets(cp) != 1) {
            fail_msg("default alphabet entry %zu (U+%04X) is not 1 septet", i, cp);
        }
        expect_gsm(spec_default[i], 1, 1, 1);
    }
}

static void test_extension_table_is_two_septets(void **state)
{
    size_t i;
    (void)state;
    assert_int_equal(N_ELEMS(spec_extension), 10);
    for (i = 0; i < N_ELEMS(spec_extension); i++) {
        unsigned int cp = decode_one(spec_extension[i]);
        if (prov_text_gsm_septets(cp) != 2) {
            fail_msg("extension entry %zu (U+%04X) is not 2 septets", i, cp);
        }
        expect_gsm(spec_extension[i], 1, 2, 1);
    }
}

/* Nothing outside the two spec tables is GSM-7: exactly 127 + 10 code points are. */
static void test_no_other_code_point_is_gsm(void **state)
{
    unsigned int cp;
    size_t ones = 0, twos = 0;
    (void)state;
    for (cp = 0; cp <= 0x10FFFF; cp++) {
        int s = prov_text_gsm_septets(cp);
        assert_in_range(s, 0, 2);
        ones += s == 1;
        twos += s == 2;
    }
    assert_int_equal(ones, 127);
    assert_int_equal(twos, 10);
    assert_int_equal(prov_text_gsm_septets(0x110000), 0);
    assert_int_equal(prov_text_gsm_septets(0xFFFFFFFFu), 0);
}

static void test_non_gsm_chars_are_zero(void **state)
{
    static const unsigned int not_gsm[] = {
        0x00EA,  /* ê */
        0x00E7,  /* ç (only Ç is GSM-7) */
        0x0153,  /* œ */
        0x00D9,  /* Ù (only ù is GSM-7) */
        0x00CA,  /* Ê */
        0x0060,  /* ` */
        0x0009,  /* TAB */
        0x0000,  /* NUL (0x00 is @, not U+0000) */
        0x001B,  /* ESC is not a character */
        0x007F,  /* DEL */
        0x00A0,  /* NBSP */
        0x2019,  /* ’ */
        0x0416,  /* Ж */
        0x1F600, /* 😀 */
    };
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(not_gsm); i++) {
        if (prov_text_gsm_septets(not_gsm[i]) != 0) {
            fail_msg("U+%04X should not be GSM-7", not_gsm[i]);
        }
    }
    assert_int_equal(prov_text_gsm_septets(0x20AC), 2); /* € is extension, not absent */
}

static void test_encoding_name(void **state)
{
    (void)state;
    assert_string_equal(prov_encoding_name(PROV_ENC_GSM7), "gsm7");
    assert_string_equal(prov_encoding_name(PROV_ENC_UCS2), "ucs2");
}

/* ---- analysis: basics ------------------------------------------------------------------ */

static void test_empty_text(void **state)
{
    struct prov_text_info info;
    (void)state;
    expect_gsm("", 0, 0, 1);
    assert_int_equal(prov_text_analyse(NULL, 0, &info), 0);
    assert_int_equal(info.encoding, PROV_ENC_GSM7);
    assert_int_equal(info.units, 0);
    assert_int_equal(info.segments, 1);
}

static void test_bad_arguments(void **state)
{
    struct prov_text_info info;
    (void)state;
    assert_int_equal(prov_text_analyse(NULL, 3, &info), PROV_TEXT_EINVAL);
    assert_int_equal(prov_text_analyse("abc", 3, NULL), PROV_TEXT_EINVAL);
    assert_null(prov_text_transliterate(NULL, 3, NULL));
}

static void test_chars_and_units_multibyte(void **state)
{
    (void)state;
    /* é è à: 2-byte UTF-8 each, 1 septet each */
    expect_gsm("éèà", 3, 3, 1);
    /* {€}: 3 chars, 6 septets */
    expect_gsm("{€}", 3, 6, 1);
    /* one non-GSM char turns the whole text UCS-2 */
    expect_ucs2("Fête", 4, 4, 1);
    /* len is honoured: only "ab" of "abc" */
    {
        struct prov_text_info info;
        assert_int_equal(prov_text_analyse("abc", 2, &info), 0);
        assert_int_equal(info.chars, 2);
    }
}

static void test_embedded_nul_is_ucs2(void **state)
{
    struct prov_text_info info;
    (void)state;
    assert_int_equal(prov_text_analyse("a\0b", 3, &info), 0);
    assert_int_equal(info.encoding, PROV_ENC_UCS2);
    assert_int_equal(info.chars, 3);
    assert_int_equal(info.units, 3);
}

/* ---- GSM-7 segment boundaries ---------------------------------------------------------- */

static void test_gsm_160_is_one_segment(void **state)
{
    char *s = repeat("a", 160);
    (void)state;
    expect_gsm(s, 160, 160, 1);
    free(s);
}

static void test_gsm_161_is_two_segments(void **state)
{
    char *s = repeat("a", 161);
    (void)state;
    expect_gsm(s, 161, 161, 2);
    free(s);
}

static void test_gsm_306_is_two_segments(void **state)
{
    char *s = repeat("a", 306);
    (void)state;
    expect_gsm(s, 306, 306, 2);
    free(s);
}

static void test_gsm_307_is_three_segments(void **state)
{
    char *s = repeat("a", 307);
    (void)state;
    expect_gsm(s, 307, 307, 3);
    free(s);
}

static void test_gsm_159_plus_euro(void **state)
{
    char *a = repeat("a", 159);
    char *s = concat3(a, "€", "");
    char *b = repeat("a", 158);
    char *t = concat3(b, "€", "");
    (void)state;
    expect_gsm(s, 160, 161, 2);
    expect_gsm(t, 159, 160, 1); /* 158 + 2 = 160 still fits one SMS */
    free(a);
    free(s);
    free(b);
    free(t);
}

/* 152 'a' fill part 1 to 152; the 2-septet € cannot take the last septet of part 1 and
 * moves to part 2. */
static void test_gsm_escape_pair_not_split(void **state)
{
    char *p152 = repeat("a", 152);
    char *p153 = repeat("a", 153);
    char *s = concat3(p152, "€", p153);
    char *t = concat3(p152, "€", p152);
    (void)state;
    /* 152 + 2 + 153 = 307 septets: 3 parts (152 | €+151 | 2) */
    expect_gsm(s, 306, 307, 3);
    /* 152 + 2 + 152 = 306 septets: naive ceil(306/153) would say 2, but the € pushed to part 2
     * leaves one septet for part 3 (152 | €+151 | 1). This is the case that tells the rule
     * apart from plain division. */
    expect_gsm(t, 305, 306, 3);
    free(p152);
    free(p153);
    free(s);
    free(t);
}

/* The pair fits when it lands exactly on the last two septets of a part. */
static void test_gsm_escape_pair_fits_at_end(void **state)
{
    char *p151 = repeat("a", 151);
    char *p153 = repeat("a", 153);
    char *s = concat3(p151, "€", p153);
    char *euros = repeat("€", 153); /* 306 septets, every part holds 76 pairs + 1 unused */
    (void)state;
    expect_gsm(s, 305, 306, 2);
    /* 153 €: parts hold 76 each (152 septets) -> 76 + 76 + 1 = 3 parts */
    expect_gsm(euros, 153, 306, 3);
    free(p151);
    free(p153);
    free(s);
    free(euros);
}

/* ---- UCS-2 segment boundaries ---------------------------------------------------------- */

static void test_ucs2_70_is_one_segment(void **state)
{
    char *s = repeat("ж", 70);
    (void)state;
    expect_ucs2(s, 70, 70, 1);
    free(s);
}

static void test_ucs2_71_is_two_segments(void **state)
{
    char *s = repeat("ж", 71);
    (void)state;
    expect_ucs2(s, 71, 71, 2);
    free(s);
}

static void test_ucs2_134_is_two_segments(void **state)
{
    char *s = repeat("ж", 134);
    (void)state;
    expect_ucs2(s, 134, 134, 2);
    free(s);
}

static void test_ucs2_135_is_three_segments(void **state)
{
    char *s = repeat("ж", 135);
    (void)state;
    expect_ucs2(s, 135, 135, 3);
    free(s);
}

static void test_ucs2_mixed_with_gsm_chars(void **state)
{
    /* 69 GSM 'a' + one ê = 70 UCS-2 units: 1 segment; one more 'a' = 2 */
    char *a69 = repeat("a", 69);
    char *a70 = repeat("a", 70);
    char *s = concat3(a69, "ê", "");
    char *t = concat3(a70, "ê", "");
    (void)state;
    expect_ucs2(s, 70, 70, 1);
    expect_ucs2(t, 71, 71, 2);
    free(a69);
    free(a70);
    free(s);
    free(t);
}

static void test_emoji_is_two_units(void **state)
{
    char *e35 = repeat("😀", 35);
    char *e36 = repeat("😀", 36);
    (void)state;
    expect_ucs2("😀", 1, 2, 1);
    expect_ucs2("a😀", 2, 3, 1);
    expect_ucs2(e35, 35, 70, 1);
    expect_ucs2(e36, 36, 72, 2);
    free(e35);
    free(e36);
}

/* A surrogate pair must not be split: 66 + 2 + 66 = 134 units is 3 parts, not 2. */
static void test_ucs2_surrogate_pair_not_split(void **state)
{
    char *p66 = repeat("ж", 66);
    char *p65 = repeat("ж", 65);
    char *s = concat3(p66, "😀", p66);
    char *t = concat3(p65, "😀", p66); /* pair fits exactly at the end of part 1 */
    (void)state;
    expect_ucs2(s, 133, 134, 3);
    expect_ucs2(t, 132, 133, 2);
    free(p66);
    free(p65);
    free(s);
    free(t);
}

/* ---- strict UTF-8 ---------------------------------------------------------------------- */

static void test_invalid_truncated(void **state)
{
    (void)state;
    expect_invalid("\xC3", 1);         /* lone lead byte */
    expect_invalid("ab\xC3", 3);       /* at the end */
    expect_invalid("\xE2\x82", 2);     /* € cut short */
    expect_invalid("\xF0\x9F\x98", 3); /* emoji cut short */
    expect_invalid("\xC3"
                   "a",
                   2); /* lead followed by a non-continuation */
    expect_invalid("\xE2\x82"
                   "a",
                   3);
    expect_invalid("\x80", 1); /* stray continuation */
    expect_invalid("a\xBF"
                   "b",
                   3);
    expect_invalid("\xFE", 1);
    expect_invalid("\xFF", 1);
    /* "é" with len cut to 1 byte */
    expect_invalid("é", 1);
}

static void test_invalid_overlong(void **state)
{
    (void)state;
    expect_invalid("\xC0\x80", 2);         /* U+0000 */
    expect_invalid("\xC1\xBF", 2);         /* U+007F */
    expect_invalid("\xE0\x80\x80", 3);     /* U+0000 */
    expect_invalid("\xE0\x9F\xBF", 3);     /* U+07FF */
    expect_invalid("\xF0\x80\x80\x80", 4); /* U+0000 */
    expect_invalid("\xF0\x8F\xBF\xBF", 4); /* U+FFFF */
}

static void test_invalid_surrogates_and_range(void **state)
{
    (void)state;
    expect_invalid("\xED\xA0\x80", 3);             /* U+D800 */
    expect_invalid("\xED\xBF\xBF", 3);             /* U+DFFF */
    expect_invalid("\xED\xA0\xBD\xED\xB8\x80", 6); /* CESU-8 style surrogate pair */
    expect_invalid("\xF4\x90\x80\x80", 4);         /* U+110000 */
    expect_invalid("\xF5\x80\x80\x80", 4);
    expect_invalid("\xF8\x88\x80\x80\x80", 5); /* old 5-byte form */
}

static void test_valid_edges(void **state)
{
    (void)state;
    expect_ucs2("\x7F", 1, 1, 1);             /* U+007F DEL */
    expect_ucs2("\xC2\x80", 1, 1, 1);         /* U+0080 */
    expect_ucs2("\xDF\xBF", 1, 1, 1);         /* U+07FF */
    expect_ucs2("\xE0\xA0\x80", 1, 1, 1);     /* U+0800 */
    expect_ucs2("\xED\x9F\xBF", 1, 1, 1);     /* U+D7FF */
    expect_ucs2("\xEE\x80\x80", 1, 1, 1);     /* U+E000 */
    expect_ucs2("\xEF\xBF\xBF", 1, 1, 1);     /* U+FFFF: still one UCS-2 unit */
    expect_ucs2("\xF0\x90\x80\x80", 1, 2, 1); /* U+10000: first surrogate pair */
    expect_ucs2("\xF4\x8F\xBF\xBF", 1, 2, 1); /* U+10FFFF */
}

/* ---- transliteration ------------------------------------------------------------------- */

static void expect_translit(const char *in, const char *want)
{
    size_t out_len = 0;
    char *out = prov_text_transliterate(in, strlen(in), &out_len);

    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(out_len, strlen(want));
    free(out);
}

static void test_translit_french_sentence(void **state)
{
    const char *in = "Fête de l’été « Noël » à Montréal… œuvre";
    /* The guillemets become straight quotes; the spaces inside them are kept (the header's
     * contract is per character: « → ", space → space). */
    const char *want = "Fete de l'été \" Noel \" à Montréal... oeuvre";
    size_t out_len = 0;
    char *out = prov_text_transliterate(in, strlen(in), &out_len);
    struct prov_text_info before, after;
    (void)state;

    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(out_len, strlen(want));

    before = analyse_ok(in);
    assert_int_equal(before.encoding, PROV_ENC_UCS2);
    after = analyse_ok(out);
    assert_int_equal(after.encoding, PROV_ENC_GSM7);
    assert_string_equal(prov_encoding_name(after.encoding), "gsm7");
    assert_int_equal(after.chars, strlen(want) - 4); /* é é é à are 2 bytes each */
    assert_int_equal(after.units, after.chars);
    free(out);
}

static void test_translit_french_nbsp_guillemets(void **state)
{
    (void)state;
    /* French typography: NBSP / narrow NBSP inside guillemets and before ; : ! ? */
    expect_translit("«\xC2\xA0Noël\xC2\xA0»", "\" Noel \"");
    expect_translit("Vraiment\xE2\x80\xAF!", "Vraiment !");
}

static void test_translit_mappings(void **state)
{
    (void)state;
    expect_translit("êëÊËâÂîïÎÏôÔûÛÙç", "eeEEaAiiIIoOuUUc");
    expect_translit("œŒ", "oeOE");
    expect_translit("«»“”„", "\"\"\"\"\"");
    expect_translit("‘’‚′`", "'''''");
    expect_translit("…", "...");
    expect_translit("–—", "--");
    expect_translit("áíóúÿÀÈÁÍÓÚŸãõ·", "aiouyAEAIOUYao.");
}

/* Characters already in GSM-7 are never touched: the whole default table and the extension
 * table go through unchanged. */
static void test_translit_keeps_gsm_chars(void **state)
{
    size_t i;
    (void)state;
    expect_translit("éèàùìòÉÇæÆß", "éèàùìòÉÇæÆß");
    for (i = 0; i < N_ELEMS(spec_default); i++) {
        expect_translit(spec_default[i], spec_default[i]);
    }
    for (i = 0; i < N_ELEMS(spec_extension); i++) {
        expect_translit(spec_extension[i], spec_extension[i]);
    }
}

static void test_translit_unmapped_copied(void **state)
{
    (void)state;
    expect_translit("Привет", "Привет");
    expect_translit("日本", "日本");
    expect_translit("a\tb", "a\tb");
}

static void test_translit_emoji_stays_ucs2(void **state)
{
    const char *in = "Bonne fête 🎉 à tous…";
    const char *want = "Bonne fete 🎉 à tous...";
    size_t out_len = 0;
    char *out = prov_text_transliterate(in, strlen(in), &out_len);
    struct prov_text_info info;
    (void)state;

    assert_non_null(out);
    assert_string_equal(out, want);
    info = analyse_ok(out);
    assert_int_equal(info.encoding, PROV_ENC_UCS2);
    assert_string_equal(prov_encoding_name(info.encoding), "ucs2");
    free(out);
}

static void test_translit_empty_and_out_len(void **state)
{
    size_t out_len = 99;
    char *out;
    (void)state;

    out = prov_text_transliterate("", 0, &out_len);
    assert_non_null(out);
    assert_string_equal(out, "");
    assert_int_equal(out_len, 0);
    free(out);

    out = prov_text_transliterate(NULL, 0, NULL);
    assert_non_null(out);
    assert_string_equal(out, "");
    free(out);

    /* out_len may be NULL; len limits the input */
    out = prov_text_transliterate("fête!!", 4, NULL);
    assert_non_null(out);
    assert_string_equal(out, "fet");
    free(out);

    /* embedded NUL survives and is counted in out_len */
    out = prov_text_transliterate("ê\0ê", 5, &out_len);
    assert_non_null(out);
    assert_int_equal(out_len, 3);
    assert_memory_equal(out, "e\0e", 4);
    free(out);
}

static void test_translit_is_idempotent(void **state)
{
    const char *in = "« Ça coûte 5 € — ou plus… » dit l’œnologue";
    size_t l1 = 0, l2 = 0;
    char *once = prov_text_transliterate(in, strlen(in), &l1);
    char *twice;
    (void)state;

    assert_non_null(once);
    twice = prov_text_transliterate(once, l1, &l2);
    assert_non_null(twice);
    assert_int_equal(l1, l2);
    assert_memory_equal(once, twice, l1);
    assert_string_equal(once, "\" Ça coute 5 € - ou plus... \" dit l'oenologue");
    assert_int_equal(analyse_ok(once).encoding, PROV_ENC_GSM7);
    free(once);
    free(twice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_alphabet_is_one_septet),
        cmocka_unit_test(test_extension_table_is_two_septets),
        cmocka_unit_test(test_no_other_code_point_is_gsm),
        cmocka_unit_test(test_non_gsm_chars_are_zero),
        cmocka_unit_test(test_encoding_name),
        cmocka_unit_test(test_empty_text),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_chars_and_units_multibyte),
        cmocka_unit_test(test_embedded_nul_is_ucs2),
        cmocka_unit_test(test_gsm_160_is_one_segment),
        cmocka_unit_test(test_gsm_161_is_two_segments),
        cmocka_unit_test(test_gsm_306_is_two_segments),
        cmocka_unit_test(test_gsm_307_is_three_segments),
        cmocka_unit_test(test_gsm_159_plus_euro),
        cmocka_unit_test(test_gsm_escape_pair_not_split),
        cmocka_unit_test(test_gsm_escape_pair_fits_at_end),
        cmocka_unit_test(test_ucs2_70_is_one_segment),
        cmocka_unit_test(test_ucs2_71_is_two_segments),
        cmocka_unit_test(test_ucs2_134_is_two_segments),
        cmocka_unit_test(test_ucs2_135_is_three_segments),
        cmocka_unit_test(test_ucs2_mixed_with_gsm_chars),
        cmocka_unit_test(test_emoji_is_two_units),
        cmocka_unit_test(test_ucs2_surrogate_pair_not_split),
        cmocka_unit_test(test_invalid_truncated),
        cmocka_unit_test(test_invalid_overlong),
        cmocka_unit_test(test_invalid_surrogates_and_range),
        cmocka_unit_test(test_valid_edges),
        cmocka_unit_test(test_translit_french_sentence),
        cmocka_unit_test(test_translit_french_nbsp_guillemets),
        cmocka_unit_test(test_translit_mappings),
        cmocka_unit_test(test_translit_keeps_gsm_chars),
        cmocka_unit_test(test_translit_unmapped_copied),
        cmocka_unit_test(test_translit_emoji_stays_ucs2),
        cmocka_unit_test(test_translit_empty_and_out_len),
        cmocka_unit_test(test_translit_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
