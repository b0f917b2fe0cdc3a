/*
 * test_tail — the operators' live view and retry, as an operator sees them: `gatewayctl tail`
 * on GET /ops/events (Server-Sent Events) of a real gatewayd, and `gatewayctl retry`.
 *
 * One daemon (database t_tail_<pid>) with centre A on the `sim` route and centre B on
 * `simfail` (a simulator that fails every send for good). Three tails run as children for
 * the whole file: A (--json, everything), B (--json --phone-suffix 05), C (readable,
 * --centre "Centre A" --state delivered). The tests, in order:
 *   1. 20 sends: A shows sending, sent, delivered for each, in order, phones masked;
 *   2. kill -9 of the daemon mid-stream, restart, 10 more sends: A reconnects by itself and
 *      shows them; B and C filter; A's ids are exactly message_events' ids, each once, in
 *      order (nothing missed or repeated across the kill);
 *   3. out-of-order commits: an event id held by an open transaction holds the stream back
 *      until it commits (then shown in order) or rolls back (then passed over);
 *   4. resume by Last-Event-ID and ?after=, the headers, the errors (401 without the token…),
 *      passerelle_events_clients;
 *   5. retry: centre B's failed messages, --dry-run counts, then queued again (and failed
 *      again: attempts grow), opted-out numbers left alone;
 *   6. SIGTERM ends the streams and the daemon exits 0; Ctrl-C stops the tails with status 0.
 */
#include "harness.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OPS_TOKEN "tail-test-operator-token-0123"
#define WAIT_S 60

struct tail {
    const char *name;
    pid_t pid;
    char *out, *err;
};

static struct {
    char *conninfo;
    char *config;
    struct h_daemon *d;
    char *key_a, *key_b;
    long long ids_a[32]; /* message ids of the 32 sends of centre A */
    struct tail ta, tb, tc;
} G;

/* ------------------------------------------------------------------ helpers */

static void tail_start(struct tail *t, const char *name, const char *const *args)
{
    t->name = name;
    t->out = h_printf("%s/%s.out", h_tmpdir(), name);
    t->err = h_printf("%s/%s.err", h_tmpdir(), name);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)h_bin_gatewayctl();
    argv[n++] = "--config";
    argv[n++] = G.config;
    argv[n++] = "--url";
    argv[n++] = G.d->url;
    argv[n++] = "tail";
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    t->pid = h_spawn(argv, t->out, t->err);
}

static int count_in_file(const char *path, const char *needle)
{
    char *s = h_read_file(path);
    int n = 0;
    for (const char *p = s ? s : ""; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

struct file_wait {
    const char *path, *needle;
    int count;
};

static int file_has(void *arg)
{
    struct file_wait *w = arg;
    return count_in_file(w->path, w->needle) >= w->count;
}

static void wait_file(const char *path, const char *needle, int count, const char *what)
{
    struct file_wait w = {path, needle, count};
    if (!h_poll(WAIT_S, 100, file_has, &w)) {
        char *s = h_read_file(path);
        size_t len = s ? strlen(s) : 0;
        h_fail("%s: expected %d x '%s' in %s within %d s; it has %d; its end:\n%s", what, count,
               needle, path, WAIT_S, count_in_file(path, needle),
               s ? s + (len > 3000 ? len - 3000 : 0) : "(unreadable)");
    }
}

/* The events of a --json tail, in output order. */
struct ev {
    long long id, msg;
    char state[16], phone[32], detail[64];
};

static struct ev *read_events(const struct tail *t, int *n_out)
{
    char *s = h_read_file(t->out);
    H_ASSERT(s, "cannot read %s", t->out);
    int cap = 64, n = 0;
    struct ev *v = calloc((size_t)cap, sizeof *v);
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        H_ASSERT(j, "tail %s --json printed a line that is not JSON: %s", t->name, line);
        if (n == cap) {
            cap *= 2;
            v = realloc(v, (size_t)cap * sizeof *v);
        }
        struct ev *e = &v[n++];
        memset(e, 0, sizeof *e);
        e->id = h_jint(j, "id");
        e->msg = h_jint(j, "message_id");
        const char *st = h_jstr(j, "state"), *ph = h_jstr(j, "phone");
        const char *dt = h_jstr(j, "detail") ? h_jstr(j, "detail") : h_jstr(j, "error");
        H_ASSERT(st && ph, "tail %s: an event without state or phone: %s", t->name, line);
        snprintf(e->state, sizeof e->state, "%s", st);
        snprintf(e->phone, sizeof e->phone, "%s", ph);
        snprintf(e->detail, sizeof e->detail, "%s", dt ? dt : "");
        H_ASSERT(h_jstr(j, "at") && h_jstr(j, "centre") && h_jstr(j, "direction") &&
                     json_is_integer(h_jget(j, "segments")) &&
                     json_is_integer(h_jget(j, "centre_id")),
                 "tail %s: an event without at, centre, centre_id, segments or direction: %s",
                 t->name, line);
        json_decref(j);
    }
    free(s);
    *n_out = n;
    return v;
}

/* Position of the first event of message msg in state st, -1 when none. */
static int find_event(const struct ev *v, int n, long long msg, const char *st)
{
    for (int i = 0; i < n; i++)
        if (v[i].msg == msg && !strcmp(v[i].state, st))
            return i;
    return -1;
}

static long long tail_max_id(const struct tail *t)
{
    int n;
    struct ev *v = read_events(t, &n);
    long long m = n ? v[n - 1].id : 0;
    free(v);
    return m;
}

struct tail_delivered {
    const struct tail *t;
    const long long *ids;
    int n;
};

static int all_delivered_in_tail(void *arg)
{
    struct tail_delivered *w = arg;
    int n;
    struct ev *v = read_events(w->t, &n);
    int ok = 1;
    for (int i = 0; i < w->n && ok; i++)
        ok = find_event(v, n, w->ids[i], "delivered") >= 0;
    free(v);
    return ok;
}

static long long send_a(int k)
{
    char *body = h_printf("{\"to\":\"+336123456%02d\",\"text\":\"Bonjour %d\"}", k, k);
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key_a, body);
    H_ASSERT(r->status == 202, "POST to +336123456%02d: expected 202, got %ld %s%s", k, r->status,
             r->body, r->err);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    free(body);
    return id;
}

/* Every phone number of the test, in the three notations someone might grep for. */
static void assert_no_full_number(const char *path)
{
    char *s = h_read_file(path);
    H_ASSERT(s, "cannot read %s", path);
    for (int k = 0; k < 32; k++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "6123456%02d", k);
        snprintf(b, sizeof b, "6 12 34 56 %02d", k);
        H_ASSERT(!strstr(s, a) && !strstr(s, b), "%s shows the full number +33%s", path, a);
    }
    for (int k = 1; k <= 5; k++) {
        char a[16];
        snprintf(a, sizeof a, "6987654%02d", k);
        H_ASSERT(!strstr(s, a), "%s shows the full number +33%s", path, a);
    }
    free(s);
}

/* GET /ops/events for a moment: status, content type and what came. */
struct sse_resp {
    long status;
    char ctype[128];
    char *body;
};

static struct sse_resp sse_get(const char *query, const char *last_event_id, int ms)
{
    struct sse_resp r = {0};
    char *url = h_printf("%s/ops/events%s", G.d->url, query);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " OPS_TOKEN);
    char *lei = last_event_id ? h_printf("Last-Event-ID: %s", last_event_id) : NULL;
    if (lei)
        h = curl_slist_append(h, lei);
    struct h_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ms);
    curl_easy_perform(c); /* ends by the timeout: the stream does not end by itself */
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.ctype, sizeof r.ctype, "%s", ct ? ct : "");
    r.body = b.data ? b.data : h_printf("%s", "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(lei);
    free(url);
    return r;
}

/* The ids of the `id:` lines of an SSE body. */
static int sse_ids(const char *body, long long *ids, int max)
{
    int n = 0;
    for (const char *p = body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, "id: ", 4) && n < max)
            ids[n++] = strtoll(p + 4, NULL, 10);
    return n;
}

struct metric_wait {
    const char *name;
    long long want;
};

static int metric_is(void *arg)
{
    struct metric_wait *w = arg;
    return (long long)h_metric(G.d, w->name) == w->want;
}

static int tail_a_caught_up(void *arg)
{
    (void)arg;
    return tail_max_id(&G.ta) >= h_sql_int(G.conninfo, "SELECT coalesce(max(id), 0) FROM "
                                                       "message_events");
}

/* Tail A shows exactly message_events' ids, each once, ascending (it started before the
 * first event of this database). Returns how many. */
static int assert_tail_a_is_message_events(void)
{
    H_ASSERT(h_poll(WAIT_S, 100, tail_a_caught_up, NULL),
             "tail A did not reach the last message event within %d s", WAIT_S);
    int n;
    struct ev *v = read_events(&G.ta, &n);
    char *db = h_sql_rows(G.conninfo, "SELECT string_agg(id::text, ',' ORDER BY id) FROM "
                                      "message_events");
    char *mine = calloc(1, (size_t)n * 24 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        H_ASSERT(i == 0 || v[i].id > v[i - 1].id,
                 "tail A: event id %lld follows %lld (repeated or out of order)", v[i].id,
                 v[i - 1].id);
        len += (size_t)snprintf(mine + len, 24, "%s%lld", i ? "," : "", v[i].id);
    }
    H_ASSERT(!strcmp(mine, db),
             "tail A's event ids differ from message_events:\n  tail: %s\n  "
             "db:   %s",
             mine, db);
    free(mine);
    free(db);
    free(v);
    return n;
}

/* ------------------------------------------------------------------ group set-up */

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "tail", NULL);
    int port = h_free_port();
    struct h_config c = {
        .port = port,
        .conninfo = G.conninfo,
        .gateway = "ops_token = " OPS_TOKEN "\n",
        .route_sim = "latency_ms = 20\ndlr_delay_ms = 100\n"
                     "[route simfail]\ndriver = sim\nlatency_ms = 20\nperm_failure_rate = 1\n",
    };
    G.config = h_config_write(&c, "main.ini");
    h_centre_create(G.config, "Centre A");
    int rc = h_ctl(G.config, NULL, "centre", "create", "Centre B", "--route", "simfail", NULL);
    H_ASSERT(rc == 0, "centre create Centre B: exit %d: %s", rc, h_ctl_stderr());
    G.key_a = h_key_create(G.config, "Centre A");
    G.key_b = h_key_create(G.config, "Centre B");
    G.d = h_daemon_start("main", G.config, port);
    return 0;
}

static void tail_kill(struct tail *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
    free(t->out);
    free(t->err);
    t->out = t->err = NULL;
}

static int group_teardown(void **state)
{
    (void)state;
    tail_kill(&G.ta);
    tail_kill(&G.tb);
    tail_kill(&G.tc);
    h_daemon_free(G.d);
    G.d = NULL;
    return 0;
}

/* ------------------------------------------------------------------ 1. follow sends */

static void test_tail_follows_sends(void **state)
{
    (void)state;
    const char *a[] = {"--json", NULL};
    const char *b[] = {"--json", "--phone-suffix", "05", NULL};
    const char *c[] = {"--centre", "Centre A", "--state", "delivered", NULL};
    tail_start(&G.ta, "tail_a", a);
    tail_start(&G.tb, "tail_b", b);
    tail_start(&G.tc, "tail_c", c);
    /* "following URL" once the daemon answered 200: from then on nothing is missed */
    wait_file(G.ta.err, "gatewayctl: following ", 1, "tail A connected");
    wait_file(G.tb.err, "gatewayctl: following ", 1, "tail B connected");
    wait_file(G.tc.err, "gatewayctl: following ", 1, "tail C connected");

    for (int k = 0; k < 20; k++)
        G.ids_a[k] = send_a(k);
    h_wait_delivered(G.conninfo, 20, WAIT_S, 3, (struct h_daemon *const[]){G.d, NULL});
    struct tail_delivered w = {&G.ta, G.ids_a, 20};
    if (!h_poll(WAIT_S, 100, all_delivered_in_tail, &w)) {
        char *s = h_read_file(G.ta.out);
        h_fail("tail A did not show the 20 messages delivered within %d s; it shows:\n%s", WAIT_S,
               s ? s : "(nothing)");
    }
    int n;
    struct ev *v = read_events(&G.ta, &n);
    for (int k = 0; k < 20; k++) {
        int s1 = find_event(v, n, G.ids_a[k], "sending");
        int s2 = find_event(v, n, G.ids_a[k], "sent");
        int s3 = find_event(v, n, G.ids_a[k], "delivered");
        H_ASSERT(s1 >= 0 && s2 > s1 && s3 > s2,
                 "message %lld: expected sending, sent, delivered in that order in tail A "
                 "(positions %d, %d, %d)",
                 G.ids_a[k], s1, s2, s3);
        char want[32];
        snprintf(want, sizeof want, "+33 6** ** ** %02d", k);
        H_ASSERT(!strcmp(v[s1].phone, want), "message %lld: phone shown as '%s', expected '%s'",
                 G.ids_a[k], v[s1].phone, want);
    }
    free(v);
    assert_no_full_number(G.ta.out);
    h_log("tail A showed %d events for the 20 sends", n);
}

/* ------------------------------------------------------------------ 2. kill -9, restart */

static void test_tail_survives_kill9(void **state)
{
    (void)state;
    h_daemon_kill9(G.d);
    h_daemon_restart(G.d);
    for (int k = 20; k < 30; k++)
        G.ids_a[k] = send_a(k);
    h_wait_delivered(G.conninfo, 30, WAIT_S, 3, (struct h_daemon *const[]){G.d, NULL});
    struct tail_delivered w = {&G.ta, G.ids_a + 20, 10};
    if (!h_poll(WAIT_S, 100, all_delivered_in_tail, &w)) {
        char *s = h_read_file(G.ta.err);
        h_fail("tail A did not show the 10 sends after the restart within %d s; its stderr:\n%s",
               WAIT_S, s ? s : "");
    }
    H_ASSERT(count_in_file(G.ta.err, "gatewayctl: following ") >= 2,
             "tail A should have said it reconnected");
    H_ASSERT(count_in_file(G.ta.err, "reconnecting in ") >= 1,
             "tail A should have said it lost the stream and was reconnecting");

    int n = assert_tail_a_is_message_events();
    assert_no_full_number(G.ta.out);
    h_log("tail A reconnected and showed all %d events, once each", n);
}

/* ------------------------------------------------------------------ 3. filters */

static void test_filters(void **state)
{
    (void)state;
    /* B and C reconnect after the kill -9 on their own back-off: wait until both followed the
     * restarted daemon again and C showed the 10 later deliveries, then look at what they
     * printed (a duplicate or a stray line would still show up below). */
    wait_file(G.tb.err, "gatewayctl: following ", 2, "tail B reconnected");
    wait_file(G.tc.err, "gatewayctl: following ", 2, "tail C reconnected");
    wait_file(G.tc.out, " delivered (1 segment)", 30, "tail C showed the 30 deliveries");
    /* B: only +33612345605 */
    int n;
    struct ev *v = read_events(&G.tb, &n);
    H_ASSERT(n == 3, "tail B (--phone-suffix 05) should show the 3 events of one message, got %d",
             n);
    for (int i = 0; i < n; i++)
        H_ASSERT(v[i].msg == G.ids_a[5] && !strcmp(v[i].phone, "+33 6** ** ** 05"),
                 "tail B (--phone-suffix 05) showed message %lld (%s)", v[i].msg, v[i].phone);
    H_ASSERT(!strcmp(v[0].state, "sending") && !strcmp(v[1].state, "sent") &&
                 !strcmp(v[2].state, "delivered"),
             "tail B: expected sending, sent, delivered; got %s, %s, %s", v[0].state, v[1].state,
             v[2].state);
    free(v);
    assert_no_full_number(G.tb.out);

    /* C: readable, centre A, delivered only: one line per message */
    char *s = h_read_file(G.tc.out);
    H_ASSERT(s, "cannot read %s", G.tc.out);
    regex_t re;
    H_ASSERT(regcomp(&re,
                     "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} centre \"Centre A\" "
                     "route sim \\+33 6\\*\\* \\*\\* \\*\\* [0-9]{2} delivered \\(1 segment\\)$",
                     REG_EXTENDED | REG_NOSUB) == 0,
             "regcomp");
    int lines = 0;
    char *save = NULL;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++)
        H_ASSERT(regexec(&re, l, 0, NULL, 0) == 0,
                 "tail C (--centre \"Centre A\" --state delivered): unexpected line '%s'", l);
    regfree(&re);
    free(s);
    H_ASSERT(lines == 30, "tail C should show the 30 deliveries, one line each; got %d lines",
             lines);
    assert_no_full_number(G.tc.out);
}

/* ------------------------------------------------------------------ 4. out-of-order commits */

/* An event id drawn by a transaction that commits late (or never) must not be passed over:
 * the stream holds the later events back until that transaction ends, then goes on in id
 * order. */
static void held_round(int k, int commit)
{
    PGconn *pg = PQconnectdb(G.conninfo);
    H_ASSERT(PQstatus(pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(pg));
    PQclear(PQexec(pg, "BEGIN"));
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO message_events (message_id, centre_id, status, route, detail)"
             " SELECT %lld, centre_id, 'sent', 'sim', 'test: held back' FROM messages"
             " WHERE id = %lld RETURNING id",
             G.ids_a[0], G.ids_a[0]);
    PGresult *r = PQexec(pg, sql);
    H_ASSERT(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "held insert: %s",
             PQerrorMessage(pg));
    long long held = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);

    G.ids_a[k] = send_a(k);
    h_wait_delivered(G.conninfo, k + 1, WAIT_S, 1, (struct h_daemon *const[]){G.d, NULL});
    h_sleep_ms(2500); /* ten polls */
    H_ASSERT(tail_max_id(&G.ta) < held,
             "tail A went past event %lld while the transaction that holds it was still open "
             "(it shows up to %lld)",
             held, tail_max_id(&G.ta));

    r = PQexec(pg, commit ? "COMMIT" : "ROLLBACK");
    H_ASSERT(PQresultStatus(r) == PGRES_COMMAND_OK, "end: %s", PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
    struct tail_delivered w = {&G.ta, &G.ids_a[k], 1};
    H_ASSERT(h_poll(WAIT_S, 100, all_delivered_in_tail, &w),
             "tail A did not go on after the transaction %s", commit ? "committed" : "rolled back");
    int n;
    struct ev *v = read_events(&G.ta, &n);
    int at = -1;
    for (int i = 0; i < n; i++)
        if (v[i].id == held)
            at = i;
    if (commit)
        H_ASSERT(at >= 0 && at + 3 < n && v[at].msg == G.ids_a[0] && v[at + 1].id > held &&
                     v[at + 1].msg == G.ids_a[k],
                 "the committed event %lld should come before message %lld's events", held,
                 G.ids_a[k]);
    else
        H_ASSERT(at < 0, "the rolled-back event %lld was streamed", held);
    free(v);
}

static void test_out_of_order_commits(void **state)
{
    (void)state;
    held_round(30, 1);
    held_round(31, 0);
    H_ASSERT((long long)h_metric(G.d, "passerelle_events_skipped_ids_total") >= 1,
             "the rolled-back id should count in passerelle_events_skipped_ids_total");
}

/* ------------------------------------------------------------------ 5. resume, errors */

static void test_resume_headers_errors(void **state)
{
    (void)state;
    long long from_id = h_sql_int(G.conninfo, "SELECT id FROM message_events ORDER BY id"
                                              " OFFSET 4 LIMIT 1");
    long long next =
        h_sql_int(G.conninfo, "SELECT min(id) FROM message_events WHERE id > %lld", from_id);
    long long count =
        h_sql_int(G.conninfo, "SELECT count(*) FROM message_events WHERE id > %lld", from_id);
    char from[24];
    snprintf(from, sizeof from, "%lld", from_id);

    /* Last-Event-ID: everything after it, in order, then the live stream */
    struct sse_resp r = sse_get("", from, 2500);
    H_ASSERT(r.status == 200, "GET /ops/events with the token: expected 200, got %ld", r.status);
    H_ASSERT(!strcmp(r.ctype, "text/event-stream"),
             "Content-Type: expected text/event-stream, got '%s'", r.ctype);
    long long ids[200];
    int n = sse_ids(r.body, ids, 200);
    H_ASSERT(n == count && ids[0] == next,
             "Last-Event-ID %s: expected the %lld events after it from %lld, got %d from %lld",
             from, count, next, n, n ? ids[0] : -1);
    for (int i = 1; i < n; i++)
        H_ASSERT(ids[i] > ids[i - 1], "Last-Event-ID %s: id %lld after %lld", from, ids[i],
                 ids[i - 1]);
    H_ASSERT(strstr(r.body, "event: message\ndata: {"), "events are `event: message` + data");
    free(r.body);

    /* ?after= with a filter */
    r = sse_get("?after=0&phone_suffix=05&state=sent", NULL, 2000);
    n = sse_ids(r.body, ids, 200);
    H_ASSERT(r.status == 200 && n == 1 && strstr(r.body, "\"state\":\"sent\"") &&
                 strstr(r.body, "** 05\""),
             "?after=0&phone_suffix=05&state=sent: expected one event, got %ld:\n%s", r.status,
             r.body);
    free(r.body);

    /* the headers */
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " OPS_TOKEN);
    struct h_buf hb = {0}, bb = {0};
    char *url = h_printf("%s/ops/events", G.d->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_curl_collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bb);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_perform(c);
    H_ASSERT(hb.data && strstr(hb.data, "Cache-Control: no-cache"),
             "expected Cache-Control: no-cache, got headers:\n%s", hb.data ? hb.data : "");
    free(hb.data);
    free(bb.data);
    free(url);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    /* errors */
    struct h_resp *e = h_get(G.d, "/ops/events", NULL);
    h_expect_error(e, 401, "unauthorized", "GET /ops/events without the token");
    h_resp_free(e);
    e = h_get(G.d, "/ops/events", "not-the-operator-token");
    h_expect_error(e, 401, "unauthorized", "GET /ops/events with a wrong token");
    h_resp_free(e);
    e = h_get(G.d, "/ops/events", G.key_a);
    h_expect_error(e, 401, "unauthorized", "GET /ops/events with a centre's API key");
    h_resp_free(e);
    static const struct {
        const char *query;
        long status;
        const char *code;
    } bad[] = {
        {"?phone_suffix=5", 422, "invalid_phone_suffix"},
        {"?phone_suffix=12345", 422, "invalid_phone_suffix"},
        {"?phone_suffix=ab", 422, "invalid_phone_suffix"},
        {"?state=lost", 422, "invalid_state"},
        {"?after=-1", 422, "invalid_after"},
        {"?after=abc", 422, "invalid_after"},
        {"?centre=Nowhere", 404, "unknown_centre"},
        {"?phone=05", 400, "unknown_parameter"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = h_printf("/ops/events%s", bad[i].query);
        e = h_get(G.d, path, OPS_TOKEN);
        h_expect_error(e, bad[i].status, bad[i].code, path);
        h_resp_free(e);
        free(path);
    }
    /* the three tails are the streams left */
    struct metric_wait mw = {"passerelle_events_clients", 3};
    H_ASSERT(h_poll(10, 100, metric_is, &mw), "passerelle_events_clients: expected 3, got %lld",
             (long long)h_metric(G.d, "passerelle_events_clients"));
    H_ASSERT((long long)h_metric(G.d, "passerelle_events_sent_total") > 0,
             "passerelle_events_sent_total > 0");
}

/* ------------------------------------------------------------------ 6. retry */

static int count_is(void *arg)
{
    const char **q = arg; /* {sql, want} */
    return h_sql_int(G.conninfo, "%s", q[0]) == strtoll(q[1], NULL, 10);
}

static void wait_sql(const char *sql, long long want, const char *what)
{
    char w[24];
    snprintf(w, sizeof w, "%lld", want);
    const char *q[2] = {sql, w};
    if (!h_poll(WAIT_S, 100, count_is, q)) {
        char *rows = h_sql_rows(G.conninfo, "SELECT id, status, attempts, error_code FROM "
                                            "messages WHERE centre_id = (SELECT id FROM centres "
                                            "WHERE name = 'Centre B') ORDER BY id");
        h_fail("%s: expected %lld within %d s, got %lld; centre B: %s", what, want, WAIT_S,
               h_sql_int(G.conninfo, "%s", sql), rows);
    }
}

static void test_retry(void **state)
{
    (void)state;
    char *since = h_sql_str(G.conninfo, "SELECT to_char((now() - interval '1 second') AT TIME "
                                        "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
    long long ids_b[5];
    for (int k = 1; k <= 5; k++) {
        char *body = h_printf("{\"to\":\"+336987654%02d\",\"text\":\"Atelier %d\"}", k, k);
        struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key_b, body);
        H_ASSERT(r->status == 202, "centre B send: %ld %s", r->status, r->body);
        ids_b[k - 1] = h_jint(r->json, "id");
        h_resp_free(r);
        free(body);
    }
    const char *failed1 = "SELECT count(*) FROM messages m JOIN centres c ON c.id = m.centre_id"
                          " WHERE c.name = 'Centre B' AND m.status = 'failed' AND m.attempts = 1";
    wait_sql(failed1, 5, "centre B's 5 messages failed (simfail)");
    /* the 5th number opts out meanwhile */
    h_sql_exec(G.conninfo, "INSERT INTO contacts (centre_id, phone, opted_out_at) SELECT id, "
                           "'+33698765405', now() FROM centres WHERE name = 'Centre B'");

    char *out = NULL;
    int rc = h_ctl(G.config, &out, "retry", "--failed-since", since, "--centre", "Centre B",
                   "--dry-run", NULL);
    H_ASSERT(rc == 0 && !strcmp(out, "4"),
             "retry --dry-run: expected exit 0 and '4' (5 failed, 1 opted out), got %d '%s' (%s)",
             rc, out, h_ctl_stderr());
    free(out);
    /* the same with a local "YYYY-MM-DD HH:MM" two minutes ago, all centres */
    time_t t = time(NULL) - 120;
    struct tm tm;
    localtime_r(&t, &tm);
    char local[32];
    strftime(local, sizeof local, "%Y-%m-%d %H:%M", &tm);
    rc = h_ctl(G.config, &out, "retry", "--failed-since", local, "--dry-run", NULL);
    H_ASSERT(rc == 0 && !strcmp(out, "4"), "retry --failed-since '%s' --dry-run: got %d '%s' (%s)",
             local, rc, out, h_ctl_stderr());
    free(out);
    rc =
        h_ctl(G.config, &out, "retry", "--failed-since", "2999-01-01T00:00:00Z", "--dry-run", NULL);
    H_ASSERT(rc == 0 && !strcmp(out, "0"), "retry since 2999: expected 0, got %d '%s'", rc, out);
    free(out);
    rc = h_ctl(G.config, NULL, "retry", "--failed-since", "yesterday", NULL);
    H_ASSERT(rc == 2, "retry --failed-since yesterday: expected exit 2, got %d", rc);
    rc = h_ctl(G.config, NULL, "retry", "--failed-since", since, "--centre", "Nowhere", NULL);
    H_ASSERT(rc == 3, "retry --centre Nowhere: expected exit 3, got %d", rc);
    rc = h_ctl(G.config, NULL, "retry", "--dry-run", NULL);
    H_ASSERT(rc == 2, "retry without --failed-since: expected exit 2, got %d", rc);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM message_events WHERE status = 'queued'") ==
                 0,
             "--dry-run changed something");

    rc = h_ctl(G.config, &out, "retry", "--failed-since", since, "--centre", "Centre B", NULL);
    H_ASSERT(rc == 0 && !strcmp(out, "4 messages queued again"),
             "retry: expected exit 0 and '4 messages queued again', got %d '%s' (%s)", rc, out,
             h_ctl_stderr());
    H_ASSERT(strstr(h_ctl_stderr(), "1 failed message left alone"),
             "retry should say the opted-out one was left alone, said '%s'", h_ctl_stderr());
    free(out);
    /* they go out again and fail again: attempts grow; the opted-out one is untouched */
    const char *failed2 = "SELECT count(*) FROM messages m JOIN centres c ON c.id = m.centre_id"
                          " WHERE c.name = 'Centre B' AND m.status = 'failed' AND m.attempts = 2";
    wait_sql(failed2, 4, "the 4 retried messages failed again after a second attempt");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT attempts FROM messages WHERE id = %lld", ids_b[4]) == 1,
             "the opted-out number's message must not be retried");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM message_events WHERE status = 'queued'"
                                   " AND detail = 'retried by operator'") == 4,
             "expected 4 'queued' events 'retried by operator'");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM outbox_queue") == 0,
             "outbox_queue should be empty once they failed again");

    /* tail A saw it all: queued (retried by operator), sending, failed, for each of the 4 */
    struct file_wait fw = {G.ta.out, "\"state\":\"failed\"", 9};
    if (!h_poll(WAIT_S, 100, file_has, &fw))
        h_fail("tail A should show 9 failed events (5 + 4), shows %d",
               count_in_file(G.ta.out, "\"state\":\"failed\""));
    int n;
    struct ev *v = read_events(&G.ta, &n);
    for (int k = 0; k < 4; k++) {
        int q = find_event(v, n, ids_b[k], "queued");
        H_ASSERT(q >= 0 && !strcmp(v[q].detail, "retried by operator"),
                 "tail A: message %lld should have a 'queued' event 'retried by operator'",
                 ids_b[k]);
        int again = -1;
        for (int i = q + 1; i < n; i++)
            if (v[i].msg == ids_b[k] && !strcmp(v[i].state, "failed"))
                again = i;
        H_ASSERT(again > q, "tail A: message %lld should fail again after its retry", ids_b[k]);
    }
    free(v);
    assert_no_full_number(G.ta.out);
    assert_tail_a_is_message_events();
    free(since);
}

/* ------------------------------------------------------------------ 7. clean stop */

static void test_clean_stop(void **state)
{
    (void)state;
    /* The streams end with the daemon: SIGTERM does not wait for the clients. (Whether the
     * last chunk reaches them depends on how soon the loop exits: "closed by the daemon" or
     * a partial transfer; either way the tail reconnects.) */
    int ended = count_in_file(G.ta.err, "the stream ended");
    double t0 = h_now();
    h_daemon_stop(G.d);
    H_ASSERT(h_now() - t0 < 10, "the daemon took %.1f s to stop with 3 streams open", h_now() - t0);
    char *log = h_read_file(G.d->log);
    H_ASSERT(log && strstr(log, "ended 3 event streams"),
             "the daemon should say it ended the 3 streams");
    free(log);
    wait_file(G.ta.err, "the stream ended", ended + 1, "tail A saw the end of the stream");
    struct tail *ts[3] = {&G.ta, &G.tb, &G.tc};
    for (int i = 0; i < 3; i++) {
        kill(ts[i]->pid, SIGINT);
        int rc = h_wait(ts[i]->pid, 10);
        H_ASSERT(rc == 0, "%s: Ctrl-C should stop it with status 0, got %d", ts[i]->name, rc);
        ts[i]->pid = 0;
    }
}

int main(int argc, char **argv)
{
    h_init("tail", argc, argv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail_follows_sends),
        cmocka_unit_test(test_tail_survives_kill9),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_out_of_order_commits),
        cmocka_unit_test(test_resume_headers_errors),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_clean_stop),
    };
    int failures = cmocka_run_group_tests_name("tail", tests, group_setup, group_teardown);
    curl_global_cleanup();
    h_exit(failures);
}
