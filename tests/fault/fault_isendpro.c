/*
 * fault_isendpro — the iSendPro mock misbehaves under a mixed load (API sends, inbound keyword
 * SMS, due reminders): it answers slowly (within the route's timeout_ms of 1.5 s, and beyond
 * it), answers HTTP 500, never answers, or resets connections, each either losing the request
 * or processing it and losing only the answer ("process": true). The eight faults come in a
 * random order for 1 to 2 s each, with normal service in between. See fault_common.h for the
 * checks: every 202 ends delivered with one accepted attempt, and the mock holds one record
 * per message except where an answer it lost explains a second one (at-least-once, counted as
 * resent).
 */
#include "fault_common.h"

#include <stdio.h>
#include <stdlib.h>

static struct f_world *W;

struct fault {
    const char *what;
    const char *mode; /* /_mock/mode body, %d = a delay in ms where there is one */
    int delay_lo, delay_hi;
};

static const struct fault FAULTS[] = {
    {"slow answers, within timeout_ms", "{\"mode\":\"slow\",\"delay_ms\":%d}", 300, 900},
    {"stall: processed, answered after timeout_ms", "{\"mode\":\"slow\",\"delay_ms\":%d}", 2500,
     3000},
    {"HTTP 500, request lost", "{\"mode\":\"error500\",\"process\":false}", 0, 0},
    {"HTTP 500 after processing (answer lost)", "{\"mode\":\"error500\",\"process\":true}", 0, 0},
    {"no answer, request lost", "{\"mode\":\"timeout\",\"process\":false}", 0, 0},
    {"no answer after processing", "{\"mode\":\"timeout\",\"process\":true}", 0, 0},
    {"connection reset, request lost", "{\"mode\":\"reset\",\"process\":false}", 0, 0},
    {"connection reset after processing", "{\"mode\":\"reset\",\"process\":true}", 0, 0},
};
#define NFAULTS ((int)(sizeof FAULTS / sizeof FAULTS[0]))

static void test_isendpro_faults(void **state)
{
    (void)state;
    int order[NFAULTS];
    for (int i = 0; i < NFAULTS; i++)
        order[i] = i;
    for (int i = NFAULTS - 1; i > 0; i--) {
        int j = f_rand(W, 0, i), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    f_load_start(W);
    double t = 1.5;
    for (int k = 0; k < NFAULTS && t < W->o.load_s - 2; k++) {
        const struct fault *f = &FAULTS[order[k]];
        t += f_randf(W, 0.5, 1.5);
        f_sleep_until(W, t);
        int delay = f->delay_hi ? f_rand(W, f->delay_lo, f->delay_hi) : 0;
        char body[128];
        snprintf(body, sizeof body, f->mode, delay);
        json_decref(r_mock_ctl(W->mock, "mode", body));
        double dur = f_randf(W, 1.0, 2.0);
        if (delay)
            f_note(W, "%s (%d ms) for %.1f s", f->what, delay, dur);
        else
            f_note(W, "%s for %.1f s", f->what, dur);
        W->faults++;
        t += dur;
        f_sleep_until(W, t);
        json_decref(r_mock_ctl(W->mock, "mode", "{\"mode\":\"normal\"}"));
    }
    f_note(W, "normal service");
    f_load_finish(W, 120);
    f_verify(W);
}

int main(int argc, char **argv)
{
    struct f_opts o = {.name = "isendpro", .load_s = 24};
    o.rate[F_API] = 25;
    o.rate[F_INBOUND] = 4;
    o.rate[F_REMINDER] = 3;
    W = f_world_start(argc, argv, &o);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_isendpro_faults)};
    int failures = cmocka_run_group_tests_name("fault_isendpro", tests, NULL, NULL);
    f_exit(W, failures);
}
