/*
 * fault_pg_restart — PostgreSQL restarts twice under a mixed load (API sends, inbound keyword
 * SMS, due reminders): once briefly, once for longer than lease_seconds (10 s), so that the
 * leases of sends in flight expire while the daemon still holds their outcomes. The daemon runs
 * on a cluster of its own (scripts/pgctl.sh) so that no other test is disturbed. While the
 * database is away the API answers 503 and the clients send again; /healthz must say 503
 * db down during the long outage and 200 afterwards. See fault_common.h for the checks.
 */
#include "fault_common.h"

#include <string.h>

static struct f_world *W;

struct health {
    struct h_daemon *d;
    char body[600];
};

static int db_down(void *arg)
{
    struct health *h = arg;
    struct h_resp *r = h_get(h->d, "/healthz", NULL);
    const char *db = h_jstr(r->json, "db");
    snprintf(h->body, sizeof h->body, "HTTP %ld %.500s", r->status, r->status ? r->body : r->err);
    int ok = r->status == 503 && db && !strcmp(db, "down");
    h_resp_free(r);
    return ok;
}

static void outage(double at, double down_s, int check_health)
{
    f_sleep_until(W, at);
    long long rows = h_sql_int(W->conninfo, "SELECT count(*) FROM messages");
    h_pg_stop(W->pg);
    double stopped = h_now();
    f_note(W, "PostgreSQL stopped (%lld messages stored) for %.1f s", rows, down_s);
    W->faults++;
    if (check_health) {
        struct health h = {.d = W->d};
        int seen = h_poll(down_s - 1, 200, db_down, &h);
        H_ASSERT(seen,
                 "with PostgreSQL stopped, /healthz should answer 503 with \"db\":\"down\" "
                 "within %.0f s; last: %s",
                 down_s - 1, h.body);
        f_note(W, "/healthz: %s", h.body);
    }
    while (h_now() - stopped < down_s)
        h_sleep_ms(50);
    H_ASSERT(h_daemon_alive(W->d), "gatewayd exited while PostgreSQL was stopped");
    h_pg_start(W->pg);
    f_note(W, "PostgreSQL started again");
}

static void test_pg_restart(void **state)
{
    (void)state;
    double t1 = f_randf(W, 2, 5), d1 = f_randf(W, 1, 3);
    double t2 = f_randf(W, 11, 13), d2 = f_randf(W, 11, 13);
    /* answers after 0.6 s (within the route's timeout_ms): sends are in flight when the
     * database stops, their outcomes wait in the daemon */
    json_decref(r_mock_ctl(W->mock, "mode", "{\"mode\":\"slow\",\"delay_ms\":600}"));
    f_load_start(W);
    f_note(W, "the mock answers after 0.6 s");
    outage(t1, d1, 0);
    outage(t2, d2, 1);
    f_load_finish(W, 120);
    f_verify(W);
}

int main(int argc, char **argv)
{
    struct f_opts o = {.name = "pg_restart", .private_pg = 1, .load_s = 30};
    o.rate[F_API] = 20;
    o.rate[F_INBOUND] = 4;
    o.rate[F_REMINDER] = 2;
    W = f_world_start(argc, argv, &o);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pg_restart)};
    int failures = cmocka_run_group_tests_name("fault_pg_restart", tests, NULL, NULL);
    f_exit(W, failures);
}
