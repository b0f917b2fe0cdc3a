/* Unit tests of retry backoff and the small time helpers (gatewayd/gw_util.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gw_util.h"

static void test_backoff_grows_then_caps(void **state)
{
    (void)state;
    /* With rnd = 0 the result is the lower half (d/2); with rnd = max, the full d. */
    int64_t expect_full[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (int a = 1; a <= 9; a++) {
        int64_t lo = gw_backoff_ms(a, 1000, 60000, 0);
        int64_t hi = gw_backoff_ms(a, 1000, 60000, UINT32_MAX);
        assert_int_equal(lo, expect_full[a - 1] / 2);
        assert_true(hi <= expect_full[a - 1]);
        assert_true(hi >= expect_full[a - 1] / 2);
    }
}

static void test_backoff_jitter_spreads(void **state)
{
    (void)state;
    /* Different random inputs give different delays, all within [d/2, d]. */
    int distinct = 0;
    int64_t prev = -1;
    for (uint32_t r = 0; r < 1000; r += 37) {
        int64_t d = gw_backoff_ms(3, 1000, 60000, r * 2654435761u);
        assert_true(d >= 2000 && d <= 4000);
        if (d != prev)
            distinct++;
        prev = d;
    }
    assert_true(distinct > 10);
}

static void test_backoff_edges(void **state)
{
    (void)state;
    assert_int_equal(gw_backoff_ms(0, 1000, 5000, 0), 500);     /* attempt < 1 counts as 1 */
    assert_int_equal(gw_backoff_ms(1, 0, 0, 0), 1);             /* never 0 */
    assert_int_equal(gw_backoff_ms(1000000, 1000, 5000, 0), 2500); /* no overflow */
    assert_true(gw_backoff_ms(64, INT64_MAX / 4, INT64_MAX / 2, 7) <= INT64_MAX / 2);
}

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t t;
    assert_int_equal(gw_parse_rfc3339("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(gw_parse_rfc3339("2026-12-01T10:00:00+01:00", &t), 0);
    assert_int_equal(t, 1796115600); /* 2026-12-01T09:00:00Z */
    assert_int_equal(gw_parse_rfc3339("2026-12-01T09:00:00.123456Z", &t), 0);
    assert_int_equal(t, 1796115600);
    assert_int_equal(gw_parse_rfc3339("2024-02-29T00:00:00Z", &t), 0);
    assert_int_equal(gw_parse_rfc3339("2026-02-29T00:00:00Z", &t), GW_EINVAL);
    assert_int_equal(gw_parse_rfc3339("2026-13-01T00:00:00Z", &t), GW_EINVAL);
    assert_int_equal(gw_parse_rfc3339("2026-12-01T10:00:00", &t), GW_EINVAL); /* no zone */
    assert_int_equal(gw_parse_rfc3339("2026-12-01", &t), GW_EINVAL);
    assert_int_equal(gw_parse_rfc3339("tomorrow", &t), GW_EINVAL);
    assert_int_equal(gw_parse_rfc3339("2026-12-01T10:00:00Zjunk", &t), GW_EINVAL);
    char buf[32];
    gw_format_rfc3339(1796115600, buf, sizeof buf);
    assert_string_equal(buf, "2026-12-01T09:00:00Z");
}

static void test_parse_i64(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(gw_parse_i64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(gw_parse_i64("101", 0, 100, &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64("4x", 0, 100, &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64("", 0, 100, &v), GW_EINVAL);
    assert_int_equal(gw_parse_i64("99999999999999999999", 0, INT64_MAX, &v), GW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_grows_then_caps),
        cmocka_unit_test(test_backoff_jitter_spreads),
        cmocka_unit_test(test_backoff_edges),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_parse_i64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
