/*
 * fault_kill9 — gatewayd gets SIGKILL at random moments of a mixed load (API sends, inbound
 * keyword SMS, due reminders) and is started again at once on the same port and database, as a
 * supervisor would. API sends and reminders go out through the iSendPro mock (its records
 * survive the kills), replies through the simulator. See fault_common.h for the load and the
 * checks: nothing acknowledged is lost, nothing is sent twice except where a kill fell between
 * the provider's acceptance and the daemon writing it down (at-least-once, counted as resent),
 * every inbound SMS is stored once and answered, the daemon is healthy again.
 */
#include "fault_common.h"

#define KILLS 4

static struct f_world *W;

static void test_kill9(void **state)
{
    (void)state;
    /* 4 kills spread over the load, at random moments at least 3 s apart */
    double at[KILLS];
    double span = W->o.load_s - 2.0;
    for (int i = 0; i < KILLS; i++)
        at[i] = 1.5 + span * i / KILLS + f_randf(W, 0, span / KILLS - 3.0);
    f_load_start(W);
    for (int i = 0; i < KILLS; i++) {
        f_sleep_until(W, at[i]);
        f_kill9_restart(W);
    }
    f_load_finish(W, 120);
    f_verify(W);
}

int main(int argc, char **argv)
{
    struct f_opts o = {.name = "kill9", .load_s = 24};
    o.rate[F_API] = 25;
    o.rate[F_INBOUND] = 5;
    o.rate[F_REMINDER] = 3;
    W = f_world_start(argc, argv, &o);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill9)};
    int failures = cmocka_run_group_tests_name("fault_kill9", tests, NULL, NULL);
    f_exit(W, failures);
}
