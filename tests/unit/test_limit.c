/*
 * test_limit — gw_limit's token buckets: a burst, then one token per 1/rate seconds; keys are
 * independent; rate 0 means no limit; a new rate applies to existing buckets; idle buckets are
 * dropped once the table grows (memory stays bounded under a scan from many addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "gw_limit.h"

static void test_burst_then_rate(void **state)
{
    (void)state;
    struct gw_limit *l = gw_limit_new(10, 20); /* 10/s, 20 kept */
    int ok = 0;
    for (int i = 0; i < 25; i++)
        ok += gw_limit_take(l, "192.0.2.1", 100.0, NULL);
    assert_int_equal(ok, 20);
    double wait = -1;
    assert_int_equal(gw_limit_take(l, "192.0.2.1", 100.0, &wait), 0);
    assert_true(wait > 0.09 && wait <= 0.1 + 1e-9); /* one token every 0.1 s */
    /* 0.35 s later: 3 tokens back */
    ok = 0;
    for (int i = 0; i < 5; i++)
        ok += gw_limit_take(l, "192.0.2.1", 100.35, NULL);
    assert_int_equal(ok, 3);
    /* long idle: back to the burst, not more */
    ok = 0;
    for (int i = 0; i < 30; i++)
        ok += gw_limit_take(l, "192.0.2.1", 1000.0, NULL);
    assert_int_equal(ok, 20);
    gw_limit_free(l);
}

static void test_keys_are_independent(void **state)
{
    (void)state;
    struct gw_limit *l = gw_limit_new(1, 2);
    assert_int_equal(gw_limit_take(l, "a", 0, NULL), 1);
    assert_int_equal(gw_limit_take(l, "a", 0, NULL), 1);
    assert_int_equal(gw_limit_take(l, "a", 0, NULL), 0);
    assert_int_equal(gw_limit_take(l, "b", 0, NULL), 1);
    assert_int_equal(gw_limit_take(l, "ab", 0, NULL), 1);
    assert_int_equal(gw_limit_size(l), 3);
    gw_limit_free(l);
}

static void test_unlimited_and_reload(void **state)
{
    (void)state;
    struct gw_limit *l = gw_limit_new(0, 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(gw_limit_take(l, "x", 0, NULL), 1);
    assert_int_equal(gw_limit_size(l), 0); /* nothing stored when unlimited */
    gw_limit_set(l, 1, 1);
    assert_int_equal(gw_limit_take(l, "x", 5, NULL), 1);
    assert_int_equal(gw_limit_take(l, "x", 5, NULL), 0);
    gw_limit_set(l, 100, 3); /* a higher rate applies to the existing bucket */
    assert_int_equal(gw_limit_take(l, "x", 5.02, NULL), 1);
    gw_limit_set(l, 0, 0); /* and 0 lifts the limit again */
    assert_int_equal(gw_limit_take(l, "x", 5.02, NULL), 1);
    gw_limit_free(l);
}

static void test_idle_buckets_are_dropped(void **state)
{
    (void)state;
    struct gw_limit *l = gw_limit_new(1, 1);
    char key[32];
    for (int i = 0; i < 100000; i++) { /* a scan: one request from each of 100,000 addresses */
        snprintf(key, sizeof key, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(gw_limit_take(l, key, i * 0.001, NULL), 1);
    }
    /* a bucket is full again 1 s after its request: at most ~1,000 recent ones (plus the
     * table's slack before the next pruning) may be kept */
    assert_true(gw_limit_size(l) <= 4096);
    /* a key still limited is never pruned (a pruned one would come back as a full bucket and be
     * served): 10.1.132.172 (i = 99500) took its token at t = 99.5, half of one is back at 100 */
    assert_int_equal(gw_limit_take(l, "10.1.132.172", 100.0, NULL), 0);
    gw_limit_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_keys_are_independent),
        cmocka_unit_test(test_unlimited_and_reload),
        cmocka_unit_test(test_idle_buckets_are_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
