/*
 * test_ratelimit — a route's `rate` and `concurrency` limits are enforced at claim time.
 * 1. A sim route limited to 2 messages/s (a modem's pace, sped up) gets 12 messages at once:
 *    all are delivered and the hand-overs are spread as the token bucket allows: from the first
 *    to the last, at least (12 - burst 2) / 2 per s = 5 s.
 * 2. A route with concurrency 1 and 300 ms latency gets 6 messages at once: each waits for the
 *    previous answer, so the hand-overs span at least 5 x 300 ms.
 * Only lower bounds are asserted: a loaded machine may be slower, never faster.
 * 3. Hand-off ([outbox] handoff): a message accepted while its route has room is already in
 *    flight when its 202 is read (the API says "sending"), was taken by the enqueue itself
 *    (passerelle_claimed_total by="handoff"; most of them: one that arrives while the route's
 *    periodic claim is out goes to that claim), and has the same history as a claimed one
 *    (queued, sending, sent, delivered; one attempt). With handoff = no, all are taken by
 *    claims.
 * 4. No overtaking: on a route with concurrency 1 and 300 ms latency, 6 messages posted one
 *    after the other are sent in the order they were accepted (the first usually by hand-off,
 *    the ones that found the route busy by claims: a hand-off never jumps that queue).
 * 5. No overtaking of what this node does not know is due: a message with send_at 2 s ahead
 *    becomes due while no claim runs (poll interval 10 s); a message posted after that is not
 *    handed off ahead of it: on a route with concurrency 1 the earlier one is sent first.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One daemon on its own database with one centre and its key. */
struct env {
    const char *name;
    char *conninfo, *config, *key;
    struct h_daemon *d;
};

static void env_start(struct env *e, const char *name, const struct h_config *extra)
{
    e->name = name;
    e->conninfo = h_db_create(h_test_pg(), name, NULL);
    struct h_config c = *extra;
    c.port = h_free_port();
    c.conninfo = e->conninfo;
    char *file = h_printf("%s.ini", name);
    e->config = h_config_write(&c, file);
    free(file);
    h_centre_create(e->config, "Centre cadence");
    e->key = h_key_create(e->config, "Centre cadence");
    e->d = h_daemon_start(name, e->config, c.port);
}

/* Stops the daemon (a clean stop is one more check), reports the checks, frees. */
static void env_finish(struct env *e, struct h_checks *ck)
{
    h_daemon_stop_check(e->d, ck);
    h_checks_done(ck, e->name);
    h_daemon_free(e->d);
    free(e->key);
    free(e->config);
    free(e->conninfo);
}

static long long claimed_by(struct env *e, const char *by)
{
    char *series = h_printf("passerelle_claimed_total{route=\"sim\",by=\"%s\"}", by);
    long long v = (long long)h_metric(e->d, series);
    free(series);
    return v;
}

static void run(const char *name, const char *route, int n, double min_spread)
{
    struct env e;
    env_start(&e, name, &(struct h_config){.route_sim = route});
    for (int i = 0; i < n; i++) {
        char *body = h_printf("{\"to\":\"+336120000%02d\",\"text\":\"Cadence %d\"}", i, i);
        struct h_resp *r = h_post_json(e.d, "/api/v1/messages", e.key, body);
        H_ASSERT(r->status == 202, "send %d: expected 202, got %ld %s", i, r->status, r->body);
        h_resp_free(r);
        free(body);
    }
    struct h_daemon *alive[] = {e.d, NULL};
    long long delivered = h_wait_delivered(e.conninfo, n, 120, 10, alive);
    double spread =
        (double)h_sql_int(e.conninfo, "SELECT (extract(epoch FROM max(started_at) - "
                                      "min(started_at)) * 1000)::bigint FROM attempts") /
        1000.0;
    long long attempts = h_sql_int(e.conninfo, "SELECT count(*) FROM attempts");
    h_log("%s: %lld delivered, %lld attempts, hand-overs spread over %.2f s", name, delivered,
          attempts, spread);
    struct h_checks ck = {0};
    h_check(&ck, delivered == n, "all %d messages delivered: %lld", n, delivered);
    h_check(&ck, attempts == n, "one attempt each: %lld attempts", attempts);
    h_check(&ck, spread >= min_spread, "hand-overs spread over at least %.1f s: %.2f s", min_spread,
            spread);
    env_finish(&e, &ck);
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

/* Posts n messages, each read back right after its 202; returns how many were "sending". */
static int post_and_read(struct h_daemon *d, const char *key, int n, const char *tag)
{
    int sending = 0;
    for (int i = 0; i < n; i++) {
        char *body = h_printf("{\"to\":\"+336130000%02d\",\"text\":\"%s %d\"}", i, tag, i);
        struct h_resp *r = h_post_json(d, "/api/v1/messages", key, body);
        H_ASSERT(r->status == 202, "send %d: expected 202, got %ld %s", i, r->status, r->body);
        H_ASSERT(h_jstr(r->json, "status") && !strcmp(h_jstr(r->json, "status"), "queued"),
                 "send %d: the 202 says %s, not queued", i, r->body);
        char *path = h_printf("/api/v1/messages/%lld", h_jint(r->json, "id"));
        struct h_resp *g = h_get(d, path, key);
        H_ASSERT(g->status == 200, "GET %s: %ld %s", path, g->status, g->body);
        const char *st = h_jstr(g->json, "status");
        sending += st && !strcmp(st, "sending");
        h_resp_free(g);
        free(path);
        h_resp_free(r);
        free(body);
    }
    return sending;
}

static void handoff_run(const char *name, int handoff)
{
    const int n = 10;
    struct env e;
    env_start(&e, name,
              /* periodic claims rare (every 10 s) and sends slow (3 s): a message read right
               * after its 202 is still in flight, and hardly any meets a periodic claim */
              &(struct h_config){.outbox = "lease_seconds = 10\npoll_interval_ms = 10000\n",
                                 .route_sim = "latency_ms = 3000\ndlr_delay_ms = 50\n",
                                 .outbox_add = handoff ? NULL : "handoff = no\n"});
    int sending = post_and_read(e.d, e.key, n, "Relais");
    struct h_daemon *alive[] = {e.d, NULL};
    long long delivered = h_wait_delivered(e.conninfo, n, 120, 5, alive);
    long long by_handoff = claimed_by(&e, "handoff"), by_claim = claimed_by(&e, "claim");
    /* every message's history, as the API shows it */
    long long good_history = h_sql_int(
        e.conninfo,
        "SELECT count(*) FROM messages m WHERE (SELECT string_agg(e.status, ',' ORDER BY "
        "e.id) FROM message_events e WHERE e.message_id = m.id) = 'sending,sent,delivered'"
        " AND (SELECT count(*) FROM attempts a WHERE a.message_id = m.id) = 1");
    h_log("%s: %d of %d read 'sending' right after their 202; taken by hand-off %lld, by claims "
          "%lld; %lld delivered, %lld with the history sending,sent,delivered and one attempt",
          name, sending, n, by_handoff, by_claim, delivered, good_history);
    struct h_checks ck = {0};
    h_check(&ck, delivered == n, "all %d messages delivered: %lld", n, delivered);
    h_check(&ck, good_history == n,
            "every history is sending, sent, delivered with one attempt: %lld of %d", good_history,
            n);
    if (handoff) {
        /* a message that arrives while the route's periodic claim is out waits for a claim:
         * the room is the claim's until it answers */
        h_check(&ck, by_handoff >= n / 2 && by_handoff + by_claim == n,
                "most taken by hand-off, each once: %lld by hand-off, %lld by claims", by_handoff,
                by_claim);
        h_check(&ck, sending >= by_handoff,
                "a handed-off message is sending when its 202 is read: %d sending, %lld handed off",
                sending, by_handoff);
    } else {
        h_check(&ck, by_handoff == 0 && by_claim == n,
                "handoff = no: all taken by claims: %lld by hand-off, %lld by claims", by_handoff,
                by_claim);
    }
    env_finish(&e, &ck);
}

static void test_handoff(void **state)
{
    (void)state;
    handoff_run("handoff", 1);
    handoff_run("handoff_off", 0);
}

static void test_no_overtaking(void **state)
{
    (void)state;
    const int n = 6;
    struct env e;
    env_start(
        &e, "order",
        &(struct h_config){.route_sim = "latency_ms = 300\ndlr_delay_ms = 50\nconcurrency = 1\n"});
    post_and_read(e.d, e.key, n, "Ordre");
    struct h_daemon *alive[] = {e.d, NULL};
    long long delivered = h_wait_delivered(e.conninfo, n, 120, 5, alive);
    char *sent_order = h_sql_str(e.conninfo, "SELECT string_agg(message_id::text, ',' ORDER BY "
                                             "started_at, id) FROM attempts");
    char *accepted_order = h_sql_str(e.conninfo, "SELECT string_agg(id::text, ',' ORDER BY "
                                                 "created_at, id) FROM messages");
    long long by_handoff = claimed_by(&e, "handoff"), by_claim = claimed_by(&e, "claim");
    h_log("order: accepted %s, sent %s; %lld by hand-off, %lld by claims", accepted_order,
          sent_order, by_handoff, by_claim);
    struct h_checks ck = {0};
    h_check(&ck, delivered == n, "all %d messages delivered: %lld", n, delivered);
    h_check(&ck, sent_order && accepted_order && !strcmp(sent_order, accepted_order),
            "sent in the order accepted: accepted %s, sent %s", accepted_order, sent_order);
    h_check(&ck, by_handoff + by_claim == n, "each taken once, by hand-off or a claim: %lld + %lld",
            by_handoff, by_claim);
    env_finish(&e, &ck);
    free(sent_order);
    free(accepted_order);
}

static void test_due_backlog_first(void **state)
{
    (void)state;
    struct env e;
    env_start(
        &e, "due",
        &(struct h_config){.outbox = "lease_seconds = 5\npoll_interval_ms = 10000\n",
                           .route_sim = "latency_ms = 20\ndlr_delay_ms = 50\nconcurrency = 1\n"});
    time_t at = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&at, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *body = h_printf("{\"to\":\"+33614000001\",\"text\":\"Prévu\",\"send_at\":\"%s\"}", ts);
    struct h_resp *r = h_post_json(e.d, "/api/v1/messages", e.key, body);
    H_ASSERT(r->status == 202, "scheduled send: %ld %s", r->status, r->body);
    long long first = h_jint(r->json, "id");
    h_resp_free(r);
    free(body);
    h_sleep_ms(3500); /* due now; the next periodic claim is seconds away */
    /* what this test is about: the first message due and still waiting in the queue */
    long long waiting = h_sql_int(e.conninfo,
                                  "SELECT count(*) FROM outbox_queue q WHERE q.message_id = %lld"
                                  " AND q.lease_token IS NULL AND q.due_at <= now()",
                                  first);
    r = h_post_json(e.d, "/api/v1/messages", e.key,
                    "{\"to\":\"+33614000002\",\"text\":\"Immédiat\"}");
    H_ASSERT(r->status == 202, "immediate send: %ld %s", r->status, r->body);
    long long second = h_jint(r->json, "id");
    h_resp_free(r);
    struct h_daemon *alive[] = {e.d, NULL};
    long long delivered = h_wait_delivered(e.conninfo, 2, 60, 2, alive);
    char *order = h_sql_str(e.conninfo, "SELECT string_agg(message_id::text, ',' ORDER BY "
                                        "started_at, id) FROM attempts");
    char *want = h_printf("%lld,%lld", first, second);
    h_log("due: scheduled %lld (send_at %s), then immediate %lld; sent %s; %lld by hand-off", first,
          ts, second, order ? order : "(none)", claimed_by(&e, "handoff"));
    struct h_checks ck = {0};
    h_check(&ck, waiting == 1,
            "the scheduled message was due and waiting when the second was "
            "posted: %lld",
            waiting);
    h_check(&ck, delivered == 2, "both delivered: %lld", delivered);
    h_check(&ck, order && !strcmp(order, want),
            "the message due first is sent first: sent %s, expected %s", order ? order : "(none)",
            want);
    env_finish(&e, &ck);
    free(order);
    free(want);
}

int main(int argc, char **argv)
{
    h_init("ratelimit", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_no_overtaking),
        cmocka_unit_test(test_due_backlog_first),
    };
    int failures = cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
    h_exit(failures);
}
