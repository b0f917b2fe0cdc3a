/*
 * harness — helpers for the integration tests: a real gatewayd (as a child process) against a
 * real PostgreSQL. Every test executable calls h_init() first and h_finish() last; in between
 * it creates its own databases, config files, ports and processes, so that several test
 * executables can run at the same time (ctest -j).
 *
 * Environment (set by scripts/check.sh, i.e. `make check`):
 *   PASSERELLE_TEST_PG      libpq conninfo of a running PostgreSQL (superuser, dbname=postgres)
 *   PASSERELLE_TEST_TMPDIR  scratch directory the `passerelle` OS user can reach
 *   PASSERELLE_PGCTL        scripts/pgctl.sh (only for tests with a private cluster)
 *   PASSERELLE_BUILD        build directory (only when the binaries are not given as arguments)
 *
 * Binaries: argv[1..3] = gatewayd, gatewayctl, loadgen (CMake passes $<TARGET_FILE:…>), else
 * $PASSERELLE_BUILD/gatewayd/gatewayd etc.
 *
 * Failures: every helper that fails calls h_fail(), which prints the tail of the log of every
 * daemon still known to the harness, then fails the current cmocka test.
 */
#ifndef PASSERELLE_TEST_HARNESS_H
#define PASSERELLE_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sys/types.h>

struct h_daemon;

/* ------------------------------------------------------------------ set-up and reporting */

/* Reads the environment and the binary paths; exits with a message when something is missing.
 * name is used for the temp directory and the database names (lower case, [a-z0-9_]). */
void h_init(const char *name, int argc, char **argv);
/* Cleans up after cmocka_run_group_tests returned failures (0 = all passed): kills the daemons
 * and loadgens still running, stops private clusters; when everything passed, drops the
 * databases and removes the temp directory, else says where they were kept. Returns failures. */
int h_finish(int failures);
/* The end of main: h_finish, then exit 0, or _exit(1) on failure, so that the test binary's
 * own LeakSanitizer does not bury the failure under reports of what a failed test left
 * allocated. */
int h_exit(int failures) __attribute__((noreturn));

const char *h_name(void);
const char *h_tmpdir(void);  /* this executable's private temp directory */
const char *h_test_pg(void); /* $PASSERELLE_TEST_PG */
const char *h_bin_gatewayd(void);
const char *h_bin_gatewayctl(void);
const char *h_bin_loadgen(void);

/* Prints the daemons' log tails, then fails the current test with the message. */
void h_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define H_ASSERT(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            h_fail(__VA_ARGS__);                                                                   \
    } while (0)

/* A list of checks that are all evaluated before the test fails, so that one failure report
 * says everything that is wrong (used after long runs). */
struct h_checks {
    char *failures; /* "\n  - …" per failed check */
    int nfailed, npassed;
};
/* Records one check (and logs it); returns ok. */
int h_check(struct h_checks *c, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fails the test when a check failed, listing every failed check. */
void h_checks_done(struct h_checks *c, const char *what);

/* printf to stderr with a "[name] " prefix (test progress and the figures tests report). */
void h_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc'ed printf; never NULL. */
char *h_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double h_now(void);  /* seconds, monotonic */
double h_wall(void); /* seconds since the epoch */
void h_sleep_ms(int ms);

/* Calls pred(arg) every interval_ms until it returns non-zero (returns 1) or timeout_s pass
 * (returns 0). */
int h_poll(double timeout_s, int interval_ms, int (*pred)(void *arg), void *arg);

/* A free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
int h_free_port(void);

/* Writes text to h_tmpdir()/filename; returns the malloc'ed path. */
char *h_write_file(const char *filename, const char *text);
char *h_read_file(const char *path); /* NULL if unreadable */

/* ------------------------------------------------------------------ databases and SQL */

/* base conninfo (keyword=value or URI) with dbname replaced; malloc'ed. */
char *h_conninfo_with_db(const char *base, const char *dbname);
/* CREATE DATABASE t_<suffix>_<pid> on the server of base (dropping a leftover first);
 * returns the conninfo of the new database (malloc'ed) and, if dbname_out, its name. The
 * database is dropped by h_finish when every test passed. */
char *h_db_create(const char *base, const char *suffix, char **dbname_out);

/* First column of the first row as a malloc'ed string; NULL when no row or SQL NULL. */
char *h_sql_str(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* First column of the first row as an integer (fails when no row or NULL). */
/* Polls (every 100 ms, up to timeout_s) until the first column of the query equals want, or is
 * not NULL when want is NULL; returns the last value seen (malloc'ed, may be NULL). */
char *h_poll_sql(const char *conninfo, double timeout_s, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
long long h_sql_int(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void h_sql_exec(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Every row as "a|b|c", rows separated by "; " (for messages); malloc'ed. */
char *h_sql_rows(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Polls until `want` messages are delivered, or until nothing moves any more: outbox_queue
 * empty, no message queued or sending, and the status counts unchanged for stable_s seconds.
 * Fails after timeout_s (or when one of the NULL-terminated daemons exits) with the state of
 * things. Returns the number of delivered messages. */
long long h_wait_delivered(const char *conninfo, long long want, double timeout_s, double stable_s,
                           struct h_daemon *const *daemons);
/* What the messages that are not delivered look like: counts by status, and the first few with
 * their history, attempts and queue row; malloc'ed. */
char *h_undelivered_report(const char *conninfo);

/* ------------------------------------------------------------------ configuration */

struct h_config {
    int port;
    const char *node_id;    /* default node-a */
    const char *conninfo;   /* required */
    const char *gateway;    /* extra lines for [gateway] */
    const char *database;   /* extra lines for [database] */
    const char *outbox;     /* replaces the [outbox] lines of the sample when not NULL */
    const char *outbox_add; /* extra lines for [outbox] */
    const char *route_sim;  /* replaces "latency_ms = 20\ndlr_delay_ms = 100\n" when not NULL */
};
/* Writes the sample configuration (see tests/README.md) with the given changes to
 * h_tmpdir()/filename; returns the malloc'ed path. */
char *h_config_write(const struct h_config *c, const char *filename);

/* ------------------------------------------------------------------ processes */

/* Runs argv (argv[0] is a path) to completion with stdout/stderr captured (malloc'ed, may be
 * NULL pointers to ignore). Returns the exit status, 128+signal when killed, -1 on timeout
 * (the child is killed). */
int h_run(char *const argv[], char **out, char **err, int timeout_s);
/* Starts argv in the background with stdout/stderr to files (NULL = /dev/null). */
pid_t h_spawn(char *const argv[], const char *out_path, const char *err_path);
/* Waits up to timeout_s for pid; returns as h_run (-1 on timeout, the child left running). */
int h_wait(pid_t pid, double timeout_s);

/* ------------------------------------------------------------------ gatewayd */

struct h_daemon {
    char name[32];
    pid_t pid; /* 0 when not running */
    int port;
    int starts;
    char *config;
    char *log; /* stdout and stderr of every start, appended */
    char *url; /* http://127.0.0.1:PORT */
};

/* Starts gatewayd --config config (listening on port) and waits up to 20 s for
 * GET /healthz = 200. */
struct h_daemon *h_daemon_start(const char *name, const char *config, int port);
/* Starts the same daemon again (same config, port and log). */
void h_daemon_restart(struct h_daemon *d);
/* SIGTERM, wait up to 30 s, assert a clean exit (status 0) and no sanitizer report. */
void h_daemon_stop(struct h_daemon *d);
/* The same, recorded as a check instead of failing at once. */
void h_daemon_stop_check(struct h_daemon *d, struct h_checks *c);
/* SIGKILL and reap. */
void h_daemon_kill9(struct h_daemon *d);
/* 1 while the process runs; 0 once it exited (it is reaped and what happened is logged). */
int h_daemon_alive(struct h_daemon *d);
/* Fails when the log holds an AddressSanitizer/LeakSanitizer/UBSan report. */
void h_daemon_check_log(struct h_daemon *d);
void h_daemon_print_tail(struct h_daemon *d, int lines);
void h_daemon_free(struct h_daemon *d); /* kills it if still running */

/* ------------------------------------------------------------------ gatewayctl */

/* gatewayctl --config config ARGS… (NULL-terminated); returns the exit status, stdout in *out
 * (malloc'ed, trailing newline removed) when out is not NULL. */
int h_ctl(const char *config, char **out, ...) __attribute__((sentinel));
/* stderr of the last h_ctl run (trailing newline removed). */
const char *h_ctl_stderr(void);
/* centre create NAME --route sim; returns the centre id. */
long long h_centre_create(const char *config, const char *name);
/* key create CENTRE; returns the key (malloc'ed). */
char *h_key_create(const char *config, const char *centre);

/* ------------------------------------------------------------------ HTTP */

/* A growing response body for libcurl: CURLOPT_WRITEFUNCTION = h_curl_collect,
 * CURLOPT_WRITEDATA = a zeroed struct h_buf; data is NUL-terminated, the caller frees it. */
struct h_buf {
    char *data;
    size_t len;
};
size_t h_curl_collect(char *ptr, size_t size, size_t nmemb, void *arg);

struct h_resp {
    long status; /* 0: no HTTP answer (see err) */
    char *body;
    size_t len;
    json_t *json; /* parsed body, NULL if not JSON */
    char content_type[128];
    char err[256];
};

/* One request with libcurl (30 s timeout). key: NULL = no Authorization header, else the
 * Authorization header's value is "Bearer KEY" (raw_authz = 1: KEY is the whole value). */
struct h_resp *h_http(const char *method, const char *url, const char *authz, const char *ctype,
                      const char *body, size_t len);
struct h_resp *h_get(const struct h_daemon *d, const char *path, const char *key);
struct h_resp *h_post_json(const struct h_daemon *d, const char *path, const char *key,
                           const char *body);
struct h_resp *h_post_form(const struct h_daemon *d, const char *path, const char *body);
void h_resp_free(struct h_resp *r);

/* One value of d's /metrics: the line "series value" (series: a name, or a name with its
 * labels as rendered, e.g. passerelle_claimed_total{route="sim",by="handoff"}); fails when
 * /metrics does not answer 200 or has no such line. */
double h_metric(struct h_daemon *d, const char *series);

/* Asserts the status and, for an error, error.code; msg says what was sent. */
void h_expect_error(struct h_resp *r, long status, const char *code, const char *what);

/* Dotted path lookup in a JSON object ("error.code"); NULL when missing. */
json_t *h_jget(json_t *root, const char *path);
const char *h_jstr(json_t *root, const char *path); /* NULL when missing or not a string */
long long h_jint(json_t *root, const char *path);   /* fails when missing or not an integer */

/* ------------------------------------------------------------------ loadgen */

struct h_loadgen {
    pid_t pid;
    char *out, *err;
    int rc;          /* exit status once waited */
    json_t *summary; /* the --json summary once waited */
};

struct h_loadgen_opts {
    const char *url;
    const char *key;
    long long count;
    int concurrency;
    const char *idem_prefix; /* NULL: none */
    int retry;
    const char *text;    /* NULL: "Passerelle test %d" (GSM-7) */
    const char *to_base; /* NULL: loadgen's default */
    int max_seconds;     /* 0: 600 */
    const char *ids_out; /* NULL: none */
};
struct h_loadgen *h_loadgen_start(const struct h_loadgen_opts *o);
/* Waits up to timeout_s (fails after killing it on timeout) and parses the summary; fails
 * when there is no summary. Returns the exit status. */
int h_loadgen_wait(struct h_loadgen *l, double timeout_s);
void h_loadgen_free(struct h_loadgen *l);
/* summary.status["code"] (0 when absent). */
long long h_loadgen_status(const struct h_loadgen *l, int code);

/* ------------------------------------------------------------------ private PostgreSQL */

struct h_pg {
    char *dir; /* mkdtemp directory; the cluster is in dir/pg */
    char *datadir;
    int port;
    char *conninfo; /* dbname=postgres */
    int running;
};
/* Creates and starts a private cluster with $PASSERELLE_PGCTL under PASSERELLE_TEST_TMPDIR. */
struct h_pg *h_pg_new(void);
void h_pg_start(struct h_pg *pg);
void h_pg_stop(struct h_pg *pg);

#endif
