/*
 * test_crash — kill -9 in the middle of a 10,000-message load and check that nothing is lost
 * or sent twice.
 *
 * loadgen posts 10,000 messages (concurrency 32, --retry, --idempotency-prefix) while the
 * simulator is slow (latency 300 ms, route concurrency 200), so that hundreds of sends are in
 * flight at any time. Once a few thousand messages are in the database the daemon is killed
 * with SIGKILL and started again on the same port and database; loadgen retries what failed
 * in between (its idempotency keys make the retries safe). Then every message must be
 * delivered exactly once: one row per logical request, all delivered, exactly one accepted
 * attempt each, an empty queue, and some messages claimed twice (the crash really hit
 * in-flight work, which the lease brought back).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT 10000
#define KILL_AFTER 3000

static char *conninfo;

static char *status_breakdown(void)
{
    return h_sql_rows(conninfo,
                      "SELECT status, count(*) FROM messages GROUP BY status ORDER BY status");
}

static void test_kill9_under_load(void **state)
{
    (void)state;
    conninfo = h_db_create(h_test_pg(), "crash", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port,
                         .conninfo = conninfo,
                         .route_sim = "latency_ms = 300\n"
                                      "concurrency = 200\n"
                                      "dlr_delay_ms = 100\n"};
    char *config = h_config_write(&c, "crash.ini");
    h_centre_create(config, "Centre crash");
    char *key = h_key_create(config, "Centre crash");
    struct h_daemon *d = h_daemon_start("crash", config, port);

    char *prefix = h_printf("crash-%d", (int)getpid());
    struct h_loadgen_opts lo = {.url = d->url,
                                .key = key,
                                .count = COUNT,
                                .concurrency = 32,
                                .idem_prefix = prefix,
                                .retry = 1,
                                .text = "Test de reprise apres crash %d",
                                .max_seconds = 600};
    struct h_loadgen *lg = h_loadgen_start(&lo);

    /* wait for a few thousand accepted messages */
    double deadline = h_now() + 300;
    long long n = 0;
    for (;;) {
        n = h_sql_int(conninfo, "SELECT count(*) FROM messages");
        if (n >= KILL_AFTER)
            break;
        H_ASSERT(h_daemon_alive(d), "the daemon died before the kill (%lld messages stored)", n);
        H_ASSERT(h_now() < deadline,
                 "only %lld messages stored after 300 s, expected %d before the kill", n,
                 KILL_AFTER);
        h_sleep_ms(50);
    }
    h_daemon_kill9(d);
    char *at_kill = status_breakdown();
    long long rows_at_kill = h_sql_int(conninfo, "SELECT count(*) FROM messages");
    long long leased_at_kill =
        h_sql_int(conninfo, "SELECT count(*) FROM outbox_queue WHERE lease_node IS NOT NULL");
    h_log("killed the daemon (SIGKILL) with %lld messages stored: %s; %lld leased in the queue",
          rows_at_kill, at_kill, leased_at_kill);
    H_ASSERT(leased_at_kill > 0, "no send was in flight at the kill (statuses %s): the test did "
                                 "not exercise recovery",
             at_kill);

    h_daemon_restart(d);
    h_log("restarted the daemon on port %d", port);

    int rc = h_loadgen_wait(lg, 600);
    long long accepted = h_jint(lg->summary, "accepted");
    long long failed = h_jint(lg->summary, "failed");
    char *sum = json_dumps(lg->summary, JSON_COMPACT);
    h_log("loadgen: %s", sum);
    H_ASSERT(rc == 0 && accepted == COUNT && failed == 0,
             "loadgen: expected every one of the %d requests accepted (exit 0), got exit %d: %s",
             COUNT, rc, sum);

    /* wait until everything is delivered (or nothing moves any more) */
    struct h_daemon *alive[] = {d, NULL};
    h_wait_delivered(conninfo, COUNT, 300, 10, alive);

    /* the checks, all evaluated before failing */
    long long rows = h_sql_int(conninfo, "SELECT count(*) FROM messages");
    long long keys = h_sql_int(conninfo,
                               "SELECT count(DISTINCT idempotency_key) FROM messages WHERE "
                               "idempotency_key LIKE '%s-%%'",
                               prefix);
    long long delivered =
        h_sql_int(conninfo, "SELECT count(*) FROM messages WHERE status = 'delivered'");
    long long multi_accepted = h_sql_int(conninfo,
                                         "SELECT count(*) FROM (SELECT message_id FROM attempts"
                                         " WHERE outcome = 'accepted' GROUP BY message_id"
                                         " HAVING count(*) <> 1) x");
    long long no_accepted = h_sql_int(conninfo,
                                      "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1"
                                      " FROM attempts a WHERE a.message_id = m.id AND a.outcome ="
                                      " 'accepted')");
    long long queue = h_sql_int(conninfo, "SELECT count(*) FROM outbox_queue");
    long long reclaimed = h_sql_int(conninfo,
                                    "SELECT count(*) FROM messages m WHERE m.attempts > 1 OR"
                                    " (SELECT count(*) FROM message_events e WHERE e.message_id ="
                                    " m.id AND e.status = 'sending') > 1");
    long long attempts = h_sql_int(conninfo, "SELECT count(*) FROM attempts");
    char *outcomes = h_sql_rows(conninfo, "SELECT outcome, count(*) FROM attempts GROUP BY 1 "
                                          "ORDER BY 1");

    h_log("after the crash: %lld rows in messages (%lld distinct idempotency keys), %lld "
          "delivered, %lld with an accepted-attempt count other than 1, %lld without an accepted "
          "attempt, %lld rows left in outbox_queue, %lld messages claimed more than once, %lld "
          "attempts (%s); loadgen sent %lld requests, %lld retries, %lld x 503, %lld connection "
          "errors",
          rows, keys, delivered, multi_accepted, no_accepted, queue, reclaimed, attempts,
          outcomes, h_jint(lg->summary, "sent"), h_jint(lg->summary, "retries"),
          h_loadgen_status(lg, 503), h_jint(lg->summary, "connection_errors"));

    struct h_checks ck = {0};
    h_check(&ck, rows == COUNT, "exactly %d rows in messages: %lld", COUNT, rows);
    h_check(&ck, keys == COUNT, "%d distinct idempotency keys: %lld", COUNT, keys);
    if (!h_check(&ck, delivered == COUNT, "every message delivered: %lld of %lld", delivered,
                 rows)) {
        char *rep = h_undelivered_report(conninfo);
        h_check(&ck, 0, "the undelivered messages: %s", rep);
        free(rep);
    }
    h_check(&ck, multi_accepted == 0,
            "no message with more than one accepted attempt (sent twice): %lld", multi_accepted);
    h_check(&ck, no_accepted == 0, "every message has an accepted attempt: %lld have none",
            no_accepted);
    h_check(&ck, queue == 0, "outbox_queue empty: %lld rows", queue);
    h_check(&ck, reclaimed > 0,
            "some messages claimed twice (the kill hit in-flight work): %lld", reclaimed);
    h_daemon_stop_check(d, &ck);
    h_checks_done(&ck, "crash recovery");

    h_daemon_free(d);
    h_loadgen_free(lg);
    free(at_kill);
    free(sum);
    free(outcomes);
    free(prefix);
    free(key);
    free(config);
}

int main(int argc, char **argv)
{
    h_init("crash", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_under_load),
    };
    int failures = cmocka_run_group_tests_name("crash", tests, NULL, NULL);
    h_exit(failures);
}
