/* gw_util — see gw_util.h. */
#include "gw_util.h"

#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t gw_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, uint32_t rnd)
{
    if (attempt < 1)
        attempt = 1;
    if (base_ms < 1)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    int64_t half = d / 2;
    int64_t r = half + (int64_t)(rnd % (uint64_t)(d - half + 1));
    return r < 1 ? 1 : r;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t gw_now_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

int64_t gw_now_us(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000;
}

int64_t gw_wall_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil), so no time-zone state (TZ, mktime) is involved. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int gw_parse_rfc3339(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, se;
    const char *p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return GW_EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return GW_EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return GW_EINVAL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return GW_EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return GW_EINVAL;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return GW_EINVAL;
    }
    if (*p)
        return GW_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return GW_EINVAL;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return GW_EINVAL;
    if (se == 60)
        se = 59; /* leap second: clamp */
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    return GW_OK;
}

void gw_format_rfc3339(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int gw_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return GW_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return GW_EINVAL;
    *out = v;
    return GW_OK;
}

/* Not for secrets (jitter, the simulator's draws): xorshift64*, seeded once per thread from the
 * system's generator. libsodium's randombytes_random() is a getrandom() system call each time,
 * which showed in the send path's profile. */
uint32_t gw_random32(void)
{
    static _Thread_local uint64_t state;
    while (state == 0)
        randombytes_buf(&state, sizeof state);
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (uint32_t)((state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* One item of an address list against addr (NULL: only check the item). 1 match, 0 no match,
 * -1 malformed item. */
static int addr_item(const char *item, size_t len, const char *addr)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, item, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    int bits = 32;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || b > 32)
            return -1;
        bits = (int)b;
        *slash = '\0';
    }
    struct in_addr a4, b4;
    struct in6_addr a6, b6;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        if (!addr || inet_pton(AF_INET, addr, &b4) != 1)
            return 0;
        uint32_t mask = bits == 0 ? 0 : htonl(0xffffffffu << (32 - bits));
        return (a4.s_addr & mask) == (b4.s_addr & mask);
    }
    if (!slash && inet_pton(AF_INET6, buf, &a6) == 1)
        return addr && inet_pton(AF_INET6, addr, &b6) == 1 && !memcmp(&a6, &b6, sizeof a6);
    return -1;
}

static int addr_walk(const char *list, const char *addr)
{
    int any = 0;
    while (*list) {
        while (*list == ' ' || *list == ',')
            list++;
        size_t n = strcspn(list, ", ");
        if (!n)
            break;
        int m = addr_item(list, n, addr);
        if (m < 0)
            return -1;
        any |= m;
        list += n;
    }
    return any;
}

int gw_addr_list_check(const char *list)
{
    return addr_walk(list, NULL) < 0 ? -1 : 0;
}

int gw_addr_in_list(const char *list, const char *addr)
{
    return addr_walk(list, addr) == 1;
}

/* Length of the valid UTF-8 sequence at s (as jansson checks it: no overlong forms, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *s)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        n = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        n = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void gw_utf8_repair(char *s)
{
    while (*s) {
        size_t n = utf8_seq((const uint8_t *)s);
        if (n == 0)
            *s++ = '?';
        else
            s += n;
    }
}
