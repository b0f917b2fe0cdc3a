/*
 * test_limits — the HTTP server's connection and rate limits ([gateway] max_connections,
 * max_connections_per_address, address_rate, rate_exempt, key_rate), as a client sees them.
 * 1. Connections: with max_connections_per_address = 3 and loopback not exempt, three
 *    keep-alive connections are served; the first request of a fourth gets
 *    503 too_many_connections with Retry-After and the connection is closed; once the three
 *    close, new connections are served again and /metrics counts the refusal. With the
 *    loopback exempt, the global max_connections = 3 still applies.
 * 2. Per-address rate (address_rate = 1, loopback not exempt): 20 quick requests to a public
 *    endpoint (GET /api/v1/messages without a key) give their normal 401 for the burst, then
 *    429 rate_limited with Retry-After: 1; /healthz (not public) stays 200; after 2 s the
 *    address is served again. With loopback exempt (the default) nothing is limited.
 * 3. Per-key rate (key_rate = 1): the burst of sends is accepted (202), then 429 rate_limited
 *    with Retry-After, and a refused send leaves no row; another centre's key is not affected.
 * Limits only assert lower bounds of what is refused (a slow machine refills more tokens).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ raw keep-alive client */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    H_ASSERT(fd >= 0, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    H_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect to port %d", port);
    return fd;
}

/* Sends one keep-alive GET and reads the answer (head + Content-Length body). Returns the
 * malloc'ed answer ("" when the server closed without one); *closed tells whether the
 * server closed the connection after it. */
static char *raw_get_h(int fd, const char *path, const char *headers, int *closed)
{
    char *req = h_printf("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n%s\r\n",
                         path, headers);
    H_ASSERT(write(fd, req, strlen(req)) == (ssize_t)strlen(req), "write");
    free(req);
    size_t cap = 8192, len = 0;
    char *buf = calloc(1, cap);
    H_ASSERT(buf, "calloc");
    *closed = 0;
    double deadline = h_now() + 20;
    for (;;) {
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            long want = cl ? strtol(cl + 17, NULL, 10) : 0;
            if ((long)(len - (size_t)(end + 4 - buf)) >= want)
                break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        H_ASSERT(h_now() < deadline, "no complete answer to GET %s within 20 s: '%s'", path, buf);
        if (poll(&p, 1, 200) <= 0)
            continue;
        if (len + 1 >= cap)
            break;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0) {
            *closed = 1;
            return buf;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    /* closed after the answer? (the server closes at once when it says Connection: close) */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (strcasestr(buf, "\r\nConnection: close")) {
        char c;
        for (int i = 0; i < 50 && !*closed; i++)
            if (poll(&p, 1, 100) > 0 && read(fd, &c, 1) <= 0)
                *closed = 1;
    }
    return buf;
}

static char *raw_get(int fd, const char *path, int *closed)
{
    return raw_get_h(fd, path, "", closed);
}

struct env {
    char *conninfo, *config, *key;
    struct h_daemon *d;
};

static struct env start(const char *name, const char *gateway)
{
    struct env e;
    e.conninfo = h_db_create(h_test_pg(), name, NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = e.conninfo, .gateway = gateway};
    char *file = h_printf("%s.ini", name);
    e.config = h_config_write(&c, file);
    free(file);
    h_centre_create(e.config, "Centre L");
    e.key = h_key_create(e.config, "Centre L");
    e.d = h_daemon_start(name, e.config, port);
    return e;
}

static void stop(struct env *e)
{
    h_daemon_stop(e->d);
    h_daemon_free(e->d);
    free(e->conninfo);
    free(e->config);
    free(e->key);
}

static int healthz_ok(void *arg)
{
    struct h_resp *r = h_get(arg, "/healthz", NULL);
    int ok = r->status == 200;
    h_resp_free(r);
    return ok;
}

/* ------------------------------------------------------------------ 1. connections */

static void over_limit(int port, const char *why)
{
    int fd = raw_connect(port);
    int closed;
    char *a = raw_get(fd, "/healthz", &closed);
    H_ASSERT(!strncmp(a, "HTTP/1.1 503", 12),
             "%s: the 4th connection's request should get 503, got '%.60s'", why, a);
    H_ASSERT(strstr(a, "\"too_many_connections\""), "%s: error code too_many_connections: %s",
             why, a);
    H_ASSERT(strcasestr(a, "\r\nRetry-After: "), "%s: a Retry-After header: %s", why, a);
    H_ASSERT(closed, "%s: the refused connection should be closed by the daemon", why);
    free(a);
    close(fd);
}

static void connections(const char *name, const char *gateway, const char *why)
{
    struct env e = start(name, gateway);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = raw_connect(e.d->port);
        int closed;
        char *a = raw_get(fds[i], "/healthz", &closed);
        H_ASSERT(!strncmp(a, "HTTP/1.1 200", 12) && !closed,
                 "%s: connection %d should be served and kept open: '%.60s'", why, i + 1, a);
        free(a);
    }
    /* each keeps being served */
    for (int i = 0; i < 3; i++) {
        int closed;
        char *a = raw_get(fds[i], "/healthz", &closed);
        H_ASSERT(!strncmp(a, "HTTP/1.1 200", 12), "%s: second request on connection %d: '%.60s'",
                 why, i + 1, a);
        free(a);
    }
    over_limit(e.d->port, why);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    /* the daemon notices the closes: new connections are served again */
    H_ASSERT(h_poll(20, 100, healthz_ok, e.d), "%s: /healthz not served after the connections "
                                                "closed",
             why);
    long long refused = (long long)h_metric(e.d, "passerelle_http_connections_refused_total");
    H_ASSERT(refused >= 1, "%s: passerelle_http_connections_refused_total = %lld", why, refused);
    long long open = (long long)h_metric(e.d, "passerelle_http_connections");
    H_ASSERT(open <= 1, "%s: passerelle_http_connections = %lld once the clients left", why,
             open);
    h_log("%s: 3 connections served, the 4th refused with 503, served again after they closed",
          why);
    stop(&e);
}

static void test_connections_per_address(void **state)
{
    (void)state;
    connections("conn_addr", "max_connections_per_address = 3\nrate_exempt =\n",
                "max_connections_per_address = 3");
}

static void test_connections_total(void **state)
{
    (void)state;
    connections("conn_total", "max_connections = 3\n", "max_connections = 3 (loopback exempt)");
}

/* The live event stream (GET /ops/events) must not keep its connection counted once it ends:
 * with 3 connections allowed, 5 streams opened and closed one after the other leave room for a
 * request (a stream that took over the connection's close callback once leaked its slot). */
static void test_event_streams_release_connections(void **state)
{
    (void)state;
    struct env e = start("conn_sse", "max_connections_per_address = 3\nrate_exempt =\n"
                                      "ops_token = limits-ops-token-0123456789\n");
    for (int i = 0; i < 5; i++) {
        int fd = raw_connect(e.d->port), closed;
        char *a = raw_get_h(fd, "/ops/events?after=0",
                            "Authorization: Bearer limits-ops-token-0123456789\r\n", &closed);
        H_ASSERT(!strncmp(a, "HTTP/1.1 200", 12), "event stream %d: expected 200, got '%.80s'",
                 i + 1, a);
        free(a);
        close(fd);
        h_sleep_ms(200); /* the daemon notices the close */
    }
    H_ASSERT(h_poll(20, 100, healthz_ok, e.d),
             "after 5 event streams ended, a new connection should be served");
    long long open = (long long)h_metric(e.d, "passerelle_http_connections");
    H_ASSERT(open <= 1, "passerelle_http_connections = %lld once the streams ended", open);
    stop(&e);
}

/* ------------------------------------------------------------------ 2. per address */

static void test_address_rate(void **state)
{
    (void)state;
    struct env e = start("addr_rate", "address_rate = 1\nrate_exempt =\n");
    /* 20 quick requests on one keep-alive connection; a token comes back every second, so a
     * slow run may see a 401 between 429s: only counts are asserted */
    int normal = 0, limited = 0, fd = raw_connect(e.d->port);
    for (int i = 0; i < 20; i++) {
        int closed;
        char *a = raw_get(fd, "/api/v1/messages", &closed);
        if (!strncmp(a, "HTTP/1.1 401", 12)) {
            normal++;
        } else {
            H_ASSERT(!strncmp(a, "HTTP/1.1 429", 12) && strstr(a, "\"rate_limited\""),
                     "request %d over address_rate: expected 401 or 429 rate_limited, got '%s'",
                     i + 1, a);
            const char *ra = strcasestr(a, "\r\nRetry-After: ");
            H_ASSERT(ra && strtol(ra + 15, NULL, 10) == 1,
                     "a 429 at address_rate = 1 says Retry-After: 1: '%s'", a);
            limited++;
        }
        H_ASSERT(!closed, "the connection stays open after request %d", i + 1);
        free(a);
    }
    close(fd);
    H_ASSERT(normal >= 2, "the burst (2 requests) should be served: %d were", normal);
    H_ASSERT(limited >= 1, "20 quick requests at address_rate = 1: none was refused");
    /* not a public endpoint: not limited */
    struct h_resp *r = h_get(e.d, "/healthz", NULL);
    H_ASSERT(r->status == 200, "/healthz while the address is limited: %ld", r->status);
    h_resp_free(r);
    h_sleep_ms(2100);
    r = h_get(e.d, "/api/v1/messages", NULL);
    H_ASSERT(r->status == 401, "after Retry-After the address is served again: %ld %s",
             r->status, r->body);
    h_resp_free(r);
    long long counted = (long long)h_metric(e.d, "passerelle_http_rate_limited_total");
    H_ASSERT(counted == limited, "passerelle_http_rate_limited_total = %lld, refused %d",
             counted, limited);
    h_log("address_rate = 1: %d served, %d refused with 429, served again after 2 s", normal,
          limited);
    stop(&e);

    /* the default exempts the loopback */
    e = start("addr_exempt", "address_rate = 1\n");
    for (int i = 0; i < 20; i++) {
        r = h_get(e.d, "/api/v1/messages", NULL);
        H_ASSERT(r->status == 401, "loopback exempt: request %d got %ld", i + 1, r->status);
        h_resp_free(r);
    }
    stop(&e);
}

/* ------------------------------------------------------------------ 3. per key */

static void test_key_rate(void **state)
{
    (void)state;
    struct env e = start("key_rate", "key_rate = 1\n");
    h_centre_create(e.config, "Centre M");
    char *other = h_key_create(e.config, "Centre M");
    int accepted = 0, limited = 0;
    for (int i = 0; i < 10; i++) {
        char *body = h_printf("{\"to\":\"+3361200%04d\",\"text\":\"Limite %d\"}", i, i);
        struct h_resp *r = h_post_json(e.d, "/api/v1/messages", e.key, body);
        if (r->status == 202) {
            accepted++;
        } else {
            h_expect_error(r, 429, "rate_limited", "a send over key_rate");
            H_ASSERT(strstr(h_jstr(r->json, "error.message"), "1 messages a second"),
                     "the message says the limit: %s", r->body);
            limited++;
        }
        h_resp_free(r);
        free(body);
    }
    H_ASSERT(accepted >= 2, "the burst (2 sends) should be accepted: %d were", accepted);
    H_ASSERT(limited >= 1, "10 quick sends at key_rate = 1: none refused");
    long long rows = h_sql_int(e.conninfo, "SELECT count(*) FROM messages WHERE body LIKE "
                                           "'Limite %%'");
    H_ASSERT(rows == accepted, "%lld rows for %d accepted sends: a refused send must leave none",
             rows, accepted);
    /* another key has its own budget */
    struct h_resp *r = h_post_json(e.d, "/api/v1/messages", other,
                                   "{\"to\":\"+33612009999\",\"text\":\"Autre clé\"}");
    H_ASSERT(r->status == 202, "another centre's key: %ld %s", r->status, r->body);
    h_resp_free(r);
    long long counted = (long long)h_metric(e.d, "passerelle_api_key_rate_limited_total");
    H_ASSERT(counted == limited, "passerelle_api_key_rate_limited_total = %lld, refused %d",
             counted, limited);
    h_log("key_rate = 1: %d accepted, %d refused with 429 and no row", accepted, limited);
    free(other);
    stop(&e);
}

int main(int argc, char **argv)
{
    h_init("limits", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections_per_address),
        cmocka_unit_test(test_connections_total),
        cmocka_unit_test(test_event_streams_release_connections),
        cmocka_unit_test(test_address_rate),
        cmocka_unit_test(test_key_rate),
    };
    int failures = cmocka_run_group_tests_name("limits", tests, NULL, NULL);
    h_exit(failures);
}
