/*
 * test_isendpro — the real iSendPro driver (providers/prov_isendpro.c) through the real gatewayd
 * against the iSendPro mock (tests/peers/isendpro_mock) and a real PostgreSQL.
 *
 * One mock (--keyid KEYID, delivery reports to the daemon's /providers/isp/dlr after 300 ms,
 * credit 100 EUR) and one daemon with one centre bound to the route `isp`. The daemon is
 * restarted on the same port and database with three variants of the route:
 *   A  keyid = KEYID, emetteur = CENTRE, credit_poll_s = 1, credit_warn = 10 (the normal one)
 *   B  A + timeout_ms = 1500, credit_poll_s = 0, breaker_failures = 50 (the fault tests: no
 *      credit polls to use up the mock's fault counts, no circuit breaker in the way)
 *   C  A with a keyid the mock does not know
 * Each test says what it sent, what it expected and what it saw (the message's history and
 * attempts, the mock's records for its tracker).
 */
#include "routes_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYID "Zq7kSecretKeyidPasserelle93w"
#define WRONG_KEYID "Wx4mWrongKeyidPasserelle58k"

static struct {
    char *conninfo;
    int port;
    struct r_mock *mock;
    char *config;
    char *key;
    long long centre;
    struct h_daemon *d;
    char variant; /* 'A', 'B', 'C' */
} S;

/* ------------------------------------------------------------------ set-up */

static void write_config(char variant)
{
    const char *extra = variant == 'B' ? "timeout_ms = 1500\ncredit_poll_s = 0\n"
                                         "breaker_failures = 50\n"
                                       : "credit_poll_s = 1\n";
    /* B reads the key from a file (keyid_file), A and C have it inline */
    char *keyline;
    if (variant == 'B') {
        char *kf = h_write_file("isp.keyid", KEYID "\n");
        keyline = h_printf("keyid_file = %s\n", kf);
        free(kf);
    } else {
        keyline = h_printf("keyid = %s\n", variant == 'C' ? WRONG_KEYID : KEYID);
    }
    char *routes = h_printf("[route isp]\n"
                            "driver = isendpro\n"
                            "url = %s/cgi-bin\n"
                            "%s"
                            "emetteur = CENTRE\n"
                            "credit_warn = 10\n"
                            "%s",
                            S.mock->url, keyline, extra);
    free(keyline);
    free(S.config);
    S.config = r_config("isendpro.ini", S.port, S.conninfo, NULL, NULL, routes);
    free(routes);
}

/* The mock as at start-up for what the tests depend on: normal answers, array envelopes,
 * delivery reports on (a test that failed half-way may have left something else). */
static void mock_normal(void)
{
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"normal\",\"shape\":\"array\"}"));
    char *acct = h_printf("{\"dlr_url\":\"http://127.0.0.1:%d/providers/isp/dlr\"}", S.port);
    json_decref(r_mock_ctl(S.mock, "account", acct));
    free(acct);
}

/* Runs the daemon with route variant v (restarting it when another one runs). */
static void use_variant(char v)
{
    if (S.mock && S.mock->pid > 0)
        mock_normal();
    if (S.d && S.variant == v && h_daemon_alive(S.d))
        return;
    if (S.d && S.d->pid > 0)
        h_daemon_stop(S.d);
    write_config(v);
    S.variant = v;
    if (!S.d)
        S.d = h_daemon_start("gatewayd", S.config, S.port);
    else
        h_daemon_restart(S.d);
    h_log("gatewayd runs with route variant %c", v);
}

static int group_setup(void **state)
{
    (void)state;
    S.conninfo = h_db_create(h_test_pg(), "isendpro", NULL);
    S.port = h_free_port();
    char *dlr = h_printf("http://127.0.0.1:%d/providers/isp/dlr", S.port);
    const char *args[] = {"--keyid", KEYID,      "--dlr-url", dlr, "--dlr-delay-ms",
                          "300",     "--credit", "100",       NULL};
    S.mock = r_mock_start("isendpro_mock", args);
    free(dlr);
    write_config('A');
    const char *routes[] = {"isp", NULL};
    S.centre = r_centre_create(S.config, "Centre isp", routes);
    S.key = h_key_create(S.config, "Centre isp");
    use_variant('A');
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static json_t *api_get(long long id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/messages/%lld", id);
    struct h_resp *r = h_get(S.d, path, S.key);
    H_ASSERT(r->status == 200 && r->json, "GET %s: expected 200, got %ld %s", path, r->status,
             r->status ? r->body : r->err);
    json_t *j = json_incref(r->json);
    h_resp_free(r);
    return j;
}

/* "outcome:error_code,…" of a message's attempts, in order. */
static char *attempts_of(long long id)
{
    char *s = h_sql_str(S.conninfo,
                        "SELECT string_agg(route || ':' || outcome || coalesce(':' || error_code, "
                        "''), ',' ORDER BY id) FROM attempts WHERE message_id = %lld",
                        id);
    return s ? s : h_printf("(none)");
}

static char *history_of(long long id)
{
    char *s = h_sql_str(S.conninfo,
                        "SELECT string_agg(status, ',' ORDER BY id) FROM message_events WHERE "
                        "message_id = %lld",
                        id);
    return s ? s : h_printf("(none)");
}

static const char *jstr_or(json_t *o, const char *key, const char *def)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

/* The mock's records for one message: how many /_mock/sent entries, their endpoint, and the
 * request paths that carried its tracker. */
struct mock_view {
    int nsent;
    char endpoint[16];
    char num_sent[32];
    char emetteur[32];
    int nrequests;
    char paths[256];
    int ndlr;
    int dlr_accepted;
    long dlr_status;
    char *sent_json, *dlr_json;
};

static void mock_view(long long id, struct mock_view *v)
{
    memset(v, 0, sizeof *v);
    json_t *sent = r_mock_get(S.mock, "sent");
    json_t *reqs = r_mock_get(S.mock, "requests");
    json_t *dlrs = r_mock_get(S.mock, "dlr");
    json_t *s = r_mock_by_tracker(sent, id);
    json_t *q = r_mock_requests_for(reqs, id);
    json_t *d = r_mock_by_tracker(dlrs, id);
    v->nsent = (int)json_array_size(s);
    json_t *first = json_array_get(s, 0);
    snprintf(v->endpoint, sizeof v->endpoint, "%s", jstr_or(first, "endpoint", "-"));
    snprintf(v->num_sent, sizeof v->num_sent, "%s", jstr_or(first, "num_sent", "-"));
    snprintf(v->emetteur, sizeof v->emetteur, "%s", jstr_or(first, "emetteur", "-"));
    v->nrequests = (int)json_array_size(q);
    size_t i, len = 0;
    json_t *e;
    json_array_foreach(q, i, e)
    {
        json_t *hs = json_object_get(e, "http_status");
        if (len < sizeof v->paths - 40)
            len += (size_t)snprintf(v->paths + len, sizeof v->paths - len, "%s%s->%lld",
                                    len ? "," : "", jstr_or(e, "path", "?"),
                                    json_is_integer(hs) ? (long long)json_integer_value(hs) : 0LL);
    }
    v->ndlr = (int)json_array_size(d);
    json_t *d0 = json_array_get(d, 0);
    v->dlr_accepted = json_is_true(json_object_get(d0, "accepted"));
    json_t *hs = json_object_get(d0, "http_status");
    v->dlr_status = json_is_integer(hs) ? (long)json_integer_value(hs) : 0;
    v->sent_json = r_dump(s);
    v->dlr_json = r_dump(d);
    json_decref(sent);
    json_decref(reqs);
    json_decref(dlrs);
    json_decref(s);
    json_decref(q);
    json_decref(d);
}

static void mock_view_free(struct mock_view *v)
{
    free(v->sent_json);
    free(v->dlr_json);
}

/* n messages posted at once (curl-multi), all due at the same second (send_at 4 s ahead), so
 * that one claim hands them to the driver in one loop pass. */
static void send_batch(const char *const *to, int n, const char *text, long long *ids)
{
    char *at = r_time_ahead(4);
    char **bodies = calloc((size_t)n, sizeof *bodies);
    if (!bodies)
        abort();
    for (int i = 0; i < n; i++) {
        char *t = h_printf("%s %d", text, i + 1);
        bodies[i] = r_body(to[i], t, at);
        free(t);
    }
    double t0 = h_now();
    r_send_many(S.d, S.key, n, bodies, ids);
    h_log("%d messages posted in parallel in %.2f s, all with send_at %s", n, h_now() - t0, at);
    for (int i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
    free(at);
}

/* ------------------------------------------------------------------ tests */

/* One message: /sms with num in international digits without '+', our id as tracker, the
 * sender; delivered once the mock's report came back (and the mock saw a 2xx for it). */
static void test_happy_path(void **state)
{
    (void)state;
    use_variant('A');
    long long id = r_send(S.d, S.key, "06 12 34 56 01", "Rappel : rendez-vous demain a 10h", NULL);
    r_wait_status(S.conninfo, id, "delivered", 30);
    struct mock_view v;
    mock_view(id, &v);
    json_t *m = api_get(id);
    char *mj = r_dump(m);
    char *att = attempts_of(id);
    char *hist = history_of(id);
    char want_ref[32];
    snprintf(want_ref, sizeof want_ref, "%lld", id);
    struct h_checks ck = {0};
    h_check(&ck, v.nsent == 1, "the mock recorded exactly one sent SMS with tracker %lld: %s", id,
            v.sent_json);
    h_check(&ck, !strcmp(v.endpoint, "sms"), "it went through /sms (one message): endpoint '%s'",
            v.endpoint);
    h_check(&ck, !strcmp(v.num_sent, "33612345601"),
            "num as sent is international digits without '+' (33612345601): '%s'", v.num_sent);
    h_check(&ck, !strcmp(v.emetteur, "CENTRE"), "emetteur CENTRE: '%s'", v.emetteur);
    h_check(&ck, v.nrequests == 1 && !strcmp(v.paths, "/cgi-bin/sms->200"),
            "one request carried the tracker: /cgi-bin/sms answered 200: %d request(s) %s",
            v.nrequests, v.paths);
    h_check(&ck, v.ndlr == 1 && v.dlr_accepted && v.dlr_status >= 200 && v.dlr_status < 300,
            "the mock's delivery report was accepted with a 2xx: %s", v.dlr_json);
    const char *st = h_jstr(m, "status");
    h_check(&ck, st && !strcmp(st, "delivered"), "GET says delivered: %s", mj);
    const char *ref = h_jstr(m, "provider_ref");
    h_check(&ck, ref && !strcmp(ref, want_ref), "provider_ref is our id (the tracker) %s: %s",
            want_ref, ref ? ref : "(none)");
    const char *to = h_jstr(m, "to");
    h_check(&ck, to && !strcmp(to, "+33612345601"), "to is stored in E.164: %s", to ? to : "-");
    h_check(&ck, !strcmp(att, "isp:accepted"), "one accepted attempt on isp: %s", att);
    h_check(&ck, !strcmp(hist, "sending,sent,delivered"),
            "history sending,sent,delivered (after the implicit queued): %s", hist);
    h_checks_done(&ck, "happy path");
    free(mj);
    free(att);
    free(hist);
    json_decref(m);
    mock_view_free(&v);
}

/* Does this /_mock/requests entry carry the tracker of one of ids? */
static int carries_any(json_t *request, const long long *ids, int n)
{
    json_t *one = json_array();
    json_array_append(one, request);
    int hit = 0;
    for (int k = 0; k < n && !hit; k++) {
        json_t *h = r_mock_requests_for(one, ids[k]);
        hit = json_array_size(h) > 0;
        json_decref(h);
    }
    json_decref(one);
    return hit;
}

/* 20 messages posted in parallel, due together: they go out through /smsmulti (one text per
 * number, one tracker per number) and are all delivered, each sent once. */
static void test_batch_smsmulti(void **state)
{
    (void)state;
    use_variant('A');
    enum { N = 20 };
    const char *to[N];
    char nums[N][20];
    long long ids[N];
    for (int i = 0; i < N; i++) {
        snprintf(nums[i], sizeof nums[i], "+336123457%02d", i);
        to[i] = nums[i];
    }
    send_batch(to, N, "Collecte des encombrants jeudi", ids);
    char *csv = r_ids_csv(ids, N);
    r_wait_all(S.conninfo, csv, N, "delivered", 60);
    json_t *sent = r_mock_get(S.mock, "sent");
    json_t *reqs = r_mock_get(S.mock, "requests");
    struct h_checks ck = {0};
    int multi_reqs = 0, single_reqs = 0, multi_sent = 0, once = 0;
    char bad[512] = "";
    size_t bl = 0;
    size_t i;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        if (!carries_any(e, ids, N))
            continue;
        if (!strcmp(jstr_or(e, "path", ""), "/cgi-bin/smsmulti"))
            multi_reqs++;
        else
            single_reqs++;
    }
    for (int k = 0; k < N; k++) {
        json_t *s = r_mock_by_tracker(sent, ids[k]);
        if (json_array_size(s) == 1)
            once++;
        else if (bl < sizeof bad - 64)
            bl += (size_t)snprintf(bad + bl, sizeof bad - bl, " %lld sent %zu times;", ids[k],
                                   json_array_size(s));
        if (json_array_size(s) >= 1 &&
            !strcmp(jstr_or(json_array_get(s, 0), "endpoint", ""), "smsmulti"))
            multi_sent++;
        json_decref(s);
    }
    h_check(&ck, multi_reqs >= 1,
            "at least one /cgi-bin/smsmulti request carried them: %d "
            "smsmulti, %d other",
            multi_reqs, single_reqs);
    h_check(&ck, single_reqs == 0 && multi_sent == N,
            "all %d went through /smsmulti (batch_min 5, all due together): %d via smsmulti, %d "
            "requests to another path",
            N, multi_sent, single_reqs);
    h_check(&ck, once == N, "each of the %d was sent exactly once by the mock: %d;%s", N, once,
            bad);
    long long accepted = h_sql_int(S.conninfo,
                                   "SELECT count(*) FROM attempts WHERE message_id IN (%s) AND "
                                   "outcome = 'accepted' AND route = 'isp'",
                                   csv);
    long long others = h_sql_int(S.conninfo,
                                 "SELECT count(*) FROM attempts WHERE message_id IN (%s) AND "
                                 "outcome <> 'accepted'",
                                 csv);
    h_check(&ck, accepted == N && others == 0,
            "one accepted attempt each, nothing else: %lld "
            "accepted, %lld others",
            accepted, others);
    long long refs = h_sql_int(S.conninfo,
                               "SELECT count(*) FROM messages WHERE id IN (%s) AND provider_ref "
                               "= id::text",
                               csv);
    h_check(&ck, refs == N, "provider_ref = own id (the tracker) for all: %lld of %d", refs, N);
    json_decref(sent);
    json_decref(reqs);
    free(csv);

    /* A second wave as clients send it (no send_at): how the driver groups them depends on
     * what each claim finds due, so only the outcome is asserted and the split is printed. */
    char *bodies[N];
    long long ids2[N];
    for (int k = 0; k < N; k++) {
        char to2[20], text[48];
        snprintf(to2, sizeof to2, "+336123477%02d", k);
        snprintf(text, sizeof text, "Vague sans date %d", k + 1);
        bodies[k] = r_body(to2, text, NULL);
    }
    r_send_many(S.d, S.key, N, bodies, ids2);
    for (int k = 0; k < N; k++)
        free(bodies[k]);
    csv = r_ids_csv(ids2, N);
    r_wait_all(S.conninfo, csv, N, "delivered", 60);
    sent = r_mock_get(S.mock, "sent");
    reqs = r_mock_get(S.mock, "requests");
    int multi2 = 0, single2 = 0, once2 = 0;
    json_array_foreach(reqs, i, e)
    {
        if (!carries_any(e, ids2, N))
            continue;
        if (!strcmp(jstr_or(e, "path", ""), "/cgi-bin/smsmulti"))
            multi2++;
        else
            single2++;
    }
    for (int k = 0; k < N; k++) {
        json_t *s2 = r_mock_by_tracker(sent, ids2[k]);
        once2 += json_array_size(s2) == 1;
        json_decref(s2);
    }
    h_log("%d messages posted at once without send_at went out in %d /smsmulti and %d /sms "
          "requests",
          N, multi2, single2);
    h_check(&ck, once2 == N, "without send_at too, all %d delivered and each sent once: %d", N,
            once2);
    json_decref(sent);
    json_decref(reqs);
    free(csv);
    h_checks_done(&ck, "batch through /smsmulti");
}

/* Every irregular success envelope of the official examples still gives sent → delivered. */
static void test_response_shapes(void **state)
{
    (void)state;
    use_variant('A');
    static const char *const shapes[] = {"object", "flat", "string_codes", "object,string_codes",
                                         "flat,string_codes"};
    struct h_checks ck = {0};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        char body[96];
        snprintf(body, sizeof body, "{\"shape\":\"%s\"}", shapes[k]);
        json_decref(r_mock_ctl(S.mock, "mode", body));
        char to[20], text[64];
        snprintf(to, sizeof to, "+3361234580%zu", k);
        snprintf(text, sizeof text, "Forme de reponse %s", shapes[k]);
        long long id = r_send(S.d, S.key, to, text, NULL);
        r_wait_status(S.conninfo, id, "sent,delivered,failed,undelivered", 30);
        r_wait_status(S.conninfo, id, "delivered,failed,undelivered", 10);
        char *st = r_status(S.conninfo, id);
        char *rep = r_msg_report(S.conninfo, id);
        struct mock_view v;
        mock_view(id, &v);
        h_check(&ck, !strcmp(st, "delivered") && v.nsent == 1,
                "shape %s: one message delivered, sent once (%d): %s; mock requests %s", shapes[k],
                v.nsent, rep, v.paths);
        free(st);
        free(rep);
        mock_view_free(&v);
    }
    /* a batch (etat.etat is an array of several elements) with string codes */
    json_decref(r_mock_ctl(S.mock, "mode", "{\"shape\":\"string_codes\"}"));
    enum { N = 6 };
    const char *to[N];
    char nums[N][20];
    long long ids[N];
    for (int i = 0; i < N; i++) {
        snprintf(nums[i], sizeof nums[i], "+336123458%02d", 10 + i);
        to[i] = nums[i];
    }
    send_batch(to, N, "Codes en chaines", ids);
    char *csv = r_ids_csv(ids, N);
    r_wait_all(S.conninfo, csv, N, "delivered,failed,undelivered", 60);
    long long delivered = h_sql_int(S.conninfo,
                                    "SELECT count(*) FROM messages WHERE id IN (%s) AND status "
                                    "= 'delivered'",
                                    csv);
    char *rep = r_msgs_report(S.conninfo, csv, "delivered");
    h_check(&ck, delivered == N, "shape string_codes, a batch of %d: all delivered (%lld); %s", N,
            delivered, rep);
    free(rep);
    free(csv);
    json_decref(r_mock_ctl(S.mock, "mode", "{\"shape\":\"array\"}"));
    h_checks_done(&ck, "response shapes");
}

/* A 150-character GSM-7 text is one segment for the API, but iSendPro appends its STOP mention
 * (12 characters) when a sender (emetteur) is set: the driver must ask for 2 parts (smslong),
 * or the request is refused as too long. */
static void test_stop_mention_length(void **state)
{
    (void)state;
    use_variant('A');
    char text[151];
    for (int i = 0; i < 150; i++)
        text[i] = "Collecte des dechets verts samedi matin, pensez a sortir vos sacs. "[i % 67];
    text[150] = '\0';
    char *body = r_body("+33612346501", text, NULL);
    struct h_resp *r = h_post_json(S.d, "/api/v1/messages", S.key, body);
    H_ASSERT(r->status == 202, "POST a 150-character text: expected 202, got %ld %s", r->status,
             r->status ? r->body : r->err);
    long long id = h_jint(r->json, "id");
    long long seg = h_jint(r->json, "segments");
    h_resp_free(r);
    free(body);
    r_wait_status(S.conninfo, id, "delivered,failed,undelivered", 30);
    char *rep = r_msg_report(S.conninfo, id);
    char *st = r_status(S.conninfo, id);
    json_t *sent = r_mock_get(S.mock, "sent");
    json_t *mine = r_mock_by_tracker(sent, id);
    json_t *e = json_array_get(mine, 0);
    json_t *parts = json_object_get(e, "parts");
    char *ej = r_dump(e);
    struct h_checks ck = {0};
    h_check(&ck, seg == 1, "the API counts 150 GSM-7 characters as 1 segment: %lld", seg);
    h_check(&ck, !strcmp(st, "delivered"),
            "with emetteur set (STOP mention +12 characters) it is still delivered: %s", rep);
    h_check(&ck,
            json_is_integer(parts) && json_integer_value(parts) == 2 &&
                json_is_true(json_object_get(e, "stop_mention")),
            "the mock sent it as 2 parts with the STOP mention: %s", ej);
    h_checks_done(&ck, "STOP mention");
    free(ej);
    free(rep);
    free(st);
    json_decref(mine);
    json_decref(sent);
}

struct dlr_call {
    long status;
    char body[512];
};

static void dlr_request(const char *method, const char *query, const char *form,
                        struct dlr_call *out)
{
    char *url =
        h_printf("%s/providers/isp/dlr%s%s", S.d->url, query ? "?" : "", query ? query : "");
    struct h_resp *r = h_http(method, url, NULL, form ? "application/x-www-form-urlencoded" : NULL,
                              form, form ? strlen(form) : 0);
    out->status = r->status;
    snprintf(out->body, sizeof out->body, "%s", r->status ? r->body : r->err);
    h_resp_free(r);
    free(url);
}

/* The delivery-report endpoint: the mock's "undelivered"; a POST with a form body and another
 * delivered word (DELIVRD); an unknown word (acknowledged, ignored); no tracker (400). */
static void test_dlr_endpoint(void **state)
{
    (void)state;
    use_variant('A');
    struct h_checks ck = {0};
    json_decref(r_mock_ctl(S.mock, "undeliverable", "{\"num\":\"0612346401\"}"));
    long long und = r_send(S.d, S.key, "+33612346401", "Destinataire injoignable", NULL);
    r_wait_status(S.conninfo, und, "undelivered,delivered,failed", 30);
    char *rep = r_msg_report(S.conninfo, und);
    char *st = r_status(S.conninfo, und);
    h_check(&ck, !strcmp(st, "undelivered"), "the mock's status=undelivered report: %s", rep);
    free(rep);
    free(st);

    /* no reports from the mock for a while: the test posts them itself */
    json_decref(r_mock_ctl(S.mock, "account", "{\"dlr_url\":null}"));
    long long a = r_send(S.d, S.key, "+33612346402", "Rapport en POST", NULL);
    long long b = r_send(S.d, S.key, "+33612346403", "Rapport au mot inconnu", NULL);
    r_wait_status(S.conninfo, a, "sent", 30);
    r_wait_status(S.conninfo, b, "sent", 30);
    struct dlr_call c;
    char form[128];
    snprintf(form, sizeof form, "tracker=%lld&tel=33612346402&status=DELIVRD", a);
    dlr_request("POST", NULL, form, &c);
    h_check(&ck, c.status == 200 && r_contains(c.body, "\"ok\""),
            "POST /providers/isp/dlr with a form body (%s): 200 {\"status\":\"ok\"}: %ld %s", form,
            c.status, c.body);
    r_wait_status(S.conninfo, a, "delivered", 15);
    char q[128];
    snprintf(q, sizeof q, "tracker=%lld&status=en_cours", b);
    dlr_request("GET", q, NULL, &c);
    h_check(&ck, c.status == 200 && r_contains(c.body, "ignored"),
            "GET with an unknown status word (%s): acknowledged 200 {\"status\":\"ignored\"}: "
            "%ld %s",
            q, c.status, c.body);
    r_hold_status(S.conninfo, b, "sent", 1.5);
    char *log = h_read_file(S.d->log);
    h_check(&ck, r_count_lines(log, "unknown status 'en_cours'") == 1,
            "the unknown word is logged for the operator to map it");
    free(log);
    dlr_request("GET", "status=delivered", NULL, &c);
    h_check(&ck, c.status == 400, "GET without a tracker: 400: %ld %s", c.status, c.body);
    snprintf(q, sizeof q, "tracker=%lld&status=undelivered", b);
    dlr_request("GET", q, NULL, &c);
    r_wait_status(S.conninfo, b, "undelivered", 15);
    char *dl = r_status(S.conninfo, a);
    h_check(&ck, !strcmp(dl, "delivered"), "the POSTed report made %lld delivered: %s", a, dl);
    free(dl);
    char *acct = h_printf("{\"dlr_url\":\"http://127.0.0.1:%d/providers/isp/dlr\"}", S.port);
    json_decref(r_mock_ctl(S.mock, "account", acct));
    free(acct);
    h_checks_done(&ck, "delivery-report endpoint");
}

static long long contact_opted_out(const char *phone)
{
    return h_sql_int(S.conninfo,
                     "SELECT count(*) FROM contacts WHERE centre_id = %lld AND phone = '%s' AND "
                     "opted_out_at IS NOT NULL",
                     S.centre, phone);
}

/* Code 11 (blacklisted): failed "11", the contact opted out, the next send 422 opted_out.
 * Code 21 (not assigned): failed "21", no opt-out. Then both mixed into a /smsmulti batch. */
static void test_blacklisted_and_unassigned(void **state)
{
    (void)state;
    use_variant('A');
    json_decref(r_mock_ctl(S.mock, "blacklist", "{\"num\":[\"0612345611\",\"0612345612\"]}"));
    json_decref(r_mock_ctl(S.mock, "unassigned", "{\"num\":[\"0612345621\",\"0612345622\"]}"));
    struct h_checks ck = {0};

    long long id11 = r_send(S.d, S.key, "+33612345611", "Numero sur liste noire", NULL);
    long long id21 = r_send(S.d, S.key, "+33612345621", "Numero non attribue", NULL);
    r_wait_status(S.conninfo, id11, "failed,sent,delivered,undelivered", 30);
    r_wait_status(S.conninfo, id21, "failed,sent,delivered,undelivered", 30);
    json_t *m11 = api_get(id11), *m21 = api_get(id21);
    char *j11 = r_dump(m11), *j21 = r_dump(m21);
    const char *s11 = h_jstr(m11, "status"), *c11 = h_jstr(m11, "last_error.code");
    const char *s21 = h_jstr(m21, "status"), *c21 = h_jstr(m21, "last_error.code");
    h_check(&ck, s11 && !strcmp(s11, "failed") && c11 && !strcmp(c11, "11"),
            "blacklisted number: failed with last_error.code \"11\": %s", j11);
    char *contacts = h_sql_rows(S.conninfo,
                                "SELECT phone, coalesce(opted_out_at::text, "
                                "'NULL') FROM contacts WHERE centre_id = %lld ORDER "
                                "BY id",
                                S.centre);
    h_check(&ck, contact_opted_out("+33612345611") == 1,
            "blacklisted number: contacts.opted_out_at set for +33612345611 (contacts: %s)",
            contacts);
    free(contacts);
    struct h_resp *r = h_post_json(S.d, "/api/v1/messages", S.key,
                                   "{\"to\":\"+33612345611\",\"text\":\"Encore\"}");
    const char *code = h_jstr(r->json, "error.code");
    h_check(&ck, r->status == 422 && code && !strcmp(code, "opted_out"),
            "a following send to +33612345611 is refused 422 opted_out: %ld %s", r->status,
            r->status ? r->body : r->err);
    h_resp_free(r);
    h_check(&ck, s21 && !strcmp(s21, "failed") && c21 && !strcmp(c21, "21"),
            "unassigned number: failed with last_error.code \"21\": %s", j21);
    h_check(&ck, contact_opted_out("+33612345621") == 0,
            "unassigned number: the contact is not opted out");
    char *a11 = attempts_of(id11), *a21 = attempts_of(id21);
    h_check(&ck, !strcmp(a11, "isp:permfail:11") && !strcmp(a21, "isp:permfail:21"),
            "one permanent failure each, no retry: %s / %s", a11, a21);
    free(a11);
    free(a21);
    free(j11);
    free(j21);
    json_decref(m11);
    json_decref(m21);

    /* mixed in one /smsmulti: 4 good numbers, one blacklisted, one unassigned */
    enum { N = 6 };
    const char *to[N] = {"+33612345901", "+33612345612", "+33612345902",
                         "+33612345622", "+33612345903", "+33612345904"};
    long long ids[N];
    send_batch(to, N, "Lot mixte", ids);
    char *csv = r_ids_csv(ids, N);
    r_wait_all(S.conninfo, csv, N, "delivered,failed,undelivered", 60);
    char *rows = h_sql_rows(S.conninfo,
                            "SELECT phone, status, coalesce(error_code, '-') FROM messages WHERE "
                            "id IN (%s) ORDER BY id",
                            csv);
    long long good = h_sql_int(S.conninfo,
                               "SELECT count(*) FROM messages WHERE id IN (%s) AND status = "
                               "'delivered'",
                               csv);
    char *e11 = h_sql_str(S.conninfo,
                          "SELECT status || ':' || coalesce(error_code, '-') FROM "
                          "messages WHERE id = %lld",
                          ids[1]);
    char *e21 = h_sql_str(S.conninfo,
                          "SELECT status || ':' || coalesce(error_code, '-') FROM "
                          "messages WHERE id = %lld",
                          ids[3]);
    h_check(&ck, good == 4, "mixed batch: the 4 good numbers delivered (%lld): %s", good, rows);
    h_check(&ck, e11 && !strcmp(e11, "failed:11"), "mixed batch: +33612345612 failed:11: %s",
            e11 ? e11 : "-");
    h_check(&ck, e21 && !strcmp(e21, "failed:21"), "mixed batch: +33612345622 failed:21: %s",
            e21 ? e21 : "-");
    h_check(&ck, contact_opted_out("+33612345612") == 1, "mixed batch: +33612345612 opted out");
    json_t *reqs = r_mock_get(S.mock, "requests");
    json_t *q = r_mock_requests_for(reqs, ids[0]);
    const char *path = jstr_or(json_array_get(q, 0), "path", "-");
    h_check(&ck, json_array_size(q) == 1 && !strcmp(path, "/cgi-bin/smsmulti"),
            "mixed batch went through one /smsmulti: %zu request(s), first %s", json_array_size(q),
            path);
    json_decref(q);
    json_decref(reqs);
    free(rows);
    free(e11);
    free(e21);
    free(csv);
    h_checks_done(&ck, "codes 11 and 21");
}

static int metric_value(const char *text, const char *prefix, double *out)
{
    char *line = r_find_line(text, prefix);
    if (!line)
        return 0;
    char *end;
    *out = strtod(line + strlen(prefix), &end);
    int ok = end != line + strlen(prefix);
    free(line);
    return ok;
}

struct credit_wait {
    double want;
    double seen;
    char body[2048];
};

static int credit_is(void *arg)
{
    struct credit_wait *w = arg;
    char *body = NULL;
    json_t *rt = r_route_health(S.d, "isp", &body);
    snprintf(w->body, sizeof w->body, "%s", body);
    free(body);
    json_t *c = json_object_get(rt, "credit_euros");
    int ok = json_is_number(c) && fabs(json_number_value(c) - w->want) < 0.005;
    w->seen = json_is_number(c) ? json_number_value(c) : -1;
    json_decref(rt);
    return ok;
}

static double mock_credit(void)
{
    json_t *st = r_mock_get(S.mock, "state");
    const char *c = jstr_or(st, "credit", "-1");
    double v = strtod(c, NULL);
    json_decref(st);
    return v;
}

/* The credit, polled every second: in /healthz, /metrics, `gatewayctl status`; a warning in
 * the log once it drops below credit_warn. */
static void test_credit(void **state)
{
    (void)state;
    use_variant('A');
    struct h_checks ck = {0};
    struct credit_wait w = {.want = mock_credit()};
    H_ASSERT(h_poll(15, 200, credit_is, &w),
             "/healthz routes.isp.credit_euros should show the mock's credit %.2f within 15 s "
             "(credit_poll_s = 1); last: %s",
             w.want, w.body);
    h_log("credit %.2f EUR in /healthz", w.seen);
    struct h_resp *r = h_get(S.d, "/metrics", NULL);
    double mv = -1;
    int have = metric_value(r->body, "passerelle_route_credit_euros{route=\"isp\"} ", &mv);
    char *mline = r_find_line(r->body, "passerelle_route_credit_euros");
    h_check(&ck, have && fabs(mv - w.want) < 0.01,
            "/metrics has passerelle_route_credit_euros{route=\"isp\"} %.2f: %s", w.want,
            mline ? mline : "(no such line)");
    free(mline);
    h_resp_free(r);
    char *out = NULL;
    int rc = h_ctl(S.config, &out, "--url", S.d->url, "status", NULL);
    char *line = r_find_line(out, "route isp");
    char want[64];
    snprintf(want, sizeof want, "credit %.2f EUR", w.want);
    h_check(&ck, rc == 0 && line && r_contains(line, want),
            "gatewayctl --url %s status (exit %d) shows '%s' on the isp line: %s", S.d->url, rc,
            want, out);
    free(line);
    free(out);

    /* below credit_warn (10 EUR) */
    char *before = h_read_file(S.d->log);
    int warned_before = r_count_lines(before, "credit is low");
    free(before);
    json_decref(r_mock_ctl(S.mock, "credit", "{\"credit\":5}"));
    w.want = 5;
    int ok = h_poll(15, 200, credit_is, &w);
    h_check(&ck, ok, "/healthz shows the new credit 5.00 within 15 s: last %.2f (%s)", w.seen,
            w.body);
    double t0 = h_now();
    char *log = NULL;
    int warned = 0;
    while (h_now() - t0 < 10) {
        free(log);
        log = h_read_file(S.d->log);
        warned = r_count_lines(log, "credit is low") - warned_before;
        if (warned > 0)
            break;
        h_sleep_ms(200);
    }
    char *wl = r_find_line(log, "credit is low");
    h_check(&ck, warned >= 1 && wl && r_contains(wl, "warn"),
            "a warning line 'credit is low' in the daemon log: %s", wl ? wl : "(none)");
    free(wl);
    /* polls go on every second: the warning is given once, not at every poll */
    h_sleep_ms(3500);
    free(log);
    log = h_read_file(S.d->log);
    int warned_after = r_count_lines(log, "credit is low") - warned_before;
    h_check(&ck, warned_after == 1,
            "the low-credit warning is logged once while the credit "
            "stays low (3.5 s of polls): %d lines",
            warned_after);
    free(log);
    r = h_get(S.d, "/metrics", NULL);
    have = metric_value(r->body, "passerelle_route_credit_euros{route=\"isp\"} ", &mv);
    h_check(&ck, have && fabs(mv - 5) < 0.01, "/metrics follows: %.2f", have ? mv : -1.0);
    h_resp_free(r);
    json_decref(r_mock_ctl(S.mock, "credit", "{\"credit\":100}"));
    w.want = 100;
    ok = h_poll(15, 200, credit_is, &w);
    h_check(&ck, ok, "/healthz shows the credit back at 100 within 15 s: last %.2f", w.seen);
    h_checks_done(&ck, "credit");
}

/* HTTP 500 twice: two temporary failures with backoff, then accepted and delivered. */
static void test_error500_retried(void **state)
{
    (void)state;
    use_variant('B');
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"error500\",\"count\":2}"));
    long long id = r_send(S.d, S.key, "+33612346001", "Erreur 500 deux fois", NULL);
    r_wait_status(S.conninfo, id, "delivered,failed", 40);
    char *st = r_status(S.conninfo, id);
    char *att = attempts_of(id);
    char *hist = history_of(id);
    char *rep = r_msg_report(S.conninfo, id);
    struct mock_view v;
    mock_view(id, &v);
    struct h_checks ck = {0};
    h_check(&ck, !strcmp(st, "delivered"), "delivered in the end: %s", rep);
    h_check(&ck, !strcmp(att, "isp:tempfail:http_500,isp:tempfail:http_500,isp:accepted"),
            "attempts: 2 tempfail (http_500) then 1 accepted: %s", att);
    h_check(&ck, !strcmp(hist, "sending,queued,sending,queued,sending,sent,delivered"),
            "history shows the two retries (queued again with a backoff): %s", hist);
    long long ordered = h_sql_int(S.conninfo,
                                  "SELECT count(*) FROM attempts a JOIN attempts b ON b.message_id"
                                  " = a.message_id AND b.id > a.id WHERE a.message_id = %lld AND "
                                  "b.started_at < a.finished_at",
                                  id);
    h_check(&ck, ordered == 0,
            "each retry started after the previous attempt finished: %lld "
            "overlaps",
            ordered);
    h_check(&ck,
            v.nrequests == 3 && !strcmp(v.paths, "/cgi-bin/sms->500,/cgi-bin/sms->500,"
                                                 "/cgi-bin/sms->200"),
            "the mock saw 500, 500, 200: %s", v.paths);
    h_check(&ck, v.nsent == 1, "sent once: %s", v.sent_json);
    h_checks_done(&ck, "error500 twice");
    free(st);
    free(att);
    free(hist);
    free(rep);
    mock_view_free(&v);
}

static int has_timeout_attempt(void *arg)
{
    long long id = *(long long *)arg;
    return h_sql_int(S.conninfo,
                     "SELECT count(*) FROM attempts WHERE message_id = %lld AND outcome = "
                     "'tempfail' AND error_code = 'timeout'",
                     id) > 0;
}

/* The mock never answers: timeout_ms (1.5 s) gives a temporary failure "timeout"; once the mock
 * answers again the message is delivered, sent once. */
static void test_timeout_then_delivered(void **state)
{
    (void)state;
    use_variant('B');
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"timeout\"}"));
    long long id = r_send(S.d, S.key, "+33612346002", "Pas de reponse", NULL);
    int got = h_poll(20, 200, has_timeout_attempt, &id);
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"normal\"}"));
    if (!got) {
        char *rep = r_msg_report(S.conninfo, id);
        h_fail("with the mock never answering and timeout_ms = 1500, expected a tempfail "
               "attempt with error_code 'timeout' within 20 s: %s",
               rep);
    }
    char *status_then = r_status(S.conninfo, id);
    r_wait_status(S.conninfo, id, "delivered,failed", 40);
    char *st = r_status(S.conninfo, id);
    char *att = attempts_of(id);
    char *rep = r_msg_report(S.conninfo, id);
    long long acc = h_sql_int(S.conninfo,
                              "SELECT count(*) FROM attempts WHERE message_id = %lld AND "
                              "outcome = 'accepted'",
                              id);
    long long other = h_sql_int(S.conninfo,
                                "SELECT count(*) FROM attempts WHERE message_id = %lld AND "
                                "outcome <> 'accepted' AND coalesce(error_code, '') <> "
                                "'timeout'",
                                id);
    struct mock_view v;
    mock_view(id, &v);
    struct h_checks ck = {0};
    h_check(&ck, strcmp(status_then, "failed") != 0,
            "after the timeout the message was not failed (it waits for a retry): %s", status_then);
    h_check(&ck, !strcmp(st, "delivered"), "delivered once the mock answers again: %s", rep);
    h_check(&ck, acc == 1 && other == 0, "attempts: timeouts, then one accepted: %s", att);
    h_check(&ck, v.nsent == 1, "the mock sent it once: %s (requests %s)", v.sent_json, v.paths);
    h_checks_done(&ck, "timeout");
    free(status_then);
    free(st);
    free(att);
    free(rep);
    mock_view_free(&v);
}

/* A keyid the mock does not know: a general error (code "1", no number) fails every message
 * of the request, single or batch, with the mock's code. */
static void test_general_error(void **state)
{
    (void)state;
    use_variant('C');
    struct h_checks ck = {0};
    long long one = r_send(S.d, S.key, "+33612346101", "Mauvaise cle", NULL);
    enum { N = 6 };
    const char *to[N];
    char nums[N][20];
    long long ids[N];
    for (int i = 0; i < N; i++) {
        snprintf(nums[i], sizeof nums[i], "+336123462%02d", i);
        to[i] = nums[i];
    }
    send_batch(to, N, "Mauvaise cle en lot", ids);
    r_wait_status(S.conninfo, one, "failed,sent,delivered", 30);
    char *csv = r_ids_csv(ids, N);
    r_wait_all(S.conninfo, csv, N, "failed,sent,delivered", 60);
    char *rep = r_msg_report(S.conninfo, one);
    char *st = h_sql_str(S.conninfo,
                         "SELECT status || ':' || coalesce(error_code, '-') FROM "
                         "messages WHERE id = %lld",
                         one);
    h_check(&ck, st && !strcmp(st, "failed:1"), "single send: failed with the mock's code 1: %s",
            rep);
    long long failed1 = h_sql_int(S.conninfo,
                                  "SELECT count(*) FROM messages WHERE id IN (%s) AND status = "
                                  "'failed' AND error_code = '1'",
                                  csv);
    char *rows = h_sql_rows(S.conninfo,
                            "SELECT id, status, coalesce(error_code, '-'), coalesce(error, '-') "
                            "FROM messages WHERE id IN (%s) ORDER BY id",
                            csv);
    h_check(&ck, failed1 == N, "batch: all %d failed with code 1: %s", N, rows);
    long long perm = h_sql_int(S.conninfo,
                               "SELECT count(*) FROM attempts WHERE message_id IN (%s, %lld) AND "
                               "outcome = 'permfail'",
                               csv, one);
    long long all = h_sql_int(
        S.conninfo, "SELECT count(*) FROM attempts WHERE message_id IN (%s, %lld)", csv, one);
    h_check(&ck, perm == N + 1 && all == N + 1,
            "one permanent failure each, not retried: %lld permfail of %lld attempts", perm, all);
    json_t *reqs = r_mock_get(S.mock, "requests");
    json_t *q = r_mock_requests_for(reqs, one);
    json_t *q0 = json_array_get(q, 0);
    char *fields = r_dump(json_object_get(q0, "fields"));
    h_check(&ck, json_array_size(q) == 1 && json_is_false(json_object_get(q0, "keyid_ok")),
            "the mock refused the key (keyid_ok false): %s", fields);
    free(fields);
    json_decref(q);
    json_decref(reqs);
    long long sent = 0;
    json_t *s = r_mock_get(S.mock, "sent");
    json_t *so = r_mock_by_tracker(s, one);
    sent = (long long)json_array_size(so);
    h_check(&ck, sent == 0, "nothing sent with the wrong key: %lld", sent);
    json_decref(so);
    json_decref(s);
    h_checks_done(&ck, "general error (wrong keyid)");
    free(rep);
    free(st);
    free(rows);
    free(csv);
}

/* Neither key appears in the daemon's log (every start, level debug), /healthz, /metrics,
 * `gatewayctl status`, the message list, nor any message's GET (history and attempts). */
static void check_secret(struct h_checks *ck, const char *where, const char *text)
{
    const char *keys[2] = {KEYID, WRONG_KEYID};
    for (int i = 0; i < 2; i++) {
        const char *p = text ? strstr(text, keys[i]) : NULL;
        char ctx[160] = "";
        if (p) {
            const char *s = p - text > 60 ? p - 60 : text;
            snprintf(ctx, sizeof ctx, "%.*s", (int)(p - s) + (int)strlen(keys[i]) + 40, s);
        }
        h_check(ck, p == NULL, "%s does not contain the %s keyid%s%s", where, i ? "wrong" : "real",
                p ? ": …" : "", ctx);
    }
}

static void test_keyid_never_shown(void **state)
{
    (void)state;
    use_variant('A');
    /* something went through with the real key since the last start */
    long long id = r_send(S.d, S.key, "+33612346301", "Verification du secret", NULL);
    r_wait_status(S.conninfo, id, "delivered", 30);
    struct h_checks ck = {0};
    char *log = h_read_file(S.d->log);
    H_ASSERT(log && strlen(log) > 0, "cannot read the daemon log %s", S.d->log);
    check_secret(&ck, "the daemon log (all starts)", log);
    h_log("daemon log: %zu bytes, %d lines mention isendpro/isp", strlen(log),
          r_count_lines(log, "isp"));
    free(log);
    struct h_resp *r = h_get(S.d, "/healthz", NULL);
    check_secret(&ck, "/healthz", r->body);
    h_resp_free(r);
    r = h_get(S.d, "/metrics", NULL);
    check_secret(&ck, "/metrics", r->body);
    h_resp_free(r);
    char *out = NULL;
    h_ctl(S.config, &out, "--url", S.d->url, "status", NULL);
    check_secret(&ck, "gatewayctl status", out);
    free(out);
    r = h_get(S.d, "/api/v1/messages?limit=200", S.key);
    check_secret(&ck, "GET /api/v1/messages?limit=200", r->body);
    h_resp_free(r);
    char *ids = h_sql_rows(S.conninfo, "SELECT string_agg(id::text, ' ' ORDER BY id) FROM "
                                       "messages");
    int n = 0, leaked = 0;
    char *save = NULL;
    for (char *t = strtok_r(ids, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char path[64];
        snprintf(path, sizeof path, "/api/v1/messages/%s", t);
        r = h_get(S.d, path, S.key);
        n++;
        if (r->status != 200 || strstr(r->body, KEYID) || strstr(r->body, WRONG_KEYID)) {
            leaked++;
            check_secret(&ck, path, r->body);
            h_check(&ck, r->status == 200, "GET %s answers 200: %ld", path, r->status);
        }
        h_resp_free(r);
    }
    h_check(&ck, n > 0 && leaked == 0, "GET of every message (%d) shows no keyid: %d did", n,
            leaked);
    free(ids);
    char *db = h_sql_rows(S.conninfo,
                          "SELECT count(*) FROM (SELECT error FROM messages UNION ALL SELECT "
                          "error FROM attempts UNION ALL SELECT detail FROM message_events) x "
                          "WHERE error LIKE '%%%s%%' OR error LIKE '%%%s%%'",
                          KEYID, WRONG_KEYID);
    h_check(&ck, !strcmp(db, "0"), "no stored error or event detail holds a keyid: %s rows", db);
    free(db);
    h_checks_done(&ck, "keyid never shown");
}

static void test_shutdown(void **state)
{
    (void)state;
    struct h_checks ck = {0};
    h_daemon_stop_check(S.d, &ck);
    h_checks_done(&ck, "shutdown");
    r_mock_stop(S.mock);
}

int main(int argc, char **argv)
{
    r_init("isendpro", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_batch_smsmulti),
        cmocka_unit_test(test_response_shapes),
        cmocka_unit_test(test_blacklisted_and_unassigned),
        cmocka_unit_test(test_stop_mention_length),
        cmocka_unit_test(test_dlr_endpoint),
        cmocka_unit_test(test_credit),
        cmocka_unit_test(test_error500_retried),
        cmocka_unit_test(test_timeout_then_delivered),
        cmocka_unit_test(test_general_error),
        cmocka_unit_test(test_keyid_never_shown),
        cmocka_unit_test(test_shutdown),
    };
    int failures = cmocka_run_group_tests_name("isendpro", tests, group_setup, NULL);
    r_exit(failures);
}
