/*
 * test_twonodes — two gatewayd processes (node-a, node-b) share one database. 10,000
 * messages are posted, 5,000 to each node in parallel (loadgen, concurrency 16 each), with a
 * simulator latency of 50 ms. Both nodes claim from the same queue; every message must be
 * delivered exactly once (never two accepted attempts, and the two simulators together
 * accepted exactly 10,000 sends: no message was handed to the provider twice), and both nodes
 * must have done part of the work.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PER_NODE 5000

static char *conninfo;

static void test_two_nodes_one_database(void **state)
{
    (void)state;
    conninfo = h_db_create(h_test_pg(), "twonodes", NULL);
    const char *route = "latency_ms = 50\ndlr_delay_ms = 100\n";
    int port_a = h_free_port(), port_b = h_free_port();
    while (port_b == port_a)
        port_b = h_free_port();
    struct h_config ca = {.port = port_a, .node_id = "node-a", .conninfo = conninfo,
                          .route_sim = route};
    struct h_config cb = {.port = port_b, .node_id = "node-b", .conninfo = conninfo,
                          .route_sim = route};
    char *config_a = h_config_write(&ca, "node-a.ini");
    char *config_b = h_config_write(&cb, "node-b.ini");
    h_centre_create(config_a, "Centre deux noeuds");
    char *key = h_key_create(config_a, "Centre deux noeuds");
    struct h_daemon *a = h_daemon_start("node-a", config_a, port_a);
    struct h_daemon *b = h_daemon_start("node-b", config_b, port_b);

    char *pa = h_printf("twonodes-a-%d", (int)getpid());
    char *pb = h_printf("twonodes-b-%d", (int)getpid());
    struct h_loadgen_opts la = {.url = a->url, .key = key, .count = PER_NODE, .concurrency = 16,
                                .idem_prefix = pa, .text = "Deux noeuds A %d",
                                .to_base = "+33600000000", .max_seconds = 600};
    struct h_loadgen_opts lb = {.url = b->url, .key = key, .count = PER_NODE, .concurrency = 16,
                                .idem_prefix = pb, .text = "Deux noeuds B %d",
                                .to_base = "+33610000000", .max_seconds = 600};
    struct h_loadgen *ga = h_loadgen_start(&la);
    struct h_loadgen *gb = h_loadgen_start(&lb);
    int rca = h_loadgen_wait(ga, 660);
    int rcb = h_loadgen_wait(gb, 660);
    char *sa = json_dumps(ga->summary, JSON_COMPACT);
    char *sb = json_dumps(gb->summary, JSON_COMPACT);
    h_log("loadgen to node-a: %s", sa);
    h_log("loadgen to node-b: %s", sb);
    H_ASSERT(rca == 0 && h_loadgen_status(ga, 202) == PER_NODE,
             "loadgen to node-a: expected %d x 202, got exit %d: %s", PER_NODE, rca, sa);
    H_ASSERT(rcb == 0 && h_loadgen_status(gb, 202) == PER_NODE,
             "loadgen to node-b: expected %d x 202, got exit %d: %s", PER_NODE, rcb, sb);

    struct h_daemon *alive[] = {a, b, NULL};
    long long delivered = h_wait_delivered(conninfo, 2 * PER_NODE, 300, 10, alive);

    long long rows = h_sql_int(conninfo, "SELECT count(*) FROM messages");
    long long not_delivered =
        h_sql_int(conninfo, "SELECT count(*) FROM messages WHERE status <> 'delivered'");
    long long multi = h_sql_int(conninfo,
                                "SELECT count(*) FROM (SELECT message_id FROM attempts WHERE "
                                "outcome = 'accepted' GROUP BY 1 HAVING count(*) > 1) x");
    long long none = h_sql_int(conninfo,
                               "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM "
                               "attempts a WHERE a.message_id = m.id AND a.outcome = 'accepted')");
    long long by_a = h_sql_int(conninfo, "SELECT count(*) FROM attempts WHERE node = 'node-a' AND "
                                         "outcome = 'accepted'");
    long long by_b = h_sql_int(conninfo, "SELECT count(*) FROM attempts WHERE node = 'node-b' AND "
                                         "outcome = 'accepted'");
    long long other = h_sql_int(conninfo, "SELECT count(*) FROM attempts WHERE node NOT IN "
                                          "('node-a', 'node-b') OR outcome <> 'accepted'");
    long long queue = h_sql_int(conninfo, "SELECT count(*) FROM outbox_queue");
    h_log("two nodes: %lld rows, %lld delivered; accepted attempts: node-a %lld, node-b %lld "
          "(other attempts %lld); %lld messages sent more than once, %lld without an accepted "
          "attempt, %lld left in the queue",
          rows, delivered, by_a, by_b, other, multi, none, queue);
    /* what the provider saw: sends the simulators of both nodes accepted */
    long long handed = 0;
    struct h_daemon *nodes[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct h_resp *r = h_get(nodes[i], "/healthz", NULL);
        json_t *v = h_jget(r->json, "routes.sim.accepted");
        H_ASSERT(json_is_integer(v), "%s /healthz has no routes.sim.accepted: %s",
                 nodes[i]->name, r->body);
        handed += (long long)json_integer_value(v);
        h_resp_free(r);
    }
    h_log("the simulators accepted %lld sends for %lld messages", handed, rows);

    struct h_checks ck = {0};
    h_check(&ck, rows == 2 * PER_NODE, "%d rows in messages: %lld", 2 * PER_NODE, rows);
    if (!h_check(&ck, not_delivered == 0, "every message delivered: %lld are not",
                 not_delivered)) {
        char *rep = h_undelivered_report(conninfo);
        h_check(&ck, 0, "the undelivered messages: %s", rep);
        free(rep);
    }
    h_check(&ck, multi == 0, "no message with more than one accepted attempt (sent twice): %lld",
            multi);
    h_check(&ck, none == 0, "every message has an accepted attempt: %lld have none", none);
    h_check(&ck, by_a > 0 && by_b > 0, "both nodes sent messages: node-a %lld, node-b %lld", by_a,
            by_b);
    h_check(&ck, queue == 0, "outbox_queue empty: %lld rows", queue);
    /* README: nodes sharing a database "never send a message twice"; no node died here, so no
     * lease should have expired and the provider should have been handed each message once */
    h_check(&ck, handed == rows,
            "the provider (the nodes' simulators) was handed each message once: %lld sends for "
            "%lld messages",
            handed, rows);
    h_daemon_stop_check(a, &ck);
    h_daemon_stop_check(b, &ck);
    h_checks_done(&ck, "two nodes");

    h_daemon_free(a);
    h_daemon_free(b);
    h_loadgen_free(ga);
    h_loadgen_free(gb);
    free(sa);
    free(sb);
    free(pa);
    free(pb);
    free(key);
    free(config_a);
    free(config_b);
}

int main(int argc, char **argv)
{
    h_init("twonodes", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_nodes_one_database),
    };
    int failures = cmocka_run_group_tests_name("twonodes", tests, NULL, NULL);
    h_exit(failures);
}
