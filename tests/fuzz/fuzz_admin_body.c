/* libFuzzer target: the pure C of the admin API (gatewayd/gw_admin_parse.c), with the real
 * time math (sched_time.c, libical) and phone shim behind it.
 *
 * Input: one byte choosing what to feed (its value mod 5; the seeds use P, L, R, N, T), then
 * the payload. Checks, besides memory safety:
 *   0 "METHOD path": endpoint lookup agrees with a plain segment-by-segment matcher ('#' = 1
 *     to 18 digits), the table never has two endpoints for one request, and the path rebuilt
 *     from the pattern and the number found gives the same endpoint and number;
 *   1 a local date-time "YYYY-MM-DD HH:MM": an accepted one is a real UTC minute whose
 *     normalised text parses back to the same fields;
 *   2 a reminder body (zone and clock chosen from the input among a few, around DST changes):
 *     a refusal is one of the known messages; an accepted reminder has a valid schedule and
 *     text, its normalised times parse back, and its (at most 5) next occurrences are after
 *     the start of the current minute, in order (strictly for a rule), and never after the
 *     appointment; a one-off reminder fires at its local time;
 *   3 a resident body: accepted means an E.164 number, a known consent, a known language or
 *     none, a first name of at most 80 bytes; a refusal has a known code and a message;
 *   4 a query string: every parameter kept is a string, key under 32 bytes, value under 200.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_admin_parse.h"
#include "sched_time.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_admin_body: invariant failed at line %d: %s\n", __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- paths */

/* The reference: compare segment by segment; a '#' segment is 1 to 18 digits. */
static int ref_match(const char *pattern, const char *path, long long *id)
{
    for (;;) {
        size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
        if (pl == 1 && pattern[0] == '#') {
            if (sl < 1 || sl > 18)
                return 0;
            long long v = 0;
            for (size_t i = 0; i < sl; i++) {
                if (path[i] < '0' || path[i] > '9')
                    return 0;
                v = v * 10 + (path[i] - '0');
            }
            *id = v;
        } else if (pl != sl || memcmp(pattern, path, pl) != 0) {
            return 0;
        }
        if (!pattern[pl] || !path[sl])
            return !pattern[pl] && !path[sl];
        pattern += pl + 1;
        path += sl + 1;
    }
}

static void build_path(const char *pattern, long long id, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = pattern; *p && n + 20 < len; p++) {
        if (*p == '#')
            n += (size_t)snprintf(out + n, len - n, "%lld", id);
        else
            out[n++] = *p;
    }
    out[n] = '\0';
}

static void paths(const char *in)
{
    /* as on_api holds them: method[8], path[256] */
    char method[8], path[256];
    size_t m = strcspn(in, " ");
    snprintf(method, sizeof method, "%.*s", (int)m, in);
    snprintf(path, sizeof path, "%s", in[m] ? in + m + 1 : "");

    long long id = -1;
    const struct gw_admin_endpoint *ep = gw_admin_endpoint_find(method, path, &id);
    const struct gw_admin_endpoint *ref = NULL;
    long long ref_id = -1;
    int matches = 0;
    for (size_t i = 0; i < gw_admin_nendpoints; i++) {
        long long x = -1;
        if (strcmp(gw_admin_endpoints[i].method, method) ||
            !ref_match(gw_admin_endpoints[i].pattern, path, &x))
            continue;
        if (!matches++) {
            ref = &gw_admin_endpoints[i];
            ref_id = x;
        }
    }
    CHECK(matches <= 1);
    CHECK(ep == ref);
    if (!ep)
        return;
    CHECK(ep->roles > 0 && ep->roles <= GW_ADMIN_R_ALL);
    if (strchr(ep->pattern, '#')) {
        CHECK(id == ref_id && id >= 0);
        char again[256];
        long long id2 = -1;
        build_path(ep->pattern, id, again, sizeof again);
        CHECK(gw_admin_endpoint_find(method, again, &id2) == ep && id2 == id);
    }
}

/* ---------------------------------------------------------------- local times */

static void same_local(const struct sched_local *a, const struct sched_local *b)
{
    CHECK(a->year == b->year && a->month == b->month && a->day == b->day && a->hour == b->hour &&
          a->minute == b->minute);
}

static void local_times(const char *in)
{
    struct sched_local l, l2, back;
    char copy[20], copy2[20];
    if (gw_admin_parse_local(in, &l, copy) != 0)
        return;
    CHECK(strlen(copy) == 16 && copy[4] == '-' && copy[7] == '-' && copy[10] == ' ' &&
          copy[13] == ':');
    CHECK(gw_admin_parse_local(copy, &l2, copy2) == 0 && !strcmp(copy, copy2));
    same_local(&l, &l2);
    int64_t t;
    CHECK(sched_local_to_utc("UTC", &l, &t) == 0 && t % 60 == 0);
    CHECK(sched_utc_to_local("UTC", t, &back, NULL) == 0);
    same_local(&l, &back);
}

/* ---------------------------------------------------------------- reminders */

static const char *const zones[] = {"Europe/Paris", "UTC", "America/Cayenne", "Pacific/Noumea",
                                    "Indian/Reunion"};
static const int64_t clocks[] = {
    1767225600, /* 2026-01-01T00:00:00Z */
    1774745970, /* 2026-03-29T00:59:30Z, half a minute before Paris springs forward */
    1792888200, /* 2026-10-25T00:30:00Z, inside Paris' repeated hour */
    1781510399, /* 2026-06-15T07:59:59Z */
};
static const char *const reminder_whys[] = {
    "Choisissez un habitant.",
    "Écrivez le texte du rappel (1000 caractères au plus).",
    "Choisissez le type de rappel : une fois, récurrent ou avant un rendez-vous.",
    "Indiquez la date et l'heure (AAAA-MM-JJ HH:MM).",
    "Indiquez la règle de récurrence et la date de début.",
    "Cette récurrence n'est pas valable (au plus une fois par jour).",
    "Indiquez la date du rendez-vous et au moins un rappel (8 au plus).",
    "Date du rendez-vous invalide.",
    "Heure de rappel invalide (HH:MM).",
    "Chaque rappel est « N jours avant (à HH:MM) » ou « N minutes avant »."};

static void reminders(json_t *body, uint32_t h)
{
    const char *tz = zones[h % (sizeof zones / sizeof zones[0])];
    int64_t now = clocks[(h >> 8) % (sizeof clocks / sizeof clocks[0])];
    struct gw_admin_reminder in;
    int64_t next[5];
    const char *why = NULL;
    int n = gw_admin_reminder_parse(body, tz, now, &in, next, &why);
    CHECK(n >= -1 && n <= 5);
    if (n < 0) {
        int known = 0;
        for (size_t i = 0; why && i < sizeof reminder_whys / sizeof reminder_whys[0]; i++)
            known |= !strcmp(why, reminder_whys[i]);
        CHECK(known);
        return;
    }
    CHECK(in.text && in.text[0] && strlen(in.text) <= 1000);
    CHECK(in.schedule);
    int once = !strcmp(in.schedule, "once"), rule = !strcmp(in.schedule, "rrule"),
        appt = !strcmp(in.schedule, "appointment");
    CHECK(once + rule + appt == 1);
    struct sched_local l;
    char copy[20];
    if (appt) {
        CHECK(gw_admin_parse_local(in.appt_s, &l, copy) == 0 && !strcmp(copy, in.appt_s));
        same_local(&l, &in.appt);
        CHECK(json_is_array(in.offsets) && json_array_size(in.offsets) >= 1 &&
              json_array_size(in.offsets) <= 8);
    } else {
        CHECK(gw_admin_parse_local(in.start_s, &l, copy) == 0 && !strcmp(copy, in.start_s));
        same_local(&l, &in.start);
    }
    if (rule)
        CHECK(in.rrule && sched_rrule_check(in.rrule, NULL, 0) == 0);
    int64_t floor_t = now - now % 60 - 1;
    for (int i = 0; i < n; i++) {
        CHECK(next[i] > floor_t);
        if (i > 0)
            CHECK(rule ? next[i] > next[i - 1] : next[i] >= next[i - 1]);
    }
    if (once) {
        int64_t at;
        CHECK(n <= 1);
        CHECK(n == 0 || (sched_local_to_utc(tz, &in.start, &at) == 0 && at == next[0]));
    }
    if (appt && n > 0) {
        int64_t at;
        CHECK(sched_local_to_utc(tz, &in.appt, &at) == 0 && next[n - 1] <= at);
    }
}

/* ---------------------------------------------------------------- residents and queries */

static void residents(json_t *body)
{
    struct gw_admin_resident r;
    const char *code = NULL, *msg = NULL;
    int st = gw_admin_resident_parse(body, "FR", &r, &code, &msg);
    if (st) {
        CHECK(st == 422 && code && msg && msg[0]);
        CHECK(!strcmp(code, "invalid_phone") || !strcmp(code, "invalid_consent") ||
              !strcmp(code, "invalid_field"));
        return;
    }
    CHECK(r.phone[0] == '+' && strlen(r.phone) >= 4 && strlen(r.phone) <= 16);
    CHECK(strspn(r.phone + 1, "0123456789") == strlen(r.phone) - 1);
    CHECK(r.consent && (!strcmp(r.consent, "paper") || !strcmp(r.consent, "verbal") ||
                        !strcmp(r.consent, "sms")));
    CHECK(!r.language || !strcmp(r.language, "fr") || !strcmp(r.language, "en"));
    CHECK(!r.first_name || strlen(r.first_name) <= 80);
}

static void queries(const char *q)
{
    json_t *o = json_object();
    gw_admin_query_parse(q, o);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        CHECK(strlen(k) < 32);
        CHECK(json_is_string(v) && strlen(json_string_value(v)) < 200);
    }
    json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t h = 2166136261u; /* FNV-1a: which zone and clock */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    char *s = strndup((const char *)data + 1, size - 1); /* as a C string (up to a NUL) */
    if (!s)
        abort();
    switch (data[0] % 5) {
    case 0:
        paths(s);
        break;
    case 1:
        local_times(s);
        break;
    case 2:
    case 3: {
        /* as on_api reads a body: a JSON object, or nothing */
        json_error_t je;
        json_t *j = json_loadb((const char *)data + 1, size - 1, 0, &je);
        if (!j || json_is_object(j)) {
            if (data[0] % 5 == 2)
                reminders(j, h);
            else
                residents(j);
        }
        json_decref(j);
        break;
    }
    default:
        queries(s);
        break;
    }
    free(s);
    return 0;
}
