/*
 * test_rgpd — data protection against the real daemon and database: a resident's export holds
 * everything stored about the number (messages with history, attendance, loans, subscriptions,
 * inbox), erasure removes the number and the texts everywhere while counts survive, an
 * opted-out number stays opted out after an erasure (and is still refused by the API), and the
 * retention purge empties old message texts but keeps their states.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESIDENT "+33611112222"
#define QUITTER "+33611113333"

static struct {
    char *conninfo, *config, *key;
    struct h_daemon *d;
} G;

static long long inbound(const char *from, const char *text)
{
    char *e = h_printf("from=%s&text=%s", from, text);
    struct h_resp *r = h_post_form(G.d, "/providers/sim/inbound", e);
    H_ASSERT(r->status == 200, "inbound %s: %ld %s", text, r->status, r->body);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    free(e);
    return id;
}

static int replies_done(void *arg)
{
    long long *last = arg;
    return h_sql_int(G.conninfo,
                     "SELECT count(*) FROM messages WHERE idempotency_key = 'flow:%lld:0'"
                     " AND status = 'delivered'",
                     *last) == 1;
}

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "rgpd", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = G.conninfo, .route_sim = "dlr_delay_ms = 20\n"};
    G.config = h_config_write(&c, "rgpd.ini");
    h_centre_create(G.config, "Centre R");
    H_ASSERT(h_ctl(G.config, NULL, "centre", "seed", "Centre R", NULL) == 0, "seed: %s",
             h_ctl_stderr());
    G.key = h_key_create(G.config, "Centre R");
    G.d = h_daemon_start("rgpd", G.config, port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    h_daemon_free(G.d);
    return 0;
}

static void test_export_then_erase(void **state)
{
    (void)state;
    inbound(RESIDENT, "CHECK%201234%203");
    inbound(RESIDENT, "PRET%2012");
    inbound(RESIDENT, "ALERTE%20sortie");
    long long last = inbound(RESIDENT, "Bonjour%20je%20cherche%20un%20logement");
    H_ASSERT(h_poll(20, 100, replies_done, &last), "the replies should be delivered");

    char *out = NULL;
    int rc = h_ctl(G.config, &out, "resident", "export", "Centre R", "06 11 11 22 22", NULL);
    H_ASSERT(rc == 0 && out, "resident export: exit %d %s", rc, h_ctl_stderr());
    json_error_t je;
    json_t *x = json_loads(out, 0, &je);
    H_ASSERT(x, "the export is JSON: %s (%s)", je.text, out);
    struct h_checks ck = {0};
    h_check(&ck, json_array_size(json_object_get(x, "messages")) == 8,
            "export: 4 inbound + 4 replies = 8 messages, got %zu",
            json_array_size(json_object_get(x, "messages")));
    h_check(&ck, strstr(out, "Bonjour je cherche un logement") != NULL,
            "export: holds the texts the resident sent");
    h_check(&ck, json_array_size(json_object_get(x, "attendance")) == 1 &&
                 json_integer_value(json_object_get(json_array_get(json_object_get(x, "attendance"), 0),
                                                    "people")) == 3,
            "export: the check-in for 3 people");
    h_check(&ck, json_array_size(json_object_get(x, "loans")) == 1, "export: the loan request");
    h_check(&ck, json_array_size(json_object_get(x, "subscriptions")) == 1, "export: one subscription");
    h_check(&ck, json_array_size(json_object_get(x, "inbox")) == 1, "export: the inbox item");
    json_decref(x);
    free(out);

    rc = h_ctl(G.config, &out, "resident", "erase", "Centre R", RESIDENT, NULL);
    h_check(&ck, rc == 2, "erase without --yes is refused (exit 2): %d", rc);
    free(out);
    rc = h_ctl(G.config, &out, "resident", "erase", "Centre R", RESIDENT, "--yes", NULL);
    h_check(&ck, rc == 0, "erase --yes: exit %d %s", rc, h_ctl_stderr());
    free(out);

    long long left = h_sql_int(G.conninfo,
                               "SELECT (SELECT count(*) FROM messages WHERE phone = '%s')"
                               " + (SELECT count(*) FROM contacts WHERE phone = '%s')"
                               " + (SELECT count(*) FROM inbox WHERE phone = '%s')"
                               " + (SELECT count(*) FROM flow_runs WHERE phone = '%s')",
                               RESIDENT, RESIDENT, RESIDENT, RESIDENT);
    h_check(&ck, left == 0, "after the erasure the number is nowhere: %lld rows still name it", left);
    long long texts = h_sql_int(G.conninfo,
                                "SELECT count(*) FROM messages WHERE body LIKE '%%logement%%'");
    h_check(&ck, texts == 0, "after the erasure its texts are gone: %lld", texts);
    long long kept = h_sql_int(G.conninfo,
                               "SELECT count(*) FROM messages WHERE phone = 'erased' AND status IN"
                               " ('received', 'delivered')");
    h_check(&ck, kept == 8, "the 8 messages stay as anonymous statistics: %lld", kept);
    long long people = h_sql_int(G.conninfo,
                                 "SELECT coalesce(sum(people), 0) FROM attendance a JOIN"
                                 " activity_sessions s ON s.id = a.session_id WHERE s.code = '1234'"
                                 " AND a.contact_id IS NULL");
    h_check(&ck, people == 3, "the attendance count stays, attached to nobody: %lld", people);
    char *item = h_sql_str(G.conninfo, "SELECT state FROM items WHERE code = '12'");
    h_check(&ck, item && !strcmp(item, "available"),
            "the unconfirmed loan request is withdrawn, the item available: %s", item ? item : "-");
    free(item);
    h_checks_done(&ck, "export then erase");
}

static void test_erase_keeps_opt_out(void **state)
{
    (void)state;
    inbound(QUITTER, "STOP");
    H_ASSERT(h_ctl(G.config, NULL, "resident", "erase", "Centre R", QUITTER, "--yes", NULL) == 0,
             "erase: %s", h_ctl_stderr());
    char *row = h_sql_str(G.conninfo,
                          "SELECT coalesce(first_name, '-') || '|' || CASE WHEN opted_out_at IS NULL THEN 'in' ELSE 'out' END"
                          " FROM contacts WHERE phone = '%s'",
                          QUITTER);
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key,
                                   "{\"to\":\"" QUITTER "\",\"text\":\"Bonjour\"}");
    struct h_checks ck = {0};
    h_check(&ck, row && !strcmp(row, "-|out"),
            "an opted-out number keeps only its opt-out after an erasure: %s", row ? row : "none");
    h_check(&ck, r->status == 422 && strstr(r->body, "opted_out"),
            "and the API still refuses to text it: %ld %s", r->status, r->body);
    h_resp_free(r);
    free(row);
    h_checks_done(&ck, "erasure keeps the opt-out");
}

static void test_retention(void **state)
{
    (void)state;
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key,
                                   "{\"to\":\"0611114444\",\"text\":\"Texte a purger\"}");
    H_ASSERT(r->status == 202, "send: %ld %s", r->status, r->body);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    /* as if 100 days had passed since this message and everything before it (the purge walks
     * messages in id order, which is creation order); the centre keeps texts 90 days */
    h_sql_exec(G.conninfo,
               "UPDATE messages SET created_at = now() - interval '100 days' WHERE id <= %lld", id);
    long long young = inbound("+33611115555", "Texte%20recent");
    long long n = h_sql_int(G.conninfo, "SELECT gw_retention_run(1000)");
    char *old = h_sql_str(G.conninfo, "SELECT coalesce(body, 'NULL') || '|' || status FROM messages WHERE id = %lld", id);
    char *recent = h_sql_str(G.conninfo, "SELECT coalesce(body, 'NULL') FROM messages WHERE id = %lld", young);
    struct h_checks ck = {0};
    h_check(&ck, n >= 1, "the purge reports what it purged: %lld", n);
    h_check(&ck, old && !strncmp(old, "NULL|", 5), "the 100-day-old text is purged, its state kept: %s",
            old ? old : "-");
    h_check(&ck, recent && !strcmp(recent, "Texte recent"), "a recent text stays: %s",
            recent ? recent : "-");
    free(old);
    free(recent);
    h_daemon_stop_check(G.d, &ck);
    h_checks_done(&ck, "retention");
}

int main(int argc, char **argv)
{
    h_init("rgpd", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_then_erase),
        cmocka_unit_test(test_erase_keeps_opt_out),
        cmocka_unit_test(test_retention),
    };
    h_exit(cmocka_run_group_tests_name("rgpd", tests, group_setup, group_teardown));
}
