/*
 * gatewayd — the Passerelle daemon. Wires the base (config, log, db, http) to the outbox and
 * its routes and to the API, then runs one libevent loop until SIGTERM/SIGINT.
 *
 *   gatewayd --config FILE        run
 *   gatewayd --check-config FILE  parse and validate FILE (and create the routes), then exit
 *   gatewayd --version
 *
 * Start-up is the only time errors are fatal and blocking calls are allowed (migrations).
 * After that a database outage is survived: /healthz answers 503 and everything retries.
 */
#include "gw_api.h"
#include "gw_auth.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_events.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_migrate.h"
#include "gw_outbox.h"
#include "gw_flows.h"
#include "gw_admin.h"
#include "gw_sched.h"
#include "gw_partners.h"
#include "gw_util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <curl/curl.h>
#include <event2/thread.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef PASSERELLE_VERSION
#define PASSERELLE_VERSION "dev"
#endif

#define SHUTDOWN_GRACE_S 10

static const char *config_path; /* for SIGHUP */

struct daemon {
    struct gw_config *cfg;
    struct event_base *base;
    struct gw_db *db;
    struct gw_http *http;
    struct gw_auth *auth;
    struct gw_outbox *outbox;
    struct gw_api *api;
    struct gw_flows *flows;
    struct gw_sched *sched;
    struct gw_admin *admin;
    struct gw_partners *partners;
    struct gw_events *events;
    struct event *ev_sigterm, *ev_sigint, *ev_grace;
    struct event *ev_sighup, *ev_watchdog;
    uint64_t watchdog_usec;
    int64_t started_ms;
    int stopping;
    struct gw_config **kept; /* configurations read on SIGHUP whose route options are in use */
    size_t nkept;
};

static void on_healthz(struct evhttp_request *req, void *arg, const char *tail)
{
    (void)tail;
    struct daemon *d = arg;
    int db_up = gw_db_up(d->db);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(db_up ? "ok" : "unavailable"));
    json_object_set_new(o, "db", json_string(db_up ? "up" : "down"));
    json_object_set_new(o, "version", json_string(PASSERELLE_VERSION));
    json_object_set_new(o, "node", json_string(d->cfg->node_id));
    json_object_set_new(o, "uptime_s", json_integer((gw_now_ms() - d->started_ms) / 1000));
    json_object_set_new(o, "routes", gw_outbox_status(d->outbox));
    gw_http_json(req, db_up ? 200 : 503, o);
}

static void on_metrics(struct evhttp_request *req, void *arg, const char *tail)
{
    (void)tail;
    struct daemon *d = arg;
    struct evbuffer *out = evbuffer_new();
    gw_metric_head(out, "passerelle_up", "gauge", "1 while the daemon runs.");
    evbuffer_add_printf(out, "passerelle_up 1\n");
    gw_metric_head(out, "passerelle_db_up", "gauge", "1 when a database connection is up.");
    evbuffer_add_printf(out, "passerelle_db_up %d\n", gw_db_up(d->db));
    const struct gw_db_stats *s = gw_db_stats(d->db);
    gw_metric_head(out, "passerelle_db_round_trip_seconds", "histogram",
                   "Database statements, from queueing to result.");
    uint64_t cum = 0;
    for (int b = 0; b < 7; b++) {
        cum += s->rtt_buckets[b];
        evbuffer_add_printf(out, "passerelle_db_round_trip_seconds_bucket{le=\"%g\"} %llu\n",
                            gw_db_rtt_bounds_ms[b] / 1000.0, (unsigned long long)cum);
    }
    cum += s->rtt_buckets[7];
    evbuffer_add_printf(out,
                        "passerelle_db_round_trip_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "passerelle_db_round_trip_seconds_sum %.6f\n"
                        "passerelle_db_round_trip_seconds_count %llu\n",
                        (unsigned long long)cum, (double)s->rtt_us_sum / 1e6,
                        (unsigned long long)s->queries);
    gw_metric_head(out, "passerelle_db_errors_total", "counter", "Statements that failed.");
    evbuffer_add_printf(out, "passerelle_db_errors_total %llu\n", (unsigned long long)s->errors);
    gw_metric_head(out, "passerelle_db_connects_total", "counter", "Database (re)connections.");
    evbuffer_add_printf(out, "passerelle_db_connects_total %llu\n",
                        (unsigned long long)s->reconnects);
    gw_outbox_metrics(d->outbox, out);
    gw_flows_metrics(d->flows, out);
    gw_sched_metrics(d->sched, out);
    gw_admin_metrics(d->admin, out);
    gw_partners_metrics(d->partners, out);
    gw_events_metrics(d->events, out);
    gw_http_metrics(d->http, out);
    gw_api_metrics(d->api, out);
    gw_metric_head(out, "passerelle_http_responses_total", "counter", "HTTP replies by status.");
    for (int st = 100; st < 600; st++) {
        uint64_t n = gw_http_count(st);
        if (n)
            evbuffer_add_printf(out, "passerelle_http_responses_total{code=\"%d\"} %llu\n", st,
                                (unsigned long long)n);
    }
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    if (!text)
        abort();
    evbuffer_remove(out, text, len);
    evbuffer_free(out);
    gw_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void on_providers(struct evhttp_request *req, void *arg, const char *tail)
{
    struct daemon *d = arg;
    gw_outbox_provider_http(d->outbox, req, tail);
}

/* ---- operator endpoints (/ops/…), for gatewayctl: a bearer token from the configuration. */

static int ops_authorized(struct daemon *d, struct evhttp_request *req)
{
    if (!d->cfg->ops_token) {
        gw_http_error(req, 403, "ops_disabled",
                      "operator endpoints are disabled: set ops_token in [gateway]");
        return 0;
    }
    const char *h = gw_http_header(req, "Authorization");
    size_t tl = strlen(d->cfg->ops_token);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != tl ||
        sodium_memcmp(h + 7, d->cfg->ops_token, tl) != 0) {
        gw_http_error(req, 401, "unauthorized", "missing or wrong operator token");
        return 0;
    }
    return 1;
}

struct ussd_call {
    struct evhttp_request *req;
    char route[64];
    char code[64];
};

static void ussd_done(void *arg, int err, const char *reply)
{
    struct ussd_call *u = arg;
    if (err)
        gw_http_error(u->req, 502, "ussd_failed", "%s", reply ? reply : "the modem gave no answer");
    else
        gw_http_json(u->req, 200,
                     json_pack("{s:s,s:s,s:s}", "route", u->route, "code", u->code, "reply",
                               reply ? reply : ""));
    free(u);
}

static void on_ops_ussd(struct evhttp_request *req, void *arg, const char *tail)
{
    (void)tail;
    struct daemon *d = arg;
    if (!ops_authorized(d, req))
        return;
    char *body;
    size_t len;
    if (gw_http_body(req, 4096, &body, &len) != GW_OK) {
        gw_http_error(req, 413, "body_too_large", "at most 4096 bytes");
        return;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    free(body);
    const char *route = json_string_value(json_object_get(j, "route"));
    const char *code = json_string_value(json_object_get(j, "code"));
    if (!route || !code || strlen(route) >= 64 || strlen(code) >= 64) {
        json_decref(j);
        gw_http_error(req, 400, "bad_request", "expected {\"route\": \"…\", \"code\": \"*100#\"}");
        return;
    }
    struct ussd_call *u = calloc(1, sizeof *u);
    if (!u)
        abort();
    u->req = req;
    snprintf(u->route, sizeof u->route, "%s", route);
    snprintf(u->code, sizeof u->code, "%s", code);
    json_decref(j);
    int rc = gw_outbox_ussd(d->outbox, u->route, u->code, ussd_done, u);
    if (rc == GW_OK)
        return;
    if (rc == GW_ENOTFOUND)
        gw_http_error(req, 404, "not_found", "no route named '%s' on this node", u->route);
    else if (rc == GW_EINVAL)
        gw_http_error(req, 501, "not_supported",
                      "route '%s' cannot dial USSD (only modem routes can)", u->route);
    else
        gw_http_error(req, 503, "route_unavailable",
                      "route '%s' refused the request (modem down or busy)", u->route);
    free(u);
}

/* GET /ops/events: the live stream of message state changes (gatewayctl tail). */
static void on_ops_events(struct evhttp_request *req, void *arg, const char *tail)
{
    (void)tail;
    struct daemon *d = arg;
    if (!ops_authorized(d, req))
        return;
    gw_events_handle(d->events, req);
}

static void drained(void *arg)
{
    struct daemon *d = arg;
    gw_info("gatewayd", "in-flight work finished; stopping");
    event_base_loopexit(d->base, NULL);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    gw_warn("gatewayd", "stopping after %d s with work still in flight (leases will expire and "
                        "another start retries it)",
            SHUTDOWN_GRACE_S);
    event_base_loopexit(d->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct daemon *d = arg;
    if (d->stopping) {
        gw_warn("gatewayd", "second signal: stopping now");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = 1;
    sd_notify(0, "STOPPING=1");
    gw_info("gatewayd", "%s received: finishing in-flight sends (at most %d s)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", SHUTDOWN_GRACE_S);
    gw_http_close_listener(d->http);
    gw_events_close_all(d->events); /* streams would hold their connections open */
    gw_sched_stop(d->sched);
    struct timeval tv = {SHUTDOWN_GRACE_S, 0};
    evtimer_add(d->ev_grace, &tv);
    gw_outbox_drain(d->outbox, drained, d);
}

/* The [gateway] connection and rate limits (at start and on SIGHUP). */
static void apply_http_limits(struct daemon *d, const struct gw_config *c)
{
    struct gw_http_limits lim = {
        .max_connections = c->max_connections,
        .max_connections_per_address = c->max_connections_per_address,
        .address_rate = c->address_rate,
        .rate_exempt = c->rate_exempt,
    };
    gw_http_set_limits(d->http, &lim);
    gw_api_set_key_rate(d->api, c->key_rate);
}

/* SIGHUP: read the configuration again and apply what can change without dropping anything:
 * the log format and level, and each route's rate and concurrency. Adding or removing routes,
 * the listener, the database and the rest need a restart (said in the log). */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct daemon *d = arg;
    struct gw_config *n;
    char err[512];
    sd_notify(0, "RELOADING=1");
    if (gw_config_load(config_path, &n, err, sizeof err) != 0) {
        gw_error("gatewayd", "SIGHUP: the configuration was not reloaded: %s", err);
        sd_notify(0, "READY=1");
        return;
    }
    gw_log_setup(n->log_json, (enum gw_log_level)n->log_level);
    apply_http_limits(d, n);
    int keep = 0;
    for (size_t i = 0; i < n->nroutes; i++) {
        const struct gw_route_conf *r = &n->routes[i];
        if (gw_outbox_set_limits(d->outbox, r->name, r->rate, r->concurrency) != GW_OK) {
            gw_warn("gatewayd", "SIGHUP: route %s is new: restart to add it", r->name);
            continue;
        }
        int rc = gw_outbox_reconfigure(d->outbox, r);
        if (rc == GW_EINVAL)
            gw_warn("gatewayd", "SIGHUP: route %s has another driver now: restart to change it",
                    r->name);
        keep |= rc == 1;
    }
    for (size_t i = 0; i < d->cfg->nroutes; i++)
        if (!gw_config_route(n, d->cfg->routes[i].name))
            gw_warn("gatewayd", "SIGHUP: route %s was removed: restart to remove it",
                    d->cfg->routes[i].name);
    gw_info("gatewayd",
            "SIGHUP: configuration reloaded (log level, route limits and driver options, "
            "connection and rate limits)");
    if (keep) { /* a route runs on n's options now */
        struct gw_config **k = realloc(d->kept, (d->nkept + 1) * sizeof *k);
        if (!k)
            abort();
        d->kept = k;
        d->kept[d->nkept++] = n;
    } else {
        gw_config_free(n);
    }
    sd_notify(0, "READY=1");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    sd_notify(0, "WATCHDOG=1");
    struct timeval tv = {(time_t)(d->watchdog_usec / 2000000),
                         (suseconds_t)((d->watchdog_usec / 2) % 1000000)};
    evtimer_add(d->ev_watchdog, &tv);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: gatewayd --config FILE\n"
               "       gatewayd --check-config FILE\n"
               "       gatewayd --version\n");
}

/* The database may not be up yet when the daemon starts (a boot race, or an outage): wait for
 * it with backoff, saying so, rather than exiting. */
/* POST /ops/loans/{id}/{confirm|refuse|returned}[?days=N] (gatewayctl loan …) */
static void on_ops_loan(struct evhttp_request *req, void *arg, const char *tail)
{
    struct daemon *d = arg;
    if (!ops_authorized(d, req))
        return;
    char action[16] = "";
    long long id = 0;
    int n = 0;
    if (sscanf(tail, "%lld/%15[a-z]%n", &id, action, &n) != 2 || tail[n] != '\0' || id <= 0) {
        gw_http_error(req, 404, "not_found", "expected /ops/loans/{id}/{confirm|refuse|returned}");
        return;
    }
    int days = 0;
    char *q = gw_http_query_param(req, "days");
    if (q) {
        char *end;
        long v = strtol(q, &end, 10);
        int bad = *end != '\0' || v < 1 || v > 365;
        free(q);
        if (bad) {
            gw_http_error(req, 422, "invalid_days", "days must be a whole number from 1 to 365");
            return;
        }
        days = (int)v;
    }
    gw_flows_loan_action(d->flows, req, id, action, days);
}

static int migrate_with_retry(const char *conninfo)
{
    char err[512];
    for (int attempt = 1;; attempt++) {
        int rc = gw_migrate_run(conninfo, err, sizeof err);
        if (rc == GW_OK)
            return 0;
        if (rc != GW_EDOWN) {
            gw_error("db", "%s", err);
            return -1;
        }
        int64_t wait = gw_backoff_ms(attempt, 500, 10000, gw_random32());
        gw_warn("db", "%s; retrying in %lld ms", err, (long long)wait);
        usleep((useconds_t)(wait * 1000));
    }
}

static int run(struct gw_config *cfg)
{
    int rc = 1;
    struct daemon d = {.cfg = cfg, .started_ms = gw_now_ms()};
    signal(SIGPIPE, SIG_IGN);
    if (migrate_with_retry(cfg->db_conninfo) < 0)
        return 1;
    /* The changelist folds the enable/disable pairs evhttp makes around every request into
     * one epoll_ctl per socket and loop pass (4 syscalls per request otherwise). */
    struct event_config *ecfg = event_config_new();
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    d.base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!d.base) {
        gw_error("gatewayd", "cannot create the event loop");
        return 1;
    }
    d.db = gw_db_new(d.base, cfg->db_conninfo, cfg->db_pool_size);
    char err[512];
    d.outbox = gw_outbox_new(d.base, d.db, cfg, err, sizeof err);
    if (!d.outbox) {
        gw_error("gatewayd", "%s", err);
        goto out;
    }
    d.http = gw_http_new(d.base, cfg->max_body_bytes);
    d.auth = gw_auth_new(d.db);
    d.api = gw_api_new(d.http, d.db, d.auth, d.outbox, cfg);
    apply_http_limits(&d, cfg);
    d.flows = gw_flows_new(d.base, d.db, d.outbox, cfg, d.http);
    d.sched = gw_sched_new(d.base, d.db, cfg);
    d.admin = gw_admin_new(d.base, d.db, d.outbox, d.flows, cfg, d.http);
    d.partners = gw_partners_new(d.db, cfg, d.http);
    d.events = gw_events_new(d.base, d.db, d.http);
    gw_http_route(d.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/healthz", GW_HTTP_EXACT, on_healthz,
                  &d);
    gw_http_route(d.http, EVHTTP_REQ_GET, "/metrics", GW_HTTP_EXACT, on_metrics, &d);
    gw_http_route(d.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/providers/", GW_HTTP_PREFIX,
                  on_providers, &d);
    gw_http_route(d.http, EVHTTP_REQ_POST, "/ops/ussd", GW_HTTP_EXACT, on_ops_ussd, &d);
    gw_http_route(d.http, EVHTTP_REQ_POST, "/ops/loans/", GW_HTTP_PREFIX, on_ops_loan, &d);
    gw_http_route(d.http, EVHTTP_REQ_GET, "/ops/events", GW_HTTP_EXACT, on_ops_events, &d);
    if (gw_http_listen(d.http, cfg->listen_host, cfg->listen_port, err, sizeof err) != GW_OK) {
        gw_error("http", "%s", err);
        goto out;
    }
    d.ev_sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
    d.ev_sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
    d.ev_grace = evtimer_new(d.base, on_grace, &d);
    event_add(d.ev_sigterm, NULL);
    event_add(d.ev_sigint, NULL);
    gw_db_start(d.db);
    gw_outbox_start(d.outbox);
    gw_flows_start(d.flows);
    gw_sched_start(d.sched);
    d.ev_sighup = evsignal_new(d.base, SIGHUP, on_sighup, &d);
    event_add(d.ev_sighup, NULL);
    /* systemd: ready once listening; the watchdog is fed from the loop, so a stuck loop is
     * noticed */
    if (sd_watchdog_enabled(0, &d.watchdog_usec) > 0 && d.watchdog_usec > 0) {
        d.ev_watchdog = evtimer_new(d.base, on_watchdog, &d);
        on_watchdog(-1, 0, &d);
    }
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%d", cfg->listen_host, cfg->listen_port);
    gw_info("gatewayd", "Passerelle %s listening on http://%s:%d (node %s, %zu route%s)",
            PASSERELLE_VERSION, cfg->listen_host, cfg->listen_port, cfg->node_id, cfg->nroutes,
            cfg->nroutes > 1 ? "s" : "");
    event_base_dispatch(d.base);
    rc = 0;
out:
    /* The database goes first: its pending callbacks still find everything they touch. */
    gw_db_free(d.db);
    gw_events_free(d.events); /* before the HTTP server: it ends its streams */
    gw_api_free(d.api);
    gw_flows_free(d.flows);
    gw_sched_free(d.sched);
    gw_admin_free(d.admin);
    gw_partners_free(d.partners);
    gw_outbox_free(d.outbox);
    for (size_t i = 0; i < d.nkept; i++)
        gw_config_free(d.kept[i]);
    free(d.kept);
    gw_auth_free(d.auth);
    gw_http_free(d.http);
    if (d.ev_sigterm)
        event_free(d.ev_sigterm);
    if (d.ev_sigint)
        event_free(d.ev_sigint);
    if (d.ev_grace)
        event_free(d.ev_grace);
    if (d.ev_sighup)
        event_free(d.ev_sighup);
    if (d.ev_watchdog)
        event_free(d.ev_watchdog);
    event_base_free(d.base);
    gw_info("gatewayd", "stopped");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", required_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int check = 0, c;
    while ((c = getopt_long(argc, argv, "c:k:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            config = optarg;
            check = 1;
            break;
        case 'V':
            printf("gatewayd (Passerelle) %s\n", PASSERELLE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "gatewayd: libsodium failed to initialise\n");
        return 1;
    }
    /* Modem worker threads wake the loop with event_active(), which needs libevent's locks. */
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "gatewayd: libevent has no pthreads support\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct gw_config *cfg;
    char err[512];
    config_path = config;
    if (gw_config_load(config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "gatewayd: %s\n", err);
        return check ? 1 : 2;
    }
    gw_log_setup(cfg->log_json, (enum gw_log_level)cfg->log_level);
    gw_log_capture_libraries();
    int rc;
    if (check) {
        /* Create the routes too: a driver checks its own options. */
        struct event_base *base = event_base_new();
        struct gw_db *db = gw_db_new(base, cfg->db_conninfo, 1);
        struct gw_outbox *o = gw_outbox_new(base, db, cfg, err, sizeof err);
        if (o) {
            printf("%s: configuration OK (%zu route%s, listen %s:%d)\n", config, cfg->nroutes,
                   cfg->nroutes > 1 ? "s" : "", cfg->listen_host, cfg->listen_port);
            rc = 0;
        } else {
            fprintf(stderr, "gatewayd: %s: %s\n", config, err);
            rc = 1;
        }
        gw_outbox_free(o);
        gw_db_free(db);
        event_base_free(base);
    } else {
        rc = run(cfg);
    }
    gw_config_free(cfg);
    curl_global_cleanup();
    return rc;
}
