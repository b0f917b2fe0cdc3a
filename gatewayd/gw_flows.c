/* gw_flows — see gw_flows.h. */
#include "gw_flows.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_outbox.h"
#include "gw_send.h"
#include "gw_util.h"
#include "prov_phone.h"
#include "prov_text.h"
#include "ussd_req.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_FIRST_MS 2000
#define SWEEP_EVERY_MS 30000

/* Flow names as gw_flow_run reports them, for the metrics (the last one counts the rest). */
static const char *const flow_names[] = {"stop",  "start", "aide", "check", "job",  "pret",
                                         "rendu", "ok",    "alerte", "none", "other"};
#define NFLOWS (sizeof flow_names / sizeof flow_names[0])

struct gw_flows {
    struct event_base *base;
    struct gw_db *db;
    struct gw_outbox *o;
    const struct gw_config *cfg;
    struct ussd_fields fields;
    struct event *ev_sweep;
    int sweeping;
    uint64_t runs[NFLOWS];
    uint64_t replies_queued, replies_failed, swept;
    uint64_t ussd[4]; /* con, end, rejected (bad request / unknown centre), unavailable */
};

/* ---------------------------------------------------------------- replies */

struct reply_ctx {
    struct gw_flows *f;
    char idem[96];
};

static void reply_queued(void *arg, int err, int64_t id, int created, const char *status,
                         int segments, const char *encoding)
{
    (void)segments;
    (void)encoding;
    struct reply_ctx *c = arg;
    if (err) {
        c->f->replies_failed++;
        gw_warn("flows", "reply %s not queued yet (%s); the sweep will queue it", c->idem,
                err == GW_EDOWN ? "database unavailable" : "database error");
    } else if (created) {
        c->f->replies_queued++;
    } else {
        gw_debug("flows", "reply %s was already queued (message %lld, %s)", c->idem,
                 (long long)id, status);
    }
    free(c);
}

/* Enqueue each {"text","kind"?} of `replies` to phone; idempotency key "<prefix>:<n>". */
static void send_replies(struct gw_flows *f, int64_t centre, const char *phone, const char *route,
                         json_t *replies, const char *prefix)
{
    size_t i;
    json_t *r;
    json_array_foreach(replies, i, r)
    {
        const char *text = json_string_value(json_object_get(r, "text"));
        const char *kind = json_string_value(json_object_get(r, "kind"));
        if (!text || !*text)
            continue;
        struct prov_text_info info;
        char *t = gw_send_text(f->cfg, text, strlen(text), &info);
        if (!t) {
            gw_error("flows", "reply %s:%zu is not valid UTF-8 (a template?); not sent", prefix, i);
            continue;
        }
        struct reply_ctx *c = calloc(1, sizeof *c);
        if (!c)
            abort();
        c->f = f;
        snprintf(c->idem, sizeof c->idem, "%s:%zu", prefix, i);
        struct gw_enqueue e = {.centre_id = centre,
                               .phone = phone,
                               .text = t,
                               .segments = info.segments,
                               .encoding = prov_encoding_name(info.encoding),
                               .idem = c->idem,
                               .route = route,
                               .kind = kind ? kind : "replies"};
        int rc = gw_outbox_enqueue(f->o, &e, reply_queued, c);
        free(t);
        if (rc != GW_OK)
            reply_queued(c, rc, 0, 0, NULL, 0, NULL);
    }
}

/* A STOP or START: tell the routes that keep their own blacklist. */
static void tell_routes(struct gw_flows *f, json_t *run, const char *phone)
{
    json_t *optout = json_object_get(run, "optout");
    if (!json_is_boolean(optout))
        return;
    size_t i;
    json_t *route;
    json_array_foreach(json_object_get(run, "routes"), i, route)
    {
        if (json_is_string(route))
            gw_outbox_optout(f->o, json_string_value(route), phone, json_is_true(optout));
    }
}

static void count_flow(struct gw_flows *f, const char *flow)
{
    size_t i = 0;
    while (i < NFLOWS - 1 && (!flow || strcmp(flow, flow_names[i]) != 0))
        i++;
    f->runs[i]++;
}

static void on_inbound_run(void *arg, int64_t msg_id, int64_t centre, const char *phone,
                           const char *route, json_t *run)
{
    struct gw_flows *f = arg;
    const char *flow = json_string_value(json_object_get(run, "flow"));
    const char *outcome = json_string_value(json_object_get(run, "outcome"));
    count_flow(f, flow);
    gw_info("flows", "message %lld (centre %lld): %s → %s", (long long)msg_id, (long long)centre,
            flow ? flow : "?", outcome ? outcome : "?");
    char prefix[48];
    snprintf(prefix, sizeof prefix, "flow:%lld", (long long)msg_id);
    send_replies(f, centre, phone, route, json_object_get(run, "replies"), prefix);
    tell_routes(f, run, phone);
}

/* ---------------------------------------------------------------- sweep */

static void sweep_schedule(struct gw_flows *f, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(f->ev_sweep, &tv);
}

static void sweep_done(void *arg, PGresult *res, const char *err)
{
    struct gw_flows *f = arg;
    f->sweeping = 0;
    if (!err) {
        for (int i = 0; i < PQntuples(res); i++) {
            json_t *replies = json_loads(PQgetvalue(res, i, 4), 0, NULL);
            char prefix[48];
            snprintf(prefix, sizeof prefix, "flow:%s", PQgetvalue(res, i, 0));
            gw_info("flows", "queueing the replies to message %s again (not queued before)",
                    PQgetvalue(res, i, 0));
            send_replies(f, gw_db_int(res, i, 1), PQgetvalue(res, i, 2),
                         PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3), replies, prefix);
            json_decref(replies);
            f->swept++;
        }
    }
    sweep_schedule(f, SWEEP_EVERY_MS);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_flows *f = arg;
    if (f->sweeping)
        return;
    /* runs older than a few seconds (the hook is still at work on newer ones) whose first
     * reply has no message: found through the idempotency index */
    static const char sql[] =
        "SELECT fr.message_id, fr.centre_id, fr.phone, fr.route, fr.replies FROM flow_runs fr"
        " WHERE fr.at > now() - interval '10 minutes' AND fr.at < now() - interval '5 seconds'"
        "   AND jsonb_array_length(fr.replies) > 0"
        /* a reply refused because the number opted out since is not retried (the STOP
         * confirmation itself is always sent) */
        "   AND (fr.flow = 'stop' OR NOT EXISTS (SELECT 1 FROM contacts c"
        "          WHERE c.centre_id = fr.centre_id AND c.phone = fr.phone"
        "            AND c.opted_out_at IS NOT NULL))"
        "   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.centre_id = fr.centre_id"
        "                      AND m.idempotency_key = 'flow:' || fr.message_id || ':0')"
        " ORDER BY fr.at LIMIT 500";
    if (gw_db_query(f->db, sql, 0, NULL, sweep_done, f) == GW_OK)
        f->sweeping = 1;
    else
        sweep_schedule(f, SWEEP_EVERY_MS);
}

/* ---------------------------------------------------------------- USSD */

struct ussd_call {
    struct gw_flows *f;
    struct evhttp_request *req;
    char phone[24];
    char session[65];
    int nsteps;
};

static void ussd_reply(struct gw_flows *f, struct evhttp_request *req, int status, int final,
                       const char *text)
{
    char screen[USSD_SCREEN_MAX];
    if (ussd_screen(final, text, screen, sizeof screen) < 0)
        snprintf(screen, sizeof screen, "END Erreur.");
    if (status >= 500)
        f->ussd[3]++;
    else if (status >= 400)
        f->ussd[2]++;
    else
        f->ussd[final ? 1 : 0]++;
    gw_http_reply(req, status, "text/plain; charset=utf-8", screen, strlen(screen));
}

static void ussd_done(void *arg, PGresult *res, const char *err)
{
    struct ussd_call *u = arg;
    struct gw_flows *f = u->f;
    json_t *r = (!err && PQntuples(res) == 1) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (!r) {
        gw_warn("ussd", "session %s: %s", u->session, err ? err : "no answer from gw_ussd");
        ussd_reply(f, u->req, 503, 1, "Service momentanément indisponible. Réessayez plus tard.");
    } else if (json_object_get(r, "error")) {
        ussd_reply(f, u->req, 404, 1, "Service inconnu.");
    } else {
        int final = json_is_true(json_object_get(r, "end"));
        const char *text = json_string_value(json_object_get(r, "text"));
        ussd_reply(f, u->req, 200, final, text ? text : "");
        char prefix[96];
        snprintf(prefix, sizeof prefix, "ussd:%s:%d", u->session, u->nsteps);
        send_replies(f, json_integer_value(json_object_get(r, "centre_id")), u->phone, NULL,
                     json_object_get(r, "replies"), prefix);
        tell_routes(f, r, u->phone);
    }
    json_decref(r);
    free(u);
}

static int token_ok(const struct gw_config *cfg, struct evhttp_request *req)
{
    if (!cfg->ussd_token)
        return 1;
    char *t = gw_http_query_param(req, "token");
    size_t tl = strlen(cfg->ussd_token);
    int ok = t && strlen(t) == tl && sodium_memcmp(t, cfg->ussd_token, tl) == 0;
    free(t);
    return ok;
}

static void on_ussd(struct evhttp_request *req, void *arg, const char *tail)
{
    struct gw_flows *f = arg;
    if (!token_ok(f->cfg, req)) {
        gw_warn("ussd", "request without the right token refused");
        ussd_reply(f, req, 401, 1, "Accès refusé.");
        return;
    }
    char *centre = evhttp_uridecode(tail, 0, NULL);
    if (!centre || !*centre || strlen(centre) > 128 || strchr(centre, '/')) {
        free(centre);
        ussd_reply(f, req, 404, 1, "Service inconnu.");
        return;
    }
    char *body;
    size_t len;
    if (gw_http_body(req, USSD_BODY_MAX, &body, &len) != GW_OK) {
        free(centre);
        ussd_reply(f, req, 413, 1, "Requête invalide.");
        return;
    }
    struct ussd_req *u = malloc(sizeof *u);
    if (!u)
        abort();
    char why[160];
    int rc = ussd_req_parse(&f->fields, body, len, u, why, sizeof why);
    free(body);
    char phone[24];
    if (rc == USSD_OK &&
        prov_phone_normalize(u->phone, f->cfg->default_region, phone, sizeof phone) != 0) {
        snprintf(why, sizeof why, "phone number '%s' is not valid", u->phone);
        rc = USSD_EINVAL;
    }
    if (rc != USSD_OK) {
        gw_warn("ussd", "bad request for centre '%s': %s", centre, why);
        free(u);
        free(centre);
        ussd_reply(f, req, 400, 1, "Requête invalide.");
        return;
    }
    json_t *steps = json_array();
    for (int i = 0; i < u->nsteps; i++)
        json_array_append_new(steps, json_string(u->steps[i]));
    char *steps_json = json_dumps(steps, JSON_COMPACT);
    json_decref(steps);
    struct ussd_call *c = calloc(1, sizeof *c);
    if (!c || !steps_json)
        abort();
    c->f = f;
    c->req = req;
    c->nsteps = u->nsteps;
    snprintf(c->phone, sizeof c->phone, "%s", phone);
    snprintf(c->session, sizeof c->session, "%s", u->session);
    const char *params[5] = {centre, u->session, phone, u->service, steps_json};
    rc = gw_db_query(f->db,
                     "SELECT gw_ussd($1, $2, $3, $4, "
                     "ARRAY(SELECT json_array_elements_text($5::json)))",
                     5, params, ussd_done, c);
    free(steps_json);
    free(u);
    free(centre);
    if (rc != GW_OK) {
        free(c);
        ussd_reply(f, req, 503, 1, "Service momentanément indisponible. Réessayez plus tard.");
    }
}

/* ---------------------------------------------------------------- loans */

struct loan_call {
    struct gw_flows *f;
    struct evhttp_request *req;
    int64_t loan;
    char action[16];
};

static void loan_done(void *arg, PGresult *res, const char *err)
{
    struct loan_call *l = arg;
    json_t *r = (!err && PQntuples(res) == 1) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(r, "error"));
    if (!r) {
        gw_http_error(l->req, 503, "db_unavailable", "the database is unavailable: %s",
                      err ? err : "no answer");
    } else if (e && !strcmp(e, "not_found")) {
        gw_http_error(l->req, 404, "not_found", "no loan %lld", (long long)l->loan);
    } else if (e) {
        gw_http_error(l->req, 409, "bad_state", "loan %lld is %s: cannot %s it",
                      (long long)l->loan, json_string_value(json_object_get(r, "status")),
                      l->action);
    } else {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "loan:%lld:%s", (long long)l->loan, l->action);
        send_replies(l->f, json_integer_value(json_object_get(r, "centre_id")),
                     json_string_value(json_object_get(r, "phone")), NULL,
                     json_object_get(r, "replies"), prefix);
        gw_http_json(l->req, 200,
                     json_pack("{s:I,s:s,s:O,s:b}", "loan", (json_int_t)l->loan, "action",
                               l->action, "sms", json_object_get(r, "replies"),
                               "resident_opted_out",
                               json_is_true(json_object_get(r, "resident_opted_out"))));
    }
    json_decref(r);
    free(l);
}

void gw_flows_loan_action(struct gw_flows *f, struct evhttp_request *req, int64_t loan,
                          const char *action, int days)
{
    if (strcmp(action, "confirm") && strcmp(action, "refuse") && strcmp(action, "returned")) {
        gw_http_error(req, 404, "not_found", "loan actions are confirm, refuse and returned");
        return;
    }
    struct loan_call *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->f = f;
    l->req = req;
    l->loan = loan;
    snprintf(l->action, sizeof l->action, "%s", action);
    char id[24], d[16];
    snprintf(id, sizeof id, "%lld", (long long)loan);
    snprintf(d, sizeof d, "%d", days);
    const char *params[3] = {id, action, days > 0 ? d : NULL};
    if (gw_db_query(f->db, "SELECT gw_loan_action($1::bigint, $2, $3::int)", 3, params, loan_done,
                    l) != GW_OK) {
        free(l);
        gw_http_error(req, 503, "db_unavailable", "the database is unavailable");
    }
}

/* ---------------------------------------------------------------- life cycle */

struct gw_flows *gw_flows_new(struct event_base *base, struct gw_db *db, struct gw_outbox *o,
                              const struct gw_config *cfg, struct gw_http *http)
{
    struct gw_flows *f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->base = base;
    f->db = db;
    f->o = o;
    f->cfg = cfg;
    f->fields = (struct ussd_fields){cfg->ussd_field_session, cfg->ussd_field_service,
                                     cfg->ussd_field_phone, cfg->ussd_field_text,
                                     cfg->ussd_field_network};
    f->ev_sweep = evtimer_new(base, on_sweep, f);
    gw_outbox_set_inbound_hook(o, on_inbound_run, f);
    gw_http_route(http, EVHTTP_REQ_POST, "/ussd/", GW_HTTP_PREFIX, on_ussd, f);
    return f;
}

void gw_flows_start(struct gw_flows *f)
{
    sweep_schedule(f, SWEEP_FIRST_MS);
}

void gw_flows_free(struct gw_flows *f)
{
    if (!f)
        return;
    event_free(f->ev_sweep);
    free(f);
}

void gw_flows_metrics(struct gw_flows *f, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_flow_runs_total", "counter",
                   "Inbound SMS handled by the keyword flows, by flow.");
    for (size_t i = 0; i < NFLOWS; i++)
        evbuffer_add_printf(out, "passerelle_flow_runs_total{flow=\"%s\"} %llu\n", flow_names[i],
                            (unsigned long long)f->runs[i]);
    gw_metric_head(out, "passerelle_flow_replies_total", "counter",
                   "Automatic replies queued / not queued at once (queued by the sweep later).");
    evbuffer_add_printf(out,
                        "passerelle_flow_replies_total{result=\"queued\"} %llu\n"
                        "passerelle_flow_replies_total{result=\"failed\"} %llu\n"
                        "passerelle_flow_replies_total{result=\"swept\"} %llu\n",
                        (unsigned long long)f->replies_queued,
                        (unsigned long long)f->replies_failed, (unsigned long long)f->swept);
    gw_metric_head(out, "passerelle_ussd_requests_total", "counter",
                   "USSD callback requests by answer.");
    evbuffer_add_printf(out,
                        "passerelle_ussd_requests_total{answer=\"con\"} %llu\n"
                        "passerelle_ussd_requests_total{answer=\"end\"} %llu\n"
                        "passerelle_ussd_requests_total{answer=\"rejected\"} %llu\n"
                        "passerelle_ussd_requests_total{answer=\"unavailable\"} %llu\n",
                        (unsigned long long)f->ussd[0], (unsigned long long)f->ussd[1],
                        (unsigned long long)f->ussd[2], (unsigned long long)f->ussd[3]);
}
