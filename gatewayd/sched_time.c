/*
 * sched_time.c — the pure time math of the reminder scheduler. Rules: see sched_time.h.
 *
 * Dates are counted here as days since 1970-01-01 (civil calendar arithmetic from
 * H. Hinnant's "chrono-compatible low-level date algorithms"), and a local wall-clock time
 * as "local seconds": days * 86400 + seconds of the day, as if the local clock were UTC.
 * libical provides two things only: the UTC offset in force at a UTC instant, and the
 * expansion of a recurrence rule on floating (zone-less) local times.
 */
#include "sched_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libical/ical.h>

#define ST_DAY 86400
/* At most one recurrence step per COUNT, plus the few steps after a jump (see below). */
#define ST_MAX_STEPS 1100
/* Days searched for an allowed window. Quiet runs last a few days at most (a Sunday next to a
 * holiday); the bound only guards against a window that never opens. */
#define ST_QUIET_MAX_DAYS 400
#define ST_TZ_MAX 64
#define ST_LIST_MAX 31

/* ------------------------------------------------------------------------------------------ */
/* Calendar arithmetic                                                                        */

static int64_t st_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int st_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int st_days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && st_is_leap(y) ? 29 : dim[m - 1];
}

static int64_t st_days_from_civil(int y, int m, int d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void st_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* 0 = Sunday */
static int st_weekday(int64_t days)
{
    return (int)(days + 4 - 7 * st_floor_div(days + 4, 7));
}

static int st_local_ok(const struct sched_local *l)
{
    return l != NULL && l->year >= SCHED_YEAR_MIN && l->year <= SCHED_YEAR_MAX && l->month >= 1 &&
           l->month <= 12 && l->day >= 1 && l->day <= st_days_in_month(l->year, l->month) &&
           l->hour >= 0 && l->hour <= 23 && l->minute >= 0 && l->minute <= 59;
}

static int64_t st_local_secs(const struct sched_local *l)
{
    return st_days_from_civil(l->year, l->month, l->day) * ST_DAY + l->hour * 3600 + l->minute * 60;
}

/* UTC instants accepted by the public functions: years SCHED_YEAR_MIN..SCHED_YEAR_MAX. */
static int st_utc_ok(int64_t t)
{
    return t >= st_days_from_civil(SCHED_YEAR_MIN, 1, 1) * ST_DAY &&
           t < st_days_from_civil(SCHED_YEAR_MAX + 1, 1, 1) * ST_DAY;
}

static void st_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void st_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* Time zones                                                                                 */

/* IANA names only: letters, digits, '/', '_', '-', '+', no "..", not absolute. libical maps
 * the name to a file under /usr/share/zoneinfo, so nothing else may reach it. */
static icaltimezone *st_zone_find(const char *tz)
{
    size_t n;

    if (tz == NULL)
        return NULL;
    n = strnlen(tz, ST_TZ_MAX + 1);
    if (n == 0 || n > ST_TZ_MAX || tz[0] == '/' || strstr(tz, "..") != NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return NULL;
    }
    return icaltimezone_get_builtin_timezone(tz);
}

static int st_offset(icaltimezone *z, int64_t t);

/*
 * The zone for tz, its changes computed up to SCHED_YEAR_MAX. libical computes a zone's
 * changes lazily, up to 5 years past the latest year asked, and computes them all again from
 * the start each time that year moves: walking a zone year by year to 2499 costs over a
 * second. Asking once for the last year we support costs about 30 ms the first time a zone is
 * used in the process, and a cache lookup afterwards.
 */
static icaltimezone *st_zone(const char *tz)
{
    icaltimezone *z = st_zone_find(tz);

    if (z != NULL)
        (void)st_offset(z, st_days_from_civil(SCHED_YEAR_MAX + 1, 1, 2) * ST_DAY);
    return z;
}

/* UTC offset (seconds east) in force at UTC instant t. */
static int st_offset(icaltimezone *z, int64_t t)
{
    struct icaltimetype tt = icaltime_null_time();
    int64_t days = st_floor_div(t, ST_DAY), sod = t - days * ST_DAY;
    int is_daylight = 0;

    st_civil_from_days(days, &tt.year, &tt.month, &tt.day);
    tt.hour = (int)(sod / 3600);
    tt.minute = (int)(sod / 60 % 60);
    tt.second = (int)(sod % 60);
    tt.zone = icaltimezone_get_utc_timezone();
    return icaltimezone_get_utc_offset_of_utc_time(z, &tt, &is_daylight);
}

/*
 * The instants whose local reading is L (local seconds). *first <= *second:
 *   - one instant: both are it;
 *   - two (the repeated hour when clocks go back): the earlier and the later;
 *   - none (the gap when clocks go forward): both are the instant of the change, the first
 *     instant after the gap.
 * The offsets in force one day before and one day after L cover every instant that could read
 * L (offsets stay within ±26 h of UTC); we assume at most one change in those two days, which
 * holds for every zone in use since 1970.
 */
static void st_readings(icaltimezone *z, int64_t L, int64_t *first, int64_t *second)
{
    int oa = st_offset(z, L - ST_DAY), ob = st_offset(z, L + ST_DAY);
    int64_t ua = L - oa, ub = L - ob;
    int va = st_offset(z, ua) == oa, vb = st_offset(z, ub) == ob;
    int64_t lo, hi;

    if (va && vb) {
        *first = ua < ub ? ua : ub;
        *second = ua < ub ? ub : ua;
        return;
    }
    if (va || vb) {
        *first = *second = va ? ua : ub;
        return;
    }
    /* Gap: the change is the first instant in (L - 1 day, L + 1 day] whose offset is not oa. */
    lo = L - ST_DAY;
    hi = L + ST_DAY;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (st_offset(z, mid) == oa)
            lo = mid;
        else
            hi = mid;
    }
    *first = *second = hi;
}

static int64_t st_local_to_utc(icaltimezone *z, int64_t L)
{
    int64_t first, second;

    st_readings(z, L, &first, &second);
    return first;
}

/* Local seconds of UTC instant t. */
static int64_t st_utc_to_local_secs(icaltimezone *z, int64_t t)
{
    return t + st_offset(z, t);
}

int sched_local_to_utc(const char *tz, const struct sched_local *l, int64_t *utc)
{
    icaltimezone *z = st_zone(tz);

    if (z == NULL || !st_local_ok(l) || utc == NULL)
        return -1;
    *utc = st_local_to_utc(z, st_local_secs(l));
    return 0;
}

int sched_utc_to_local(const char *tz, int64_t utc, struct sched_local *l, int *weekday)
{
    icaltimezone *z = st_zone(tz);
    int64_t ls, days, sod;

    if (z == NULL || !st_utc_ok(utc) || l == NULL)
        return -1;
    ls = st_utc_to_local_secs(z, utc);
    days = st_floor_div(ls, ST_DAY);
    sod = ls - days * ST_DAY;
    st_civil_from_days(days, &l->year, &l->month, &l->day);
    l->hour = (int)(sod / 3600);
    l->minute = (int)(sod / 60 % 60);
    if (weekday != NULL)
        *weekday = st_weekday(days);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Recurrence rules                                                                           */

enum { ST_DAILY, ST_WEEKLY, ST_MONTHLY, ST_YEARLY };
enum { ST_UNTIL_NONE, ST_UNTIL_DATE, ST_UNTIL_LOCAL, ST_UNTIL_UTC };

static const char *const st_freq_names[] = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"};
/* RFC 5545 weekday codes, index 0 = Sunday (as libical's ICAL_SUNDAY_WEEKDAY - 1). */
static const char *const st_wd_names[] = {"SU", "MO", "TU", "WE", "TH", "FR", "SA"};

struct st_rule {
    int freq, interval, count;
    int until_kind;
    int64_t until_key; /* days (DATE), local seconds (LOCAL) or UTC seconds (UTC) */
    int n_byday, n_bymonthday, n_bymonth, n_bysetpos;
    int byday_pos[ST_LIST_MAX], byday_wd[ST_LIST_MAX];
    int bymonthday[ST_LIST_MAX], bymonth[12], bysetpos[ST_LIST_MAX];
    int wkst; /* -1 when absent */
};

/* Parses [+|-]digits (1 to 4 digits; a sign only when sign_ok) at *s, within [min, max];
 * advances *s past it. */
static int st_int(const char **s, int sign_ok, int min, int max, int *out)
{
    const char *p = *s;
    int neg = 0, v = 0, nd = 0;

    if (sign_ok && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
    }
    while (*p >= '0' && *p <= '9' && nd < 5) {
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd == 0 || nd > 4)
        return -1;
    v = neg ? -v : v;
    if (v < min || v > max)
        return -1;
    *s = p;
    *out = v;
    return 0;
}

static int st_wd_code(const char *s)
{
    for (int i = 0; i < 7; i++)
        if (strncasecmp(s, st_wd_names[i], 2) == 0)
            return i;
    return -1;
}

static int st_has(const int *a, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v)
            return 1;
    return 0;
}

/* Parses a comma-separated list of integers in [min, max] other than 0 (a sign only when
 * sign_ok) into a[]: at most cap values, no duplicates. */
static int st_int_list(const char *name, const char *v, int sign_ok, int min, int max, int *a,
                       int cap, int *n, char *err, size_t errlen)
{
    *n = 0;
    for (;;) {
        int x;
        if (st_int(&v, sign_ok, min, max, &x) != 0 || x == 0 || (*v != ',' && *v != '\0')) {
            st_err(err, errlen, "%s: values must be integers in %d..%d (not 0)", name,
                   sign_ok ? -max : min, max);
            return -1;
        }
        if (*n == cap) {
            st_err(err, errlen, "%s: at most %d values", name, cap);
            return -1;
        }
        if (st_has(a, *n, x)) {
            st_err(err, errlen, "%s: duplicate value %d", name, x);
            return -1;
        }
        a[(*n)++] = x;
        if (*v == '\0')
            return 0;
        v++;
    }
}

static int st_parse_byday(struct st_rule *r, const char *v, char *err, size_t errlen)
{
    r->n_byday = 0;
    for (;;) {
        int pos = 0, wd;
        if ((*v == '+' || *v == '-' || (*v >= '0' && *v <= '9')) &&
            (st_int(&v, 1, -5, 5, &pos) != 0 || pos == 0)) {
            st_err(err, errlen, "BYDAY: a position (within the month) is 1..5 or -5..-1");
            return -1;
        }
        wd = st_wd_code(v);
        if (wd < 0 || (v[2] != ',' && v[2] != '\0')) {
            st_err(err, errlen, "BYDAY: days are MO, TU, WE, TH, FR, SA, SU");
            return -1;
        }
        v += 2;
        if (r->n_byday == ST_LIST_MAX) {
            st_err(err, errlen, "BYDAY: at most %d values", ST_LIST_MAX);
            return -1;
        }
        for (int i = 0; i < r->n_byday; i++) {
            if (r->byday_pos[i] == pos && r->byday_wd[i] == wd) {
                st_err(err, errlen, "BYDAY: duplicate value");
                return -1;
            }
        }
        r->byday_pos[r->n_byday] = pos;
        r->byday_wd[r->n_byday] = wd;
        r->n_byday++;
        if (*v == '\0')
            return 0;
        v++;
    }
}

/* YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ */
static int st_parse_until(struct st_rule *r, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);
    int f[6] = {0, 0, 0, 0, 0, 0};
    static const int width[6] = {4, 2, 2, 2, 2, 2};
    const char *p = v;

    if (n != 8 && n != 15 && n != 16)
        goto bad;
    for (int i = 0; i < (n == 8 ? 3 : 6); i++) {
        if (i == 3) {
            if (*p != 'T' && *p != 't')
                goto bad;
            p++;
        }
        for (int k = 0; k < width[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                goto bad;
            f[i] = f[i] * 10 + (*p - '0');
        }
    }
    if (n == 16 && *p != 'Z' && *p != 'z')
        goto bad;
    if (f[0] < SCHED_YEAR_MIN || f[0] > SCHED_YEAR_MAX || f[1] < 1 || f[1] > 12 || f[2] < 1 ||
        f[2] > st_days_in_month(f[0], f[1]) || f[3] > 23 || f[4] > 59 || f[5] > 59)
        goto bad;
    r->until_key = st_days_from_civil(f[0], f[1], f[2]);
    if (n == 8) {
        r->until_kind = ST_UNTIL_DATE;
    } else {
        r->until_key = r->until_key * ST_DAY + f[3] * 3600 + f[4] * 60 + f[5];
        r->until_kind = n == 16 ? ST_UNTIL_UTC : ST_UNTIL_LOCAL;
    }
    return 0;
bad:
    st_err(err, errlen, "UNTIL: expected YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ");
    return -1;
}

enum {
    P_FREQ,
    P_INTERVAL,
    P_COUNT,
    P_UNTIL,
    P_BYDAY,
    P_BYMONTHDAY,
    P_BYMONTH,
    P_BYSETPOS,
    P_WKST,
    P_COUNT_
};
static const char *const st_part_names[P_COUNT_] = {
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"};

static int st_parse_part(struct st_rule *r, int part, const char *v, char *err, size_t errlen)
{
    switch (part) {
    case P_FREQ:
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(v, st_freq_names[i]) == 0) {
                r->freq = i;
                return 0;
            }
        }
        if (strcasecmp(v, "HOURLY") == 0 || strcasecmp(v, "MINUTELY") == 0 ||
            strcasecmp(v, "SECONDLY") == 0) {
            st_err(err, errlen, "FREQ=%s refused: reminders are at most daily", v);
            return -1;
        }
        st_err(err, errlen, "FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY");
        return -1;
    case P_INTERVAL:
        if (st_int(&v, 0, 1, 999, &r->interval) != 0 || *v != '\0') {
            st_err(err, errlen, "INTERVAL must be an integer in 1..999");
            return -1;
        }
        return 0;
    case P_COUNT:
        if (st_int(&v, 0, 1, 1000, &r->count) != 0 || *v != '\0') {
            st_err(err, errlen, "COUNT must be an integer in 1..1000");
            return -1;
        }
        return 0;
    case P_UNTIL:
        return st_parse_until(r, v, err, errlen);
    case P_BYDAY:
        return st_parse_byday(r, v, err, errlen);
    case P_BYMONTHDAY:
        return st_int_list("BYMONTHDAY", v, 1, -31, 31, r->bymonthday, ST_LIST_MAX,
                           &r->n_bymonthday, err, errlen);
    case P_BYMONTH:
        return st_int_list("BYMONTH", v, 0, 1, 12, r->bymonth, 12, &r->n_bymonth, err, errlen);
    case P_BYSETPOS:
        return st_int_list("BYSETPOS", v, 1, -366, 366, r->bysetpos, ST_LIST_MAX, &r->n_bysetpos,
                           err, errlen);
    case P_WKST:
        r->wkst = st_wd_code(v);
        if (r->wkst < 0 || v[2] != '\0') {
            st_err(err, errlen, "WKST must be MO, TU, WE, TH, FR, SA or SU");
            return -1;
        }
        return 0;
    }
    return -1;
}

/* Checks that need the whole rule: RFC 5545 constraints, and our own limits, which keep every
 * accepted rule either dense (DAILY, WEEKLY: a matching day at least once a year) or cheap to
 * scan period by period (MONTHLY, YEARLY: see st_match_from). */
static int st_rule_consistent(const struct st_rule *r, int seen, char *err, size_t errlen)
{
    int any;

    if (!(seen & (1 << P_FREQ))) {
        st_err(err, errlen, "FREQ is required");
        return -1;
    }
    if ((seen & (1 << P_COUNT)) && (seen & (1 << P_UNTIL))) {
        st_err(err, errlen, "COUNT and UNTIL are mutually exclusive");
        return -1;
    }
    if (r->freq == ST_DAILY || r->freq == ST_WEEKLY) {
        if (r->n_bymonthday > 0) {
            st_err(err, errlen, "BYMONTHDAY needs FREQ=MONTHLY or YEARLY");
            return -1;
        }
        if (r->n_bysetpos > 0) {
            st_err(err, errlen, "BYSETPOS needs FREQ=MONTHLY or YEARLY");
            return -1;
        }
        if (r->interval > 1 && (r->n_bymonth > 0 || (r->freq == ST_DAILY && r->n_byday > 0))) {
            st_err(err, errlen, "FREQ=%s with INTERVAL > 1 cannot have %s", st_freq_names[r->freq],
                   r->n_bymonth > 0 ? "BYMONTH" : "BYDAY");
            return -1;
        }
    }
    if (r->freq == ST_YEARLY && r->n_bymonth == 0 && (r->n_byday > 0 || r->n_bymonthday > 0)) {
        st_err(err, errlen, "FREQ=YEARLY with %s needs BYMONTH",
               r->n_byday > 0 ? "BYDAY" : "BYMONTHDAY");
        return -1;
    }
    for (int i = 0; i < r->n_byday; i++) {
        if (r->byday_pos[i] != 0 && r->freq != ST_MONTHLY && r->freq != ST_YEARLY) {
            st_err(err, errlen, "BYDAY with a position (1MO, -1FR) needs FREQ=MONTHLY or YEARLY");
            return -1;
        }
    }
    if (r->n_bysetpos > 0) {
        if (r->n_byday == 0 && r->n_bymonthday == 0) {
            st_err(err, errlen, "BYSETPOS needs BYDAY or BYMONTHDAY");
            return -1;
        }
        for (int i = 0; i < r->n_bysetpos; i++) {
            if (r->freq == ST_MONTHLY && (r->bysetpos[i] > 31 || r->bysetpos[i] < -31)) {
                st_err(err, errlen, "BYSETPOS: within a month, values are 1..31 or -31..-1");
                return -1;
            }
        }
    }
    /*
     * libical counts BYSETPOS positions over the BYMONTHDAY values, not over the days they
     * name: with BYMONTHDAY=1,-31 a 31-day month has one day but two positions, so
     * BYSETPOS=-1 never matches there (and libical then searches up to the year 20000). So
     * without BYDAY (which makes libical count days), a value d and a value -k may not name
     * the same day in any month length.
     */
    if (r->n_bysetpos > 0 && r->n_byday == 0) {
        for (int i = 0; i < r->n_bymonthday; i++) {
            for (int j = 0; j < r->n_bymonthday; j++) {
                int d = r->bymonthday[i], k = -r->bymonthday[j];
                if (d > 0 && k > 0 && d + k - 1 >= 28 && d + k - 1 <= 31) {
                    st_err(err, errlen,
                           "BYMONTHDAY=%d,%d name the same day in %d-day months (with BYSETPOS)", d,
                           -k, d + k - 1);
                    return -1;
                }
            }
        }
    }
    /* Some named month must have some named day (February counted with 29 days). */
    any = r->n_bymonthday == 0;
    for (int m = 1; m <= 12 && !any; m++) {
        if (r->n_bymonth > 0 && !st_has(r->bymonth, r->n_bymonth, m))
            continue;
        for (int i = 0; i < r->n_bymonthday && !any; i++) {
            int d = r->bymonthday[i] < 0 ? -r->bymonthday[i] : r->bymonthday[i];
            any = d <= st_days_in_month(2000, m);
        }
    }
    if (!any) {
        st_err(err, errlen, "BYMONTH and BYMONTHDAY name no existing day");
        return -1;
    }
    return 0;
}

/* Appends to buf (size cap) at *len; returns -1 when it does not fit. */
static int st_cat(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int st_cat(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}

/*
 * The rule as libical reads it: canonical spelling, without COUNT and UNTIL (we apply those
 * ourselves: COUNT so that the expansion may jump ahead when there is none, UNTIL because
 * libical compares it with zone-less times as if they were UTC).
 *
 * libical expands DAILY and WEEKLY rules one day or week at a time and filters BYDAY and
 * BYMONTH afterwards, so "every Tuesday in January" as FREQ=DAILY costs 365 steps a year,
 * which COUNT (walked from dtstart) multiplies. Such rules (INTERVAL is 1 for them, see
 * st_rule_consistent) are handed over in an equivalent form that libical expands a period at
 * a time: DAILY with BYMONTH and WEEKLY with BYMONTH become YEARLY;BYMONTH;BYDAY (every day,
 * or dtstart's weekday for WEEKLY, when BYDAY is absent), DAILY with BYDAY becomes WEEKLY.
 * The occurrences are the same days from dtstart on.
 */
static int st_rule_ical(const struct st_rule *r, int dtstart_wd, char *buf, size_t cap)
{
    static const int every_day[7] = {0, 1, 2, 3, 4, 5, 6}, no_pos[7] = {0, 0, 0, 0, 0, 0, 0};
    const int *wd = r->byday_wd, *pos = r->byday_pos;
    int freq = r->freq, n_byday = r->n_byday;
    size_t len = 0;
    int rc;

    if ((r->freq == ST_DAILY || r->freq == ST_WEEKLY) && r->n_bymonth > 0) {
        freq = ST_YEARLY;
        if (n_byday == 0) {
            wd = r->freq == ST_DAILY ? every_day : &dtstart_wd;
            pos = no_pos;
            n_byday = r->freq == ST_DAILY ? 7 : 1;
        }
    } else if (r->freq == ST_DAILY && n_byday > 0) {
        freq = ST_WEEKLY;
    }
    rc = st_cat(buf, cap, &len, "FREQ=%s;INTERVAL=%d", st_freq_names[freq], r->interval);
    if (n_byday > 0) {
        rc |= st_cat(buf, cap, &len, ";BYDAY=");
        for (int i = 0; i < n_byday; i++) {
            rc |= st_cat(buf, cap, &len, i ? "," : "");
            if (pos[i] != 0)
                rc |= st_cat(buf, cap, &len, "%d", pos[i]);
            rc |= st_cat(buf, cap, &len, "%s", st_wd_names[wd[i]]);
        }
    }
    if (r->n_bymonthday > 0) {
        rc |= st_cat(buf, cap, &len, ";BYMONTHDAY=");
        for (int i = 0; i < r->n_bymonthday; i++)
            rc |= st_cat(buf, cap, &len, "%s%d", i ? "," : "", r->bymonthday[i]);
    }
    if (r->n_bymonth > 0) {
        rc |= st_cat(buf, cap, &len, ";BYMONTH=");
        for (int i = 0; i < r->n_bymonth; i++)
            rc |= st_cat(buf, cap, &len, "%s%d", i ? "," : "", r->bymonth[i]);
    }
    if (r->n_bysetpos > 0) {
        rc |= st_cat(buf, cap, &len, ";BYSETPOS=");
        for (int i = 0; i < r->n_bysetpos; i++)
            rc |= st_cat(buf, cap, &len, "%s%d", i ? "," : "", r->bysetpos[i]);
    }
    if (r->wkst >= 0)
        rc |= st_cat(buf, cap, &len, ";WKST=%s", st_wd_names[r->wkst]);
    return rc;
}

static int st_rule_parse(const char *rrule, struct st_rule *r, char *err, size_t errlen)
{
    char buf[SCHED_RRULE_MAX + 1];
    char *p;
    size_t n;
    int seen = 0;

    memset(r, 0, sizeof *r);
    r->interval = 1;
    r->wkst = -1;
    if (rrule == NULL) {
        st_err(err, errlen, "empty rule");
        return -1;
    }
    n = strnlen(rrule, SCHED_RRULE_MAX + 1);
    if (n == 0) {
        st_err(err, errlen, "empty rule");
        return -1;
    }
    if (n > SCHED_RRULE_MAX) {
        st_err(err, errlen, "rule longer than %d bytes", SCHED_RRULE_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (rrule[i] <= ' ' || rrule[i] > '~') {
            st_err(err, errlen, "unexpected character at byte %zu (no spaces)", i + 1);
            return -1;
        }
    }
    memcpy(buf, rrule, n + 1);
    for (p = buf;;) {
        char *semi = strchr(p, ';'), *eq;
        int part = -1;

        if (semi != NULL)
            *semi = '\0';
        eq = strchr(p, '=');
        if (*p == '\0') {
            st_err(err, errlen, "empty part (stray ';')");
            return -1;
        }
        if (eq == NULL || eq == p) {
            st_err(err, errlen, "expected NAME=VALUE, got '%.24s'", p);
            return -1;
        }
        *eq = '\0';
        for (int i = 0; i < P_COUNT_; i++)
            if (strcasecmp(p, st_part_names[i]) == 0)
                part = i;
        if (part < 0) {
            if (strcasecmp(p, "BYHOUR") == 0 || strcasecmp(p, "BYMINUTE") == 0 ||
                strcasecmp(p, "BYSECOND") == 0)
                st_err(err, errlen, "%.12s refused: the time of day is dtstart's", p);
            else if (strcasecmp(p, "BYYEARDAY") == 0 || strcasecmp(p, "BYWEEKNO") == 0 ||
                     strcasecmp(p, "RSCALE") == 0 || strcasecmp(p, "SKIP") == 0)
                st_err(err, errlen, "%.12s is not supported", p);
            else
                st_err(err, errlen, "unknown part '%.24s'", p);
            return -1;
        }
        if (seen & (1 << part)) {
            st_err(err, errlen, "%s given twice", st_part_names[part]);
            return -1;
        }
        seen |= 1 << part;
        if (eq[1] == '\0') {
            st_err(err, errlen, "%s has no value", st_part_names[part]);
            return -1;
        }
        if (st_parse_part(r, part, eq + 1, err, errlen) != 0)
            return -1;
        if (semi == NULL)
            break;
        p = semi + 1;
    }
    return st_rule_consistent(r, seen, err, errlen);
}

int sched_rrule_check(const char *rrule, char *err, size_t errlen)
{
    struct st_rule r;

    return st_rule_parse(rrule, &r, err, errlen);
}

/*
 * Bounding libical's work. libical looks for the next matching MONTHLY or YEARLY period in
 * loops that only stop at a match, or in the year 20000: a rule that cannot match from this
 * dtstart (BYSETPOS=5 with BYDAY=2MO, INTERVAL=12 with a BYMONTH that dtstart's month never
 * meets, BYMONTH=2;BYMONTHDAY=29 every 4 years from a year that is not a leap year) would cost
 * seconds. So before each libical call that may search, we check here, period by period and
 * with the same reading of the rule, that a matching day exists at or after `from` (days since
 * 1970-01-01) up to SCHED_YEAR_MAX; when none does, the rule is exhausted and libical is not
 * called. A scan ends at the first match (the next period for any sensible rule) and visits
 * at most (SCHED_YEAR_MAX - 1970) * 12 months. DAILY and WEEKLY rules need no scan: the
 * grammar keeps them dense (a matching day at least once a year).
 *
 * The reading (libical's, RFC 5545's): in a month, a day is selected when it is in BYMONTHDAY
 * (when given), and matches BYDAY (when given; a position counts within the month), and, when
 * neither is given, it is dtstart's day of the month. A YEARLY period is the union of its
 * months (BYMONTH, else dtstart's month). BYSETPOS then keeps positions of the period's set.
 */
static int st_day_selected(const struct st_rule *r, const struct sched_local *ds, int y, int m,
                           int d, int len)
{
    int ok = r->n_bymonthday == 0 && r->n_byday == 0 ? d == ds->day : 1;

    for (int i = 0; i < r->n_bymonthday && ok; i++) {
        int md = r->bymonthday[i];
        if (md > 0 ? d == md : d == len + md + 1)
            break;
        if (i == r->n_bymonthday - 1)
            ok = 0;
    }
    if (ok && r->n_byday > 0) {
        int wd = st_weekday(st_days_from_civil(y, m, d));
        ok = 0;
        for (int i = 0; i < r->n_byday && !ok; i++) {
            int pos = r->byday_pos[i];
            ok = r->byday_wd[i] == wd && (pos == 0 || (pos > 0 && (d - 1) / 7 + 1 == pos) ||
                                          (pos < 0 && (len - d) / 7 + 1 == -pos));
        }
    }
    return ok;
}

/* The selected days (days since 1970-01-01, ascending, after BYSETPOS) of the period starting
 * at month index p (year * 12 + month - 1; a YEARLY period covers its months). Returns n. */
static int st_period_set(const struct st_rule *r, const struct sched_local *ds, int64_t p,
                         int64_t set[372])
{
    int n = 0, kept = 0, y = (int)(p / 12);
    int months[12], nm = 0;

    if (r->freq == ST_MONTHLY) {
        int m = (int)(p % 12) + 1;
        if (r->n_bymonth > 0 && !st_has(r->bymonth, r->n_bymonth, m))
            return 0;
        months[nm++] = m;
    } else {
        for (int m = 1; m <= 12; m++)
            if (r->n_bymonth > 0 ? st_has(r->bymonth, r->n_bymonth, m) : m == ds->month)
                months[nm++] = m;
    }
    for (int i = 0; i < nm; i++) {
        int len = st_days_in_month(y, months[i]);
        for (int d = 1; d <= len; d++)
            if (st_day_selected(r, ds, y, months[i], d, len))
                set[n++] = st_days_from_civil(y, months[i], d);
    }
    if (r->n_bysetpos == 0)
        return n;
    for (int i = 0; i < n; i++) {
        int keep = 0;
        for (int k = 0; k < r->n_bysetpos && !keep; k++)
            keep = r->bysetpos[k] > 0 ? i == r->bysetpos[k] - 1 : i == n + r->bysetpos[k];
        if (keep)
            set[kept++] = set[i];
    }
    return kept;
}

/* Month index of the first period aligned on dtstart's (INTERVAL) that ends on or after day
 * `from`, and the step between periods, in months. */
static int64_t st_period_first(const struct st_rule *r, const struct sched_local *ds, int64_t from,
                               int64_t *step)
{
    int fy, fm, fd;
    int64_t p0, p;

    st_civil_from_days(from, &fy, &fm, &fd);
    *step = r->freq == ST_MONTHLY ? r->interval : 12 * (int64_t)r->interval;
    p0 = (int64_t)ds->year * 12 + (r->freq == ST_MONTHLY ? ds->month - 1 : 0);
    p = (int64_t)fy * 12 + (r->freq == ST_MONTHLY ? fm - 1 : 0);
    return p <= p0 ? p0 : p0 + (p - p0 + *step - 1) / *step * *step;
}

/* 1 when the rule selects a day >= from before SCHED_YEAR_MAX's end; *until then gets a day
 * up to which libical is known to find an occurrence (the last one of the first period that
 * has any), so that callers need not scan again before passing it. */
static int st_match_from(const struct st_rule *r, const struct sched_local *ds, int64_t from,
                         int64_t *until)
{
    int64_t set[372], step, p;

    if (r->freq == ST_DAILY || r->freq == ST_WEEKLY) {
        *until = INT64_MAX;
        return 1;
    }
    for (p = st_period_first(r, ds, from, &step); p / 12 <= SCHED_YEAR_MAX; p += step) {
        int n = st_period_set(r, ds, p, set);
        if (n > 0 && set[n - 1] >= from) {
            *until = set[n - 1];
            return 1;
        }
    }
    return 0;
}

/* MONTHLY, YEARLY: how many occurrences fall on days [ds's day, to), counting at most `max`. */
static int st_count_before(const struct st_rule *r, const struct sched_local *ds, int64_t to,
                           int max)
{
    int64_t set[372], step, p, from = st_days_from_civil(ds->year, ds->month, ds->day);
    int count = 0;

    for (p = st_period_first(r, ds, from, &step); p / 12 <= SCHED_YEAR_MAX; p += step) {
        int n = st_period_set(r, ds, p, set);
        for (int i = 0; i < n; i++) {
            if (set[i] >= to)
                return count;
            if (set[i] >= from && ++count >= max)
                return count;
        }
    }
    return count;
}

static struct icaltimetype st_ical_local(int64_t days, int hour, int minute)
{
    struct icaltimetype tt = icaltime_null_time();

    st_civil_from_days(days, &tt.year, &tt.month, &tt.day);
    tt.hour = hour;
    tt.minute = minute;
    tt.second = 0;
    tt.is_date = 0;
    tt.zone = NULL; /* floating: the rule is expanded on the local clock */
    return tt;
}

/*
 * Expansion. libical walks the rule on floating local times (dtstart has no zone); we map each
 * occurrence to UTC and stop at the first one after after_utc.
 *
 * Jumping ahead: when after_utc is past dtstart, the iterator restarts
 * (icalrecur_iterator_set_start) on the local day before after_utc's. set_start keeps
 * INTERVAL aligned on dtstart (it counts days, weeks, months or years from dtstart) and takes
 * the time of day from dtstart. Any occurrence on an earlier local day reads earlier than
 * after_utc's local time, so it is at or before after_utc (the local → UTC mapping never goes
 * backwards); from the restart on, at most three steps remain (the day before, after_utc's
 * day, the answer) since a rule fires at most once a day.
 * COUNT: libical refuses set_start on a rule with COUNT, and we hand it the rule without. For
 * DAILY and WEEKLY rules (one libical step per occurrence) we walk from dtstart, at most
 * COUNT <= 1000 steps. A MONTHLY or YEARLY rule may need many libical steps per occurrence
 * (BYDAY=MO;BYMONTHDAY=13 matches a few times a year), so we count the occurrences skipped by
 * the jump ourselves (st_count_before, the same reading of the rule as st_match_from) and
 * jump.
 *
 * Every libical call that may search (iterator_new, set_start, next) is preceded by
 * st_match_from, which proves that the search ends before SCHED_YEAR_MAX.
 */
int sched_rrule_next(const char *tz, const char *rrule, const struct sched_local *dtstart,
                     int64_t after_utc, int64_t *next, char *err, size_t errlen)
{
    char ical[SCHED_RRULE_MAX + 128];
    struct st_rule r;
    struct icalrecurrencetype recur;
    icalrecur_iterator *it = NULL;
    icaltimezone *z = st_zone(tz);
    int64_t from;      /* first local day (days since 1970-01-01) the next search may return */
    int64_t known = 0; /* libical finds an occurrence on a day <= known (st_match_from) */
    int seen = 0;      /* occurrences before the next one libical returns (for COUNT) */
    int ret = -1;

    if (z == NULL) {
        st_err(err, errlen, "unknown time zone");
        return -1;
    }
    if (!st_local_ok(dtstart)) {
        st_err(err, errlen, "invalid dtstart");
        return -1;
    }
    if (next == NULL) {
        st_err(err, errlen, "no output");
        return -1;
    }
    if (st_rule_parse(rrule, &r, err, errlen) != 0)
        return -1;
    from = st_days_from_civil(dtstart->year, dtstart->month, dtstart->day);
    if (st_rule_ical(&r, st_weekday(from), ical, sizeof ical) != 0) {
        st_err(err, errlen, "rule too long");
        return -1;
    }
    icalerror_clear_errno();
    recur = icalrecurrencetype_from_string(ical);
    if (recur.freq == ICAL_NO_RECURRENCE || icalerrno != ICAL_NO_ERROR) {
        icalerror_clear_errno();
        st_err(err, errlen, "rule refused by libical");
        return -1;
    }
    if (!st_match_from(&r, dtstart, from, &known))
        return 0;
    it = icalrecur_iterator_new(recur, st_ical_local(from, dtstart->hour, dtstart->minute));
    if (it == NULL) {
        icalerror_clear_errno();
        st_err(err, errlen, "rule refused by libical");
        return -1;
    }
    if (after_utc > st_local_to_utc(z, st_local_secs(dtstart)) &&
        (r.count == 0 || r.freq == ST_MONTHLY || r.freq == ST_YEARLY)) {
        int64_t jump;

        if (!st_utc_ok(after_utc)) {
            ret = 0; /* nothing after the supported range */
            goto out;
        }
        jump = st_floor_div(st_utc_to_local_secs(z, after_utc), ST_DAY) - 1;
        if (jump > from) {
            if (r.count > 0) {
                seen = st_count_before(&r, dtstart, jump, r.count);
                if (seen >= r.count) {
                    ret = 0;
                    goto out;
                }
            }
            from = jump;
            if (!st_match_from(&r, dtstart, from, &known) ||
                !icalrecur_iterator_set_start(
                    it, st_ical_local(jump, dtstart->hour, dtstart->minute))) {
                ret = 0;
                goto out;
            }
        }
    }
    for (int step = 0; step < ST_MAX_STEPS; step++) {
        struct icaltimetype o;
        int64_t L, u;

        if (known < from && !st_match_from(&r, dtstart, from, &known)) {
            ret = 0;
            goto out;
        }
        o = icalrecur_iterator_next(it);
        if (icaltime_is_null_time(o) || o.year > SCHED_YEAR_MAX) {
            ret = 0; /* exhausted */
            goto out;
        }
        from = st_days_from_civil(o.year, o.month, o.day);
        L = from * ST_DAY + o.hour * 3600 + o.minute * 60 + o.second;
        from++;
        if ((r.until_kind == ST_UNTIL_DATE && st_floor_div(L, ST_DAY) > r.until_key) ||
            (r.until_kind == ST_UNTIL_LOCAL && L > r.until_key)) {
            ret = 0;
            goto out;
        }
        u = st_local_to_utc(z, L);
        if (r.until_kind == ST_UNTIL_UTC && u > r.until_key) {
            ret = 0;
            goto out;
        }
        if (u > after_utc) {
            *next = u;
            ret = 1;
            goto out;
        }
        if (r.count > 0 && ++seen >= r.count) {
            ret = 0;
            goto out;
        }
    }
    st_err(err, errlen, "rule expansion did not converge");
out:
    icalerror_clear_errno();
    icalrecur_iterator_free(it);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Holidays                                                                                   */

void sched_easter(int year, int *month, int *day)
{
    int a = year % 19, b = year / 100, c = year % 100, d = b / 4, e = b % 4;
    int f = (b + 8) / 25, g = (b - f + 1) / 3, h = (19 * a + b - d - g + 15) % 30;
    int i = c / 4, k = c % 4, l = (32 + 2 * e + 2 * i - h - k) % 7;
    int m = (a + 11 * h + 22 * l) / 451;

    *month = (h + l - 7 * m + 114) / 31;
    *day = (h + l - 7 * m + 114) % 31 + 1;
}

int sched_is_holiday_fr(int year, int month, int day)
{
    static const int fixed[][2] = {{1, 1},  {5, 1},  {5, 8},   {7, 14},
                                   {8, 15}, {11, 1}, {11, 11}, {12, 25}};
    int em, ed;
    int64_t diff;

    if (year < 1583 || year > 1000000 || month < 1 || month > 12 || day < 1 ||
        day > st_days_in_month(year, month))
        return 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i][0] == month && fixed[i][1] == day)
            return 1;
    sched_easter(year, &em, &ed);
    diff = st_days_from_civil(year, month, day) - st_days_from_civil(year, em, ed);
    return diff == 1 || diff == 39 || diff == 50; /* Easter Monday, Ascension, Whit Monday */
}

/* ------------------------------------------------------------------------------------------ */
/* Quiet hours                                                                                */

static int st_day_allowed(const struct sched_quiet *q, int64_t days)
{
    int y, m, d;

    if (q->sundays_quiet && st_weekday(days) == 0)
        return 0;
    st_civil_from_days(days, &y, &m, &d);
    return !(q->holidays_quiet && sched_is_holiday_fr(y, m, d));
}

static int st_allowed_at(icaltimezone *z, const struct sched_quiet *q, int64_t t)
{
    int64_t ls = st_utc_to_local_secs(z, t), days = st_floor_div(ls, ST_DAY);
    int64_t sod = ls - days * ST_DAY;

    return st_day_allowed(q, days) && sod >= q->start_min * 60 && sod < q->end_min * 60;
}

/*
 * The allowed instants are those whose local reading falls in an allowed day's window. Such
 * a stretch begins either where the local clock reaches the window start (one or two instants
 * per day: both readings of the start time, or the end of the gap when the start time does
 * not exist), or where a DST change puts the clock back inside the window (clocks going back
 * to 02:00 with a window ending at 02:30). For each local day from t's on, we try those
 * candidates and keep the earliest allowed one at or after t.
 */
int sched_next_allowed(const char *tz, const struct sched_quiet *q, int64_t t, int64_t *out)
{
    icaltimezone *z = st_zone(tz);
    int64_t day;

    if (z == NULL || q == NULL || out == NULL || q->start_min < 0 || q->start_min >= q->end_min ||
        q->end_min > 24 * 60 || !st_utc_ok(t))
        return -1;
    if (st_allowed_at(z, q, t)) {
        *out = t;
        return 0;
    }
    day = st_floor_div(st_utc_to_local_secs(z, t), ST_DAY);
    for (int i = 0; i < ST_QUIET_MAX_DAYS; i++, day++) {
        int64_t c[3], best = INT64_MAX;
        int64_t d0, d1;

        if (!st_day_allowed(q, day))
            continue;
        st_readings(z, day * ST_DAY + q->start_min * 60, &c[0], &c[1]);
        /* A change during this local day (first readings of its midnight and the next). */
        c[2] = INT64_MIN;
        d0 = st_local_to_utc(z, day * ST_DAY);
        d1 = st_local_to_utc(z, (day + 1) * ST_DAY);
        if (st_offset(z, d0) != st_offset(z, d1 - 1)) {
            int o0 = st_offset(z, d0);
            int64_t lo = d0, hi = d1 - 1;
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (st_offset(z, mid) == o0)
                    lo = mid;
                else
                    hi = mid;
            }
            c[2] = hi;
        }
        for (int k = 0; k < 3; k++)
            if (c[k] >= t && c[k] < best && st_allowed_at(z, q, c[k]))
                best = c[k];
        if (best != INT64_MAX) {
            *out = best;
            return 0;
        }
    }
    return -1;
}
