/* Unit tests of the admin API's pure half (gatewayd/gw_admin_parse.c): endpoint lookup, query
 * strings, local date-times, and the reminder and resident bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
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
    /* one's own password: every role, viewers included */
    e = gw_admin_endpoint_find("POST", "me/password", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_ME_PW);
    assert_int_equal(e->roles, GW_ADMIN_R_ALL);
    assert_null(gw_admin_endpoint_find("GET", "me/password", &id));
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

/* ---------------------------------------------------------------- second increment */

static void test_endpoints_more(void **state)
{
    (void)state;
    long long id = -1;
    const struct gw_admin_endpoint *e = gw_admin_endpoint_find("POST", "jobs/12/expire", &id);
    assert_non_null(e);
    assert_int_equal(id, 12);
    assert_int_equal(e->roles, GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF);
    e = gw_admin_endpoint_find("POST", "alerts/preview", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_MORE_SMS);
    e = gw_admin_endpoint_find("POST", "residents/import", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_IMPORT);
    e = gw_admin_endpoint_find("PATCH", "reminders/5", &id);
    assert_non_null(e);
    assert_int_equal(e->handler, GW_ADMIN_H_REM_UPDATE);
    e = gw_admin_endpoint_find("PUT", "routes", &id);
    assert_non_null(e);
    assert_int_equal(e->roles, GW_ADMIN_R_ADMIN);
    /* Paramètres is for admins only */
    for (const char *const *p = (const char *const[]){"settings", "staff", "partners", "api-keys",
                                                       NULL};
         *p; p++) {
        e = gw_admin_endpoint_find(!strcmp(*p, "settings") ? "GET" : "POST", *p, &id);
        assert_non_null(e);
        assert_int_equal(e->roles, GW_ADMIN_R_ADMIN);
    }
    assert_null(gw_admin_endpoint_find("DELETE", "jobs/1", &id));
    assert_null(gw_admin_endpoint_find("POST", "staff/x/password", &id));
}

/* parse a CSV held in a string; returns the count and leaves the rows in *rows */
static int csv(const char *text, json_t **rows, const char **why)
{
    *rows = NULL;
    return gw_admin_csv_parse(text, strlen(text), "FR", rows, why);
}

static const char *row_str(json_t *rows, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(rows, i), key));
}

static void test_csv(void **state)
{
    (void)state;
    json_t *rows;
    const char *why = NULL;
    /* a BOM, ';', CRLF, a header with accents and capitals, a quoted first name with a ';' */
    int n = csv("\xEF\xBB\xBFT\xC3\xA9l\xC3\xA9phone;Pr\xC3\xA9nom;Langue;Consentement\r\n"
                "06 12 34 56 78;\"Marie; dite \"\"Mimi\"\"\";fr;papier\r\n"
                "\r\n"
                "0712345678;Ali;anglais;Oral\r\n"
                "01 23 45 67 89;Paul;fr;papier\r\n"
                "06 98 76 54 32;Léa;fr;\r\n"
                "06 98 76 54 33;Zoé;klingon;sms\r\n"
                "06 98 76 54 34;Yann;;peut-être\r\n",
                &rows, &why);
    assert_int_equal(n, 6);
    assert_int_equal(json_array_size(rows), 6);
    assert_string_equal(row_str(rows, 0, "phone"), "+33612345678");
    assert_string_equal(row_str(rows, 0, "first_name"), "Marie; dite \"Mimi\"");
    assert_string_equal(row_str(rows, 0, "consent_source"), "paper");
    assert_null(json_object_get(json_array_get(rows, 0), "error"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "line")), 2);
    /* the blank line is skipped but counted */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 1), "line")), 4);
    assert_string_equal(row_str(rows, 1, "language"), "en");
    assert_string_equal(row_str(rows, 1, "consent_source"), "verbal");
    assert_string_equal(row_str(rows, 2, "error"), "invalid_phone");
    assert_string_equal(row_str(rows, 2, "phone"), "01 23 45 67 89");
    assert_non_null(row_str(rows, 2, "message"));
    assert_string_equal(row_str(rows, 3, "error"), "missing_consent");
    assert_string_equal(row_str(rows, 4, "error"), "invalid_language");
    assert_string_equal(row_str(rows, 5, "error"), "invalid_consent");
    json_decref(rows);

    /* ',' separator, columns in another order, no trailing newline, a quoted line break */
    n = csv("consent,phone,first_name\nsms,+33612345678,\"Jean\nPierre\"\nverbal,0612345679,Ana",
            &rows, &why);
    assert_int_equal(n, 2);
    assert_string_equal(row_str(rows, 0, "first_name"), "Jean\nPierre");
    assert_string_equal(row_str(rows, 1, "phone"), "+33612345679");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 1), "line")), 4);
    assert_string_equal(row_str(rows, 1, "language"), "fr");
    json_decref(rows);

    /* a first name too long, and bytes that are not UTF-8 */
    char big[200];
    snprintf(big, sizeof big, "telephone;prenom;consentement\n0612345678;%090d;oral\n", 7);
    n = csv(big, &rows, &why);
    assert_int_equal(n, 1);
    assert_string_equal(row_str(rows, 0, "error"), "invalid_first_name");
    json_decref(rows);
    n = csv("telephone;prenom;consentement\n0612345678;Ren\xE9;oral\n", &rows, &why);
    assert_int_equal(n, 1);
    assert_string_equal(row_str(rows, 0, "error"), "invalid_text");
    assert_string_equal(row_str(rows, 0, "first_name"), "?");
    json_decref(rows);

    /* whole-file refusals: empty, no phone column, data without a header, open quote */
    assert_int_equal(csv("", &rows, &why), -1);
    assert_non_null(why);
    assert_int_equal(csv("\n\n", &rows, &why), -1);
    assert_int_equal(csv("prenom;langue\nAli;fr\n", &rows, &why), -1);
    assert_non_null(strstr(why, "telephone"));
    assert_int_equal(csv("0612345678;Ali;fr;oral\n", &rows, &why), -1);
    assert_int_equal(csv("telephone;prenom\n\"0612345678;Ali\n", &rows, &why), -1);
    assert_non_null(strstr(why, "Guillemet"));
    /* a header only: no resident, no refusal */
    assert_int_equal(csv("telephone;prenom;langue;consentement\n", &rows, &why), 0);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
}

static void test_csv_limit(void **state)
{
    (void)state;
    size_t cap = (GW_ADMIN_CSV_MAX + 2) * 32;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t o = (size_t)snprintf(buf, cap, "telephone;consentement\n");
    for (int i = 0; i < GW_ADMIN_CSV_MAX; i++)
        o += (size_t)snprintf(buf + o, cap - o, "06%08d;oral\n", i);
    json_t *rows;
    const char *why;
    assert_int_equal(gw_admin_csv_parse(buf, o, "FR", &rows, &why), GW_ADMIN_CSV_MAX);
    json_decref(rows);
    o += (size_t)snprintf(buf + o, cap - o, "0699999999;oral\n");
    assert_int_equal(gw_admin_csv_parse(buf, o, "FR", &rows, &why), -1);
    assert_non_null(strstr(why, "2000"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints), cmocka_unit_test(test_query),
        cmocka_unit_test(test_local),     cmocka_unit_test(test_reminders),
        cmocka_unit_test(test_residents), cmocka_unit_test(test_endpoints_more),
        cmocka_unit_test(test_csv),       cmocka_unit_test(test_csv_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
