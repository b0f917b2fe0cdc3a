/*
 * fault_modem — libGammu's dummy phone (a directory) disappears twice under a mixed load and
 * comes back: the directory is renamed away for 3 to 5 s, as a USB modem unplugged with its
 * SIM, and renamed back with whatever the SIM still held. The centre sends everything (API
 * sends, reminders, replies) through the modem and its residents text keywords to it: files put
 * in the phone's inbox, held back while the phone is gone (the network keeps them). /healthz
 * must show the modem down during each absence. See fault_common.h for the checks; the final
 * state of an SMS on the dummy phone is `sent` (it has no delivery reports), and the modem's
 * own count of sends stands for the peer's record (the dummy keeps nothing it sends).
 */
#include "fault_common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct f_world *W;

struct modem_wait {
    const char *state;
    char seen[600];
};

static int modem_is(void *arg)
{
    struct modem_wait *m = arg;
    json_t *rt = r_route_health(W->d, "modem", NULL);
    char st[32];
    r_route_field(rt, "state", st, sizeof st);
    char *j = r_dump(rt);
    snprintf(m->seen, sizeof m->seen, "%.590s", j);
    free(j);
    json_decref(rt);
    return !strcmp(st, m->state);
}

static void unplug(double at, double gone_s)
{
    f_sleep_until(W, at);
    char *away = h_printf("%s.unplugged", W->phone_dir);
    int inbox = r_dummy_count(W->phone_dir, 1, NULL);
    H_ASSERT(rename(W->phone_dir, away) == 0, "rename %s %s: %s", W->phone_dir, away,
             strerror(errno));
    double t0 = h_now();
    f_note(W, "the phone's directory disappears for %.1f s (%d SMS in its inbox)", gone_s, inbox);
    W->faults++;
    struct modem_wait m = {.state = "down"};
    int seen = h_poll(gone_s, 100, modem_is, &m);
    H_ASSERT(seen,
             "with the phone's directory gone, /healthz should show route modem down within "
             "%.0f s: %s",
             gone_s, m.seen);
    f_note(W, "/healthz: modem down");
    while (h_now() - t0 < gone_s)
        h_sleep_ms(50);
    H_ASSERT(rename(away, W->phone_dir) == 0, "rename %s %s: %s", away, W->phone_dir,
             strerror(errno));
    f_note(W, "the phone is back (%d SMS in its inbox)", r_dummy_count(W->phone_dir, 1, NULL));
    free(away);
}

static void test_modem_unplugged(void **state)
{
    (void)state;
    double t1 = f_randf(W, 2, 5), d1 = f_randf(W, 3, 5);
    double t2 = f_randf(W, 12, 15), d2 = f_randf(W, 3, 5);
    f_load_start(W);
    unplug(t1, d1);
    unplug(t2, d2);
    f_load_finish(W, 120);
    struct modem_wait m = {.state = "up"};
    H_ASSERT(h_poll(60, 200, modem_is, &m), "the modem should be up again: %s", m.seen);
    f_verify(W);
}

int main(int argc, char **argv)
{
    struct f_opts o = {.name = "modem", .modem = 1, .load_s = 22};
    o.rate[F_API] = 8;
    o.rate[F_MODEM_IN] = 3;
    o.rate[F_REMINDER] = 1.5;
    W = f_world_start(argc, argv, &o);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_modem_unplugged)};
    int failures = cmocka_run_group_tests_name("fault_modem", tests, NULL, NULL);
    f_exit(W, failures);
}
