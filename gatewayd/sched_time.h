/*
 * sched_time.h — the pure time math of the reminder scheduler (issue 5, DESIGN.md §5).
 *
 * The scheduler (which owns the database and the timers) asks this module three questions:
 * what UTC instant a centre's local wall-clock time is, when a recurring reminder fires next,
 * and when a message due inside the centre's quiet hours may leave. No I/O of its own, no
 * database, no global state: every function may be called from any thread.
 *
 * Time zones. A centre's zone is an IANA name ("Europe/Paris"). Offsets come from libical
 * (icaltimezone_get_builtin_timezone + icaltimezone_get_utc_offset_of_utc_time), which on
 * Debian reads the system tzdata (/usr/share/zoneinfo, package tzdata) the first time a zone
 * is used and caches it for the life of the process (libical guards that cache with its own
 * mutex). We do not use the C library (setenv("TZ") + mktime/localtime): TZ is process-wide
 * state, so a daemon converting for several centres would race with itself, and mktime's
 * handling of non-existent and repeated local times (tm_isdst = -1) is implementation-defined.
 * libical is only asked for "the UTC offset in force at this UTC instant", which is never
 * ambiguous; turning a local time into UTC (gaps, repeated hours) is done here, by the rules
 * below. The process must not call icaltimezone_free_builtin_timezones().
 *
 * Supported range: local dates and UTC instants in the years SCHED_YEAR_MIN..SCHED_YEAR_MAX.
 * Known libical limitation (3.0.16, Debian 12): past 2037, where tzdata stores its rules as a
 * POSIX TZ string instead of a list of changes, libical places some changes wrongly for a few
 * zones with unusual rules (America/Miquelon: the November change one hour early; also
 * St_Johns, Santiago, Nuuk, Lord_Howe, Chatham). Every other French zone (Europe/Paris and
 * the overseas departments and territories) matched Python's zoneinfo at every change of
 * 2024–2039 and of sampled years up to 2499, and at random instants over 1970–2499.
 *
 * Local → UTC rules (spring forward and fall back; examples for Europe/Paris):
 *   - a local time that exists once maps to its instant;
 *   - a local time that does not exist (the gap, 2026-03-29 02:00–02:59) maps to the first
 *     instant after the gap, i.e. the moment of the change: 02:30 → 03:00 CEST = 01:00 UTC;
 *   - a local time that exists twice (2026-10-25 02:00–02:59) maps to the FIRST of the two
 *     instants (summer time): 02:30 → 02:30 CEST = 00:30 UTC. A daily reminder at 02:30 thus
 *     fires once that day, not twice.
 * This mapping never goes backwards: a later wall-clock time never gives an earlier instant.
 *
 * Recurrence rules are RFC 5545 RRULE values (without the "RRULE:" prefix), checked against a
 * strict subset before libical (icalrecur) expands them — see sched_rrule_check.
 *
 * French public holidays (metropolitan France, the Code du travail list, art. L3133-1):
 * 1 January, Easter Monday, 1 May, 8 May, Ascension Thursday (Easter + 39 days), Whit Monday
 * (Easter + 50 days), 14 July, 15 August, 1 November, 11 November, 25 December. Good Friday
 * and 26 December (Alsace-Moselle only) are not included. The same list is applied to every
 * year (no history of when each holiday was created).
 */
#ifndef SCHED_TIME_H
#define SCHED_TIME_H

#include <stddef.h>
#include <stdint.h>

#define SCHED_YEAR_MIN 1970
#define SCHED_YEAR_MAX 2499

/* Local wall-clock date-time in a centre's zone (no zone inside; seconds are always 0). */
struct sched_local {
    int year, month, day; /* month 1–12, day 1–31 (checked against the month) */
    int hour, minute;     /* 0–23, 0–59 */
};

/*
 * Local → UTC (Unix seconds) in zone `tz`, with the rules at the top of this file.
 * Returns 0 and sets *utc, or -1 (unknown zone, invalid date or time, year out of range);
 * *utc is left alone on -1.
 */
int sched_local_to_utc(const char *tz, const struct sched_local *l, int64_t *utc)
    __attribute__((warn_unused_result));

/*
 * UTC (Unix seconds) → local wall-clock time in zone `tz`; seconds are dropped (floor).
 * *weekday (may be NULL) gets the local day of the week, 0 = Sunday … 6 = Saturday.
 * Returns 0, or -1 (unknown zone, instant out of range) leaving *l and *weekday alone.
 */
int sched_utc_to_local(const char *tz, int64_t utc, struct sched_local *l, int *weekday)
    __attribute__((warn_unused_result));

/*
 * Validate a recurrence rule for the API. Returns 0, or -1 with a short English reason in err
 * (when err is not NULL and errlen > 0; err is not touched on 0). Accepted (case-insensitive,
 * parts separated by ';', each part at most once, no spaces, at most SCHED_RRULE_MAX bytes):
 *   FREQ=DAILY|WEEKLY|MONTHLY|YEARLY   required. SECONDLY, MINUTELY and HOURLY are refused:
 *                                      a reminder fires at most once a day.
 *   INTERVAL=1..999                    default 1.
 *   COUNT=1..1000                      counted from dtstart; not with UNTIL.
 *   UNTIL=YYYYMMDD                     last local date (inclusive);
 *   UNTIL=YYYYMMDDTHHMMSS              last local wall-clock time (inclusive);
 *   UNTIL=YYYYMMDDTHHMMSSZ             last UTC instant (inclusive).
 *   BYDAY=[+|-n]MO..SU,...             weekdays; a position n (1..5, -1 = last) counts within
 *                                      the month and needs FREQ=MONTHLY or YEARLY (RFC 5545).
 *   BYMONTHDAY=±1..31,...              FREQ=MONTHLY or YEARLY only; -1 is the last day.
 *   BYMONTH=1..12,...
 *   BYSETPOS=±1..31 (MONTHLY) or ±1..366 (YEARLY), with BYDAY or BYMONTHDAY.
 *   WKST=MO..SU
 * Our own limits, which keep every accepted rule cheap to expand (see sched_rrule_next):
 *   - FREQ=DAILY with INTERVAL > 1 takes neither BYDAY nor BYMONTH; FREQ=WEEKLY with
 *     INTERVAL > 1 takes no BYMONTH (so a DAILY or WEEKLY rule matches at least once a year);
 *   - FREQ=YEARLY with BYDAY or BYMONTHDAY needs BYMONTH (libraries disagree on the meaning
 *     of "every year on the 15th" without a month);
 *   - lists hold at most 31 values, without duplicates;
 *   - refused: BYHOUR, BYMINUTE, BYSECOND (the time of day is dtstart's, once a day),
 *     BYYEARDAY, BYWEEKNO, RSCALE, SKIP, unknown parts, empty parts, and BYMONTH/BYMONTHDAY
 *     combinations that name no existing day (BYMONTH=2;BYMONTHDAY=30).
 * Months without the requested day are skipped, as RFC 5545 says ("monthly on the 31st" has
 * no February occurrence); nothing is moved to a neighbouring day.
 */
#define SCHED_RRULE_MAX 512
int sched_rrule_check(const char *rrule, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * The first occurrence of `rrule` (see sched_rrule_check), anchored at `dtstart` (a local
 * wall-clock time in `tz`), that is strictly after `after_utc`, as UTC Unix seconds in *next.
 * Returns 1 (found), 0 (no more occurrences: UNTIL or COUNT reached, or past SCHED_YEAR_MAX),
 * or -1 (invalid rule, unknown zone, invalid dtstart; err gets a short English reason as for
 * sched_rrule_check). *next is set only on 1.
 *   - Every occurrence keeps dtstart's wall-clock time (hour:minute), across DST changes; an
 *     occurrence on a non-existent or repeated local time maps by the rules at the top.
 *   - Defaults come from dtstart as in RFC 5545 (FREQ=WEEKLY alone: dtstart's weekday;
 *     FREQ=MONTHLY alone: dtstart's day of the month; FREQ=YEARLY alone: its month and day).
 *   - dtstart is itself an occurrence only when it matches the rule (RFC 5545 leaves a
 *     dtstart that does not match undefined; like libical, we skip it). COUNT counts the
 *     occurrences from dtstart, so with COUNT=3 the third occurrence is the last one whatever
 *     after_utc is.
 *   - Cost: without COUNT, the expansion jumps to the day before after_utc
 *     (icalrecur_iterator_set_start) instead of walking from dtstart, so a daily rule started
 *     years ago costs a few steps. With COUNT (libical cannot jump then), it walks at most
 *     COUNT <= 1000 occurrences. A MONTHLY or YEARLY rule that can no longer match from this
 *     dtstart (every 12 months from March, only in February) is found exhausted by a bounded
 *     scan of our own before libical, which would search up to the year 20000, is asked.
 *     Measured: well under 1 ms for a typical rule, under 10 ms at worst (COUNT=1000 with
 *     long lists); the first use of a zone also loads it (about 15 ms, once per process).
 */
int sched_rrule_next(const char *tz, const char *rrule, const struct sched_local *dtstart,
                     int64_t after_utc, int64_t *next, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Easter Sunday of `year` (Gregorian computus, Meeus/Jones/Butcher), year >= 1583. */
void sched_easter(int year, int *month, int *day);

/* 1 when year-month-day is a French public holiday (list at the top), else 0 (also for an
 * invalid date or a year before 1583). */
int sched_is_holiday_fr(int year, int month, int day);

/*
 * Quiet hours of a centre: messages may leave only on allowed days, at a local time of day in
 * [start_min, end_min) (minutes after local midnight, 0 <= start_min < end_min <= 1440).
 * Sundays are quiet when sundays_quiet, French public holidays when holidays_quiet. The local
 * time of day is read on the local clock of each day, so 08:00 stays 08:00 across DST.
 */
struct sched_quiet {
    int start_min, end_min;
    int sundays_quiet, holidays_quiet;
};
/* Default: 08:00–20:00, Sundays and holidays quiet (DESIGN.md §5). */
#define SCHED_QUIET_DEFAULT {.start_min = 8 * 60, .end_min = 20 * 60, .sundays_quiet = 1, \
                             .holidays_quiet = 1}

/*
 * The first UTC instant >= t at which a message may leave under quiet hours q in zone tz:
 * t itself when t is allowed, else the start of the next allowed window (e.g. due 21:15 on a
 * Tuesday -> Wednesday 08:00; Saturday 21:00 -> Monday 08:00; Thursday 2026-05-14 10:00,
 * Ascension -> Friday 2026-05-15 08:00). A window start that falls in a DST gap moves to the
 * end of the gap. Nothing is ever dropped: there is always a next allowed instant.
 * Returns 0 and sets *out, or -1 (unknown zone, invalid q, t out of range).
 */
int sched_next_allowed(const char *tz, const struct sched_quiet *q, int64_t t, int64_t *out)
    __attribute__((warn_unused_result));

#endif /* SCHED_TIME_H */
