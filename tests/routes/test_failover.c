/*
 * test_failover — a centre with two real routes in order: `isp` (the iSendPro driver against
 * the iSendPro mock) then `modem` (the Gammu driver on libGammu's dummy phone). isp has
 * breaker_failures = 3 and breaker_cooldown_ms = 2000.
 *
 *   1. The mock answers HTTP 500 to everything. 20 messages, due together, are tried on isp
 *      (temporary failures), the circuit opens, and the modem route takes them over (gw_claim's
 *      failover): every message ends `sent` on route modem with exactly one accepted attempt
 *      (on modem) after its isp failures; the mock sent none of them; /healthz shows isp down
 *      with its circuit not closed.
 *   2. The mock answers normally again: probes (one message at a time) until /healthz shows
 *      isp up with its circuit closed; then new messages go out through isp (route isp, in the
 *      mock's /_mock/sent once each, delivered by its reports).
 *   3. A resident texts STOP to the modem: the contact is opted out and the centre's iSendPro
 *      account is told (the mock gets setlisteNoire for that number), so iSendPro refuses the
 *      number too.
 */
#include "routes_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYID "Fo8xFailoverKeyidPasserelle2"
#define N 20

static struct {
    char *conninfo;
    int port;
    struct r_mock *mock;
    char *phone;
    char *config;
    char *key;
    struct h_daemon *d;
} S;

struct route_wait {
    const char *route;
    const char *state;   /* wanted "state" */
    const char *circuit; /* wanted "circuit" (NULL: any) */
    char seen[2048];
};

static int route_is(void *arg)
{
    struct route_wait *w = arg;
    char *body = NULL;
    json_t *rt = r_route_health(S.d, w->route, &body);
    char st[32], ci[32];
    r_route_field(rt, "state", st, sizeof st);
    r_route_field(rt, "circuit", ci, sizeof ci);
    char *j = r_dump(rt);
    snprintf(w->seen, sizeof w->seen, "routes.%s = %s", w->route, j);
    free(j);
    free(body);
    json_decref(rt);
    return !strcmp(st, w->state) && (!w->circuit || !strcmp(ci, w->circuit));
}

static void setup(void)
{
    S.conninfo = h_db_create(h_test_pg(), "failover", NULL);
    S.port = h_free_port();
    char *dlr = h_printf("http://127.0.0.1:%d/providers/isp/dlr", S.port);
    const char *args[] = {"--keyid", KEYID, "--dlr-url", dlr, "--dlr-delay-ms", "300", NULL};
    S.mock = r_mock_start("isendpro_mock", args);
    free(dlr);
    S.phone = r_dummy_new("phone");
    char *routes = h_printf("[route isp]\n"
                            "driver = isendpro\n"
                            "url = %s/cgi-bin\n"
                            "keyid = %s\n"
                            "emetteur = CENTRE\n"
                            "credit_poll_s = 0\n"
                            "breaker_failures = 3\n"
                            "breaker_cooldown_ms = 2000\n"
                            "[route modem]\n"
                            "driver = gammu\n"
                            "connection = none\n"
                            "model = dummy\n"
                            "device = %s\n"
                            "poll_interval_ms = 500\n",
                            S.mock->url, KEYID, S.phone);
    S.config = r_config("failover.ini", S.port, S.conninfo, NULL, NULL, routes);
    free(routes);
    const char *order[] = {"isp", "modem", NULL};
    r_centre_create(S.config, "Centre failover", order);
    S.key = h_key_create(S.config, "Centre failover");
    S.d = h_daemon_start("gatewayd", S.config, S.port);
    struct route_wait w = {.route = "modem", .state = "up"};
    H_ASSERT(h_poll(30, 200, route_is, &w),
             "the modem route (dummy phone in %s) should be up "
             "within 30 s; %s",
             S.phone, w.seen);
    w = (struct route_wait){.route = "isp", .state = "up", .circuit = "closed"};
    H_ASSERT(route_is(&w), "isp should start up with its circuit closed; %s", w.seen);
}

struct blacklist_wait {
    const char *num;
    char seen[1024];
};

/* The mock recorded a setlisteNoire request for bw->num. */
static int blacklisted(void *arg)
{
    struct blacklist_wait *bw = arg;
    json_t *reqs = r_mock_get(S.mock, "requests");
    size_t i;
    json_t *e;
    int found = 0;
    bw->seen[0] = '\0';
    json_array_foreach(reqs, i, e)
    {
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *num = json_string_value(json_object_get(json_object_get(e, "fields"), "num"));
        if (path && strcasestr(path, "listenoire")) {
            size_t n = strlen(bw->seen);
            snprintf(bw->seen + n, sizeof bw->seen - n, "%s num=%s; ", path, num ? num : "-");
            if (strcasestr(path, "setlistenoire") && num && !strcmp(num, bw->num))
                found = 1;
        }
    }
    json_decref(reqs);
    return found;
}

static void test_failover_and_back(void **state)
{
    (void)state;
    setup();
    struct h_checks ck = {0};

    /* ---- 1. isp answers 500: the modem takes the messages over */
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"error500\"}"));
    char *at = r_time_ahead(4);
    char *bodies[N];
    long long ids[N];
    for (int i = 0; i < N; i++) {
        char to[20], text[64];
        snprintf(to, sizeof to, "+336123470%02d", i);
        snprintf(text, sizeof text, "Bascule vers le modem %d", i + 1);
        bodies[i] = r_body(to, text, at);
    }
    r_send_many(S.d, S.key, N, bodies, ids);
    for (int i = 0; i < N; i++)
        free(bodies[i]);
    h_log("%d messages posted, due at %s, while the mock answers HTTP 500", N, at);
    free(at);
    char *csv = r_ids_csv(ids, N);
    r_wait_all(S.conninfo, csv, N, "sent,delivered,failed,undelivered,cancelled", 90);

    char *statuses = h_sql_rows(S.conninfo,
                                "SELECT status || '@' || route, count(*) FROM messages WHERE id "
                                "IN (%s) GROUP BY 1 ORDER BY 1",
                                csv);
    long long on_modem = h_sql_int(S.conninfo,
                                   "SELECT count(*) FROM messages WHERE id IN (%s) AND status = "
                                   "'sent' AND route = 'modem' AND provider_ref = 'gammu-255'",
                                   csv);
    char *rep = r_msgs_report(S.conninfo, csv, "sent");
    h_check(&ck, on_modem == N,
            "all %d end 'sent' on route modem with provider_ref gammu-255: %lld (%s); %s", N,
            on_modem, statuses, rep);
    free(rep);
    free(statuses);
    long long one_accept = h_sql_int(S.conninfo,
                                     "SELECT count(*) FROM messages m WHERE m.id IN (%s) AND "
                                     "(SELECT count(*) FROM attempts a WHERE a.message_id = m.id "
                                     "AND a.outcome = 'accepted') = 1",
                                     csv);
    long long isp_accepts = h_sql_int(S.conninfo,
                                      "SELECT count(*) FROM attempts WHERE message_id IN (%s) AND "
                                      "route = 'isp' AND outcome = 'accepted'",
                                      csv);
    h_check(&ck, one_accept == N && isp_accepts == 0,
            "nothing sent twice: exactly one accepted attempt per message (%lld of %d), none on "
            "isp (%lld)",
            one_accept, N, isp_accepts);
    /* each message: isp:tempfail… then modem:accepted, nothing else */
    long long shaped = h_sql_int(
        S.conninfo,
        "SELECT count(*) FROM (SELECT m.id, string_agg(a.route || ':' || a.outcome, ',' ORDER BY "
        "a.id) AS s FROM messages m JOIN attempts a ON a.message_id = m.id WHERE m.id IN (%s) "
        "GROUP BY m.id) x WHERE s ~ '^(isp:tempfail,)+modem:accepted$'",
        csv);
    char *shapes = h_sql_rows(S.conninfo,
                              "SELECT s, count(*) FROM (SELECT string_agg(a.route || ':' || "
                              "a.outcome || coalesce(':' || a.error_code, ''), ',' ORDER BY a.id) "
                              "AS s FROM attempts a WHERE a.message_id IN (%s) GROUP BY "
                              "a.message_id) x GROUP BY s ORDER BY 2 DESC",
                              csv);
    h_check(&ck, shaped == N,
            "every message: isp temporary failures, then one modem accept (%lld of %d); "
            "attempt sequences and counts: %s",
            shaped, N, shapes);
    free(shapes);
    json_t *sent = r_mock_get(S.mock, "sent");
    int mock_sent = 0;
    for (int i = 0; i < N; i++) {
        json_t *s = r_mock_by_tracker(sent, ids[i]);
        mock_sent += (int)json_array_size(s);
        json_decref(s);
    }
    h_check(&ck, mock_sent == 0, "the mock sent none of them (/_mock/sent): %d", mock_sent);
    json_decref(sent);
    json_t *reqs = r_mock_get(S.mock, "requests");
    int reqs500 = 0, reqs_other = 0;
    size_t i;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        json_t *hs = json_object_get(e, "http_status");
        if (json_is_integer(hs) && json_integer_value(hs) == 500)
            reqs500++;
        else
            reqs_other++;
    }
    h_log("the mock got %d requests answered 500 and %d others", reqs500, reqs_other);
    json_decref(reqs);
    char *body = NULL;
    json_t *isp = r_route_health(S.d, "isp", &body);
    char st[32], ci[32];
    r_route_field(isp, "state", st, sizeof st);
    r_route_field(isp, "circuit", ci, sizeof ci);
    json_t *opened = json_object_get(isp, "circuit_opened");
    h_check(&ck,
            !strcmp(st, "down") && (!strcmp(ci, "open") || !strcmp(ci, "half-open")) &&
                json_is_integer(opened) && json_integer_value(opened) >= 1,
            "/healthz shows isp down, circuit open (or half-open after the cool-down, with "
            "nothing to probe), opened at least once: %s",
            body);
    json_decref(isp);
    free(body);
    json_t *modem = r_route_health(S.d, "modem", &body);
    r_route_field(modem, "state", st, sizeof st);
    json_t *msent = json_object_get(modem, "sent");
    h_check(&ck, !strcmp(st, "up") && json_is_integer(msent) && json_integer_value(msent) == N,
            "/healthz shows modem up, %d sent: %s", N, body);
    json_decref(modem);
    free(body);
    long long queued =
        h_sql_int(S.conninfo, "SELECT count(*) FROM outbox_queue WHERE message_id IN (%s)", csv);
    h_check(&ck, queued == 0, "none of them is left in the queue: %lld", queued);
    h_checks_done(&ck, "failover to the modem");

    /* ---- 2. isp works again: it comes back up and takes new messages */
    json_decref(r_mock_ctl(S.mock, "mode", "{\"mode\":\"normal\"}"));
    double t0 = h_now();
    struct route_wait w = {.route = "isp", .state = "up", .circuit = "closed"};
    char probes[1024] = "";
    size_t pl = 0;
    int nprobe = 0;
    while (!route_is(&w)) {
        H_ASSERT(h_now() - t0 < 60,
                 "isp should be up again (circuit closed) within 60 s of the mock answering "
                 "normally; probes sent (id@route:status): %s; %s",
                 probes[0] ? probes : "(none)", w.seen);
        char to[20];
        snprintf(to, sizeof to, "+336123471%02d", nprobe % 100);
        long long id = r_send(S.d, S.key, to, "Sonde de reprise", NULL);
        nprobe++;
        r_wait_status(S.conninfo, id, "sent,delivered,failed,undelivered,cancelled", 30);
        char *where = h_sql_str(S.conninfo,
                                "SELECT route || ':' || status FROM messages WHERE id = %lld", id);
        if (pl < sizeof probes - 48)
            pl += (size_t)snprintf(probes + pl, sizeof probes - pl, "%s%lld@%s", pl ? ", " : "", id,
                                   where ? where : "?");
        free(where);
        h_sleep_ms(300);
    }
    h_log("isp up again %.1f s after the mock recovered, after %d probe message(s): %s",
          h_now() - t0, nprobe, probes[0] ? probes : "(none)");

    enum { M = 5 };
    char *b2[M];
    long long ids2[M];
    for (int k = 0; k < M; k++) {
        char to[20], text[64];
        snprintf(to, sizeof to, "+336123472%02d", k);
        snprintf(text, sizeof text, "Retour sur iSendPro %d", k + 1);
        b2[k] = r_body(to, text, NULL);
    }
    r_send_many(S.d, S.key, M, b2, ids2);
    for (int k = 0; k < M; k++)
        free(b2[k]);
    char *csv2 = r_ids_csv(ids2, M);
    r_wait_all(S.conninfo, csv2, M, "delivered,sent,failed,undelivered,cancelled", 60);
    struct h_checks ck2 = {0};
    long long via_isp = h_sql_int(S.conninfo,
                                  "SELECT count(*) FROM messages WHERE id IN (%s) AND route = "
                                  "'isp'",
                                  csv2);
    char *rep2 = r_msgs_report(S.conninfo, csv2, "delivered");
    h_check(&ck2, via_isp == M, "new messages go out through isp: %lld of %d; %s", via_isp, M,
            rep2);
    free(rep2);
    r_wait_all(S.conninfo, csv2, M, "delivered", 30);
    sent = r_mock_get(S.mock, "sent");
    int once = 0;
    for (int k = 0; k < M; k++) {
        json_t *s = r_mock_by_tracker(sent, ids2[k]);
        once += json_array_size(s) == 1;
        json_decref(s);
    }
    h_check(&ck2, once == M, "each is in the mock's /_mock/sent exactly once: %d of %d", once, M);
    json_decref(sent);
    long long acc = h_sql_int(S.conninfo,
                              "SELECT count(*) FROM attempts WHERE message_id IN (%s) AND route = "
                              "'isp' AND outcome = 'accepted'",
                              csv2);
    h_check(&ck2, acc == M, "one accepted attempt on isp each: %lld", acc);

    /* A delivery report that comes in on isp's endpoint can only be about a message isp
     * accepted: one for a message the modem sent (isp only had HTTP 500s for it) must not
     * change it. */
    char *url = h_printf("%s/providers/isp/dlr?tracker=%lld&status=undelivered", S.d->url, ids[0]);
    struct h_resp *fr = h_http("GET", url, NULL, NULL, NULL, 0);
    h_log("GET %s -> %ld %s", url, fr->status, fr->status ? fr->body : fr->err);
    h_sleep_ms(1500);
    char *after = r_status(S.conninfo, ids[0]);
    char *frep = r_msg_report(S.conninfo, ids[0]);
    h_check(&ck2, !strcmp(after, "sent"),
            "a report on /providers/isp/dlr for message %lld, which the modem route sent (isp "
            "never accepted it), leaves it 'sent' (answer to the report: %ld %s): %s",
            ids[0], fr->status, fr->status ? fr->body : fr->err, frep);
    h_resp_free(fr);
    free(url);
    free(after);
    free(frep);

    /* STOP through the modem: the iSendPro blacklist of the centre's other route is told */
    r_dummy_put_sms(S.phone, 3, 11, "0698765499", NULL, "STOP");
    struct blacklist_wait bw = {.num = "33698765499"};
    int told = h_poll(30, 250, blacklisted, &bw);
    long long opted = h_sql_int(S.conninfo,
                                "SELECT count(*) FROM contacts WHERE phone = '+33698765499'"
                                " AND opted_out_at IS NOT NULL");
    h_check(&ck2, told, "STOP texted to the modem: the mock got setlisteNoire with num=%s: %s",
            bw.num, bw.seen);
    h_check(&ck2, opted == 1, "STOP texted to the modem: the contact is opted out (%lld)", opted);

    h_daemon_stop_check(S.d, &ck2);
    r_mock_stop(S.mock);
    h_checks_done(&ck2, "back to isp (and a report from another route)");
    free(csv);
    free(csv2);
}

int main(int argc, char **argv)
{
    r_init("failover", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_and_back),
    };
    int failures = cmocka_run_group_tests_name("failover", tests, NULL, NULL);
    r_exit(failures);
}
