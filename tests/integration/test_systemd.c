/*
 * test_systemd — gatewayd as systemd sees it (Type=notify, WatchdogSec=): a unix datagram
 * socket plays systemd's NOTIFY_SOCKET. The daemon says READY=1 once it listens, feeds the
 * watchdog from its event loop, answers SIGHUP with RELOADING=1 … READY=1 and applies the new
 * log level and route limits, and says STOPPING=1 on SIGTERM before a clean exit. A SIGHUP that
 * changes a route's driver options starts its driver again with them (a send then goes through
 * the new instance); options the driver refuses leave the old ones working; another driver for
 * the route needs a restart and says so.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;
static char notes[65536];

/* Reads every datagram that arrives within ms milliseconds, appending "MSG\n" to notes. */
static void read_notes(int ms)
{
    double end = h_now() + ms / 1000.0;
    while (h_now() < end) {
        struct timeval tv = {0, 50000};
        setsockopt(notify_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[1024];
        ssize_t n = recv(notify_fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            size_t len = strlen(notes);
            snprintf(notes + len, sizeof notes - len, "%s\n", buf);
        }
    }
}

static int count(const char *needle)
{
    int n = 0;
    for (const char *p = notes; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_notify_watchdog_reload_stop(void **state)
{
    (void)state;
    char *sock = h_printf("%s/notify.sock", h_tmpdir());
    notify_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    H_ASSERT(notify_fd >= 0 && bind(notify_fd, (struct sockaddr *)&a, sizeof a) == 0,
             "cannot bind %s", sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "400000", 1); /* systemd's WatchdogSec=0.4 */

    char *conninfo = h_db_create(h_test_pg(), "systemd", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = conninfo, .route_sim = "rate = 5\n"};
    char *config = h_config_write(&c, "systemd.ini");
    h_centre_create(config, "Centre S");
    char *key = h_key_create(config, "Centre S");
    struct h_daemon *d = h_daemon_start("systemd", config, port);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    read_notes(2000);
    struct h_checks ck = {0};
    h_check(&ck, count("READY=1") == 1, "READY=1 once after start: %s", notes);
    int dogs = count("WATCHDOG=1");
    h_check(&ck, dogs >= 4, "the watchdog is fed every 0.2 s (2 s: %d times)", dogs);

    /* SIGHUP with a new rate for the route and a new log level */
    struct h_config c2 = {.port = port, .conninfo = conninfo, .route_sim = "rate = 50\n"};
    free(h_config_write(&c2, "systemd.ini"));
    notes[0] = '\0';
    kill(d->pid, SIGHUP);
    read_notes(1000);
    h_check(&ck, count("RELOADING=1") == 1 && count("READY=1") == 1,
            "SIGHUP: RELOADING=1 then READY=1: %s", notes);
    char *log = h_read_file(d->log);
    h_check(&ck, log && strstr(log, "limits now 50/s"), "the route's new rate is applied");
    h_check(&ck, log && strstr(log, "configuration reloaded"), "the reload is logged");
    free(log);
    h_check(&ck, h_daemon_alive(d), "the daemon is still running after SIGHUP");

    /* new driver options: the driver starts again with them; refused ones keep the old */
    static const struct {
        const char *route, *log, *what;
    } steps[] = {
        {"rate = 50\ndlr_delay_ms = 10\n", "driver started again with the new options",
         "a new dlr_delay_ms"},
        {"rate = 50\ndlr_delay_ms = 10\nlatency_ms = soon\n", "the new options are refused",
         "a latency_ms the simulator refuses"},
    };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        struct h_config c3 = {.port = port, .conninfo = conninfo, .route_sim = steps[k].route};
        free(h_config_write(&c3, "systemd.ini"));
        kill(d->pid, SIGHUP);
        read_notes(1500);
        log = h_read_file(d->log);
        h_check(&ck, log && strstr(log, steps[k].log), "SIGHUP with %s: the log says '%s'",
                steps[k].what, steps[k].log);
        free(log);
        char *body = h_printf("{\"to\":\"+3361234567%zu\",\"text\":\"Après SIGHUP %zu\"}", k, k);
        struct h_resp *r = h_post_json(d, "/api/v1/messages", key, body);
        h_check(&ck, r->status == 202, "a send after SIGHUP with %s: %ld %s", steps[k].what,
                r->status, r->body);
        h_resp_free(r);
        free(body);
        struct h_daemon *alive[] = {d, NULL};
        long long got = h_wait_delivered(conninfo, (long long)k + 1, 30, 1, alive);
        h_check(&ck, got == (long long)k + 1, "after SIGHUP with %s the route delivers (%lld of %zu)",
                steps[k].what, got, k + 1);
    }
    struct h_config c4 = {.port = port, .conninfo = conninfo,
                          .route_sim = "driver = isendpro\nkeyid = x\n"};
    free(h_config_write(&c4, "systemd.ini"));
    kill(d->pid, SIGHUP);
    read_notes(1000);
    log = h_read_file(d->log);
    h_check(&ck, log && strstr(log, "has another driver now: restart to change it"),
            "SIGHUP with another driver for the route: the log asks for a restart");
    free(log);
    h_check(&ck, h_daemon_alive(d), "the daemon is still running after the SIGHUPs");

    notes[0] = '\0';
    h_daemon_stop_check(d, &ck); /* SIGTERM, clean exit */
    read_notes(300);
    h_check(&ck, count("STOPPING=1") == 1, "SIGTERM: STOPPING=1: %s", notes);
    h_daemon_free(d);
    close(notify_fd);
    unlink(sock);
    free(sock);
    free(config);
    free(conninfo);
    free(key);
    h_checks_done(&ck, "systemd notify, watchdog, reload, stop");
}

int main(int argc, char **argv)
{
    h_init("systemd", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_watchdog_reload_stop),
    };
    h_exit(cmocka_run_group_tests_name("systemd", tests, NULL, NULL));
}
