/* Unit tests for prov_phone (libphonenumber behind a C API). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "prov_phone.h"

#define SENTINEL 'Z'

/* Fill a buffer with a sentinel so "out untouched" can be checked. */
static void fill(char *buf, size_t len)
{
    memset(buf, SENTINEL, len);
}

static void assert_untouched(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        assert_int_equal(buf[i], SENTINEL);
}

/* Normalise `in` with `region` and expect success with `want`. */
static void expect_ok(const char *in, const char *region, const char *want)
{
    char out[32];
    fill(out, sizeof out);
    int rc = prov_phone_normalize(in, region, out, sizeof out);
    assert_int_equal(rc, PROV_PHONE_OK);
    assert_string_equal(out, want);
}

/* Normalise `in` and expect the error `want`, with the out buffer left untouched. */
static void expect_err(const char *in, const char *region, int want)
{
    char out[32];
    fill(out, sizeof out);
    int rc = prov_phone_normalize(in, region, out, sizeof out);
    assert_true(rc < 0);
    assert_int_equal(rc, want);
    assert_untouched(out, sizeof out);
}

/* Count the decimal digits of s. */
static size_t count_digits(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s >= '0' && *s <= '9')
            n++;
    return n;
}

/* ---- accepted notations ---- */

static void test_fr_national_spaces(void **state)
{
    (void)state;
    expect_ok("06 12 34 56 78", "FR", "+33612345678");
}

static void test_fr_national_dots(void **state)
{
    (void)state;
    expect_ok("06.12.34.56.78", "FR", "+33612345678");
}

static void test_fr_national_compact(void **state)
{
    (void)state;
    expect_ok("0612345678", "FR", "+33612345678");
}

static void test_fr_international_spaces(void **state)
{
    (void)state;
    expect_ok("+33 6 12 34 56 78", "FR", "+33612345678");
    expect_ok("+33612345678", "FR", "+33612345678");
}

static void test_fr_idd_00(void **state)
{
    (void)state;
    expect_ok("0033612345678", "FR", "+33612345678");
}

static void test_fr_other_separators(void **state)
{
    (void)state;
    expect_ok("06-12-34-56-78", "FR", "+33612345678");
    expect_ok("(06) 12 34 56 78", "FR", "+33612345678");
    expect_ok("+33 (0)6 12 34 56 78", "FR", "+33612345678");
    /* Non-breaking spaces (U+00A0), as pasted from a phone's contact card. */
    expect_ok("06\xc2\xa0"
              "12\xc2\xa0"
              "34\xc2\xa0"
              "56\xc2\xa0"
              "78",
              "FR", "+33612345678");
    /* Trailing newline from a form field. */
    expect_ok("06 12 34 56 78\n", "FR", "+33612345678");
}

static void test_fr_07_mobile(void **state)
{
    (void)state;
    expect_ok("+33 7 56 78 90 12", "FR", "+33756789012");
    expect_ok("07 56 78 90 12", "FR", "+33756789012");
    /* libphonenumber 8.12 metadata: 07 0x/1x/2x ranges are not allocated, so invalid. */
    expect_err("+33 7 12 34 56 78", "FR", PROV_PHONE_EINVALID);
}

static void test_be_international_region_fr(void **state)
{
    (void)state;
    expect_ok("+32 470 12 34 56", "FR", "+32470123456");
    expect_ok("0032 470 12 34 56", "FR", "+32470123456");
}

static void test_be_national_region_be(void **state)
{
    (void)state;
    expect_ok("0470 12 34 56", "BE", "+32470123456");
    /* Region codes are case-insensitive here. */
    expect_ok("0470 12 34 56", "be", "+32470123456");
    /* The same digits read as French are a landline in the 04 (south-east) area. */
    expect_err("0470 12 34 56", "FR", PROV_PHONE_ENOTMOBILE);
}

static void test_null_region_defaults_to_fr(void **state)
{
    (void)state;
    expect_ok("06 12 34 56 78", NULL, "+33612345678");
    expect_err("0123456789", NULL, PROV_PHONE_ENOTMOBILE);
}

static void test_unknown_region(void **state)
{
    (void)state;
    /* A national number with an unknown region cannot be parsed... */
    expect_err("0612345678", "ZZ", PROV_PHONE_EPARSE);
    /* ...an international one can. */
    expect_ok("+33612345678", "ZZ", "+33612345678");
}

static void test_fixed_line_or_mobile_accepted(void **state)
{
    (void)state;
    /* North-American numbers cannot be told apart: FIXED_LINE_OR_MOBILE is accepted. */
    expect_ok("+1 650 253 0000", "FR", "+16502530000");
}

/* ---- valid, but not mobile ---- */

static void test_landline_not_mobile(void **state)
{
    (void)state;
    expect_err("0123456789", "FR", PROV_PHONE_ENOTMOBILE);     /* Paris, FIXED_LINE */
    expect_err("05 56 12 34 56", "FR", PROV_PHONE_ENOTMOBILE); /* Bordeaux */
}

static void test_premium_not_mobile(void **state)
{
    (void)state;
    expect_err("0899123456", "FR", PROV_PHONE_ENOTMOBILE); /* PREMIUM_RATE */
    expect_err("0800123456", "FR", PROV_PHONE_ENOTMOBILE); /* TOLL_FREE */
}

static void test_voip_not_mobile(void **state)
{
    (void)state;
    expect_err("0912345678", "FR", PROV_PHONE_ENOTMOBILE); /* VOIP */
}

/* ---- not numbers / invalid numbers ---- */

static void test_garbage(void **state)
{
    (void)state;
    /* What libphonenumber gives: "", "+" -> NOT_A_NUMBER (EPARSE); "12" parses as the national
     * number 12 and is only rejected by IsValidNumber (EINVALID). "hello" is EPARSE (letters). */
    expect_err("hello", "FR", PROV_PHONE_EPARSE);
    expect_err("", "FR", PROV_PHONE_EPARSE);
    expect_err("+", "FR", PROV_PHONE_EPARSE);
    expect_err("12", "FR", PROV_PHONE_EINVALID);
    expect_err("+999 123", "FR", PROV_PHONE_EPARSE); /* INVALID_COUNTRY_CODE_ERROR */
    expect_err("0033", "FR", PROV_PHONE_EPARSE);     /* TOO_SHORT_AFTER_IDD */
    expect_err("0612345678 #", "FR", PROV_PHONE_EPARSE);
    expect_err("06\xff"
               "12345678",
               "FR", PROV_PHONE_EPARSE); /* invalid UTF-8 */
}

static void test_null_input(void **state)
{
    (void)state;
    expect_err(NULL, "FR", PROV_PHONE_EPARSE);
}

static void test_letters_rejected(void **state)
{
    (void)state;
    /* libphonenumber itself would turn letters into keypad digits (+33612342223)... */
    expect_err("06 12 34 ABCD", "FR", PROV_PHONE_EPARSE);
    /* ...skip leading junk... */
    expect_err("abc0612345678", "FR", PROV_PHONE_EPARSE);
    /* ...and silently drop extensions, which mean nothing for SMS. */
    expect_err("06 12 34 56 78 ext 12", "FR", PROV_PHONE_EPARSE);
    expect_err("0612345678x12", "FR", PROV_PHONE_EPARSE);
    expect_err("tel:+33612345678", "FR", PROV_PHONE_EPARSE);
}

static void test_too_short_fr_mobile(void **state)
{
    (void)state;
    expect_err("061234567", "FR", PROV_PHONE_EINVALID);
}

static void test_too_long_fr_mobile(void **state)
{
    (void)state;
    expect_err("06123456789", "FR", PROV_PHONE_EINVALID);
}

static void test_dom_national_with_fr_region(void **state)
{
    (void)state;
    /* Réunion mobiles are +262: the national form only works with region "RE". */
    expect_err("0692123456", "FR", PROV_PHONE_EINVALID);
    expect_ok("0692123456", "RE", "+262692123456");
    expect_ok("+262 692 12 34 56", "FR", "+262692123456");
}

static void test_input_length_limit(void **state)
{
    (void)state;
    char in[80];
    /* "0612345678" followed by spaces: exactly 64 bytes is accepted, 65 is not. */
    memset(in, ' ', sizeof in);
    memcpy(in, "0612345678", 10);
    in[64] = '\0';
    expect_ok(in, "FR", "+33612345678");
    in[64] = ' ';
    in[65] = '\0';
    expect_err(in, "FR", PROV_PHONE_EPARSE);
}

/* ---- output buffer ---- */

static void test_espace(void **state)
{
    (void)state;
    char out[16];
    fill(out, sizeof out);
    assert_int_equal(prov_phone_normalize("0612345678", "FR", out, 5), PROV_PHONE_ESPACE);
    assert_untouched(out, sizeof out);
    /* "+33612345678" is 12 characters: 12 bytes is one short, 13 fits exactly. */
    assert_int_equal(prov_phone_normalize("0612345678", "FR", out, 12), PROV_PHONE_ESPACE);
    assert_untouched(out, sizeof out);
    assert_int_equal(prov_phone_normalize("0612345678", "FR", out, 0), PROV_PHONE_ESPACE);
    assert_untouched(out, sizeof out);
    assert_int_equal(prov_phone_normalize("0612345678", "FR", NULL, 16), PROV_PHONE_ESPACE);
    assert_int_equal(prov_phone_normalize("0612345678", "FR", out, 13), PROV_PHONE_OK);
    assert_string_equal(out, "+33612345678");
}

static void test_error_precedence_over_espace(void **state)
{
    (void)state;
    char out[4];
    fill(out, sizeof out);
    /* The number's own problem is reported before the buffer size. */
    assert_int_equal(prov_phone_normalize("0123456789", "FR", out, sizeof out),
                     PROV_PHONE_ENOTMOBILE);
    assert_untouched(out, sizeof out);
}

static void test_longest_e164_needs_17_bytes(void **state)
{
    (void)state;
    /* Austrian mobiles can have a 13-digit national number: 15 digits + '+' + NUL = 17 bytes,
     * so a 16-byte buffer is NOT always enough. */
    char out[17];
    fill(out, sizeof out);
    assert_int_equal(prov_phone_normalize("+43 664 1234567890", "FR", out, 16), PROV_PHONE_ESPACE);
    assert_untouched(out, sizeof out);
    assert_int_equal(prov_phone_normalize("+43 664 1234567890", "FR", out, 17), PROV_PHONE_OK);
    assert_string_equal(out, "+436641234567890");
}

static void test_strerror(void **state)
{
    (void)state;
    int codes[] = {PROV_PHONE_OK,
                   PROV_PHONE_EPARSE,
                   PROV_PHONE_EINVALID,
                   PROV_PHONE_ENOTMOBILE,
                   PROV_PHONE_ESPACE,
                   -99,
                   42};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = prov_phone_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    assert_string_not_equal(prov_phone_strerror(PROV_PHONE_EINVALID),
                            prov_phone_strerror(PROV_PHONE_ENOTMOBILE));
}

/* ---- masking ---- */

static void test_mask_french(void **state)
{
    (void)state;
    char out[32];
    assert_ptr_equal(prov_phone_mask("+33612345678", out, sizeof out), out);
    assert_string_equal(out, "+33 6** ** ** 78");
    prov_phone_mask("+33756789012", out, sizeof out);
    assert_string_equal(out, "+33 7** ** ** 12");
}

static void test_mask_belgian(void **state)
{
    (void)state;
    char out[32];
    prov_phone_mask("+32470123456", out, sizeof out);
    assert_string_equal(out, "+32 4** *** *56");
    /* Only country code (2), first digit (1) and last two (2) are visible. */
    assert_int_equal(count_digits(out), 5);
    assert_null(strstr(out, "0123"));
}

static void test_mask_other_countries_hide_middle(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"+447400123456", "+44 7 *** *** *56"},        /* UK, 10-digit NSN */
        {"+16502530000", "+1 6 *** *** *00"},          /* NANP, 1-digit country code */
        {"+436641234567890", "+43 6 *** *** *** *90"}, /* 13-digit NSN */
        {"+262692123456", "+262 6** *** *56"},         /* 3-digit country code */
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prov_phone_mask(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].want);
        const char *sp = strchr(out, ' ');
        assert_non_null(sp);
        /* Country code + first digit + last two. */
        assert_int_equal(count_digits(out), (size_t)(sp - out - 1) + 3);
    }
}

static void test_mask_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "0612345678",                /* not E.164 */
        "",                          /* empty */
        "+",                         /* nothing after + */
        "+33",                       /* too short */
        "+33612",                    /* too short to hide anything */
        "+33 6 12 34 56 78",         /* not compact E.164 */
        "+33612a45678",              /* non-digit */
        "+999123456789",             /* unassigned country code */
        "+0612345678",               /* no country code starts with 0 */
        "+123456789012345678901234", /* far too long */
    };
    char out[32];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prov_phone_mask(bad[i], out, sizeof out);
        assert_string_equal(out, "***");
    }
    prov_phone_mask(NULL, out, sizeof out);
    assert_string_equal(out, "***");
}

static void test_mask_tiny_buffers(void **state)
{
    (void)state;
    char out[8];

    fill(out, sizeof out);
    assert_ptr_equal(prov_phone_mask("+33612345678", out, 1), out);
    assert_string_equal(out, "");
    assert_int_equal(out[1], SENTINEL);

    fill(out, sizeof out);
    prov_phone_mask("+33612345678", out, 4);
    assert_string_equal(out, "+33");
    assert_int_equal(out[4], SENTINEL);

    fill(out, sizeof out);
    prov_phone_mask("+33612345678", out, 7);
    assert_string_equal(out, "+33 6*");

    fill(out, sizeof out);
    prov_phone_mask("garbage", out, 2);
    assert_string_equal(out, "*");

    /* outlen 0: nothing written at all; NULL out is returned as is. */
    fill(out, sizeof out);
    assert_ptr_equal(prov_phone_mask("+33612345678", out, 0), out);
    assert_untouched(out, sizeof out);
    assert_null(prov_phone_mask("+33612345678", NULL, 16));
}

static void test_normalize_then_mask(void **state)
{
    (void)state;
    char e164[17], masked[32];
    assert_int_equal(prov_phone_normalize("06.12.34.56.78", NULL, e164, sizeof e164),
                     PROV_PHONE_OK);
    prov_phone_mask(e164, masked, sizeof masked);
    assert_string_equal(masked, "+33 6** ** ** 78");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fr_national_spaces),
        cmocka_unit_test(test_fr_national_dots),
        cmocka_unit_test(test_fr_national_compact),
        cmocka_unit_test(test_fr_international_spaces),
        cmocka_unit_test(test_fr_idd_00),
        cmocka_unit_test(test_fr_other_separators),
        cmocka_unit_test(test_fr_07_mobile),
        cmocka_unit_test(test_be_international_region_fr),
        cmocka_unit_test(test_be_national_region_be),
        cmocka_unit_test(test_null_region_defaults_to_fr),
        cmocka_unit_test(test_unknown_region),
        cmocka_unit_test(test_fixed_line_or_mobile_accepted),
        cmocka_unit_test(test_landline_not_mobile),
        cmocka_unit_test(test_premium_not_mobile),
        cmocka_unit_test(test_voip_not_mobile),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_null_input),
        cmocka_unit_test(test_letters_rejected),
        cmocka_unit_test(test_too_short_fr_mobile),
        cmocka_unit_test(test_too_long_fr_mobile),
        cmocka_unit_test(test_dom_national_with_fr_region),
        cmocka_unit_test(test_input_length_limit),
        cmocka_unit_test(test_espace),
        cmocka_unit_test(test_error_precedence_over_espace),
        cmocka_unit_test(test_longest_e164_needs_17_bytes),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_mask_french),
        cmocka_unit_test(test_mask_belgian),
        cmocka_unit_test(test_mask_other_countries_hide_middle),
        cmocka_unit_test(test_mask_invalid),
        cmocka_unit_test(test_mask_tiny_buffers),
        cmocka_unit_test(test_normalize_then_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
