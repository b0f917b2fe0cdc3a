/* Unit tests of the INI configuration parser (gatewayd/gw_config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_log.h"

static struct gw_config *parse_ok(const char *text)
{
    struct gw_config *c = NULL;
    char err[256] = "";
    int rc = gw_config_parse(text, &c, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    return c;
}

static void parse_err(const char *text, const char *expect)
{
    struct gw_config *c = NULL;
    char err[256] = "";
    assert_int_equal(gw_config_parse(text, &c, err, sizeof err), -1);
    assert_null(c);
    if (!strstr(err, expect))
        fail_msg("error '%s' does not mention '%s'", err, expect);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    struct gw_config *c = parse_ok("[route sim]\ndriver = sim\n");
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->default_route, "sim");
    assert_string_equal(c->default_region, "FR");
    assert_int_equal(c->max_segments, 6);
    assert_int_equal(c->db_pool_size, 4);
    assert_int_equal(c->log_json, 0);
    assert_int_equal(c->log_level, GW_LOG_INFO);
    assert_int_equal(c->lease_seconds, 60);
    assert_int_equal(c->max_attempts, 8);
    assert_true(c->max_body_bytes == 65536);
    assert_int_equal(c->max_connections, 1024);
    assert_int_equal(c->max_connections_per_address, 256);
    assert_int_equal(c->address_rate, 50);
    assert_string_equal(c->rate_exempt, "127.0.0.1,::1");
    assert_int_equal(c->key_rate, 0);
    assert_non_null(c->node_id);
    assert_int_equal((int)c->nroutes, 1);
    assert_int_equal(c->routes[0].concurrency, 100);
    gw_config_free(c);
}

static void test_full_file(void **state)
{
    (void)state;
    struct gw_config *c = parse_ok("; comment\n"
                                   "[gateway]\nlisten = 0.0.0.0:9090\nnode_id = n1\n"
                                   "default_route = modem\nmax_body_bytes = 4096\n"
                                   "default_region = BE\nmax_segments = 3\ntransliterate = no\n"
                                   "[database]\nconninfo = host=/tmp dbname=x\npool_size = 8\n"
                                   "[log]\nformat = json\nlevel = debug\n"
                                   "[outbox]\nbatch_size = 50\nlease_seconds = 5\n"
                                   "poll_interval_ms = 100\nmax_attempts = 3\n"
                                   "backoff_base_ms = 10\nbackoff_max_ms = 1000\n"
                                   "[route sim]\ndriver = sim\nlatency_ms = 20\n"
                                   "[route modem]\ndriver = sim\nrate = 0.5\nconcurrency = 1\n");
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9090);
    assert_string_equal(c->node_id, "n1");
    assert_string_equal(c->default_route, "modem");
    assert_true(c->max_body_bytes == 4096);
    assert_string_equal(c->default_region, "BE");
    assert_int_equal(c->max_segments, 3);
    assert_int_equal(c->transliterate, 0);
    assert_string_equal(c->db_conninfo, "host=/tmp dbname=x");
    assert_int_equal(c->db_pool_size, 8);
    assert_int_equal(c->log_json, 1);
    assert_int_equal(c->log_level, GW_LOG_DEBUG);
    assert_int_equal(c->batch_size, 50);
    assert_int_equal(c->lease_seconds, 5);
    assert_int_equal(c->poll_interval_ms, 100);
    assert_int_equal(c->max_attempts, 3);
    assert_int_equal(c->backoff_base_ms, 10);
    assert_int_equal(c->backoff_max_ms, 1000);
    assert_int_equal((int)c->nroutes, 2);
    const struct gw_route_conf *m = gw_config_route(c, "modem");
    assert_non_null(m);
    assert_true(m->rate > 0.49 && m->rate < 0.51);
    assert_int_equal(m->concurrency, 1);
    const struct gw_route_conf *s = gw_config_route(c, "sim");
    assert_int_equal((int)s->n, 2); /* driver and latency_ms reach the driver */
    assert_string_equal(s->keys[1], "latency_ms");
    assert_string_equal(s->values[1], "20");
    assert_null(gw_config_route(c, "nope"));
    gw_config_free(c);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    parse_err("[gateway]\nlisten = nowhere\n[route sim]\ndriver=sim\n", ":2: listen");
    parse_err("[gateway]\nlisen = 1.2.3.4:80\n", "unknown key 'lisen'");
    parse_err("[gatway]\nlisten = 1.2.3.4:80\n", "unknown section [gatway]");
    parse_err("[route sim]\ndriver = sim\n[log]\nlevel = loud\n", "log level");
    parse_err("[route sim]\ndriver = sim\n[log]\nformat = xml\n", "text or json");
    parse_err("[database]\npool_size = 0\n[route sim]\ndriver = sim\n", "pool_size");
    parse_err("[outbox]\nlease_seconds = -1\n[route sim]\ndriver = sim\n", "lease_seconds");
    parse_err("[outbox]\nmax_attempts = 3x\n[route sim]\ndriver = sim\n", "max_attempts");
    parse_err("[gateway]\ndefault_region = FRA\n[route sim]\ndriver = sim\n", "two-letter");
    parse_err("[route sim]\nrate = fast\n", "rate");
    parse_err("[route sim]\ndriver = sim\nconcurrency = 0\n", "concurrency");
    parse_err("[route b@d]\ndriver = sim\n", "route name");
    parse_err("[gateway]\nlisten = 1.2.3.4:99999\n[route sim]\ndriver=sim\n", "listen");
    parse_err("[gateway]\nmax_connections = 0\n[route sim]\ndriver=sim\n", "max_connections");
    parse_err("[gateway]\naddress_rate = -1\n[route sim]\ndriver=sim\n", "address_rate");
    parse_err("[gateway]\nkey_rate = lots\n[route sim]\ndriver=sim\n", "key_rate");
    parse_err("[gateway]\nrate_exempt = localhost\n[route sim]\ndriver=sim\n", "rate_exempt");
}

static void test_whole_file_checks(void **state)
{
    (void)state;
    parse_err("[gateway]\nlisten = 127.0.0.1:1\n", "no route configured");
    parse_err("[route sim]\nlatency_ms = 3\n", "has no driver");
    parse_err("[gateway]\ndefault_route = x\n[route sim]\ndriver = sim\n",
              "default_route 'x' is not a configured route");
    parse_err("[outbox]\nbackoff_base_ms = 100\nbackoff_max_ms = 10\n[route sim]\ndriver = sim\n",
              "backoff_max_ms");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/passerelle-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[route sim]\ndriver = sim\n[gateway]\nlisten = 127.0.0.1:1234\n";
    assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    struct gw_config *c = NULL;
    char err[256];
    assert_int_equal(gw_config_load(path, &c, err, sizeof err), 0);
    assert_int_equal(c->listen_port, 1234);
    gw_config_free(c);
    unlink(path);
    assert_int_equal(gw_config_load(path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_whole_file_checks),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
