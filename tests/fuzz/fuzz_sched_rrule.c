/*
 * fuzz_sched_rrule.c — libFuzzer target for gatewayd/sched_time (recurrence rules).
 *
 *   clang -g -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Igatewayd \
 *         gatewayd/sched_time.c tests/fuzz/fuzz_sched_rrule.c $(pkg-config --cflags --libs \
 *         libical) -o fuzz_sched_rrule && ./fuzz_sched_rrule -max_total_time=60
 *
 * Feeds arbitrary text (cut at the first NUL) to sched_rrule_check and, for the rules it
 * accepts, to sched_rrule_next with a few dtstart / after pairs in two zones; abort()s when:
 *   1. check returns other than 0/-1, a refusal has no reason, or an acceptance writes err;
 *      next disagrees with check (-1 exactly when check refuses);
 *   2. an occurrence is not strictly after `after`, or is not dtstart's wall-clock time on its
 *      local day (the local time dtstart's hour:minute on that day must map to it);
 *   3. answers are inconsistent: asking again from any instant between `after` and the
 *      occurrence (or from one second before it) must give the same occurrence; after an
 *      exhausted answer every later `after` is exhausted too;
 *   4. when the rule has no UNTIL and after is near dtstart, the occurrence differs from a
 *      plain libical walk from dtstart (no jump, no guard, libical counting COUNT itself).
 * Slow inputs show up as libFuzzer timeouts: every call must stay cheap.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libical/ical.h>

#include "sched_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct pair {
    const char *tz;
    struct sched_local dtstart;
    int64_t after; /* 0: one second before dtstart */
    int ref;       /* compare with a libical walk (after is within a year of dtstart) */
};

static const struct pair pairs[] = {
    {"Europe/Paris", {2026, 1, 31, 10, 0}, 0, 1},
    {"Europe/Paris", {2026, 3, 28, 2, 30}, 1774699200, 1},  /* 2026-03-28T12:00Z */
    {"Europe/Paris", {2023, 1, 1, 9, 15}, 1780272000, 0},   /* 2026-06-01T00:00Z */
    {"Europe/Paris", {2024, 2, 29, 23, 59}, 1729992600, 1}, /* 2024-10-27T01:30Z */
    {"America/New_York", {2026, 11, 1, 1, 30}, 0, 1},
    {"America/New_York", {2025, 3, 9, 2, 0}, 1893456000, 0}, /* 2030-01-01T00:00Z */
};

/* libical walk from dtstart on the raw rule (UNTIL-free), mapped by sched_local_to_utc. */
static int reference(const struct pair *p, const char *rule, int64_t after, int64_t limit,
                     int64_t *out)
{
    struct icalrecurrencetype r = icalrecurrencetype_from_string(rule);
    struct icaltimetype t = icaltime_null_time();
    icalrecur_iterator *it;
    int rc = 0;

    t.year = p->dtstart.year;
    t.month = p->dtstart.month;
    t.day = p->dtstart.day;
    t.hour = p->dtstart.hour;
    t.minute = p->dtstart.minute;
    it = icalrecur_iterator_new(r, t);
    if (it == NULL)
        abort(); /* the rule is known to match from this dtstart */
    for (int i = 0; i < 20000; i++) {
        struct icaltimetype o = icalrecur_iterator_next(it);
        struct sched_local l = {o.year, o.month, o.day, o.hour, o.minute};
        int64_t u;
        if (icaltime_is_null_time(o) || sched_local_to_utc(p->tz, &l, &u) != 0 || u > limit)
            break;
        if (u > after) {
            *out = u;
            rc = 1;
            break;
        }
    }
    icalrecur_iterator_free(it);
    icalerror_clear_errno();
    return rc;
}

static int next(const struct pair *p, const char *rule, int64_t after, int64_t *out)
{
    char err[96];
    int rc;

    err[0] = '\0';
    rc = sched_rrule_next(p->tz, rule, &p->dtstart, after, out, err, sizeof err);
    if (rc != 0 && rc != 1)
        abort(); /* the rule passed sched_rrule_check */
    return rc;
}

static void check_pair(const struct pair *p, const char *rule, int has_until)
{
    int64_t start, after, n = 0, again = 0;
    struct sched_local l;
    int rc;

    if (sched_local_to_utc(p->tz, &p->dtstart, &start) != 0)
        abort();
    after = p->after != 0 ? p->after : start - 1;
    rc = next(p, rule, after, &n);
    if (rc == 0) {
        if (next(p, rule, after + 86400 * 400, &again) != 0)
            abort();
        return;
    }
    if (n <= after)
        abort();
    /* dtstart's wall-clock time on the occurrence's local day maps to the occurrence */
    if (sched_utc_to_local(p->tz, n, &l, NULL) != 0)
        abort();
    l.hour = p->dtstart.hour;
    l.minute = p->dtstart.minute;
    if (sched_local_to_utc(p->tz, &l, &again) != 0 || again != n)
        abort();
    /* same answer from later starting points */
    if (next(p, rule, after + (n - after) / 2, &again) != 1 || again != n)
        abort();
    if (next(p, rule, n - 1, &again) != 1 || again != n)
        abort();
    /* the following occurrence is later */
    rc = next(p, rule, n, &again);
    if (rc == 1 && again <= n)
        abort();
    if (p->ref && !has_until && (reference(p, rule, after, n, &again) != 1 || again != n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char rule[SCHED_RRULE_MAX + 2], err[64];
    size_t n = size < sizeof rule - 1 ? size : sizeof rule - 1;
    int rc;

    memcpy(rule, data, n);
    rule[n] = '\0';
    memset(err, 'x', sizeof err);
    rc = sched_rrule_check(rule, err, sizeof err);
    if (rc == -1) {
        if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0')
            abort();
        int64_t out = 0;
        if (sched_rrule_next("Europe/Paris", rule, &pairs[0].dtstart, 0, &out, err, sizeof err) !=
            -1)
            abort();
        return 0;
    }
    if (rc != 0 || err[0] != 'x')
        abort();
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        check_pair(&pairs[i], rule, strcasestr(rule, "UNTIL") != NULL);
    return 0;
}
