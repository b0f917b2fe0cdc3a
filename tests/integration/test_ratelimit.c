/*
 * test_ratelimit — a route's `rate` and `concurrency` limits are enforced at claim time.
 * 1. A sim route limited to 2 messages/s (a modem's pace, sped up) gets 12 messages at once:
 *    all are delivered and the hand-overs are spread as the token bucket allows: from the first
 *    to the last, at least (12 - burst 2) / 2 per s = 5 s.
 * 2. A route with concurrency 1 and 300 ms latency gets 6 messages at once: each waits for the
 *    previous answer, so the hand-overs span at least 5 x 300 ms.
 * Only lower bounds are asserted: a loaded machine may be slower, never faster.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run(const char *name, const char *route, int n, double min_spread)
{
    char *conninfo = h_db_create(h_test_pg(), name, NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = conninfo, .route_sim = route};
    char *file = h_printf("%s.ini", name);
    char *config = h_config_write(&c, file);
    h_centre_create(config, "Centre cadence");
    char *key = h_key_create(config, "Centre cadence");
    struct h_daemon *d = h_daemon_start(name, config, port);
    for (int i = 0; i < n; i++) {
        char *body = h_printf("{\"to\":\"+336120000%02d\",\"text\":\"Cadence %d\"}", i, i);
        struct h_resp *r = h_post_json(d, "/api/v1/messages", key, body);
        H_ASSERT(r->status == 202, "send %d: expected 202, got %ld %s", i, r->status, r->body);
        h_resp_free(r);
        free(body);
    }
    struct h_daemon *alive[] = {d, NULL};
    long long delivered = h_wait_delivered(conninfo, n, 120, 10, alive);
    double spread = (double)h_sql_int(conninfo,
                                      "SELECT (extract(epoch FROM max(started_at) - "
                                      "min(started_at)) * 1000)::bigint FROM attempts") /
                    1000.0;
    long long attempts = h_sql_int(conninfo, "SELECT count(*) FROM attempts");
    h_log("%s: %lld delivered, %lld attempts, hand-overs spread over %.2f s", name, delivered,
          attempts, spread);
    struct h_checks ck = {0};
    h_check(&ck, delivered == n, "all %d messages delivered: %lld", n, delivered);
    h_check(&ck, attempts == n, "one attempt each: %lld attempts", attempts);
    h_check(&ck, spread >= min_spread, "hand-overs spread over at least %.1f s: %.2f s",
            min_spread, spread);
    h_daemon_stop_check(d, &ck);
    h_checks_done(&ck, name);
    h_daemon_free(d);
    free(key);
    free(config);
    free(file);
    free(conninfo);
}

static void test_rate(void **state)
{
    (void)state;
    run("rate", "latency_ms = 20\ndlr_delay_ms = 50\nrate = 2\n", 12, 4.9);
}

static void test_concurrency(void **state)
{
    (void)state;
    run("concurrency", "latency_ms = 300\ndlr_delay_ms = 50\nconcurrency = 1\n", 6, 1.45);
}

int main(int argc, char **argv)
{
    h_init("ratelimit", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_concurrency),
    };
    int failures = cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
    h_exit(failures);
}
