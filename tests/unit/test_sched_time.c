/*
 * Unit tests of the scheduler's time math (gatewayd/sched_time.c).
 *
 * Every expected instant below was worked out by hand from the rules in sched_time.h and the
 * Europe/Paris offsets (CET = UTC+1; CEST = UTC+2 from the last Sunday of March 01:00 UTC to
 * the last Sunday of October 01:00 UTC: 2026-03-29 and 2026-10-25, 2027-03-28), then checked
 * with `TZ=Europe/Paris date -d …`; none comes from running the code. Instants are written as
 * UTC wall-clock fields (Z(2026, 3, 31, 8, 0) is 2026-03-31 08:00 UTC = 10:00 CEST).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sched_time.h"

#define PARIS "Europe/Paris"

/* UTC wall-clock fields -> Unix seconds (timegm ignores TZ). */
static int64_t Z(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi};
    return (int64_t)timegm(&tm);
}

static struct sched_local L(int y, int mo, int d, int h, int mi)
{
    struct sched_local l = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi};
    return l;
}

struct ut {
    int y, mo, d, h, mi;
};

/*
 * Chains sched_rrule_next from `after`: each result must be the next expected instant and
 * becomes the next `after`. Then the rule must answer `tail` (1 = another occurrence exists,
 * 0 = exhausted).
 */
static void walk(const char *rule, struct sched_local dtstart, int64_t after,
                 const struct ut *want, size_t n, int tail)
{
    char err[128] = "";
    int64_t next = 0;

    for (size_t i = 0; i < n; i++) {
        int64_t w = Z(want[i].y, want[i].mo, want[i].d, want[i].h, want[i].mi);
        int rc = sched_rrule_next(PARIS, rule, &dtstart, after, &next, err, sizeof err);
        if (rc != 1 || next != w)
            fail_msg("%s: occurrence %zu: rc %d (%s), got %lld, want %04d-%02d-%02d %02d:%02dZ",
                     rule, i + 1, rc, err, (long long)next, want[i].y, want[i].mo, want[i].d,
                     want[i].h, want[i].mi);
        after = next;
    }
    assert_int_equal(sched_rrule_next(PARIS, rule, &dtstart, after, &next, err, sizeof err),
                     tail);
}

/* ---------------------------------------------------------------------------------------- */
/* Local <-> UTC                                                                             */

static void test_local_to_utc(void **state)
{
    static const struct {
        const char *tz;
        struct sched_local l;
        struct ut want;
    } cases[] = {
        {PARIS, {2026, 1, 15, 9, 0}, {2026, 1, 15, 8, 0}},     /* CET */
        {PARIS, {2026, 7, 14, 9, 0}, {2026, 7, 14, 7, 0}},     /* CEST */
        {PARIS, {2026, 3, 29, 1, 59}, {2026, 3, 29, 0, 59}},   /* last minute before the gap */
        {PARIS, {2026, 3, 29, 2, 0}, {2026, 3, 29, 1, 0}},     /* gap -> 03:00 CEST */
        {PARIS, {2026, 3, 29, 2, 30}, {2026, 3, 29, 1, 0}},    /* gap -> 03:00 CEST */
        {PARIS, {2026, 3, 29, 2, 59}, {2026, 3, 29, 1, 0}},    /* gap -> 03:00 CEST */
        {PARIS, {2026, 3, 29, 3, 0}, {2026, 3, 29, 1, 0}},     /* first minute after */
        {PARIS, {2026, 10, 25, 1, 59}, {2026, 10, 24, 23, 59}}, /* CEST */
        {PARIS, {2026, 10, 25, 2, 0}, {2026, 10, 25, 0, 0}},   /* twice: the first (CEST) */
        {PARIS, {2026, 10, 25, 2, 30}, {2026, 10, 25, 0, 30}}, /* twice: the first (CEST) */
        {PARIS, {2026, 10, 25, 3, 0}, {2026, 10, 25, 2, 0}},   /* CET */
        {PARIS, {2024, 2, 29, 12, 0}, {2024, 2, 29, 11, 0}},   /* leap day */
        {"America/New_York", {2026, 3, 8, 2, 30}, {2026, 3, 8, 7, 0}},  /* gap -> 03:00 EDT */
        {"America/New_York", {2026, 11, 1, 1, 30}, {2026, 11, 1, 5, 30}}, /* first: EDT */
        {"Indian/Reunion", {2026, 3, 29, 2, 30}, {2026, 3, 28, 22, 30}}, /* UTC+4, no DST */
        {"UTC", {2026, 3, 29, 2, 30}, {2026, 3, 29, 2, 30}},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t u = -1;
        const struct ut *w = &cases[i].want;
        assert_int_equal(sched_local_to_utc(cases[i].tz, &cases[i].l, &u), 0);
        if (u != Z(w->y, w->mo, w->d, w->h, w->mi))
            fail_msg("case %zu (%s %04d-%02d-%02d %02d:%02d): got %lld", i, cases[i].tz,
                     cases[i].l.year, cases[i].l.month, cases[i].l.day, cases[i].l.hour,
                     cases[i].l.minute, (long long)u);
    }
}

static void test_local_to_utc_invalid(void **state)
{
    static const struct sched_local bad[] = {
        {2026, 2, 29, 10, 0}, {2026, 13, 1, 10, 0}, {2026, 0, 1, 10, 0}, {2026, 4, 31, 10, 0},
        {2026, 4, 0, 10, 0},  {2026, 4, 1, 24, 0},  {2026, 4, 1, -1, 0}, {2026, 4, 1, 10, 60},
        {1969, 12, 31, 23, 0}, {2500, 1, 1, 0, 0},
    };
    struct sched_local ok = L(2026, 4, 1, 10, 0);
    int64_t u = 42;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sched_local_to_utc(PARIS, &bad[i], &u), -1);
    assert_int_equal(sched_local_to_utc("Europe/Nowhere", &ok, &u), -1);
    assert_int_equal(sched_local_to_utc("europe/paris", &ok, &u), -1);
    assert_int_equal(sched_local_to_utc("", &ok, &u), -1);
    assert_int_equal(sched_local_to_utc(NULL, &ok, &u), -1);
    assert_int_equal(sched_local_to_utc("../../etc/passwd", &ok, &u), -1);
    assert_int_equal(sched_local_to_utc("/usr/share/zoneinfo/Europe/Paris", &ok, &u), -1);
    assert_int_equal(sched_local_to_utc(PARIS, NULL, &u), -1);
    assert_int_equal(u, 42); /* untouched on error */
}

static void test_utc_to_local(void **state)
{
    static const struct {
        struct ut utc;
        struct sched_local want;
        int weekday;
    } cases[] = {
        {{2026, 1, 15, 8, 0}, {2026, 1, 15, 9, 0}, 4},
        {{2026, 3, 29, 0, 59}, {2026, 3, 29, 1, 59}, 0},
        {{2026, 3, 29, 1, 0}, {2026, 3, 29, 3, 0}, 0},
        {{2026, 10, 25, 0, 30}, {2026, 10, 25, 2, 30}, 0}, /* CEST */
        {{2026, 10, 25, 1, 30}, {2026, 10, 25, 2, 30}, 0}, /* CET: same wall clock */
        {{2026, 12, 31, 23, 30}, {2027, 1, 1, 0, 30}, 5},  /* new year in Paris first */
        {{2024, 2, 29, 23, 0}, {2024, 3, 1, 0, 0}, 5},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sched_local l;
        int wd = -1;
        const struct ut *u = &cases[i].utc;
        assert_int_equal(sched_utc_to_local(PARIS, Z(u->y, u->mo, u->d, u->h, u->mi), &l, &wd),
                         0);
        assert_int_equal(l.year, cases[i].want.year);
        assert_int_equal(l.month, cases[i].want.month);
        assert_int_equal(l.day, cases[i].want.day);
        assert_int_equal(l.hour, cases[i].want.hour);
        assert_int_equal(l.minute, cases[i].want.minute);
        assert_int_equal(wd, cases[i].weekday);
    }
}

static void test_utc_to_local_invalid(void **state)
{
    struct sched_local l = L(1, 1, 1, 1, 1);
    (void)state;
    assert_int_equal(sched_utc_to_local("Nowhere/Land", Z(2026, 1, 1, 0, 0), &l, NULL), -1);
    assert_int_equal(sched_utc_to_local(PARIS, -1, &l, NULL), -1);
    assert_int_equal(sched_utc_to_local(PARIS, INT64_MAX, &l, NULL), -1);
    assert_int_equal(l.year, 1);
    /* seconds are dropped, weekday may be NULL */
    assert_int_equal(sched_utc_to_local(PARIS, Z(2026, 1, 1, 12, 0) + 59, &l, NULL), 0);
    assert_int_equal(l.hour, 13);
    assert_int_equal(l.minute, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Recurrence                                                                                */

static void test_monthly_31st(void **state)
{
    /* months without a 31st are skipped (RFC 5545), never moved to the 30th */
    static const struct ut want[] = {
        {2026, 1, 31, 9, 0},  {2026, 3, 31, 8, 0},  {2026, 5, 31, 8, 0}, {2026, 7, 31, 8, 0},
        {2026, 8, 31, 8, 0},  {2026, 10, 31, 9, 0}, {2026, 12, 31, 9, 0}, {2027, 1, 31, 9, 0},
        {2027, 3, 31, 8, 0},  {2027, 5, 31, 8, 0},  {2027, 7, 31, 8, 0}, {2027, 8, 31, 8, 0},
    };
    struct sched_local dt = L(2026, 1, 31, 10, 0);
    (void)state;
    /* after = one second before dtstart: dtstart itself is the first occurrence */
    walk("FREQ=MONTHLY;BYMONTHDAY=31", dt, Z(2026, 1, 31, 9, 0) - 1, want, 12, 1);
    /* the same without BYMONTHDAY: the day comes from dtstart */
    walk("FREQ=MONTHLY", dt, Z(2026, 1, 31, 9, 0) - 1, want, 12, 1);
}

static void test_weekly_tu_th_across_dst(void **state)
{
    static const struct ut want[] = {
        {2026, 3, 17, 16, 30}, {2026, 3, 19, 16, 30}, {2026, 3, 24, 16, 30},
        {2026, 3, 26, 16, 30}, {2026, 3, 31, 15, 30}, {2026, 4, 2, 15, 30},
    };
    (void)state;
    walk("FREQ=WEEKLY;BYDAY=TU,TH", L(2026, 3, 17, 17, 30), Z(2026, 3, 1, 0, 0), want, 6, 1);
    /* dtstart on a Monday does not match the rule: it is not an occurrence */
    walk("FREQ=WEEKLY;BYDAY=TU,TH", L(2026, 3, 16, 17, 30), Z(2026, 3, 1, 0, 0), want, 6, 1);
}

static void test_last_weekday_of_month(void **state)
{
    /* 09:00 local: 08:00Z in winter, 07:00Z in summer */
    static const struct ut want[] = {
        {2026, 1, 30, 8, 0}, {2026, 2, 27, 8, 0}, {2026, 3, 31, 7, 0}, {2026, 4, 30, 7, 0},
        {2026, 5, 29, 7, 0}, {2026, 6, 30, 7, 0}, {2026, 7, 31, 7, 0}, {2026, 8, 31, 7, 0},
        {2026, 9, 30, 7, 0}, {2026, 10, 30, 8, 0}, {2026, 11, 30, 8, 0}, {2026, 12, 31, 8, 0},
    };
    (void)state;
    walk("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", L(2026, 1, 1, 9, 0),
         Z(2025, 12, 31, 0, 0), want, 12, 1);
}

static void test_until_and_count(void **state)
{
    static const struct ut mondays[] = {{2026, 4, 6, 7, 0}, {2026, 4, 13, 7, 0},
                                        {2026, 4, 20, 7, 0}};
    static const struct ut days[] = {{2026, 4, 1, 7, 0}, {2026, 4, 2, 7, 0}};
    static const struct ut jan[] = {{2026, 1, 5, 8, 0}, {2026, 1, 6, 8, 0}, {2026, 1, 7, 8, 0}};
    struct sched_local jan5 = L(2026, 1, 5, 9, 0);
    int64_t next = 0;
    char err[128];
    (void)state;
    /* UNTIL as a date: that local day is included */
    walk("FREQ=WEEKLY;BYDAY=MO;UNTIL=20260420", L(2026, 4, 6, 9, 0), Z(2026, 4, 1, 0, 0),
         mondays, 3, 0);
    /* UNTIL in UTC, inclusive: 04-02 09:00 CEST = 07:00Z is the last */
    walk("FREQ=DAILY;UNTIL=20260402T070000Z", L(2026, 4, 1, 9, 0), 0, days, 2, 0);
    /* UNTIL as local wall-clock time: 04-02 08:59:59 excludes 04-02 09:00 */
    walk("FREQ=DAILY;UNTIL=20260402T085959", L(2026, 4, 1, 9, 0), 0, days, 1, 0);
    /* COUNT counts from dtstart */
    walk("FREQ=DAILY;COUNT=3", jan5, 0, jan, 3, 0);
    walk("FREQ=DAILY;COUNT=3", jan5, Z(2026, 1, 5, 12, 0), jan + 1, 2, 0);
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=DAILY;COUNT=3", &jan5, Z(2030, 1, 1, 0, 0),
                                      &next, err, sizeof err),
                     0);
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=DAILY;UNTIL=20260110", &jan5,
                                      Z(2030, 1, 1, 0, 0), &next, err, sizeof err),
                     0);
    /* COUNT with a rule that skips months: the 3rd occurrence is in May */
    walk("FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3", L(2026, 1, 31, 10, 0), Z(2026, 4, 1, 0, 0),
         (const struct ut[]){{2026, 5, 31, 8, 0}}, 1, 0);
    /* Friday the 13th: 2026-02-13, 03-13, 11-13, then 2027-08-13. From June, COUNT=3 leaves
     * only November (the two skipped ones are counted without walking to them). */
    walk("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=3", L(2026, 1, 1, 9, 0),
         Z(2026, 6, 1, 0, 0), (const struct ut[]){{2026, 11, 13, 8, 0}}, 1, 0);
    walk("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", L(2026, 1, 1, 9, 0), Z(2026, 6, 1, 0, 0),
         (const struct ut[]){{2026, 11, 13, 8, 0}, {2027, 8, 13, 7, 0}}, 2, 1);
    /* from the second one (03-13 09:00 CET = 08:00Z) on, COUNT=2 is exhausted */
    walk("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=2", L(2026, 1, 1, 9, 0),
         Z(2026, 3, 13, 8, 0) - 1, (const struct ut[]){{2026, 3, 13, 8, 0}}, 1, 0);
}

static void test_daily_across_dst(void **state)
{
    static const struct ut spring[] = {{2026, 3, 27, 1, 30}, {2026, 3, 28, 1, 30},
                                       {2026, 3, 29, 1, 0}, /* 02:30 does not exist: 03:00 */
                                       {2026, 3, 30, 0, 30}};
    static const struct ut autumn[] = {{2026, 10, 24, 0, 30},
                                       {2026, 10, 25, 0, 30}, /* once: the first 02:30 */
                                       {2026, 10, 26, 1, 30}};
    static const struct ut ten[] = {{2026, 3, 28, 9, 0}, {2026, 3, 29, 8, 0}};
    static const struct ut ten_autumn[] = {{2026, 10, 24, 8, 0}, {2026, 10, 25, 9, 0}};
    (void)state;
    walk("FREQ=DAILY", L(2026, 3, 27, 2, 30), 0, spring, 4, 1);
    walk("FREQ=DAILY", L(2026, 10, 24, 2, 30), 0, autumn, 3, 1);
    walk("FREQ=DAILY", L(2026, 3, 28, 10, 0), 0, ten, 2, 1);
    walk("FREQ=DAILY", L(2026, 10, 24, 10, 0), 0, ten_autumn, 2, 1);
    /* dtstart itself in the gap */
    walk("FREQ=DAILY", L(2026, 3, 29, 2, 30), 0, spring + 2, 2, 1);
}

static void test_far_after_dtstart(void **state)
{
    (void)state;
    /* daily since 2023-01-01 09:00; after 2026-06-01 00:00Z (02:00 CEST) */
    walk("FREQ=DAILY", L(2023, 1, 1, 9, 0), Z(2026, 6, 1, 0, 0),
         (const struct ut[]){{2026, 6, 1, 7, 0}, {2026, 6, 2, 7, 0}}, 2, 1);
    /* exactly on an occurrence: strictly after */
    walk("FREQ=DAILY", L(2023, 1, 1, 9, 0), Z(2026, 6, 1, 7, 0),
         (const struct ut[]){{2026, 6, 2, 7, 0}}, 1, 1);
    /* every other Monday from Monday 2023-01-02: 2026-06-01 is 178 weeks later (even) */
    walk("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", L(2023, 1, 2, 9, 0), Z(2026, 6, 1, 0, 0),
         (const struct ut[]){{2026, 6, 1, 7, 0}, {2026, 6, 15, 7, 0}}, 2, 1);
    walk("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", L(2023, 1, 2, 9, 0), Z(2026, 6, 2, 0, 0),
         (const struct ut[]){{2026, 6, 15, 7, 0}}, 1, 1);
    /* every 3 months on the 15th from January: Jan, Apr, Jul, Oct */
    walk("FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=15", L(2023, 1, 15, 10, 0), Z(2026, 6, 1, 0, 0),
         (const struct ut[]){{2026, 7, 15, 8, 0}, {2026, 10, 15, 8, 0}, {2027, 1, 15, 9, 0}},
         3, 1);
    /* yearly on the first Monday of September */
    walk("FREQ=YEARLY;BYMONTH=9;BYDAY=1MO", L(2023, 9, 4, 18, 0), Z(2026, 6, 1, 0, 0),
         (const struct ut[]){{2026, 9, 7, 16, 0}, {2027, 9, 6, 16, 0}}, 2, 1);
}

static void test_daily_weekly_filters(void **state)
{
    /* 18:00 in winter: 17:00Z */
    static const struct ut jan_tue[] = {{2026, 1, 6, 17, 0},  {2026, 1, 13, 17, 0},
                                        {2026, 1, 20, 17, 0}, {2026, 1, 27, 17, 0},
                                        {2027, 1, 5, 17, 0}};
    static const struct ut feb_mon[] = {{2026, 2, 2, 17, 0},  {2026, 2, 9, 17, 0},
                                        {2026, 2, 16, 17, 0}, {2026, 2, 23, 17, 0},
                                        {2027, 2, 1, 17, 0}};
    (void)state;
    /* every Tuesday of January: DAILY filtered by BYDAY and BYMONTH */
    walk("FREQ=DAILY;BYDAY=TU;BYMONTH=1", L(2026, 1, 1, 18, 0), 0, jan_tue, 5, 1);
    walk("FREQ=DAILY;BYDAY=TU;BYMONTH=1;COUNT=5", L(2026, 1, 1, 18, 0), 0, jan_tue, 5, 0);
    /* weekly in February, on dtstart's weekday (Monday 2026-02-02) */
    walk("FREQ=WEEKLY;BYMONTH=2", L(2026, 2, 2, 18, 0), 0, feb_mon, 5, 1);
    /* every day of January 2026 then of January 2027 */
    walk("FREQ=DAILY;BYMONTH=1", L(2026, 1, 31, 18, 0), 0,
         (const struct ut[]){{2026, 1, 31, 17, 0}, {2027, 1, 1, 17, 0}}, 2, 1);
}

static void test_sparse_and_exhausted(void **state)
{
    int64_t next = 0;
    char err[128];
    struct sched_local d2025 = L(2025, 1, 1, 9, 0);
    (void)state;
    /* 29 February every 4 years: only from a leap year */
    walk("FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29", L(2024, 2, 29, 9, 0), 0,
         (const struct ut[]){{2024, 2, 29, 8, 0}, {2028, 2, 29, 8, 0}}, 2, 1);
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29",
                                      &d2025, 0, &next, err, sizeof err),
                     0);
    /* the 4th Saturday is never the 11th */
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=MONTHLY;BYDAY=4SA;BYMONTHDAY=11", &d2025, 0,
                                      &next, err, sizeof err),
                     0);
    /* every 12 months from January, but only in February */
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=MONTHLY;INTERVAL=12;BYMONTH=2", &d2025, 0,
                                      &next, err, sizeof err),
                     0);
    /* past the supported range */
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=DAILY", &d2025, INT64_MAX, &next, err,
                                      sizeof err),
                     0);
    assert_int_equal(next, 0);
}

static void test_rrule_next_errors(void **state)
{
    struct sched_local dt = L(2026, 1, 5, 9, 0), bad = L(2026, 2, 30, 9, 0);
    int64_t next = 7;
    char err[128];
    (void)state;
    err[0] = '\0';
    assert_int_equal(sched_rrule_next("Mars/Olympus", "FREQ=DAILY", &dt, 0, &next, err,
                                      sizeof err),
                     -1);
    assert_string_equal(err, "unknown time zone");
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=DAILY", &bad, 0, &next, err, sizeof err), -1);
    assert_string_equal(err, "invalid dtstart");
    assert_int_equal(sched_rrule_next(PARIS, "FREQ=HOURLY", &dt, 0, &next, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "at most daily"));
    assert_int_equal(sched_rrule_next(PARIS, "garbage", &dt, 0, &next, err, sizeof err), -1);
    assert_int_equal(next, 7);
    /* err may be NULL */
    assert_int_equal(sched_rrule_next(PARIS, "garbage", &dt, 0, &next, NULL, 0), -1);
}

static void test_rrule_check(void **state)
{
    static const char *const good[] = {
        "FREQ=DAILY",
        "freq=daily;interval=2",
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
        "FREQ=WEEKLY;BYDAY=TU,TH;WKST=SU",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;COUNT=10",
        "FREQ=MONTHLY;BYMONTHDAY=28",
        "FREQ=MONTHLY;BYMONTHDAY=-1",
        "FREQ=MONTHLY;BYDAY=+2TU",
        "FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20270101",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=MONTHLY;BYMONTHDAY=1,-1;BYSETPOS=-1",
        "FREQ=MONTHLY;BYDAY=MO;BYMONTHDAY=1,-31;BYSETPOS=-1",
        "FREQ=YEARLY",
        "FREQ=YEARLY;BYMONTH=9;BYDAY=1MO",
        "FREQ=DAILY;UNTIL=20261231T235959Z",
        "FREQ=DAILY;UNTIL=20261231T235959",
    };
    static const struct {
        const char *rule;
        const char *reason; /* a word of the expected reason */
    } bad[] = {
        {"garbage", "NAME=VALUE"},
        {"", "empty"},
        {"FREQ=HOURLY", "at most daily"},
        {"FREQ=MINUTELY", "at most daily"},
        {"FREQ=SECONDLY", "at most daily"},
        {"FREQ=FORTNIGHTLY", "FREQ"},
        {"INTERVAL=2", "FREQ is required"},
        {"FREQ=DAILY;FOO=1", "unknown part"},
        {"FREQ=DAILY;;COUNT=2", "empty part"},
        {"FREQ=DAILY;", "empty part"},
        {"FREQ=DAILY;FREQ=WEEKLY", "twice"},
        {"FREQ=DAILY;COUNT=", "no value"},
        {"FREQ=DAILY;COUNT=3x", "COUNT"},
        {"FREQ=DAILY;COUNT=0", "COUNT"},
        {"FREQ=DAILY;COUNT=1001", "COUNT"},
        {"FREQ=DAILY;INTERVAL=0", "INTERVAL"},
        {"FREQ=DAILY;INTERVAL=70000", "INTERVAL"},
        {"FREQ=DAILY;COUNT=3;UNTIL=20260101", "mutually exclusive"},
        {"FREQ=DAILY;UNTIL=2026-01-01", "UNTIL"},
        {"FREQ=DAILY;UNTIL=20260230", "UNTIL"},
        {"FREQ=DAILY;BYHOUR=9", "time of day"},
        {"FREQ=YEARLY;BYWEEKNO=20", "not supported"},
        {"FREQ=YEARLY;BYYEARDAY=100", "not supported"},
        {"RSCALE=HEBREW;FREQ=YEARLY", "not supported"},
        {"FREQ=DAILY;BYDAY=XX", "BYDAY"},
        {"FREQ=DAILY;BYDAY=1MO", "position"},
        {"FREQ=MONTHLY;BYDAY=6MO", "position"},
        {"FREQ=MONTHLY;BYDAY=MO,MO", "duplicate"},
        {"FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY"},
        {"FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY"},
        {"FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY"},
        {"FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30,31", "no existing day"},
        {"FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS"},
        {"FREQ=MONTHLY;BYMONTHDAY=1,-31;BYSETPOS=-1", "same day"},
        {"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=28,-2;BYSETPOS=1", "same day"},
        {"FREQ=WEEKLY;BYDAY=MO;BYSETPOS=1", "BYSETPOS"},
        {"FREQ=DAILY;INTERVAL=7;BYDAY=TU", "INTERVAL"},
        {"FREQ=YEARLY;BYDAY=MO", "BYMONTH"},
        {"FREQ=DAILY;WKST=XX", "WKST"},
        {"RRULE:FREQ=DAILY", "unknown part"},
        {"FREQ=DAILY ;COUNT=2", "character"},
        {"FREQ=DAILY;COUNT=2\n", "character"},
    };
    char err[128], big[SCHED_RRULE_MAX + 16];
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        err[0] = '\0';
        if (sched_rrule_check(good[i], err, sizeof err) != 0)
            fail_msg("'%s' refused: %s", good[i], err);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (sched_rrule_check(bad[i].rule, err, sizeof err) != -1)
            fail_msg("'%s' accepted", bad[i].rule);
        if (strstr(err, bad[i].reason) == NULL)
            fail_msg("'%s': reason '%s' lacks '%s'", bad[i].rule, err, bad[i].reason);
    }
    assert_int_equal(sched_rrule_check(NULL, err, sizeof err), -1);
    /* too long */
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sched_rrule_check(big, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer"));
    /* a short err buffer is cut, NUL-terminated */
    assert_int_equal(sched_rrule_check("FREQ=HOURLY", err, 5), -1);
    assert_int_equal(strlen(err), 4);
}

/* ---------------------------------------------------------------------------------------- */
/* Holidays                                                                                  */

static void test_easter(void **state)
{
    static const int easter[][3] = {{2026, 4, 5},  {2027, 3, 28}, {2028, 4, 16}, {2029, 4, 1},
                                    {2030, 4, 21}, {2000, 4, 23}, {2019, 4, 21}, {2038, 4, 25},
                                    {2285, 3, 22}};
    (void)state;
    for (size_t i = 0; i < sizeof easter / sizeof easter[0]; i++) {
        int m = 0, d = 0;
        sched_easter(easter[i][0], &m, &d);
        assert_int_equal(m, easter[i][1]);
        assert_int_equal(d, easter[i][2]);
    }
}

static void test_holidays_2026_2030(void **state)
{
    /* every holiday of each year; every other day of the year must not be one */
    static const int hol[5][11][2] = {
        /* 2026: Easter 04-05 */
        {{1, 1}, {4, 6}, {5, 1}, {5, 8}, {5, 14}, {5, 25}, {7, 14}, {8, 15}, {11, 1}, {11, 11},
         {12, 25}},
        /* 2027: Easter 03-28 */
        {{1, 1}, {3, 29}, {5, 1}, {5, 6}, {5, 8}, {5, 17}, {7, 14}, {8, 15}, {11, 1}, {11, 11},
         {12, 25}},
        /* 2028: Easter 04-16 */
        {{1, 1}, {4, 17}, {5, 1}, {5, 8}, {5, 25}, {6, 5}, {7, 14}, {8, 15}, {11, 1}, {11, 11},
         {12, 25}},
        /* 2029: Easter 04-01 */
        {{1, 1}, {4, 2}, {5, 1}, {5, 8}, {5, 10}, {5, 21}, {7, 14}, {8, 15}, {11, 1}, {11, 11},
         {12, 25}},
        /* 2030: Easter 04-21 */
        {{1, 1}, {4, 22}, {5, 1}, {5, 8}, {5, 30}, {6, 10}, {7, 14}, {8, 15}, {11, 1}, {11, 11},
         {12, 25}},
    };
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    (void)state;
    for (int yi = 0; yi < 5; yi++) {
        int year = 2026 + yi, count = 0;
        for (int m = 1; m <= 12; m++) {
            int len = mdays[m - 1] + (m == 2 && year % 4 == 0);
            for (int d = 1; d <= len; d++) {
                int want = 0;
                for (int k = 0; k < 11; k++)
                    want |= hol[yi][k][0] == m && hol[yi][k][1] == d;
                if (sched_is_holiday_fr(year, m, d) != want)
                    fail_msg("%04d-%02d-%02d: want %d", year, m, d, want);
                count += want;
            }
        }
        assert_int_equal(count, 11);
    }
}

static void test_holidays_misc(void **state)
{
    (void)state;
    assert_int_equal(sched_is_holiday_fr(2026, 4, 5), 0);   /* Easter Sunday itself: a Sunday */
    assert_int_equal(sched_is_holiday_fr(2026, 4, 3), 0);   /* Good Friday: Alsace only */
    assert_int_equal(sched_is_holiday_fr(2026, 12, 26), 0); /* Saint-Étienne: Alsace only */
    assert_int_equal(sched_is_holiday_fr(2026, 2, 29), 0);  /* not a date */
    assert_int_equal(sched_is_holiday_fr(2026, 13, 1), 0);
    assert_int_equal(sched_is_holiday_fr(1500, 1, 1), 0);   /* before the Gregorian computus */
    assert_int_equal(sched_is_holiday_fr(2100, 7, 14), 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Quiet hours                                                                               */

static void test_next_allowed(void **state)
{
    static const struct sched_quiet def = SCHED_QUIET_DEFAULT;
    static const struct {
        struct ut t, want;
        const char *what;
    } cases[] = {
        /* Tue 2026-03-10 21:15 CET -> Wed 08:00 CET */
        {{2026, 3, 10, 20, 15}, {2026, 3, 11, 7, 0}, "evening"},
        /* Sat 2026-03-14 21:00 CET -> Mon 03-16 08:00 (Sunday quiet) */
        {{2026, 3, 14, 20, 0}, {2026, 3, 16, 7, 0}, "saturday evening"},
        /* Thu 2026-05-14 10:00 CEST, Ascension -> Fri 05-15 08:00 CEST */
        {{2026, 5, 14, 8, 0}, {2026, 5, 15, 6, 0}, "ascension"},
        /* Thu 2026-12-24 20:30 CET -> Sat 12-26 08:00 (25th holiday, 26th Saturday allowed) */
        {{2026, 12, 24, 19, 30}, {2026, 12, 26, 7, 0}, "christmas"},
        /* Thu 2026-12-31 20:00 (end is exclusive) -> Sat 2027-01-02 08:00 (1 Jan holiday) */
        {{2026, 12, 31, 19, 0}, {2027, 1, 2, 7, 0}, "new year"},
        /* Wed 07:59 -> 08:00 the same day */
        {{2026, 3, 11, 6, 59}, {2026, 3, 11, 7, 0}, "early"},
        /* Wed 12:00 -> unchanged; 08:00 and 19:59:59 are inside */
        {{2026, 3, 11, 11, 0}, {2026, 3, 11, 11, 0}, "noon"},
        {{2026, 3, 11, 7, 0}, {2026, 3, 11, 7, 0}, "08:00"},
        /* Sat 2026-03-28 20:30 CET -> Mon 03-30 08:00 CEST = 06:00Z (DST on Sunday) */
        {{2026, 3, 28, 19, 30}, {2026, 3, 30, 6, 0}, "spring forward"},
        /* Sat 2026-10-24 20:00 CEST -> Mon 10-26 08:00 CET = 07:00Z */
        {{2026, 10, 24, 18, 0}, {2026, 10, 26, 7, 0}, "fall back"},
        /* Sun 2026-03-29 in the small hours -> Mon 03-30 08:00 CEST */
        {{2026, 3, 29, 1, 30}, {2026, 3, 30, 6, 0}, "sunday night"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct ut *t = &cases[i].t, *w = &cases[i].want;
        int64_t out = 0;
        assert_int_equal(sched_next_allowed(PARIS, &def, Z(t->y, t->mo, t->d, t->h, t->mi), &out),
                         0);
        if (out != Z(w->y, w->mo, w->d, w->h, w->mi))
            fail_msg("%s: got %lld", cases[i].what, (long long)out);
    }
}

static void test_next_allowed_custom(void **state)
{
    int64_t out = 0;
    /* no quiet days: Sunday 21:00 -> Monday 08:00 */
    struct sched_quiet open = {.start_min = 480, .end_min = 1200};
    /* window starting at 02:30, Sundays allowed: on 2026-03-29 02:30 does not exist, the
     * window opens at 03:00 CEST = 01:00Z */
    struct sched_quiet gap = {.start_min = 150, .end_min = 1200};
    /* window [01:00, 02:30): on 2026-10-25 at 02:45 CEST (00:45Z) it is closed, and it opens
     * again at 01:00Z when clocks go back to 02:00 CET */
    struct sched_quiet back = {.start_min = 60, .end_min = 150};
    struct sched_quiet bad1 = {.start_min = 600, .end_min = 600};
    struct sched_quiet bad2 = {.start_min = -1, .end_min = 600};
    struct sched_quiet bad3 = {.start_min = 0, .end_min = 1441};
    (void)state;
    assert_int_equal(sched_next_allowed(PARIS, &open, Z(2026, 3, 15, 20, 0), &out), 0);
    assert_true(out == Z(2026, 3, 16, 7, 0));
    assert_int_equal(sched_next_allowed(PARIS, &open, Z(2026, 3, 15, 11, 0), &out), 0);
    assert_true(out == Z(2026, 3, 15, 11, 0)); /* Sunday noon allowed */
    assert_int_equal(sched_next_allowed(PARIS, &gap, Z(2026, 3, 29, 0, 0), &out), 0);
    assert_true(out == Z(2026, 3, 29, 1, 0));
    assert_int_equal(sched_next_allowed(PARIS, &back, Z(2026, 10, 25, 0, 45), &out), 0);
    assert_true(out == Z(2026, 10, 25, 1, 0));
    /* errors leave *out alone */
    out = 5;
    assert_int_equal(sched_next_allowed(PARIS, &bad1, Z(2026, 3, 15, 20, 0), &out), -1);
    assert_int_equal(sched_next_allowed(PARIS, &bad2, Z(2026, 3, 15, 20, 0), &out), -1);
    assert_int_equal(sched_next_allowed(PARIS, &bad3, Z(2026, 3, 15, 20, 0), &out), -1);
    assert_int_equal(sched_next_allowed("Atlantis", &open, Z(2026, 3, 15, 20, 0), &out), -1);
    assert_int_equal(sched_next_allowed(PARIS, NULL, Z(2026, 3, 15, 20, 0), &out), -1);
    assert_int_equal(sched_next_allowed(PARIS, &open, INT64_MIN, &out), -1);
    assert_int_equal(out, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_to_utc),
        cmocka_unit_test(test_local_to_utc_invalid),
        cmocka_unit_test(test_utc_to_local),
        cmocka_unit_test(test_utc_to_local_invalid),
        cmocka_unit_test(test_monthly_31st),
        cmocka_unit_test(test_weekly_tu_th_across_dst),
        cmocka_unit_test(test_last_weekday_of_month),
        cmocka_unit_test(test_until_and_count),
        cmocka_unit_test(test_daily_across_dst),
        cmocka_unit_test(test_far_after_dtstart),
        cmocka_unit_test(test_daily_weekly_filters),
        cmocka_unit_test(test_sparse_and_exhausted),
        cmocka_unit_test(test_rrule_next_errors),
        cmocka_unit_test(test_rrule_check),
        cmocka_unit_test(test_easter),
        cmocka_unit_test(test_holidays_2026_2030),
        cmocka_unit_test(test_holidays_misc),
        cmocka_unit_test(test_next_allowed),
        cmocka_unit_test(test_next_allowed_custom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
