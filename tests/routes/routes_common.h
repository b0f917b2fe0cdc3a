/*
 * routes_common — helpers shared by the route tests (tests/routes/), on top of the integration
 * harness (tests/integration/harness.h): the iSendPro mock as a child process and its /_mock/
 * controls, a configuration file with the test's own routes, sends (one, or many in parallel
 * with curl-multi), waits on message states with a readable report of each message, /healthz
 * of one route, and libGammu's dummy phone (a directory) with the `gammu` command-line tool.
 *
 * Binaries: argv[1..3] as for the harness (gatewayd, gatewayctl, loadgen), argv[4] the mock
 * (CMake passes $<TARGET_FILE:isendpro_mock>), else $PASSERELLE_BUILD/tests/peers/isendpro_mock.
 */
#ifndef PASSERELLE_ROUTES_COMMON_H
#define PASSERELLE_ROUTES_COMMON_H

#include "harness.h"

/* h_init, plus the mock's path. */
void r_init(const char *name, int argc, char **argv);
/* Stops the mocks still running (printing their log tails on failure), then h_exit. */
int r_exit(int failures) __attribute__((noreturn));
const char *r_bin_mock(void);

/* ------------------------------------------------------------------ the iSendPro mock */

struct r_mock {
    char name[32];
    pid_t pid;
    int port;
    char *url; /* http://127.0.0.1:PORT (the driver's url is URL/cgi-bin) */
    char *log; /* its stderr (one line per request) */
};

/* Starts isendpro_mock --listen 127.0.0.1:0 ARGS… (NULL-terminated) and waits for its
 * "listening on" line to learn the port. */
struct r_mock *r_mock_start(const char *name, const char *const *args);
/* POST /_mock/WHAT with a JSON body; fails unless 200; returns the state it answers. */
json_t *r_mock_ctl(struct r_mock *m, const char *what, const char *json_body);
/* GET /_mock/WHAT (requests, sent, dlr, state); the parsed answer. */
json_t *r_mock_get(struct r_mock *m, const char *what);
/* SIGTERM, and asserts a clean exit (status 0). */
void r_mock_stop(struct r_mock *m);
char *r_mock_tail(const struct r_mock *m, int lines);

/* /_mock/sent or /_mock/dlr entries whose "tracker" is id (new array, decref it). */
json_t *r_mock_by_tracker(json_t *list, long long id);
/* /_mock/requests entries whose fields.tracker is id or contains it (new array). */
json_t *r_mock_requests_for(json_t *requests, long long id);
/* compact JSON for messages (malloc'ed); "(null)" for NULL */
char *r_dump(json_t *j);

/* ------------------------------------------------------------------ configuration */

/* Writes h_tmpdir()/filename: [gateway] (listen, node-a, max_body_bytes 8192, gateway_extra),
 * [database], [log] level = debug, [outbox] (lease 10 s, poll 100 ms, backoff 100..1000 ms,
 * outbox_extra), then `routes` as given (one or more [route …] sections). Returns the path.
 * Writing again to the same name replaces the file (for a restart with other options). */
char *r_config(const char *filename, int port, const char *conninfo, const char *gateway_extra,
               const char *outbox_extra, const char *routes);
/* gatewayctl centre create NAME --route R1 [--route R2] (routes: NULL-terminated). */
long long r_centre_create(const char *config, const char *name, const char *const *routes);

/* ------------------------------------------------------------------ sending */

/* JSON body {"to","text"[,"send_at"]} (malloc'ed). */
char *r_body(const char *to, const char *text, const char *send_at);
/* RFC 3339 UTC time seconds_ahead from now (malloc'ed). */
char *r_time_ahead(int seconds_ahead);
/* POST /api/v1/messages; asserts 202 and returns the id. */
long long r_send(struct h_daemon *d, const char *key, const char *to, const char *text,
                 const char *send_at);
/* n POSTs at once (curl-multi, all connections open together); asserts every one is 202 and
 * fills ids[] in the order of bodies[]. */
void r_send_many(struct h_daemon *d, const char *key, int n, char *const *bodies, long long *ids);
/* "1,2,3" (malloc'ed). */
char *r_ids_csv(const long long *ids, int n);

/* ------------------------------------------------------------------ message state */

/* One message: id|status|route|error_code|provider_ref|history|attempts|queue (malloc'ed). */
char *r_msg_report(const char *conninfo, long long id);
/* Reports of the messages in ids_csv that are not in one of the states of want_csv. */
char *r_msgs_report(const char *conninfo, const char *ids_csv, const char *want_csv);
/* messages.status (malloc'ed; "(none)" when there is no such message). */
char *r_status(const char *conninfo, long long id);
/* Polls until message id is in one of the states of want_csv ("sent,delivered"); fails after
 * timeout_s with the message's report. */
void r_wait_status(const char *conninfo, long long id, const char *want_csv, double timeout_s);
/* The same for every message of ids_csv (n of them). */
void r_wait_all(const char *conninfo, const char *ids_csv, long long n, const char *want_csv,
                double timeout_s);
/* Asserts that message id stays in state `status` for hold_s seconds. */
void r_hold_status(const char *conninfo, long long id, const char *status, double hold_s);

/* ------------------------------------------------------------------ health */

/* A copy of /healthz's routes.ROUTE (NULL when missing); *body (if not NULL) gets the whole
 * answer (malloc'ed). */
json_t *r_route_health(struct h_daemon *d, const char *route, char **body);
/* A string field of routes.ROUTE ("" when missing), copied into buf. */
const char *r_route_field(json_t *route, const char *field, char *buf, size_t len);

/* ------------------------------------------------------------------ the dummy phone */

/* h_tmpdir()/name with sms/1..5 (returned, malloc'ed). */
char *r_dummy_new(const char *name);
void r_dummy_mkdirs(const char *dir);
/* Writes content under a dot-name in sms/FOLDER, then renames it to sms/FOLDER/LOC. */
void r_dummy_put_file(const char *dir, int folder, int loc, const char *content);
/* An SMS-DELIVER in Gammu's backup format (Coding Unicode); udh may be NULL. */
void r_dummy_put_sms(const char *dir, int folder, int loc, const char *from, const char *udh,
                     const char *text);
/* The file content r_dummy_put_sms writes (malloc'ed). Pure: callable from any thread. */
char *r_dummy_sms_content(int folder, const char *from, const char *udh, const char *text);
/* r_dummy_put_file that does not fail the test (for a load thread, or while the directory may
 * be gone): writes sms/FOLDER/.try-LOC, renames it to sms/FOLDER/LOC; 0, or -1 with errno. */
int r_dummy_try_put_file(const char *dir, int folder, int loc, const char *content);
/* How many message files (names 1..10000) sms/FOLDER holds; their names in *names if not NULL. */
int r_dummy_count(const char *dir, int folder, char **names);
/* rm -rf dir. */
void r_rm_rf(const char *dir);
/* A gammurc for the dummy phone in dir (returned path). */
char *r_gammu_rc(const char *dir);
/* LC_ALL=C.UTF-8 gammu -c RC ARGS… (NULL-terminated); returns the exit status, the output
 * (stdout then stderr) in *out. */
int r_gammu(const char *rc, char **out, ...) __attribute__((sentinel));

/* ------------------------------------------------------------------ misc */

int r_contains(const char *hay, const char *needle);
/* Number of lines of text containing needle. */
int r_count_lines(const char *text, const char *needle);
/* The first line of text containing needle (malloc'ed) or NULL. */
char *r_find_line(const char *text, const char *needle);

#endif
