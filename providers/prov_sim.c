/*
 * prov_sim — the simulator route: an in-process stand-in for an SMS provider, for the demo and
 * the tests. It answers each send after a configurable latency with a configurable mix of
 * accepted / temporary / permanent outcomes, sends a delivery report later, and accepts
 * "inbound SMS" on POST /providers/{route}/inbound (form fields from, text, optional id).
 *
 * Options ([route NAME] with driver = sim):
 *   latency_ms (0)          time before the outcome
 *   latency_jitter_ms (0)   extra random latency, uniform in [0, jitter]
 *   temp_failure_rate (0)   probability of a temporary failure (0..1)
 *   perm_failure_rate (0)   probability of a permanent failure (0..1)
 *   dlr_delay_ms (1000)     time from acceptance to the delivery report; -1 = no reports
 *   undelivered_rate (0)    probability that a report says "undelivered" (0..1)
 */
#include "gw_http.h"
#include "gw_util.h"
#include "provider.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct sim_op;
LIST_HEAD(sim_op_list, sim_op);

struct sim {
    const struct prov_host *host;
    int latency_ms, jitter_ms, dlr_delay_ms;
    double temp_rate, perm_rate, undelivered_rate;
    struct sim_op_list ops;
    uint64_t accepted, tempfail, permfail, reports, inbound;
};

enum { OP_SEND, OP_DLR };

struct sim_op {
    LIST_ENTRY(sim_op) link;
    struct sim *s;
    int kind;
    int64_t id;
    struct event *ev;
};

static double uniform(void)
{
    return (double)gw_random32() / 4294967296.0;
}

static int sim_create(const struct prov_conf *conf, const struct prov_host *host, void **priv,
                      char *err, size_t errlen)
{
    static const char *const known[] = {"driver",           "rate",
                                        "concurrency",      "latency_ms",
                                        "latency_jitter_ms", "temp_failure_rate",
                                        "perm_failure_rate", "dlr_delay_ms",
                                        "undelivered_rate"};
    if (prov_conf_check_keys(conf, "sim", known, sizeof known / sizeof known[0], err, errlen) < 0)
        return -1;
    struct sim *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->host = host;
    LIST_INIT(&s->ops);
    if (prov_conf_int(conf, "latency_ms", 0, 0, 600000, &s->latency_ms, err, errlen) ||
        prov_conf_int(conf, "latency_jitter_ms", 0, 0, 600000, &s->jitter_ms, err, errlen) ||
        prov_conf_int(conf, "dlr_delay_ms", 1000, -1, 86400000, &s->dlr_delay_ms, err, errlen) ||
        prov_conf_double(conf, "temp_failure_rate", 0, 0, 1, &s->temp_rate, err, errlen) ||
        prov_conf_double(conf, "perm_failure_rate", 0, 0, 1, &s->perm_rate, err, errlen) ||
        prov_conf_double(conf, "undelivered_rate", 0, 0, 1, &s->undelivered_rate, err, errlen)) {
        free(s);
        return -1;
    }
    if (s->temp_rate + s->perm_rate > 1) {
        snprintf(err, errlen, "temp_failure_rate + perm_failure_rate must not exceed 1");
        free(s);
        return -1;
    }
    *priv = s;
    return 0;
}

static void op_free(struct sim_op *op)
{
    LIST_REMOVE(op, link);
    event_free(op->ev);
    free(op);
}

static void on_op(evutil_socket_t fd, short what, void *arg);

static void op_schedule(struct sim *s, int kind, int64_t id, int delay_ms)
{
    struct sim_op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    op->s = s;
    op->kind = kind;
    op->id = id;
    op->ev = evtimer_new(s->host->base, on_op, op);
    LIST_INSERT_HEAD(&s->ops, op, link);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(op->ev, &tv);
}

static void on_op(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_op *op = arg;
    struct sim *s = op->s;
    int kind = op->kind;
    int64_t id = op->id;
    op_free(op);
    if (kind == OP_DLR) {
        int delivered = uniform() >= s->undelivered_rate;
        struct prov_dlr d = {.msg_id = id,
                             .delivered = delivered,
                             .detail = delivered ? NULL : "simulated: handset unreachable"};
        s->reports++;
        s->host->dlr(s->host->ctx, &d, NULL, NULL); /* in-process: nothing to acknowledge */
        return;
    }
    char ref[40];
    snprintf(ref, sizeof ref, "sim-%lld", (long long)id);
    double x = uniform();
    struct prov_result r = {.msg_id = id, .provider_ref = ref};
    if (x < s->perm_rate) {
        r.outcome = PROV_PERMFAIL;
        r.error_code = "sim_permanent";
        r.error_msg = "simulated permanent failure";
        s->permfail++;
    } else if (x < s->perm_rate + s->temp_rate) {
        r.outcome = PROV_TEMPFAIL;
        r.error_code = "sim_temporary";
        r.error_msg = "simulated temporary failure";
        r.provider_ref = NULL;
        s->tempfail++;
    } else {
        r.outcome = PROV_ACCEPTED;
        s->accepted++;
    }
    s->host->outcome(s->host->ctx, &r);
    if (r.outcome == PROV_ACCEPTED && s->dlr_delay_ms >= 0)
        op_schedule(s, OP_DLR, id, s->dlr_delay_ms);
}

static int sim_send(void *priv, const struct prov_msg *m)
{
    struct sim *s = priv;
    int delay = s->latency_ms;
    if (s->jitter_ms > 0)
        delay += (int)(uniform() * (s->jitter_ms + 1));
    op_schedule(s, OP_SEND, m->id, delay);
    return 0;
}

static void sim_destroy(void *priv)
{
    struct sim *s = priv;
    if (!s)
        return;
    while (!LIST_EMPTY(&s->ops))
        op_free(LIST_FIRST(&s->ops));
    free(s);
}

static void inbound_done(void *arg, int err, int64_t id)
{
    struct evhttp_request *req = arg;
    if (err == GW_ENOTFOUND)
        gw_http_error(req, 404, "no_centre", "no centre uses this route for inbound messages");
    else if (err)
        gw_http_error(req, 503, "unavailable", "the message could not be stored; send it again");
    else
        gw_http_json(req, 200, json_pack("{s:I,s:s}", "id", (json_int_t)id, "status", "received"));
}

static int sim_http(void *priv, struct evhttp_request *req, const char *subpath)
{
    struct sim *s = priv;
    if (strcmp(subpath, "inbound") != 0)
        return -1;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        gw_http_error(req, 405, "method_not_allowed", "use POST with form fields from and text");
        return 0;
    }
    char *body;
    size_t len;
    if (gw_http_body(req, 16384, &body, &len) != GW_OK) {
        gw_http_error(req, 413, "too_large", "an inbound SMS body is at most 16384 bytes");
        return 0;
    }
    struct evkeyvalq f;
    TAILQ_INIT(&f);
    if (evhttp_parse_query_str(body, &f) < 0) {
        free(body);
        gw_http_error(req, 400, "bad_request", "the body must be form-encoded (from=…&text=…)");
        return 0;
    }
    free(body);
    const char *from = evhttp_find_header(&f, "from");
    const char *text = evhttp_find_header(&f, "text");
    if (!from || !*from || !text) {
        evhttp_clear_headers(&f);
        gw_http_error(req, 400, "missing_field", "form fields 'from' and 'text' are required");
        return 0;
    }
    struct prov_inbound in = {.from = from, .text = text,
                              .provider_ref = evhttp_find_header(&f, "id")};
    s->inbound++;
    s->host->inbound(s->host->ctx, &in, inbound_done, req);
    evhttp_clear_headers(&f);
    return 0;
}

static void sim_resume(void *priv, int64_t msg_id, const char *provider_ref)
{
    (void)provider_ref;
    struct sim *s = priv;
    if (s->dlr_delay_ms >= 0)
        op_schedule(s, OP_DLR, msg_id, s->dlr_delay_ms);
}

static void sim_status(void *priv, struct json_t *out)
{
    struct sim *s = priv;
    json_object_set_new(out, "state", json_string("up"));
    json_object_set_new(out, "accepted", json_integer((json_int_t)s->accepted));
    json_object_set_new(out, "temporary_failures", json_integer((json_int_t)s->tempfail));
    json_object_set_new(out, "permanent_failures", json_integer((json_int_t)s->permfail));
    json_object_set_new(out, "delivery_reports", json_integer((json_int_t)s->reports));
}

const struct prov_ops prov_sim_ops = {
    .name = "sim",
    .create = sim_create,
    .destroy = sim_destroy,
    .send = sim_send,
    .http = sim_http,
    .status = sim_status,
    .resume = sim_resume,
};
