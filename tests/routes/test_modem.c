/*
 * test_modem — the real Gammu driver (providers/prov_gammu.c) through the real gatewayd, on
 * libGammu's dummy phone (a directory, ../shared/reference/gammu-dummy.md), against a real
 * PostgreSQL. One centre bound to the route `modem`; the configuration also has a `sim` route
 * (not used by the centre) for the USSD refusal.
 *
 *   - A 3-part concatenated inbound SMS is put in sms/1 before the daemon starts (files written
 *     under a dot-name, then renamed); the `gammu` CLI sees its 3 parts. The daemon stores
 *     exactly one inbound message with the whole text and the sender in E.164, deletes the
 *     files, and the CLI then sees an empty inbox.
 *   - A long French SMS (ê, ç, 😊: UCS-2, several parts) goes out: `sent`, provider_ref
 *     gammu-255 (the dummy stores nothing it sends, and has no reports of its own); a
 *     Status_Report file with MessageReference 255 makes it `delivered`.
 *   - USSD through `gatewayctl ussd`: the dummy answers "Reply for *100#"; a sim route cannot
 *     dial USSD (exit 4).
 *   - Keyword flows through the modem: `Check-in 1234` and then `STOP` arrive in the phone's
 *     inbox from a resident; the attendance is recorded, the resident opted out, and both
 *     replies (the check-in thanks, the one STOP confirmation) go out through the modem.
 *   - The phone's directory disappears: /healthz shows the route down; a message posted
 *     meanwhile stays queued (the centre has no other route); the directory comes back: the
 *     route is up again and the message is sent.
 */
#include "routes_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPS_TOKEN "ops-token-for-the-modem-test-4821"
#define SENDER "+33698765432"

/* 3 parts of at most 67 UTF-16 units each (UCS-2 concatenated SMS) */
static const char *const PART[3] = {
    "Bonjour, je voudrais déplacer mon rendez-vous de jeudi prochain à ",
    "la mairie annexe : est-ce possible le vendredi matin ? Je préfère ",
    "avant 11h. Merci beaucoup, François Müller 😊",
};

static const char LONG_TEXT[] =
    "Bonjour Mme Lefèvre, votre rendez-vous à la maison de quartier est confirmé pour le jeudi 12 "
    "décembre à 14h30. Pensez à apporter votre pièce d'identité, votre carte Vitale et un "
    "justificatif de domicile. Ça ira très vite, promis 😊 Bonne fin de journée, l'équipe du "
    "centre social. Fenêtre d'accueil : 9h-12h.";

static struct {
    char *conninfo;
    int port;
    char *phone;
    char *rc;
    char *config;
    char *key;
    struct h_daemon *d;
} S;

struct route_wait {
    const char *state;
    char seen[2048];
};

static int modem_is(void *arg)
{
    struct route_wait *w = arg;
    json_t *rt = r_route_health(S.d, "modem", NULL);
    char st[32];
    r_route_field(rt, "state", st, sizeof st);
    char *j = r_dump(rt);
    snprintf(w->seen, sizeof w->seen, "routes.modem = %s", j);
    free(j);
    json_decref(rt);
    return !strcmp(st, w->state);
}

static int gammu_parts(const char *out)
{
    char *line = r_find_line(out, "SMS parts in");
    int n = line ? (int)strtol(line, NULL, 10) : -1;
    free(line);
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    S.conninfo = h_db_create(h_test_pg(), "modem", NULL);
    S.port = h_free_port();
    S.phone = r_dummy_new("phone");
    S.rc = r_gammu_rc(S.phone);
    /* the inbound message arrives before the daemon runs: parts in locations 1..3, out of
     * order (3, 1, 2), as a modem may store them */
    static const int order[3] = {2, 0, 1};
    for (int loc = 0; loc < 3; loc++) {
        char udh[32];
        snprintf(udh, sizeof udh, "0500035C03%02X", order[loc] + 1);
        r_dummy_put_sms(S.phone, 1, loc + 1, SENDER, udh, PART[order[loc]]);
    }
    char *routes = h_printf("[route modem]\n"
                            "driver = gammu\n"
                            "connection = none\n"
                            "model = dummy\n"
                            "device = %s\n"
                            "poll_interval_ms = 300\n"
                            "reconnect_max_ms = 2000\n"
                            "[route sim]\n"
                            "driver = sim\n"
                            "latency_ms = 20\n"
                            "dlr_delay_ms = 100\n",
                            S.phone);
    S.config =
        r_config("modem.ini", S.port, S.conninfo, "ops_token = " OPS_TOKEN "\n", NULL, routes);
    free(routes);
    const char *centre_routes[] = {"modem", NULL};
    r_centre_create(S.config, "Centre modem", centre_routes);
    S.key = h_key_create(S.config, "Centre modem");
    return 0;
}

static void start_daemon(void)
{
    if (S.d)
        return;
    S.d = h_daemon_start("gatewayd", S.config, S.port);
    struct route_wait w = {.state = "up"};
    H_ASSERT(h_poll(30, 200, modem_is, &w),
             "the modem route (dummy phone in %s) should be up within 30 s; %s", S.phone, w.seen);
}

struct inbound_wait {
    long long n;
    char body[4096];
};

static int inbound_seen(void *arg)
{
    struct inbound_wait *w = arg;
    struct h_resp *r = h_get(S.d, "/api/v1/messages?direction=in", S.key);
    snprintf(w->body, sizeof w->body, "HTTP %ld %s", r->status, r->status ? r->body : r->err);
    json_t *list = json_object_get(r->json, "messages");
    w->n = json_is_array(list) ? (long long)json_array_size(list) : -1;
    h_resp_free(r);
    return w->n >= 1;
}

/* The 3-part SMS put in before the start: one inbound message, files deleted, inbox empty. */
static void test_inbound_concatenated(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = r_gammu(S.rc, &out, "getallsms", NULL);
    int parts = gammu_parts(out);
    H_ASSERT(rc == 0 && parts == 3 && r_contains(out, SENDER) && r_contains(out, "François"),
             "before the daemon runs, `gammu getallsms` (exit %d) should list the 3 injected "
             "parts from %s; it printed: %s",
             rc, SENDER, out);
    free(out);

    start_daemon();
    struct inbound_wait w = {0};
    H_ASSERT(h_poll(30, 200, inbound_seen, &w),
             "the 3-part inbound SMS should appear in GET /api/v1/messages?direction=in within "
             "30 s; last: %s",
             w.body);
    /* files gone from the inbox */
    double t0 = h_now();
    char *names = NULL;
    int left;
    while ((left = r_dummy_count(S.phone, 1, &names)) != 0 && h_now() - t0 < 20) {
        free(names);
        names = NULL;
        h_sleep_ms(200);
    }
    struct h_checks ck = {0};
    h_check(&ck, left == 0,
            "the parts are deleted from sms/1 after the message was stored: %d "
            "left (%s)",
            left, names ? names : "");
    free(names);
    h_sleep_ms(1000); /* three more scans: no second copy */
    inbound_seen(&w);
    struct h_resp *r = h_get(S.d, "/api/v1/messages?direction=in", S.key);
    json_t *list = json_object_get(r->json, "messages");
    json_t *m = json_array_get(list, 0);
    char *full = h_printf("%s%s%s", PART[0], PART[1], PART[2]);
    const char *text = h_jstr(m, "text"), *from = h_jstr(m, "from");
    const char *st = h_jstr(m, "status"), *route = h_jstr(m, "route");
    h_check(&ck, json_array_size(list) == 1, "exactly one inbound message in the list: %s",
            r->body);
    h_check(&ck, text && !strcmp(text, full),
            "its text is the three parts joined in order: "
            "'%s' (want '%s')",
            text ? text : "(none)", full);
    h_check(&ck, from && !strcmp(from, SENDER), "from is the sender in E.164 %s: %s", SENDER,
            from ? from : "(none)");
    const char *enc = h_jstr(m, "encoding");
    json_t *seg = json_object_get(m, "segments");
    h_check(&ck,
            enc && !strcmp(enc, "ucs2") && json_is_integer(seg) && json_integer_value(seg) == 3,
            "its encoding and segments describe it (ucs2, 3 segments: 177 UTF-16 units with an "
            "emoji, received in 3 parts): encoding %s, segments %lld",
            enc ? enc : "(none)", json_is_integer(seg) ? (long long)json_integer_value(seg) : -1LL);
    h_check(&ck, st && !strcmp(st, "received") && route && !strcmp(route, "modem"),
            "status received on route modem: %s / %s", st ? st : "-", route ? route : "-");
    long long rows = h_sql_int(S.conninfo, "SELECT count(*) FROM messages WHERE direction = 'in'");
    h_check(&ck, rows == 1, "one inbound row in the database: %lld", rows);
    h_resp_free(r);
    free(full);
    rc = r_gammu(S.rc, &out, "getallsms", NULL);
    parts = gammu_parts(out);
    h_check(&ck, rc == 0 && parts == 0,
            "after processing, `gammu getallsms` (exit %d) sees an empty phone: %s", rc, out);
    free(out);
    h_checks_done(&ck, "inbound concatenated SMS");
}

/* A long French text in UCS-2 goes out: sent, gammu-255; a Status_Report with reference 255
 * makes it delivered. */
static void test_long_french_sms(void **state)
{
    (void)state;
    start_daemon();
    char *body = r_body("06 12 34 56 90", LONG_TEXT, NULL);
    struct h_resp *r = h_post_json(S.d, "/api/v1/messages", S.key, body);
    H_ASSERT(r->status == 202, "POST %s: expected 202, got %ld %s", body, r->status,
             r->status ? r->body : r->err);
    long long id = h_jint(r->json, "id");
    const char *enc = h_jstr(r->json, "encoding");
    long long seg = h_jint(r->json, "segments");
    struct h_checks ck = {0};
    h_check(&ck, enc && !strcmp(enc, "ucs2") && seg >= 4 && seg <= 6,
            "the long text with an emoji stays UCS-2, several segments: %s", r->body);
    h_resp_free(r);
    free(body);
    r_wait_status(S.conninfo, id, "sent,delivered,failed", 30);
    char *path = h_printf("/api/v1/messages/%lld", id);
    r = h_get(S.d, path, S.key);
    const char *st = h_jstr(r->json, "status"), *ref = h_jstr(r->json, "provider_ref");
    const char *text = h_jstr(r->json, "text"), *route = h_jstr(r->json, "route");
    h_check(&ck, st && !strcmp(st, "sent") && ref && !strcmp(ref, "gammu-255"),
            "sent with provider_ref gammu-255 (the dummy's reference): %s", r->body);
    h_check(&ck, text && !strcmp(text, LONG_TEXT), "the text is stored as written (ê, ç, 😊)");
    h_check(&ck, route && !strcmp(route, "modem"), "route modem: %s", route ? route : "-");
    h_resp_free(r);
    char *att = h_sql_str(S.conninfo,
                          "SELECT string_agg(route || ':' || outcome || coalesce(':' || "
                          "provider_ref, ''), ',' ORDER BY id) FROM attempts WHERE message_id = "
                          "%lld",
                          id);
    h_check(&ck, att && !strcmp(att, "modem:accepted:gammu-255"),
            "one accepted attempt on modem: %s", att ? att : "(none)");
    free(att);
    h_checks_done(&ck, "long French SMS sent");

    /* the dummy never reports by itself */
    r_hold_status(S.conninfo, id, "sent", 2);
    r_dummy_put_file(S.phone, 1, 50,
                     "[SMSBackup000]\nSMSC = \"+33609001390\"\nPDU = Status_Report\n"
                     "DateTime = 20261129T204618Z\nSMSCDateTime = 20261129T204620Z\n"
                     "State = UnRead\nNumber = \"+33612345690\"\nMessageReference = 255\n"
                     "Folder = 1\n");
    r_wait_status(S.conninfo, id, "delivered", 30);
    double t0 = h_now();
    int left;
    while ((left = r_dummy_count(S.phone, 1, NULL)) != 0 && h_now() - t0 < 20)
        h_sleep_ms(200);
    struct h_checks ck2 = {0};
    h_check(&ck2, left == 0, "the status report file is deleted after use: %d left", left);
    r = h_get(S.d, path, S.key);
    st = h_jstr(r->json, "status");
    h_check(&ck2, st && !strcmp(st, "delivered"), "GET says delivered: %s", r->body);
    h_resp_free(r);
    json_t *modem = r_route_health(S.d, "modem", NULL);
    json_t *dr = json_object_get(modem, "delivery_reports");
    h_check(&ck2, json_is_integer(dr) && json_integer_value(dr) == 1,
            "/healthz counts one delivery report on modem: %lld",
            json_is_integer(dr) ? (long long)json_integer_value(dr) : -1LL);
    json_decref(modem);
    free(path);
    h_checks_done(&ck2, "status report");
}

/* A one-part SMS from a sender the network gives in national format, while the daemon runs;
 * and `gatewayctl status` shows the modem's signal and network. */
static void test_inbound_national_sender(void **state)
{
    (void)state;
    start_daemon();
    r_dummy_put_sms(S.phone, 3, 7, "0698765433", NULL, "Merci pour le rappel");
    double t0 = h_now();
    char *from = NULL, *text = NULL;
    while (h_now() - t0 < 30) {
        from = h_sql_str(S.conninfo, "SELECT phone FROM messages WHERE direction = 'in' AND body "
                                     "= 'Merci pour le rappel'");
        if (from)
            break;
        h_sleep_ms(200);
    }
    H_ASSERT(from,
             "an SMS put in sms/3 (the phone's inbox) should be stored within 30 s; "
             "inbound rows: %s",
             h_sql_rows(S.conninfo, "SELECT id, phone, body FROM messages WHERE direction = "
                                    "'in' ORDER BY id"));
    text = h_sql_str(S.conninfo, "SELECT count(*)::text FROM messages WHERE direction = 'in' AND "
                                 "body = 'Merci pour le rappel'");
    struct h_checks ck = {0};
    h_check(&ck, !strcmp(from, "+33698765433"),
            "a national sender 0698765433 is stored in "
            "E.164: %s",
            from);
    h_check(&ck, text && !strcmp(text, "1"), "stored once: %s", text ? text : "-");
    char *out = NULL;
    int rc = h_ctl(S.config, &out, "--url", S.d->url, "status", NULL);
    char *line = r_find_line(out, "route modem");
    h_check(&ck,
            rc == 0 && line && r_contains(line, "state up") && r_contains(line, "signal 42%") &&
                r_contains(line, "network GammuT3l"),
            "gatewayctl status shows the modem up with the dummy's signal (42%%) and network "
            "(GammuT3l): exit %d: %s",
            rc, out);
    free(line);
    free(out);
    free(from);
    free(text);
    h_checks_done(&ck, "inbound from a national number");
}

/* The reply to inbound message `in_id`: "status|body" once it left through the modem. */
static char *reply_of(long long in_id)
{
    return h_sql_str(S.conninfo,
                     "SELECT status || '|' || route || '|' || coalesce(kind, '-') || '|' || body"
                     " FROM messages WHERE idempotency_key = 'flow:%lld:0'"
                     "   AND status IN ('sent', 'delivered')",
                     in_id);
}

static long long wait_inbound(const char *from, const char *text)
{
    double t0 = h_now();
    long long id = 0;
    while (h_now() - t0 < 30 && id <= 0) {
        char *v = h_sql_str(S.conninfo,
                            "SELECT id::text FROM messages WHERE direction = 'in'"
                            " AND phone = '%s' AND body = '%s'",
                            from, text);
        id = v ? strtoll(v, NULL, 10) : 0;
        free(v);
        if (id <= 0)
            h_sleep_ms(200);
    }
    H_ASSERT(id > 0, "the SMS '%s' from %s put in the phone's inbox should be stored within 30 s",
             text, from);
    return id;
}

static char *wait_reply(long long in_id)
{
    double t0 = h_now();
    char *r = NULL;
    while (h_now() - t0 < 30 && !(r = reply_of(in_id)))
        h_sleep_ms(200);
    H_ASSERT(r, "the reply to inbound message %lld should leave through the modem within 30 s; "
                "outbound: %s",
             in_id,
             h_sql_rows(S.conninfo, "SELECT id, status, route, idempotency_key, body FROM messages"
                                    " WHERE direction = 'out' ORDER BY id"));
    return r;
}

/* CHECK and STOP texted to the modem: effects recorded, replies sent through the modem. */
static void test_flows_through_modem(void **state)
{
    (void)state;
    start_daemon();
    const char *resident = "+33698765434";
    H_ASSERT(h_ctl(S.config, NULL, "centre", "seed", "Centre modem", NULL) == 0,
             "gatewayctl centre seed: %s", h_ctl_stderr());
    r_dummy_put_sms(S.phone, 3, 8, "0698765434", NULL, "Check-in 1234");
    long long check_id = wait_inbound(resident, "Check-in 1234");
    char *check_reply = wait_reply(check_id);
    char *people = h_sql_str(S.conninfo,
                             "SELECT a.people::text FROM attendance a JOIN contacts c"
                             " ON c.id = a.contact_id WHERE c.phone = '%s'",
                             resident);
    r_dummy_put_sms(S.phone, 3, 9, "0698765434", NULL, "STOP");
    long long stop_id = wait_inbound(resident, "STOP");
    char *stop_reply = wait_reply(stop_id);
    long long opted = h_sql_int(S.conninfo,
                                "SELECT count(*) FROM contacts WHERE phone = '%s'"
                                " AND opted_out_at IS NOT NULL",
                                resident);
    /* a message for the resident after the STOP is refused by the API */
    struct h_resp *r = h_post_json(S.d, "/api/v1/messages", S.key,
                                   "{\"to\":\"+33698765434\",\"text\":\"Rappel\"}");
    struct h_checks ck = {0};
    h_check(&ck,
            !strcmp(check_reply, "sent|modem|replies|Merci ! Présence enregistrée : Atelier "
                                 "cuisine, 1 personne(s)."),
            "the check-in thanks went out through the modem: %s", check_reply);
    h_check(&ck, people && !strcmp(people, "1"), "attendance for 1 person recorded: %s",
            people ? people : "none");
    h_check(&ck,
            !strcmp(stop_reply, "sent|modem|optout|Vous ne recevrez plus de SMS de Centre modem. "
                                "Pour vous réinscrire, envoyez START."),
            "the STOP confirmation went out through the modem: %s", stop_reply);
    h_check(&ck, opted == 1, "the resident is opted out: %lld", opted);
    h_check(&ck, r->status == 422 && r->body && strstr(r->body, "\"opted_out\""),
            "a send to the opted-out resident is refused: HTTP %ld %s", r->status, r->body);
    h_resp_free(r);
    free(check_reply);
    free(stop_reply);
    free(people);
    h_checks_done(&ck, "keyword flows through the modem");
}

/* gatewayctl ussd on the modem route and on a sim route. */
static void test_ussd(void **state)
{
    (void)state;
    start_daemon();
    struct h_checks ck = {0};
    char *out = NULL;
    int rc = h_ctl(S.config, &out, "--url", S.d->url, "--key", OPS_TOKEN, "ussd", "modem", "*100#",
                   NULL);
    h_check(&ck, rc == 0 && r_contains(out, "Reply for *100#"),
            "gatewayctl ussd modem '*100#' exits 0 and prints 'Reply for *100#': exit %d, "
            "stdout '%s', stderr '%s'",
            rc, out, h_ctl_stderr());
    free(out);
    rc = h_ctl(S.config, &out, "--url", S.d->url, "ussd", "modem", "*101#", NULL);
    h_check(&ck, rc == 0 && r_contains(out, "Reply for *101#"),
            "gatewayctl --config FILE (ops_token from [gateway]) ussd modem '*101#' prints "
            "'Reply for *101#': exit %d, stdout '%s', stderr '%s'",
            rc, out, h_ctl_stderr());
    free(out);
    rc = h_ctl(S.config, &out, "--url", S.d->url, "--key", OPS_TOKEN, "ussd", "sim", "*100#", NULL);
    h_check(&ck, rc == 4 && r_contains(h_ctl_stderr(), "cannot dial USSD"),
            "gatewayctl ussd sim '*100#' exits 4 with 'cannot dial USSD': exit %d, stdout '%s', "
            "stderr '%s'",
            rc, out, h_ctl_stderr());
    free(out);
    rc = h_ctl(S.config, &out, "--url", S.d->url, "--key", "not-the-operator-token-0000", "ussd",
               "modem", "*100#", NULL);
    h_check(&ck, rc == 1 && r_contains(h_ctl_stderr(), "401"),
            "with a wrong operator token: exit 1, HTTP 401: exit %d, stderr '%s'", rc,
            h_ctl_stderr());
    free(out);
    h_checks_done(&ck, "USSD");
}

/* The phone's directory disappears and comes back. */
static void test_modem_gone_and_back(void **state)
{
    (void)state;
    start_daemon();
    r_rm_rf(S.phone);
    struct route_wait w = {.state = "down"};
    H_ASSERT(h_poll(20, 200, modem_is, &w),
             "after removing the dummy phone's directory %s, /healthz should show route modem "
             "state down within 20 s; %s",
             S.phone, w.seen);
    h_log("modem down: %s", w.seen);
    char *out = NULL;
    int rc = h_ctl(S.config, &out, "--url", S.d->url, "ussd", "modem", "*100#", NULL);
    struct h_checks ckd = {0};
    h_check(&ckd, rc == 1 && r_contains(h_ctl_stderr(), "503"),
            "gatewayctl ussd modem while the modem is down: exit 1, HTTP 503: exit %d, stdout "
            "'%s', stderr '%s'",
            rc, out, h_ctl_stderr());
    free(out);
    rc = h_ctl(S.config, &out, "--url", S.d->url, "status", NULL);
    char *line = r_find_line(out, "route modem");
    h_check(&ckd, line && r_contains(line, "state down") && r_contains(line, "disappeared"),
            "gatewayctl status shows the modem down and why: %s", out);
    free(line);
    free(out);
    h_checks_done(&ckd, "modem down, seen by the operator");
    long long id = r_send(S.d, S.key, "+33612345691", "Envoye pendant la panne du modem", NULL);
    r_hold_status(S.conninfo, id, "queued", 4);
    long long attempts = h_sql_int(S.conninfo,
                                   "SELECT count(*) FROM attempts WHERE message_id = "
                                   "%lld",
                                   id);
    H_ASSERT(attempts == 0, "while the modem is down the message should not be tried: %s",
             r_msg_report(S.conninfo, id));
    r_dummy_mkdirs(S.phone);
    w.state = "up";
    H_ASSERT(h_poll(30, 200, modem_is, &w),
             "after recreating %s, route modem should be up again within 30 s; %s", S.phone,
             w.seen);
    r_wait_status(S.conninfo, id, "sent,delivered,failed", 30);
    char *rep = r_msg_report(S.conninfo, id);
    char *st = h_sql_str(S.conninfo,
                         "SELECT status || ':' || route || ':' || coalesce(provider_ref, '-') "
                         "FROM messages WHERE id = %lld",
                         id);
    long long acc = h_sql_int(S.conninfo,
                              "SELECT count(*) FROM attempts WHERE message_id = %lld AND outcome "
                              "= 'accepted' AND route = 'modem'",
                              id);
    struct h_checks ck = {0};
    h_check(&ck, st && !strcmp(st, "sent:modem:gammu-255"),
            "the queued message is sent through the modem once it is back: %s", rep);
    h_check(&ck, acc == 1, "one accepted attempt on modem: %lld (%s)", acc, rep);
    free(rep);
    free(st);
    h_daemon_stop_check(S.d, &ck);
    h_checks_done(&ck, "modem gone and back");
}

int main(int argc, char **argv)
{
    r_init("modem", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbound_concatenated),    cmocka_unit_test(test_long_french_sms),
        cmocka_unit_test(test_inbound_national_sender), cmocka_unit_test(test_flows_through_modem),
        cmocka_unit_test(test_ussd),
        cmocka_unit_test(test_modem_gone_and_back),
    };
    int failures = cmocka_run_group_tests_name("modem", tests, group_setup, NULL);
    r_exit(failures);
}
