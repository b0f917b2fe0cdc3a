/*
 * test_outage — the database goes away under a running daemon and comes back.
 *
 * The daemon runs on a private PostgreSQL cluster (scripts/pgctl.sh), so that stopping it
 * does not disturb the other tests. A first batch is sent; PostgreSQL is stopped; /healthz
 * must say 503 {"db": "down"}, the API must answer 503 database_unavailable, the process
 * must stay up; PostgreSQL is started again; /healthz must come back to 200, a second batch
 * is sent, and every message that got a 202 must end delivered — with exactly one row per
 * 202 and one recorded accepted attempt per message. The route is slow (0.1 to 2.1 s), so
 * part of the first batch is still with the route when the database goes away, and the outage
 * (8 s) outlasts lease_seconds (5 s): those messages are claimed again afterwards while the
 * daemon still holds their first outcomes, which the lease token must fence. The daemon must not
 * claim again before those outcomes are written: the simulator accepts exactly one send per
 * message.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 200

static char *conninfo;

struct health {
    struct h_daemon *d;
    long want;
    const char *db;
    long last;
    char body[512];
};

static int health_is(void *arg)
{
    struct health *h = arg;
    struct h_resp *r = h_get(h->d, "/healthz", NULL);
    h->last = r->status;
    snprintf(h->body, sizeof h->body, "%s", r->status ? r->body : r->err);
    const char *db = h_jstr(r->json, "db");
    int ok = r->status == h->want && db && !strcmp(db, h->db);
    h_resp_free(r);
    return ok;
}

/* Counts the ids written by loadgen --ids-out and appends them to *list ("1,2,3"). */
static long long read_ids(const char *path, char **list)
{
    char *text = h_read_file(path);
    H_ASSERT(text, "cannot read %s", path);
    long long n = 0;
    size_t cap = strlen(*list) + strlen(text) + 16;
    char *out = malloc(cap);
    snprintf(out, cap, "%s", *list);
    size_t len = strlen(out);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *end;
        long long id = strtoll(line, &end, 10);
        H_ASSERT(end != line && *end == '\0' && id > 0, "loadgen --ids-out line '%s' is not an "
                                                        "id",
                 line);
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", len ? "," : "", id);
        n++;
    }
    free(*list);
    free(text);
    *list = out;
    return n;
}

static struct h_loadgen *batch(struct h_daemon *d, const char *key, const char *prefix,
                               const char *ids)
{
    struct h_loadgen_opts lo = {.url = d->url,
                                .key = key,
                                .count = BATCH,
                                .concurrency = 8,
                                .idem_prefix = prefix,
                                .text = "Panne de base %d",
                                .ids_out = ids,
                                .max_seconds = 120};
    struct h_loadgen *l = h_loadgen_start(&lo);
    int rc = h_loadgen_wait(l, 180);
    char *s = json_dumps(l->summary, JSON_COMPACT);
    h_log("batch %s: %s", prefix, s);
    H_ASSERT(rc == 0 && h_loadgen_status(l, 202) == BATCH,
             "batch %s: expected %d x 202 (exit 0), got exit %d: %s", prefix, BATCH, rc, s);
    free(s);
    return l;
}

static void test_database_outage(void **state)
{
    (void)state;
    struct h_pg *pg = h_pg_new();
    conninfo = h_db_create(pg->conninfo, "outage", NULL);
    int port = h_free_port();
    /* a slow route with spread-out answers (0.1 to 2.1 s), so that much of the first batch is
     * still with the route when the database goes away and its outcomes arrive during the
     * outage, and so that after it the daemon holds old and new outcomes at the same time */
    struct h_config c = {.port = port,
                         .conninfo = conninfo,
                         .route_sim = "latency_ms = 100\nlatency_jitter_ms = 2000\n"
                                      "dlr_delay_ms = 200\n"};
    char *config = h_config_write(&c, "outage.ini");
    h_centre_create(config, "Centre outage");
    char *key = h_key_create(config, "Centre outage");
    struct h_daemon *d = h_daemon_start("outage", config, port);

    char *ids1 = h_printf("%s/ids-1.txt", h_tmpdir());
    char *ids2 = h_printf("%s/ids-2.txt", h_tmpdir());
    struct h_loadgen *l1 = batch(d, key, "outage-1", ids1);
    long long accepted = h_loadgen_status(l1, 202);

    /* the database goes away */
    struct h_resp *hz = h_get(d, "/healthz", NULL);
    json_t *inflight = h_jget(hz->json, "routes.sim.in_flight");
    long long rows_before = h_sql_int(conninfo, "SELECT count(*) FROM messages");
    char *st_before = h_sql_rows(conninfo, "SELECT status, count(*) FROM messages GROUP BY 1 "
                                           "ORDER BY 1");
    h_pg_stop(pg);
    double stopped_at = h_now();
    h_log("PostgreSQL stopped with %lld messages stored (%s), %lld in flight on the route",
          rows_before, st_before,
          json_is_integer(inflight) ? (long long)json_integer_value(inflight) : -1LL);
    h_resp_free(hz);
    free(st_before);
    struct health h = {.d = d, .want = 503, .db = "down"};
    H_ASSERT(h_poll(60, 200, health_is, &h),
             "after stopping PostgreSQL, /healthz should answer 503 with \"db\":\"down\" within "
             "60 s; last: HTTP %ld %s",
             h.last, h.body);
    h_log("/healthz: %ld %s", h.last, h.body);
    long long during = 0;
    for (int i = 0; i < 5; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"to\":\"+3361234%04d\",\"text\":\"Pendant la panne\"}", i);
        struct h_resp *r = h_post_json(d, "/api/v1/messages", key, body);
        if (r->status == 202)
            during++;
        h_expect_error(r, 503, "database_unavailable", "POST while PostgreSQL is stopped");
        h_resp_free(r);
    }
    struct h_resp *r = h_get(d, "/api/v1/messages/1", key);
    h_expect_error(r, 503, "database_unavailable", "GET a message while PostgreSQL is stopped");
    h_resp_free(r);
    /* a key the daemon has never seen cannot be checked either: 503, not 401 */
    r = h_post_json(d, "/api/v1/messages", "psk_0123456789ab_0123456789abcdef0123456789abcdef",
                    "{\"to\":\"+33612340000\",\"text\":\"x\"}");
    h_expect_error(r, 503, "database_unavailable",
                   "POST with an unknown key while PostgreSQL is stopped");
    h_resp_free(r);
    H_ASSERT(h_daemon_alive(d), "the daemon exited while PostgreSQL was stopped");
    /* Stay down longer than lease_seconds (5 s): the leases of the sends that were in flight
     * expire during the outage, so that when the database comes back the daemon holds
     * outcomes for messages it may claim again (the lease token must fence them). */
    while (h_now() - stopped_at < 8)
        h_sleep_ms(200);
    H_ASSERT(h_daemon_alive(d), "the daemon exited while PostgreSQL was stopped");

    /* and comes back */
    h_pg_start(pg);
    h_log("PostgreSQL started again");
    h.want = 200;
    h.db = "up";
    H_ASSERT(h_poll(60, 200, health_is, &h),
             "after starting PostgreSQL again, /healthz should answer 200 with \"db\":\"up\" "
             "within 60 s; last: HTTP %ld %s",
             h.last, h.body);

    struct h_loadgen *l2 = batch(d, key, "outage-2", ids2);
    accepted += h_loadgen_status(l2, 202);

    char *ids = h_printf("%s", "");
    long long nids = read_ids(ids1, &ids) + read_ids(ids2, &ids);
    H_ASSERT(nids == accepted, "loadgen wrote %lld ids for %lld 202 answers", nids, accepted);

    /* every message that got a 202 ends delivered */
    struct h_daemon *alive[] = {d, NULL};
    h_wait_delivered(conninfo, accepted, 120, 10, alive);
    long long delivered = h_sql_int(conninfo,
                                    "SELECT count(*) FROM messages WHERE status = 'delivered' AND "
                                    "id IN (%s)",
                                    ids);

    /* One row per 202. A POST whose 503 had an unknown outcome could in principle have been
     * stored anyway (the connection broke after the INSERT was sent), but while the pool is
     * down the daemon refuses before sending anything, so there must be none: equality. */
    long long rows = h_sql_int(conninfo, "SELECT count(*) FROM messages");
    long long multi = h_sql_int(conninfo,
                                "SELECT count(*) FROM (SELECT message_id FROM attempts WHERE "
                                "outcome = 'accepted' GROUP BY 1 HAVING count(*) > 1) x");
    long long queue = h_sql_int(conninfo, "SELECT count(*) FROM outbox_queue");
    long long reclaimed = h_sql_int(conninfo, "SELECT count(*) FROM messages WHERE attempts > 1");
    hz = h_get(d, "/healthz", NULL);
    json_t *acc = h_jget(hz->json, "routes.sim.accepted");
    long long sim_accepted = json_is_integer(acc) ? (long long)json_integer_value(acc) : -1LL;
    h_log("the simulator accepted %lld sends for %lld messages", sim_accepted, accepted);
    h_resp_free(hz);
    h_log("outage: %lld x 202 (%lld during the outage), %lld rows, %lld delivered, %lld sent more "
          "than once, %lld claimed more than once, %lld left in the queue",
          accepted, during, rows, delivered, multi, reclaimed, queue);
    struct h_checks ck = {0};
    h_check(&ck, during == 0, "no POST accepted while PostgreSQL was stopped: %lld", during);
    if (!h_check(&ck, delivered == accepted, "every message that got a 202 is delivered: %lld of "
                                             "%lld",
                 delivered, accepted)) {
        char *rep = h_undelivered_report(conninfo);
        h_check(&ck, 0, "the undelivered messages: %s", rep);
        free(rep);
    }
    h_check(&ck, rows == accepted, "one row per 202 (%lld): %lld rows", accepted, rows);
    h_check(&ck, multi == 0, "no message with more than one accepted attempt: %lld", multi);
    /* The daemon pauses its claims until the outcomes it kept during the outage are written,
     * so even messages whose lease expired meanwhile are not handed to the route again. */
    h_check(&ck, sim_accepted == accepted, "the route was handed each message once: %lld sends "
                                           "for %lld messages",
            sim_accepted, accepted);
    h_check(&ck, queue == 0, "outbox_queue empty: %lld rows", queue);
    h_daemon_stop_check(d, &ck);
    h_checks_done(&ck, "database outage");

    h_daemon_free(d);
    h_loadgen_free(l1);
    h_loadgen_free(l2);
    free(ids);
    free(ids1);
    free(ids2);
    free(key);
    free(config);
}

int main(int argc, char **argv)
{
    h_init("outage", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_database_outage),
    };
    int failures = cmocka_run_group_tests_name("outage", tests, NULL, NULL);
    h_exit(failures);
}
