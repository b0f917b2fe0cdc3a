/*
 * prov_isendpro — the iSendPro HTTP route (../shared/reference/isendpro.md), on libcurl's multi
 * interface driven by the daemon's loop (gw_curl): no thread, no blocking call.
 *
 * Sending: messages handed over in one loop pass are grouped; fewer than `batch_min` go out as
 * one POST /sms each, more as POST /smsmulti with up to `batch_max` numbers (one text per
 * number). Our message id travels as `tracker` (iSendPro returns no id of its own) and comes back
 * in delivery reports. The answer is read by prov_isendpro_parse (every irregular shape the
 * public examples show). Code 0 → accepted; 11 → the number is on iSendPro's blacklist: opted
 * out, permanent; 21 → unassigned number, permanent; any other code → permanent with the code
 * and text kept; HTTP 5xx/429, timeouts and connection errors → temporary (the core backs off).
 *
 * Delivery reports: GET or POST /providers/{route}/dlr with the tracker and a status word; the
 * parameter names and the words are route options because the public docs do not give them.
 * Credit: polled every `credit_poll_s`, shown in status (and so in /healthz, /metrics and
 * `gatewayctl status`), with a warning in the log below `credit_warn`.
 * Opt-out sync: prov_isendpro_blacklist() pushes a STOP (setlistenoire) or a START
 * (dellistenoire).
 *
 * Secrets: the keyid is read from the configuration (`keyid`, or `keyid_file`), sent only in
 * request bodies and query strings, and scrubbed from every text we log or store.
 */
#include "gw_curl.h"
#include "gw_http.h"
#include "gw_util.h"
#include "prov_isendpro_parse.h"
#include "prov_text.h"
#include "provider.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define MAX_RESPONSE (256 * 1024)
#define STOP_MENTION 12 /* characters iSendPro adds for the STOP opt-out mention */

struct isp_msg {
    TAILQ_ENTRY(isp_msg) link;
    int64_t id;
    char num[20]; /* digits, no '+' */
    char *text;
    int ucs2;
    int segments;
    int refuse; /* UCS-2 text on a route where ucs2 = no */
};
TAILQ_HEAD(isp_msg_list, isp_msg);

struct isp {
    const struct prov_host *host;
    struct gw_curl *curl;
    char *url;
    char *keyid;
    char *emetteur;
    int nostop, allow_ucs2;
    long connect_timeout_ms, timeout_ms;
    int batch_min, batch_max;
    int credit_poll_s;
    double credit_warn;
    char *dlr_tracker, *dlr_status;
    char *dlr_ok_words, *dlr_ko_words;

    struct isp_msg_list pending;
    int npending;
    struct event *ev_flush;
    struct event *ev_credit;

    /* health */
    double credit;
    long quantity;
    int credit_known;
    int credit_warned;
    char last_error[200];
    uint64_t requests, http_errors, accepted, rejected, reports;
};

/* One HTTP request in flight and the messages it carries. */
struct isp_call {
    struct isp *isp;
    struct isp_msg **msgs;
    size_t n;
    int multi;
    struct curl_slist *headers;
};

/* ------------------------------------------------------------------ helpers */

/* Replace every occurrence of the keyid in s by "***" (in place, s is NUL-terminated). */
static void scrub(const struct isp *isp, char *s)
{
    size_t kl = strlen(isp->keyid);
    if (!kl)
        return;
    char *p;
    while ((p = strstr(s, isp->keyid)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + kl, strlen(p + kl) + 1);
    }
}

static void set_error(struct isp *isp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct isp *isp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(isp->last_error, sizeof isp->last_error, fmt, ap);
    va_end(ap);
    scrub(isp, isp->last_error);
}

static int valid_emetteur(const char *e)
{
    size_t n = strlen(e);
    int digits = 1;
    if (n < 4 || n > 11)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = e[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c == ' '))
            return 0;
        if (!(c >= '0' && c <= '9'))
            digits = 0;
    }
    return !digits;
}

static char *read_secret_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "keyid_file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[256];
    if (!fgets(buf, sizeof buf, f)) {
        fclose(f);
        snprintf(err, errlen, "keyid_file %s is empty", path);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return strdup(buf);
}

/* A word list option "a,b,c": does it contain w (case-insensitive)? */
static int word_in(const char *list, const char *w)
{
    size_t wl = strlen(w);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && *p == ' ') {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        if (n == wl && strncasecmp(p, w, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* A curl handle with the route's timeouts and TLS floor. */
static CURL *new_easy(struct isp *isp, const char *path)
{
    CURL *e = curl_easy_init();
    if (!e)
        abort();
    char url[1024];
    snprintf(url, sizeof url, "%s%s", isp->url, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, isp->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, isp->timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "Passerelle/1");
    return e;
}

static void report(struct isp *isp, const struct isp_msg *m, enum prov_outcome o,
                   const char *code, const char *msg, int optout)
{
    char ref[32], text[200] = "";
    snprintf(ref, sizeof ref, "%lld", (long long)m->id);
    if (msg) {
        snprintf(text, sizeof text, "%s", msg);
        scrub(isp, text);
    }
    struct prov_result r = {.msg_id = m->id,
                            .outcome = o,
                            .provider_ref = o == PROV_ACCEPTED ? ref : NULL,
                            .error_code = code,
                            .error_msg = msg ? text : NULL,
                            .optout = optout};
    if (o == PROV_ACCEPTED)
        isp->accepted++;
    else
        isp->rejected++;
    isp->host->outcome(isp->host->ctx, &r);
}

static void msg_free(struct isp_msg *m)
{
    if (m) {
        free(m->text);
        free(m);
    }
}

static void call_free(struct isp_call *c)
{
    for (size_t i = 0; i < c->n; i++)
        msg_free(c->msgs[i]);
    free(c->msgs);
    curl_slist_free_all(c->headers);
    free(c);
}

/* ------------------------------------------------------------------ sending */

static void on_sent(void *arg, CURLcode rc, long status, const char *body, size_t len,
                    const char *errbuf)
{
    struct isp_call *c = arg;
    struct isp *isp = c->isp;
    char why[200];
    if (rc != CURLE_OK) {
        /* timeouts, refused and reset connections: nothing was (known to be) accepted */
        isp->http_errors++;
        set_error(isp, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        const char *code = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network";
        for (size_t i = 0; i < c->n; i++)
            report(isp, c->msgs[i], PROV_TEMPFAIL, code, isp->last_error, 0);
        call_free(c);
        return;
    }
    struct prov_isp_result res;
    int prc = prov_isp_parse((int)status, body, len, &res);
    if (res.temporary) {
        isp->http_errors++;
        set_error(isp, "HTTP %ld from iSendPro", status);
        char code[16];
        snprintf(code, sizeof code, "http_%ld", status);
        for (size_t i = 0; i < c->n; i++)
            report(isp, c->msgs[i], PROV_TEMPFAIL, code, isp->last_error, 0);
    } else if (prc != 0) {
        set_error(isp, "unexpected answer (HTTP %ld): %s", status, res.error);
        for (size_t i = 0; i < c->n; i++)
            report(isp, c->msgs[i], PROV_PERMFAIL, "bad_answer", isp->last_error, 0);
    } else {
        for (size_t i = 0; i < c->n; i++) {
            struct isp_msg *m = c->msgs[i];
            const struct prov_isp_item *it = prov_isp_find(&res, m->num);
            if (!it && res.general_error)
                it = &res.general;
            if (!it && !c->multi && res.general_ok && res.n == 0) {
                /* the flat shape {"etat":{"code":"0"}} of a single send names no number */
                report(isp, m, PROV_ACCEPTED, NULL, NULL, 0);
                continue;
            }
            if (!it) {
                /* Neither sent nor refused by name: resending could send it twice, so the
                 * message fails with the evidence kept. */
                snprintf(why, sizeof why, "the answer does not mention %s", m->num);
                set_error(isp, "%s", why);
                report(isp, m, PROV_PERMFAIL, "no_answer", why, 0);
                continue;
            }
            char code[16];
            snprintf(code, sizeof code, "%d", it->code);
            snprintf(why, sizeof why, "iSendPro code %d%s%s", it->code, it->message[0] ? ": " : "",
                     it->message);
            switch (it->kind) {
            case PROV_ISP_SENT:
                report(isp, m, PROV_ACCEPTED, NULL, NULL, 0);
                break;
            case PROV_ISP_BLACKLISTED:
                report(isp, m, PROV_PERMFAIL, code, why, 1);
                break;
            default:
                set_error(isp, "%s", why);
                report(isp, m, PROV_PERMFAIL, code, why, 0);
                break;
            }
        }
    }
    prov_isp_result_free(&res);
    call_free(c);
}

static void add_common(const struct isp *isp, json_t *o)
{
    json_object_set_new(o, "keyid", json_string(isp->keyid));
    if (isp->emetteur)
        json_object_set_new(o, "emetteur", json_string(isp->emetteur));
    if (isp->nostop)
        json_object_set_new(o, "nostop", json_string("1"));
}

static void start_call(struct isp *isp, struct isp_msg **msgs, size_t n)
{
    struct isp_call *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->isp = isp;
    c->msgs = msgs;
    c->n = n;
    c->multi = n > 1;
    json_t *o = json_object();
    add_common(isp, o);
    int maxseg = 1, ucs2 = 0;
    for (size_t i = 0; i < n; i++) {
        int seg = msgs[i]->segments;
        if (isp->emetteur && !isp->nostop) {
            /* iSendPro appends its STOP mention (about 12 characters) to texts sent with a
             * custom sender: count it, or a text near a boundary is refused as too long. */
            struct prov_text_info ti;
            if (prov_text_analyse(msgs[i]->text, strlen(msgs[i]->text), &ti) == 0) {
                size_t units = ti.units + STOP_MENTION;
                size_t one = ti.encoding == PROV_ENC_GSM7 ? 160 : 70;
                size_t part = ti.encoding == PROV_ENC_GSM7 ? 153 : 67;
                seg = units <= one ? 1 : (int)((units + part - 1) / part);
            }
        }
        if (seg > maxseg)
            maxseg = seg;
        ucs2 |= msgs[i]->ucs2;
    }
    if (c->multi) {
        json_t *nums = json_array(), *texts = json_array(), *trk = json_array();
        for (size_t i = 0; i < n; i++) {
            char t[24];
            snprintf(t, sizeof t, "%lld", (long long)msgs[i]->id);
            json_array_append_new(nums, json_string(msgs[i]->num));
            json_array_append_new(texts, json_string(msgs[i]->text));
            json_array_append_new(trk, json_string(t));
        }
        json_object_set_new(o, "num", nums);
        json_object_set_new(o, "sms", texts);
        json_object_set_new(o, "tracker", trk);
    } else {
        char t[24];
        snprintf(t, sizeof t, "%lld", (long long)msgs[0]->id);
        json_object_set_new(o, "num", json_string(msgs[0]->num));
        json_object_set_new(o, "sms", json_string(msgs[0]->text));
        json_object_set_new(o, "tracker", json_string(t));
    }
    if (maxseg > 1) {
        char s[16];
        snprintf(s, sizeof s, "%d", maxseg);
        json_object_set_new(o, "smslong", json_string(s));
    }
    if (ucs2)
        json_object_set_new(o, "ucs2", json_string("1"));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CURL *e = new_easy(isp, c->multi ? "/smsmulti" : "/sms");
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    free(body);
    isp->requests++;
    if (gw_curl_perform(isp->curl, e, MAX_RESPONSE, on_sent, c) != GW_OK) {
        /* only when curl refuses the handle: report from the loop like any other outcome */
        on_sent(c, CURLE_FAILED_INIT, 0, "", 0, "cannot start the request");
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct isp *isp = arg;
    struct isp_msg *m, *next;
    for (m = TAILQ_FIRST(&isp->pending); m; m = next) {
        next = TAILQ_NEXT(m, link);
        if (!m->refuse)
            continue;
        TAILQ_REMOVE(&isp->pending, m, link);
        isp->npending--;
        report(isp, m, PROV_PERMFAIL, "ucs2_disabled",
               "the text needs UCS-2 and this route has ucs2 = no", 0);
        msg_free(m);
    }
    while (isp->npending > 0) {
        size_t n = isp->npending >= isp->batch_min ? (size_t)isp->batch_max : 1;
        if (n > (size_t)isp->npending)
            n = (size_t)isp->npending;
        struct isp_msg **msgs = calloc(n, sizeof *msgs);
        if (!msgs)
            abort();
        for (size_t i = 0; i < n; i++) {
            msgs[i] = TAILQ_FIRST(&isp->pending);
            TAILQ_REMOVE(&isp->pending, msgs[i], link);
            isp->npending--;
        }
        start_call(isp, msgs, n);
    }
}

static int isp_send(void *priv, const struct prov_msg *pm)
{
    struct isp *isp = priv;
    struct isp_msg *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->id = pm->id;
    m->segments = pm->segments;
    m->ucs2 = pm->encoding == PROV_ENC_UCS2;
    snprintf(m->num, sizeof m->num, "%s", pm->to[0] == '+' ? pm->to + 1 : pm->to);
    m->text = strdup(pm->text);
    if (!m->text)
        abort();
    m->refuse = m->ucs2 && !isp->allow_ucs2; /* answered from the loop, not from send */
    TAILQ_INSERT_TAIL(&isp->pending, m, link);
    isp->npending++;
    event_active(isp->ev_flush, EV_TIMEOUT, 0);
    return 0;
}

/* ------------------------------------------------------------------ credit */

static void on_credit(void *arg, CURLcode rc, long status, const char *body, size_t len,
                      const char *errbuf)
{
    struct isp *isp = arg;
    double euros;
    long qty;
    if (rc != CURLE_OK) {
        set_error(isp, "credit: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return;
    }
    if (status != 200 || prov_isp_parse_credit(body, len, &euros, &qty) != 0) {
        set_error(isp, "credit: unexpected answer (HTTP %ld)", status);
        return;
    }
    isp->credit = euros;
    isp->quantity = qty;
    isp->credit_known = 1;
    if (isp->credit_warn > 0 && euros < isp->credit_warn) {
        if (!isp->credit_warned)
            isp->host->log(isp->host->ctx, 1,
                           "iSendPro credit is low: %.2f EUR (warning threshold %.2f EUR)", euros,
                           isp->credit_warn);
        isp->credit_warned = 1;
    } else {
        isp->credit_warned = 0;
    }
}

static void poll_credit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct isp *isp = arg;
    CURL *e = new_easy(isp, "/credit");
    char *k = curl_easy_escape(e, isp->keyid, 0);
    char body[512];
    snprintf(body, sizeof body, "keyid=%s&credit=2", k ? k : "");
    curl_free(k);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    if (gw_curl_perform(isp->curl, e, MAX_RESPONSE, on_credit, isp) != GW_OK)
        set_error(isp, "credit: cannot start the request");
}

/* ------------------------------------------------------------------ blacklist sync */

struct bl_call {
    struct isp *isp;
    char num[20];
    int add;
};

static void on_blacklist(void *arg, CURLcode rc, long status, const char *body, size_t len,
                         const char *errbuf)
{
    struct bl_call *b = arg;
    struct prov_isp_result res;
    int ok = rc == CURLE_OK && prov_isp_parse((int)status, body, len, &res) == 0 &&
             !res.temporary && !res.general_error;
    if (rc == CURLE_OK)
        prov_isp_result_free(&res);
    if (!ok) {
        set_error(b->isp, "%s: %s", b->add ? "setlistenoire" : "dellistenoire",
                  rc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(rc)) : "refused");
        b->isp->host->log(b->isp->host->ctx, 1, "could not %s a number on the iSendPro blacklist",
                          b->add ? "add" : "remove");
    }
    free(b);
}

int prov_isendpro_blacklist(void *priv, const char *e164, int add)
{
    struct isp *isp = priv;
    struct bl_call *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    b->isp = isp;
    b->add = add;
    snprintf(b->num, sizeof b->num, "%s", e164[0] == '+' ? e164 + 1 : e164);
    CURL *e = new_easy(isp, "");
    char *k = curl_easy_escape(e, isp->keyid, 0);
    char url[1200];
    snprintf(url, sizeof url, "%s/%s?keyid=%s&%s=1&num=%s", isp->url,
             add ? "setlistenoire" : "dellistenoire", k ? k : "",
             add ? "setlisteNoire" : "delListeNoire", b->num);
    curl_free(k);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    if (gw_curl_perform(isp->curl, e, MAX_RESPONSE, on_blacklist, b) != GW_OK) {
        free(b);
        return GW_EINVAL;
    }
    return GW_OK;
}

static void isp_optout(void *priv, const char *e164, int opted_out)
{
    struct isp *isp = priv;
    if (prov_isendpro_blacklist(priv, e164, opted_out) != GW_OK)
        set_error(isp, "%s: cannot start the request", opted_out ? "setlistenoire" : "dellistenoire");
}

/* ------------------------------------------------------------------ delivery reports */

static void isp_dlr_done(void *arg, int err, int64_t id)
{
    (void)id;
    struct evhttp_request *req = arg;
    if (err)
        gw_http_error(req, 503, "unavailable",
                      "the delivery report could not be stored now; send it again later");
    else
        gw_http_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static int isp_http(void *priv, struct evhttp_request *req, const char *subpath)
{
    struct isp *isp = priv;
    if (strcmp(subpath, "dlr") != 0)
        return -1;
    /* Parameters may come in the query string (GET) or a form body (POST). */
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    char *body = NULL;
    size_t blen = 0;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
        if (gw_http_body(req, 16384, &body, &blen) != GW_OK) {
            gw_http_error(req, 413, "too_large", "a delivery report is at most 16384 bytes");
            return 0;
        }
    }
    char raw[1024] = "";
    snprintf(raw, sizeof raw, "%s%s%s", query ? query : "", query && body && *body ? "&" : "",
             body ? body : "");
    scrub(isp, raw);
    if (evhttp_parse_query_str(raw, &q) < 0) {
        free(body);
        gw_http_error(req, 400, "bad_request", "unreadable parameters");
        return 0;
    }
    free(body);
    const char *tracker = evhttp_find_header(&q, isp->dlr_tracker);
    const char *st = evhttp_find_header(&q, isp->dlr_status);
    int64_t id;
    if (!tracker || gw_parse_i64(tracker, 1, INT64_MAX, &id) != GW_OK) {
        evhttp_clear_headers(&q);
        gw_http_error(req, 400, "bad_request", "parameter '%s' (our message id) is missing",
                      isp->dlr_tracker);
        return 0;
    }
    int delivered;
    if (st && word_in(isp->dlr_ok_words, st)) {
        delivered = 1;
    } else if (st && word_in(isp->dlr_ko_words, st)) {
        delivered = 0;
    } else {
        /* An intermediate or unknown word: acknowledge so the provider stops retrying, keep
         * the raw report in the log for the operator to map it. */
        isp->host->log(isp->host->ctx, 1, "delivery report for %lld with unknown status '%s' (%s)",
                       (long long)id, st ? st : "", raw);
        evhttp_clear_headers(&q);
        gw_http_json(req, 200, json_pack("{s:s}", "status", "ignored"));
        return 0;
    }
    struct prov_dlr d = {.msg_id = id, .delivered = delivered, .detail = raw};
    isp->reports++;
    /* answered once the report is written (isp_dlr_done): a crash before cannot lose it */
    isp->host->dlr(isp->host->ctx, &d, isp_dlr_done, req);
    evhttp_clear_headers(&q);
    return 0;
}

/* ------------------------------------------------------------------ life cycle */

static int isp_create(const struct prov_conf *conf, const struct prov_host *host, void **priv,
                      char *err, size_t errlen)
{
    static const char *const known[] = {
        "driver", "rate", "concurrency", "url", "keyid", "keyid_file", "emetteur", "nostop",
        "ucs2", "connect_timeout_ms", "timeout_ms", "batch_min", "batch_max", "credit_poll_s",
        "credit_warn", "dlr_tracker_param", "dlr_status_param", "dlr_delivered_words",
        "dlr_undelivered_words"};
    if (prov_conf_check_keys(conf, "isendpro", known, sizeof known / sizeof known[0], err, errlen) < 0)
        return -1;
    struct isp *isp = calloc(1, sizeof *isp);
    if (!isp)
        abort();
    isp->host = host;
    TAILQ_INIT(&isp->pending);
    const char *v;
    long n;
    isp->url = strdup(prov_conf_get(conf, "url", "https://apirest.isendpro.com/cgi-bin"));
    size_t ul = strlen(isp->url);
    while (ul && isp->url[ul - 1] == '/')
        isp->url[--ul] = '\0';
    if ((v = prov_conf_get(conf, "keyid", NULL)))
        isp->keyid = strdup(v);
    else if ((v = prov_conf_get(conf, "keyid_file", NULL)) &&
             !(isp->keyid = read_secret_file(v, err, errlen)))
        goto fail;
    if (!isp->keyid || !*isp->keyid) {
        snprintf(err, errlen, "keyid (or keyid_file) is required: the iSendPro account key");
        goto fail;
    }
    if ((v = prov_conf_get(conf, "emetteur", NULL))) {
        if (!valid_emetteur(v)) {
            snprintf(err, errlen,
                     "emetteur must be 4 to 11 characters of A-Z, 0-9 and space, not all digits");
            goto fail;
        }
        isp->emetteur = strdup(v);
    }
    isp->allow_ucs2 = 1;
    if (prov_conf_bool(conf, "nostop", 0, &isp->nostop, err, errlen) < 0 ||
        prov_conf_bool(conf, "ucs2", 1, &isp->allow_ucs2, err, errlen) < 0)
        goto fail;
    if (prov_conf_long(conf, "connect_timeout_ms", 5000, 100, 120000, &isp->connect_timeout_ms, err,
                 errlen) ||
        prov_conf_long(conf, "timeout_ms", 15000, 100, 600000, &isp->timeout_ms, err, errlen))
        goto fail;
    if (prov_conf_long(conf, "batch_min", 5, 2, 1000, &n, err, errlen))
        goto fail;
    isp->batch_min = (int)n;
    if (prov_conf_long(conf, "batch_max", 100, 1, 1000, &n, err, errlen))
        goto fail;
    isp->batch_max = (int)n;
    if (prov_conf_long(conf, "credit_poll_s", 300, 0, 86400, &n, err, errlen))
        goto fail;
    isp->credit_poll_s = (int)n;
    v = prov_conf_get(conf, "credit_warn", "5");
    char *end;
    isp->credit_warn = strtod(v, &end);
    if (end == v || *end || !isfinite(isp->credit_warn) || isp->credit_warn < 0) {
        snprintf(err, errlen, "credit_warn must be an amount in euros >= 0");
        goto fail;
    }
    isp->dlr_tracker = strdup(prov_conf_get(conf, "dlr_tracker_param", "tracker"));
    isp->dlr_status = strdup(prov_conf_get(conf, "dlr_status_param", "status"));
    isp->dlr_ok_words =
        strdup(prov_conf_get(conf, "dlr_delivered_words", "delivered,DELIVRD,livre,recu,1"));
    isp->dlr_ko_words = strdup(prov_conf_get(
        conf, "dlr_undelivered_words", "undelivered,UNDELIV,failed,echec,expired,rejected,2"));
    isp->curl = gw_curl_new(host->base);
    isp->ev_flush = event_new(host->base, -1, 0, on_flush, isp);
    isp->ev_credit = event_new(host->base, -1, EV_PERSIST, poll_credit, isp);
    if (isp->credit_poll_s > 0) {
        struct timeval tv = {isp->credit_poll_s, 0};
        event_add(isp->ev_credit, &tv);
        event_active(isp->ev_credit, EV_TIMEOUT, 0); /* once at start */
    }
    *priv = isp;
    return 0;
fail:
    free(isp->url);
    free(isp->keyid);
    free(isp->emetteur);
    free(isp);
    return -1;
}

static void isp_destroy(void *priv)
{
    struct isp *isp = priv;
    if (!isp)
        return;
    gw_curl_free(isp->curl); /* aborts requests in flight without calling back */
    while (!TAILQ_EMPTY(&isp->pending)) {
        struct isp_msg *m = TAILQ_FIRST(&isp->pending);
        TAILQ_REMOVE(&isp->pending, m, link);
        msg_free(m);
    }
    event_free(isp->ev_flush);
    event_free(isp->ev_credit);
    if (isp->keyid)
        memset(isp->keyid, 0, strlen(isp->keyid));
    free(isp->keyid);
    free(isp->url);
    free(isp->emetteur);
    free(isp->dlr_tracker);
    free(isp->dlr_status);
    free(isp->dlr_ok_words);
    free(isp->dlr_ko_words);
    free(isp);
}

static void isp_status(void *priv, struct json_t *out)
{
    struct isp *isp = priv;
    json_object_set_new(out, "state", json_string("up"));
    if (isp->credit_known) {
        json_object_set_new(out, "credit_euros", json_real(isp->credit));
        if (isp->quantity >= 0)
            json_object_set_new(out, "credit_sms", json_integer(isp->quantity));
    }
    json_object_set_new(out, "requests", json_integer((json_int_t)isp->requests));
    json_object_set_new(out, "http_errors", json_integer((json_int_t)isp->http_errors));
    json_object_set_new(out, "accepted", json_integer((json_int_t)isp->accepted));
    json_object_set_new(out, "rejected", json_integer((json_int_t)isp->rejected));
    json_object_set_new(out, "delivery_reports", json_integer((json_int_t)isp->reports));
    if (isp->last_error[0])
        json_object_set_new(out, "provider_error", json_string(isp->last_error));
}

const struct prov_ops prov_isendpro_ops = {
    .name = "isendpro",
    .create = isp_create,
    .destroy = isp_destroy,
    .send = isp_send,
    .http = isp_http,
    .status = isp_status,
    .optout = isp_optout,
};
