/* Unit tests of the admin API's pure half (gatewayd/gw_admin_parse.c): endpoint lookup, query
 * strings, local date-times, and the reminder and resident bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "gw_admin_parse.h"

#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */

static void test_endpoints(void **state)
{
    (void)state;
    long long id = -1;
    const struct gw_admin_endpoint *e = gw_admin_endpoint_find("GET", "residents/42/export", &id);
    assert_non_null(e);
    assert_string_equal(e->pattern, "residents/#/export");
    assert_int_equal(e->roles, GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT);
    assert_int_equal(id, 42);
    e = gw_admin_endpoint_find("POST", "inbox/007/reply", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_INBOX_REPLY);
    assert_int_equal(id, 7);
    e = gw_admin_endpoint_find("POST", "residents", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_RES_CREATE);
    assert_non_null(gw_admin_endpoint_find("GET", "activities/report.csv", &id));
    assert_non_null(gw_admin_endpoint_find("POST", "loans/123456789012345678/returned", &id));
    assert_int_equal(id, 123456789012345678LL);
    /* 19 digits, no digits, a sign, a trailing slash, another method: no endpoint */
    assert_null(gw_admin_endpoint_find("POST", "loans/1234567890123456789/returned", &id));
    assert_null(gw_admin_endpoint_find("GET", "residents/", &id));
    assert_null(gw_admin_endpoint_find("GET", "residents/-1", &id));
    assert_null(gw_admin_endpoint_find("GET", "residents/1/", &id));
    assert_null(gw_admin_endpoint_find("PUT", "residents/1", &id));
    assert_null(gw_admin_endpoint_find("GET", "login", &id));
}

static void test_query(void **state)
{
    (void)state;
    json_t *o = json_object();
    char longv[260];
    memset(longv, 'v', 250);
    longv[250] = '\0';
    char q[400];
    snprintf(q, sizeof q, "a=1&b=%%C3%%A9t%%C3%%A9&c=%%FF&d=x+y&long=%s", longv);
    gw_admin_query_parse(q, o);
    assert_string_equal(json_string_value(json_object_get(o, "a")), "1");
    assert_string_equal(json_string_value(json_object_get(o, "b")), "été");
    assert_null(json_object_get(o, "c")); /* not UTF-8 once decoded */
    assert_string_equal(json_string_value(json_object_get(o, "d")), "x y");
    assert_null(json_object_get(o, "long"));
    gw_admin_query_parse(NULL, o);
    assert_int_equal(json_object_size(o), 3);
    json_decref(o);
}

static void test_local(void **state)
{
    (void)state;
    struct sched_local l;
    char copy[20];
    assert_int_equal(gw_admin_parse_local("2026-03-29 02:30", &l, copy), 0);
    assert_string_equal(copy, "2026-03-29 02:30");
    assert_int_equal(gw_admin_parse_local(" 2026-1-5 7:05", &l, copy), 0);
    assert_string_equal(copy, "2026-01-05 07:05");
    assert_int_equal(l.day, 5);
    assert_int_equal(gw_admin_parse_local("2026-02-30 10:00", &l, copy), -1);
    assert_int_equal(gw_admin_parse_local("2026-01-01 24:00", &l, copy), -1);
    assert_int_equal(gw_admin_parse_local("2026-01-01T10:00", &l, copy), -1);
    assert_int_equal(gw_admin_parse_local("2026-01-01 10:00 ", &l, copy), -1);
    assert_int_equal(gw_admin_parse_local("1969-12-31 23:59", &l, copy), -1);
    assert_int_equal(gw_admin_parse_local(NULL, &l, copy), -1);
}

static int reminder(const char *body, int64_t next[5], const char **why)
{
    struct gw_admin_reminder in;
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    int n = gw_admin_reminder_parse(j, "Europe/Paris", NOW, &in, next, why);
    json_decref(j);
    return n;
}

static void test_reminders(void **state)
{
    (void)state;
    int64_t next[5];
    const char *why = NULL;
    /* in the spring-forward gap: 02:30 does not exist, it fires at 03:00 CEST */
    assert_int_equal(reminder("{\"resident_id\":1,\"schedule\":\"once\",\"text\":\"RDV\","
                              "\"at\":\"2026-03-29 02:30\"}",
                              next, &why),
                     1);
    assert_int_equal(next[0], 1774746000);
    /* every day at 08:00 Paris from 2026-01-01: the next five */
    assert_int_equal(reminder("{\"resident_id\":1,\"schedule\":\"rrule\",\"text\":\"x\","
                              "\"start\":\"2026-01-01 08:00\",\"rrule\":\"FREQ=DAILY\"}",
                              next, &why),
                     5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(next[i], NOW + 7 * 3600 + i * 86400);
    /* one day before at 18:00 and 90 minutes before a 10:00 appointment (CET) */
    assert_int_equal(reminder("{\"resident_id\":1,\"schedule\":\"appointment\",\"text\":\"x\","
                              "\"appointment\":\"2026-01-10 10:00\","
                              "\"offsets\":[{\"minutes\":90},{\"days\":1,\"time\":\"18:00\"}]}",
                              next, &why),
                     2);
    assert_int_equal(next[0], 1767978000); /* 2026-01-09T17:00:00Z */
    assert_int_equal(next[1], 1768030200); /* 2026-01-10T07:30:00Z */
    /* in the past: valid, but it never fires */
    assert_int_equal(reminder("{\"resident_id\":1,\"schedule\":\"once\",\"text\":\"x\","
                              "\"at\":\"2025-12-31 10:00\"}",
                              next, &why),
                     0);

    struct {
        const char *body, *why;
    } bad[] = {
        {"{\"schedule\":\"once\",\"text\":\"x\",\"at\":\"2026-02-01 10:00\"}",
         "Choisissez un habitant."},
        {"{\"resident_id\":1,\"schedule\":\"once\",\"text\":\"\"}", "Écrivez le texte"},
        {"{\"resident_id\":1,\"schedule\":\"weekly\",\"text\":\"x\"}", "Choisissez le type"},
        {"{\"resident_id\":1,\"schedule\":\"once\",\"text\":\"x\",\"at\":\"demain\"}",
         "Indiquez la date et l'heure"},
        {"{\"resident_id\":1,\"schedule\":\"rrule\",\"text\":\"x\",\"start\":\"2026-02-01 "
         "10:00\",\"rrule\":\"FREQ=HOURLY\"}",
         "Cette récurrence"},
        {"{\"resident_id\":1,\"schedule\":\"appointment\",\"text\":\"x\","
         "\"appointment\":\"2026-02-01 10:00\",\"offsets\":[]}",
         "au moins un rappel"},
        {"{\"resident_id\":1,\"schedule\":\"appointment\",\"text\":\"x\","
         "\"appointment\":\"2026-02-01 10:00\",\"offsets\":[{\"days\":1,\"time\":\"25:00\"}]}",
         "Heure de rappel invalide"},
        {"{\"resident_id\":1,\"schedule\":\"appointment\",\"text\":\"x\","
         "\"appointment\":\"2026-02-01 10:00\",\"offsets\":[{\"weeks\":1}]}",
         "N minutes avant"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        int n = reminder(bad[i].body, next, &why);
        if (n != -1 || !why || !strstr(why, bad[i].why))
            fail_msg("case %zu: %d '%s', expected -1 '%s'", i, n, why ? why : "", bad[i].why);
    }
}

static void test_residents(void **state)
{
    (void)state;
    struct gw_admin_resident r;
    const char *code, *msg;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "phone", "06 12 34 56 78", "first_name", "Aïcha",
                          "language", "fr", "consent_source", "paper");
    assert_int_equal(gw_admin_resident_parse(j, "FR", &r, &code, &msg), 0);
    assert_string_equal(r.phone, "+33612345678");
    assert_string_equal(r.first_name, "Aïcha");
    assert_string_equal(r.consent, "paper");
    json_decref(j);
    j = json_pack("{s:s,s:s}", "phone", "01 23 45 67 89", "consent_source", "sms");
    assert_int_equal(gw_admin_resident_parse(j, "FR", &r, &code, &msg), 422);
    assert_string_equal(code, "invalid_phone");
    json_decref(j);
    j = json_pack("{s:s,s:s}", "phone", "+32 470 12 34 56", "consent_source", "email");
    assert_int_equal(gw_admin_resident_parse(j, "FR", &r, &code, &msg), 422);
    assert_string_equal(code, "invalid_consent");
    json_decref(j);
    j = json_pack("{s:s,s:s,s:s}", "phone", "0612345678", "consent_source", "verbal", "language",
                  "de");
    assert_int_equal(gw_admin_resident_parse(j, "FR", &r, &code, &msg), 422);
    assert_string_equal(code, "invalid_field");
    json_decref(j);
    assert_int_equal(gw_admin_resident_parse(NULL, "FR", &r, &code, &msg), 422);
    assert_string_equal(code, "invalid_phone");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints), cmocka_unit_test(test_query),
        cmocka_unit_test(test_local),     cmocka_unit_test(test_reminders),
        cmocka_unit_test(test_residents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
