/*
 * prov_gammu — the GSM modem route: a phone or USB modem driven through libGammu 1.42
 * (driver = gammu). Options and behaviour for operators: prov_gammu.md. Facts about libGammu
 * and its dummy phone that shaped this file: shared/reference/gammu-dummy.md.
 *
 * THREADING
 *
 * Every libGammu call blocks (an AT modem may take 30 s to take an SMS) and libGammu cannot join
 * an event loop (no file descriptor to watch). So each route has ONE worker thread that owns its
 * GSM_StateMachine from allocation to free; no other thread touches it, except destroy() calling
 * GSM_AbortOperation (the only thread-safe libGammu call) on the machine the worker publishes in
 * g->sm_pub while it is alive.
 *
 *     loop thread                          worker thread
 *     -----------                          -------------
 *     send(), ussd(), done() ──reqs──►     connect / poll / send / delete / USSD
 *       (copies, never pointers            (libGammu calls, callbacks from libGammu
 *        into loop state)                   write worker-only fields: same thread)
 *     on_results() ◄──results── event_active(ev_results)
 *       host->outcome / inbound / dlr / log, USSD completions
 *
 * Both queues and the shared status (state, signal, last error, …) live under g->mu; the worker
 * sleeps on g->cv until a request comes or its next poll / reconnection is due. The worker wakes
 * the loop with event_active(), which is safe from another thread because the process called
 * evthread_use_pthreads() before creating the base. Host callbacks are made only from
 * on_results() and inbound_done() (the core's completion), both on the loop thread; even an
 * immediate answer to send() goes through the result queue, so it is never reported from inside
 * send() itself. destroy() sets stop, aborts the current libGammu call, joins the worker (which
 * terminates and frees its machine), then frees the event: after it returns nothing can call
 * the host again.
 *
 * The worker starts from a zero-delay timer, i.e. once the loop runs: `gatewayd --check-config`
 * creates routes without running the loop and so never opens the modem (which a running daemon
 * may be using).
 *
 * CRASH SAFETY OF INBOUND MESSAGES
 *
 * A message is deleted from the SIM only after the core said it is stored: the worker reads the
 * parts, links them and hands a copy (with the parts' folder/location) to the loop; the loop
 * calls host->inbound; only when its done(arg, 0, id) arrives does the loop queue a delete of
 * exactly those locations. A crash anywhere before the delete leaves the parts on the SIM; they
 * are read again at the next start and the core recognises them by provider_ref (built only from
 * what is stored on the SIM: sender, SMSC time stamp, concatenation reference, text hash) and
 * answers with the first id, after which they are deleted. A crash between commit and delete
 * therefore gives a duplicate read, never a lost or doubled message. If done() reports an error
 * the locations are released and the message is offered again at the next poll. While a message
 * is with the loop its locations are "in flight" and skipped by later scans, so a slow database
 * does not get the same message twice in parallel. Delivery reports follow the same path
 * (host->dlr; the delete waits for its done(), so a crash before the write reads it again).
 */
#include "prov_gammu.h"
#include "prov_text.h"

#include <errno.h>
#include <event2/event.h>
#include <gammu.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>

#define GM_MAX_QUEUE 256      /* sends and USSD waiting for the worker before send() says no */
#define GM_MAX_PARTS 64       /* inbound parts taken per scan (the rest at the next one) */
#define GM_SCAN_MAX_ITER 2000 /* GSM_GetNextSMS calls per scan: the bound against loops */
/* UTF-16 units per outbound text: libGammu's encoder copies into a fixed 65 KB stack buffer. */
#define GM_MAX_TEXT_UNITS 2000
#define GM_MAX_INCOMPLETE 64     /* concatenated messages waiting for missing parts */
#define GM_STACK_SIZE (8u << 20) /* libGammu puts 64 KiB buffers on the stack; be generous */
#define GM_USSD_UNITS (GSM_MAX_USSD_LENGTH + 1)

/* ------------------------------------------------------------------------------ helpers */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort(); /* out of memory: no untestable recovery branches (see STYLE.md) */
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "+33612345678" → "+336******78" for logs (STYLE: phone numbers masked). */
static void mask_number(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n <= 6) {
        snprintf(out, outlen, "%s", n ? "***" : "");
        return;
    }
    snprintf(out, outlen, "%.4s%.*s%s", in, (int)(n - 6 > 12 ? 12 : n - 6), "************",
             in + n - 2);
}

/* A destination or SMSC number: an optional '+' then 2 to 20 digits. */
static int valid_number(const char *s)
{
    if (!s)
        return 0;
    if (*s == '+')
        s++;
    size_t n = strspn(s, "0123456789");
    return n >= 2 && n <= 20 && s[n] == '\0';
}

/* Gammu's "Unicode" is UTF-16BE with a 2-byte NUL. Numbers are ASCII: no locale involved. */
static void ascii_to_ucs2(unsigned char *dst, size_t dstlen, const char *src)
{
    size_t i = 0;
    for (; src[i] && 2 * i + 3 < dstlen; i++) {
        dst[2 * i] = 0;
        dst[2 * i + 1] = (unsigned char)src[i];
    }
    dst[2 * i] = dst[2 * i + 1] = 0;
}

/* Length in 16-bit units of a Gammu Unicode string, at most max. */
static size_t ucs2_len(const unsigned char *s, size_t max)
{
    size_t n = 0;
    while (n < max && (s[2 * n] || s[2 * n + 1]))
        n++;
    return n;
}

/* Converts at most `units` 16-bit units of Gammu Unicode to a new UTF-8 string with
 * libGammu's EncodeUTF8 (never the locale-dependent DecodeUnicodeString, whose static 500-byte
 * buffer is shared by every thread). Unpaired surrogates become U+FFFD first so the result is
 * valid UTF-8 (PostgreSQL rejects encoded surrogates). */
static char *ucs2_to_utf8(const unsigned char *src, size_t units)
{
    unsigned char *tmp = xmalloc(2 * units + 2);
    memcpy(tmp, src, 2 * units);
    tmp[2 * units] = tmp[2 * units + 1] = 0;
    units = ucs2_len(tmp, units);
    for (size_t i = 0; i < units; i++) {
        unsigned v = (unsigned)tmp[2 * i] << 8 | tmp[2 * i + 1];
        if (v >= 0xD800 && v <= 0xDBFF && i + 1 < units) {
            unsigned w = (unsigned)tmp[2 * i + 2] << 8 | tmp[2 * i + 3];
            if (w >= 0xDC00 && w <= 0xDFFF) {
                i++;
                continue;
            }
        }
        if (v >= 0xD800 && v <= 0xDFFF) {
            tmp[2 * i] = 0xFF;
            tmp[2 * i + 1] = 0xFD;
        }
    }
    char *out = xmalloc(3 * units + 1); /* ≤ 3 bytes per unit (a pair gives 4 for 2 units) */
    EncodeUTF8(out, tmp);
    free(tmp);
    return out;
}

/* UTF-16 units of valid UTF-8: one per code point, two for those outside the BMP. */
static size_t utf16_units(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xC0) != 0x80)
            n += *p >= 0xF0 ? 2 : 1;
    }
    return n;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The SMSC time stamp as Unix time; 0 (= now for the core) when the phone gave none. */
static time_t dt_to_time(const GSM_DateTime *d)
{
    if (d->Year < 1970 || d->Month < 1 || d->Month > 12 || d->Day < 1 || d->Day > 31)
        return 0;
    struct tm tm = {.tm_year = d->Year - 1900,
                    .tm_mon = d->Month - 1,
                    .tm_mday = d->Day,
                    .tm_hour = d->Hour,
                    .tm_min = d->Minute,
                    .tm_sec = d->Second};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    return t - d->Timezone; /* Timezone: seconds east of UTC */
}

/* ------------------------------------------------------------------------------ types */

struct gm_opts {
    char *device, *connection, *model, *pin, *smsc;
    int poll_ms, send_timeout_ms, reconnect_max_ms, concat_timeout_ms;
    int dlr;
};

struct gm_loc {
    int folder, location; /* as GSM_GetNextSMS returned them; given back to GSM_DeleteSMS */
};

enum gm_req_kind { REQ_SEND, REQ_DELETE, REQ_RELEASE, REQ_USSD };

/* Loop → worker. Owns everything it points to. */
struct gm_req {
    TAILQ_ENTRY(gm_req) link;
    enum gm_req_kind kind;
    int64_t id;   /* SEND: message id; USSD: token */
    char *to;     /* SEND: destination */
    char *text;   /* SEND: UTF-8 text; USSD: the code */
    size_t nlocs; /* DELETE / RELEASE */
    struct gm_loc *locs;
};

enum gm_res_kind { RES_OUTCOME, RES_INBOUND, RES_DLR, RES_USSD, RES_LOG };

/* Worker (or a deferred loop path) → loop. Owns everything it points to. */
struct gm_res {
    TAILQ_ENTRY(gm_res) link;
    enum gm_res_kind kind;
    int64_t id;                /* OUTCOME: message id; USSD: token */
    enum prov_outcome outcome; /* OUTCOME */
    int num;                   /* USSD: error (0 or PROV_GAMMU_E…); LOG: level; DLR: final */
    int delivered;             /* DLR */
    char *ref;                 /* OUTCOME, INBOUND, DLR: provider reference */
    char *code;                /* OUTCOME: error code; INBOUND: sender */
    char *text;                /* OUTCOME: error message; INBOUND: text; DLR: detail;
                                  USSD: reply; LOG: the line */
    time_t when;               /* INBOUND */
    size_t nlocs;              /* INBOUND, DLR: where the parts are, for the delete */
    struct gm_loc *locs;
};

TAILQ_HEAD(gm_req_list, gm_req);
TAILQ_HEAD(gm_res_list, gm_res);

struct gm;

/* An inbound message with the core, awaiting done(). Survives destroy() (orphaned, g = NULL)
 * so that a late done() from the core frees it instead of touching a freed route. */
struct gm_track {
    LIST_ENTRY(gm_track) link;
    struct gm *g;
    int dlr; /* a delivery report (else an inbound SMS) */
    size_t nlocs;
    struct gm_loc *locs;
};

struct gm_ussd {
    LIST_ENTRY(gm_ussd) link;
    int64_t token;
    prov_gammu_ussd_fn done;
    void *arg;
};

struct gm_incomplete {
    char key[160];
    int64_t first_seen;
    int seen;
};

enum gm_state { ST_CONNECTING, ST_UP, ST_DOWN };
static const char *const state_names[] = {"connecting", "up", "down"};

struct gm {
    const struct prov_host *host;
    struct gm_opts opt;

    /* loop thread only */
    struct event *ev_start, *ev_results;
    int started;
    pthread_t thread;
    LIST_HEAD(, gm_track) tracks;
    LIST_HEAD(, gm_ussd) ussds;
    int64_t ussd_seq;
    size_t ntracks;
    int store_failing; /* the last store failed: warn once, not at every poll */
    uint64_t accepted, tempfail, permfail, received, reports;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct gm_req_list reqs;
    size_t nreqs; /* SEND and USSD only: deletes are never refused */
    struct gm_res_list results;
    GSM_StateMachine *sm_pub; /* for GSM_AbortOperation from destroy() */
    enum gm_state state;
    const char *activity;
    int signal; /* percent, -1 unknown */
    char net_name[64], net_code[16], net_state[16];
    char last_error[256];
    uint64_t polls;
    atomic_int stop;

    /* worker thread only */
    GSM_StateMachine *sm;
    GSM_MultiSMSMessage *w_multi; /* 260 KB: scan and encode scratch */
    GSM_SMSMessage *w_parts;      /* GM_MAX_PARTS parts of the current scan */
    struct gm_loc *w_inflight;
    size_t w_ninflight, w_capinflight;
    struct gm_incomplete w_incomplete[GM_MAX_INCOMPLETE];
    size_t w_nincomplete;
    int64_t w_next_connect, w_next_poll, w_backoff;
    int w_pin_rejected;
    size_t w_skipped;                                /* unreadable inbox entries at the last scan */
    int w_cb_fired, w_cb_status, w_cb_ref;           /* written by the send-status callback */
    int w_ussd_waiting, w_ussd_fired, w_ussd_status; /* written by the USSD callback */
    unsigned char w_ussd_raw[2 * GM_USSD_UNITS + 2];
};

/* ------------------------------------------------------------------------------ queues */

static void req_free(struct gm_req *r)
{
    if (!r)
        return;
    free(r->to);
    free(r->text);
    free(r->locs);
    free(r);
}

static void res_free(struct gm_res *r)
{
    if (!r)
        return;
    free(r->ref);
    free(r->code);
    free(r->text);
    free(r->locs);
    free(r);
}

/* Any thread: queue a result for the loop and wake it. */
static void push_result(struct gm *g, struct gm_res *r)
{
    pthread_mutex_lock(&g->mu);
    TAILQ_INSERT_TAIL(&g->results, r, link);
    pthread_mutex_unlock(&g->mu);
    event_active(g->ev_results, EV_TIMEOUT, 0);
}

/* Loop thread: queue a request for the worker. Takes ownership of r. */
static void push_request(struct gm *g, struct gm_req *r)
{
    pthread_mutex_lock(&g->mu);
    TAILQ_INSERT_TAIL(&g->reqs, r, link);
    if (r->kind == REQ_SEND || r->kind == REQ_USSD)
        g->nreqs++;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void push_outcome(struct gm *g, int64_t id, enum prov_outcome oc, const char *ref,
                         const char *code, const char *msg)
{
    struct gm_res *r = xcalloc(1, sizeof *r);
    r->kind = RES_OUTCOME;
    r->id = id;
    r->outcome = oc;
    r->ref = ref ? xstrdup(ref) : NULL;
    r->code = code ? xstrdup(code) : NULL;
    r->text = msg ? xstrdup(msg) : NULL;
    push_result(g, r);
}

static void push_ussd(struct gm *g, int64_t token, int err, const char *reply)
{
    struct gm_res *r = xcalloc(1, sizeof *r);
    r->kind = RES_USSD;
    r->id = token;
    r->num = err;
    r->text = xstrdup(reply);
    push_result(g, r);
}

/* Worker: log through the loop (host->log is for the loop thread only). */
__attribute__((format(printf, 3, 4))) static void w_log(struct gm *g, int level, const char *fmt,
                                                        ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct gm_res *r = xcalloc(1, sizeof *r);
    r->kind = RES_LOG;
    r->num = level;
    r->text = xstrdup(line);
    push_result(g, r);
}

static void w_activity(struct gm *g, const char *what)
{
    pthread_mutex_lock(&g->mu);
    g->activity = what;
    pthread_mutex_unlock(&g->mu);
}

static int w_stopping(struct gm *g)
{
    return atomic_load(&g->stop);
}

/* ------------------------------------------------------------------------------ worker */

static int is_conn_error(GSM_Error e)
{
    switch (e) {
    case ERR_DEVICEOPENERROR:
    case ERR_DEVICELOCKED:
    case ERR_DEVICENOTEXIST:
    case ERR_DEVICEBUSY:
    case ERR_DEVICENOPERMISSION:
    case ERR_DEVICENODRIVER:
    case ERR_DEVICENOTWORK:
    case ERR_DEVICEDTRRTSERROR:
    case ERR_DEVICECHANGESPEEDERROR:
    case ERR_DEVICEWRITEERROR:
    case ERR_DEVICEREADERROR:
    case ERR_DEVICEPARITYERROR:
    case ERR_TIMEOUT:
    case ERR_NOTCONNECTED:
    case ERR_PHONEOFF:
    case ERR_NOSIM:
        return 1;
    default:
        return 0;
    }
}

/* Errors for which sending the same message again can never work. */
static int is_permanent_error(GSM_Error e)
{
    return e == ERR_INVALIDDATA;
}

/* CMS errors (3GPP TS 24.011 RP-cause) the network gives for a number that will never take
 * the message: unassigned number, barring, rejected transfer, unknown subscriber, facility
 * rejected or not subscribed. Everything else (congestion, out of service…) is temporary. */
static int is_permanent_cms(int status)
{
    switch (status) {
    case 1:
    case 8:
    case 10:
    case 21:
    case 28:
    case 29:
    case 30:
    case 50:
        return 1;
    default:
        return 0;
    }
}

static void gammu_code(GSM_Error e, char *out, size_t outlen)
{
    const char *name = GSM_ErrorName(e);
    snprintf(out, outlen, "gammu_%s", name ? name : "unknown");
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

static void w_release_sm(struct gm *g, GSM_StateMachine *sm)
{
    GSM_TerminateConnection(sm); /* no-op when the connection never opened */
    pthread_mutex_lock(&g->mu);
    g->sm_pub = NULL;
    pthread_mutex_unlock(&g->mu);
    GSM_FreeStateMachine(sm); /* frees Device and Connection, which we strdup'ed */
}

/* The modem is (or stays) unusable: close it, show why, schedule the next attempt. */
__attribute__((format(printf, 2, 3))) static void w_down(struct gm *g, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (g->sm) {
        w_release_sm(g, g->sm);
        g->sm = NULL;
    }
    pthread_mutex_lock(&g->mu);
    int was_up = g->state == ST_UP;
    int same = g->state == ST_DOWN && strcmp(g->last_error, why) == 0;
    g->state = ST_DOWN;
    g->signal = -1;
    snprintf(g->last_error, sizeof g->last_error, "%s", why);
    pthread_mutex_unlock(&g->mu);
    g->w_next_connect = mono_ms() + g->w_backoff;
    if (!same)
        w_log(g, was_up ? 0 : 1, "modem down: %s (next attempt in %lld ms)", why,
              (long long)g->w_backoff);
    g->w_backoff =
        g->w_backoff * 2 > g->opt.reconnect_max_ms ? g->opt.reconnect_max_ms : g->w_backoff * 2;
}

static void cb_send_status(GSM_StateMachine *sm, int status, int ref, void *user)
{
    (void)sm; /* runs inside a libGammu call on the worker thread: no libGammu calls here */
    struct gm *g = user;
    g->w_cb_status = status;
    g->w_cb_ref = ref;
    g->w_cb_fired = 1;
}

static void cb_ussd(GSM_StateMachine *sm, GSM_USSDMessage *ussd, void *user)
{
    (void)sm;
    struct gm *g = user;
    if (!g->w_ussd_waiting || g->w_ussd_fired)
        return; /* network-initiated USSD, or a second answer: not ours */
    size_t n = ucs2_len(ussd->Text, GM_USSD_UNITS - 1);
    memcpy(g->w_ussd_raw, ussd->Text, 2 * n);
    g->w_ussd_raw[2 * n] = g->w_ussd_raw[2 * n + 1] = 0;
    g->w_ussd_status = (int)ussd->Status;
    g->w_ussd_fired = 1;
}

static const char *net_state_name(GSM_NetworkInfo_State s)
{
    switch (s) {
    case GSM_HomeNetwork:
        return "home";
    case GSM_RoamingNetwork:
        return "roaming";
    case GSM_NoNetwork:
        return "none";
    case GSM_RegistrationDenied:
        return "denied";
    case GSM_RequestingNetwork:
        return "searching";
    default:
        return "unknown";
    }
}

/* Signal and network; returns -1 (after w_down) when the connection is gone. */
static int w_read_radio(struct gm *g)
{
    GSM_SignalQuality sq;
    memset(&sq, 0, sizeof sq);
    sq.SignalPercent = -1;
    GSM_Error e = GSM_GetSignalQuality(g->sm, &sq);
    if (is_conn_error(e)) {
        w_down(g, "reading the signal: %s", GSM_ErrorString(e));
        return -1;
    }
    GSM_NetworkInfo ni;
    memset(&ni, 0, sizeof ni);
    GSM_Error e2 = GSM_GetNetworkInfo(g->sm, &ni);
    if (is_conn_error(e2)) {
        w_down(g, "reading the network: %s", GSM_ErrorString(e2));
        return -1;
    }
    char *name = e2 == ERR_NONE ? ucs2_to_utf8(ni.NetworkName, sizeof ni.NetworkName / 2) : NULL;
    pthread_mutex_lock(&g->mu);
    g->signal = e == ERR_NONE ? sq.SignalPercent : -1;
    if (e2 == ERR_NONE) {
        snprintf(g->net_name, sizeof g->net_name, "%s", name);
        snprintf(g->net_code, sizeof g->net_code, "%.*s", (int)sizeof ni.NetworkCode,
                 ni.NetworkCode);
        snprintf(g->net_state, sizeof g->net_state, "%s", net_state_name(ni.State));
    }
    pthread_mutex_unlock(&g->mu);
    free(name);
    return 0;
}

/* SIM PIN: entered once if asked for and configured. A refused PIN is never tried again
 * automatically (three refusals lock the SIM behind its PUK). */
static int w_unlock_sim(struct gm *g)
{
    GSM_SecurityCodeType sec = SEC_None;
    GSM_Error e = GSM_GetSecurityStatus(g->sm, &sec);
    if (e != ERR_NONE || sec == SEC_None)
        return 0; /* not supported, or nothing to enter */
    if (sec != SEC_Pin) {
        w_down(g,
               "the SIM or phone asks for a code the driver cannot enter (type %d: PUK or "
               "phone code)",
               (int)sec);
        return -1;
    }
    if (!g->opt.pin) {
        w_down(g, "the SIM asks for its PIN and the route has no 'pin' option");
        return -1;
    }
    if (g->w_pin_rejected) {
        w_down(g, "the SIM refused the configured PIN; fix 'pin' and restart (not retried, "
                  "to keep the SIM from locking)");
        return -1;
    }
    GSM_SecurityCode code;
    memset(&code, 0, sizeof code);
    code.Type = SEC_Pin;
    snprintf(code.Code, sizeof code.Code, "%s", g->opt.pin);
    e = GSM_EnterSecurityCode(g->sm, &code);
    if (e != ERR_NONE) {
        if (!is_conn_error(e))
            g->w_pin_rejected = 1;
        w_down(g, "entering the SIM PIN: %s", GSM_ErrorString(e));
        return -1;
    }
    w_log(g, 2, "SIM PIN accepted");
    return 0;
}

static int w_connect(struct gm *g)
{
    pthread_mutex_lock(&g->mu);
    if (g->state != ST_DOWN)
        g->state = ST_CONNECTING;
    g->activity = "connecting";
    pthread_mutex_unlock(&g->mu);

    GSM_StateMachine *sm = GSM_AllocStateMachine();
    if (!sm)
        abort();
    GSM_Config *cfg = GSM_GetConfig(sm, 0);
    (void)GSM_ReadConfig(NULL, cfg, 0); /* libGammu's defaults (ERR_USING_DEFAULTS) */
    free(cfg->Device);
    cfg->Device = xstrdup(g->opt.device); /* owned by sm: GSM_FreeStateMachine frees them */
    free(cfg->Connection);
    cfg->Connection = xstrdup(g->opt.connection);
    snprintf(cfg->Model, sizeof cfg->Model, "%s", g->opt.model);
    GSM_SetConfigNum(sm, 1);

    pthread_mutex_lock(&g->mu);
    g->sm_pub = sm;
    if (atomic_load(&g->stop))
        GSM_AbortOperation(sm);
    pthread_mutex_unlock(&g->mu);

    GSM_Error e = GSM_InitConnection(sm, 1);
    if (e != ERR_NONE) {
        w_release_sm(g, sm);
        /* A missing device says so rather than libGammu's less telling error; one that
         * vanished under the running modem (w_poll) keeps that reason while it stays away. */
        struct stat st;
        if (g->opt.device[0] == '/' && stat(g->opt.device, &st) != 0) {
            pthread_mutex_lock(&g->mu);
            int vanished = strstr(g->last_error, " disappeared (") != NULL;
            pthread_mutex_unlock(&g->mu);
            w_down(g, "device %s %s (%s)", g->opt.device, vanished ? "disappeared" : "not found",
                   strerror(errno));
        } else {
            w_down(g, "cannot connect to %s: %s", g->opt.device, GSM_ErrorString(e));
        }
        return -1;
    }
    g->sm = sm;
    /* GSM_InitConnection resets every callback: register them now. The dummy phone calls the
     * send-status callback without checking it is set. */
    GSM_SetSendSMSStatusCallback(sm, cb_send_status, g);
    GSM_SetIncomingUSSDCallback(sm, cb_ussd, g);
    if (w_unlock_sim(g) < 0 || w_read_radio(g) < 0)
        return -1;
    pthread_mutex_lock(&g->mu);
    g->state = ST_UP;
    g->last_error[0] = '\0';
    int sig = g->signal;
    char net[64];
    snprintf(net, sizeof net, "%s", g->net_name);
    pthread_mutex_unlock(&g->mu);
    w_log(g, 2, "modem up on %s (signal %d%%, network %s)", g->opt.device, sig, net[0] ? net : "?");
    g->w_backoff = g->opt.reconnect_max_ms < 1000 ? g->opt.reconnect_max_ms : 1000;
    return 0;
}

/* ---- in-flight locations (worker only) */

static int inflight_has(struct gm *g, int folder, int location)
{
    for (size_t i = 0; i < g->w_ninflight; i++)
        if (g->w_inflight[i].folder == folder && g->w_inflight[i].location == location)
            return 1;
    return 0;
}

static void inflight_add(struct gm *g, const struct gm_loc *locs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (inflight_has(g, locs[i].folder, locs[i].location))
            continue;
        if (g->w_ninflight == g->w_capinflight) {
            g->w_capinflight = g->w_capinflight ? 2 * g->w_capinflight : 16;
            g->w_inflight = realloc(g->w_inflight, g->w_capinflight * sizeof *g->w_inflight);
            if (!g->w_inflight)
                abort();
        }
        g->w_inflight[g->w_ninflight++] = locs[i];
    }
}

static void inflight_remove(struct gm *g, const struct gm_loc *loc)
{
    for (size_t i = 0; i < g->w_ninflight; i++) {
        if (g->w_inflight[i].folder == loc->folder && g->w_inflight[i].location == loc->location) {
            g->w_inflight[i] = g->w_inflight[--g->w_ninflight];
            return;
        }
    }
}

/* ---- send */

static void w_send(struct gm *g, struct gm_req *rq)
{
    if (!g->sm) {
        push_outcome(g, rq->id, PROV_TEMPFAIL, NULL, "modem_down", "modem down");
        return;
    }
    w_activity(g, "sending");
    size_t len = strlen(rq->text);
    unsigned char *ubuf = xmalloc(2 * len + 2); /* ≤ 2 bytes out per byte in, + the NUL */
    DecodeUTF8(ubuf, rq->text, len);
    GSM_MultiPartSMSInfo info;
    GSM_ClearMultiPartSMSInfo(&info);
    info.EntriesNum = 1;
    /* AutoTextLong keeps GSM-7 when every character has a GSM-7 form, else UCS-2; plain
     * ConcatenatedTextLong would silently turn ê into e and unknown characters into '?'. */
    info.Entries[0].ID = SMS_ConcatenatedAutoTextLong;
    info.Entries[0].Buffer = ubuf;
    GSM_MultiSMSMessage *mm = g->w_multi;
    memset(mm, 0, sizeof *mm);
    GSM_Error e = GSM_EncodeMultiPartSMS(GSM_GetDebug(g->sm), &info, mm);
    free(ubuf); /* ours, not GSM_FreeMultiPartSMSInfo's */
    if (e != ERR_NONE || mm->Number < 1) {
        /* Too many parts, or text libGammu cannot encode: the same text never will. */
        push_outcome(g, rq->id, PROV_PERMFAIL, NULL, "encode_failed",
                     e != ERR_NONE ? GSM_ErrorString(e) : "the text gave no SMS");
        return;
    }
    int ref = -1;
    for (int i = 0; i < mm->Number; i++) {
        GSM_SMSMessage *sms = &mm->SMS[i];
        ascii_to_ucs2(sms->Number, sizeof sms->Number, rq->to);
        if (g->opt.smsc) {
            sms->SMSC.Location = 0;
            ascii_to_ucs2(sms->SMSC.Number, sizeof sms->SMSC.Number, g->opt.smsc);
        } else {
            sms->SMSC.Location = 1; /* the SIM's own SMSC */
        }
        /* PDU = Status_Report on a submitted SMS means "request a delivery report". Only the
         * last part asks: its reference is the one we return, and reports for the other parts
         * would carry references that may match older messages (they recycle after 255). */
        sms->PDU = g->opt.dlr && i == mm->Number - 1 ? SMS_Status_Report : SMS_Submit;
        g->w_cb_fired = 0;
        g->w_cb_status = -1;
        g->w_cb_ref = -1;
        e = GSM_SendSMS(g->sm, sms);
        if (e != ERR_NONE) {
            char code[64];
            gammu_code(e, code, sizeof code);
            char msg[256];
            snprintf(msg, sizeof msg, "part %d/%d: %s", i + 1, mm->Number, GSM_ErrorString(e));
            if (is_conn_error(e)) {
                push_outcome(g, rq->id, PROV_TEMPFAIL, NULL, code, msg);
                w_down(g, "sending: %s", GSM_ErrorString(e));
            } else {
                push_outcome(g, rq->id, is_permanent_error(e) ? PROV_PERMFAIL : PROV_TEMPFAIL, NULL,
                             code, msg);
            }
            return;
        }
        /* A real modem confirms (+CMGS, with the reference) later, during GSM_ReadDevice; the
         * dummy calls back from inside GSM_SendSMS. */
        int64_t deadline = mono_ms() + g->opt.send_timeout_ms;
        while (!g->w_cb_fired && !w_stopping(g) && mono_ms() < deadline) {
            if (GSM_ReadDevice(g->sm, TRUE) < 0)
                break;
        }
        if (!g->w_cb_fired) {
            if (w_stopping(g))
                return; /* destroy(): no outcome after it; the core retries after restart */
            push_outcome(g, rq->id, PROV_TEMPFAIL, NULL, "timeout",
                         "the modem did not confirm the SMS in time");
            w_down(g, "no confirmation for an SMS within %d ms", g->opt.send_timeout_ms);
            return;
        }
        if (g->w_cb_status != 0) {
            char code[32], msg[128];
            snprintf(code, sizeof code, "cms_%d", g->w_cb_status);
            snprintf(msg, sizeof msg, "part %d/%d refused by the network (CMS error %d)", i + 1,
                     mm->Number, g->w_cb_status);
            push_outcome(g, rq->id,
                         is_permanent_cms(g->w_cb_status) ? PROV_PERMFAIL : PROV_TEMPFAIL, NULL,
                         code, msg);
            return;
        }
        ref = g->w_cb_ref;
    }
    char pref[32];
    snprintf(pref, sizeof pref, "gammu-%d", ref);
    push_outcome(g, rq->id, PROV_ACCEPTED, pref, NULL, NULL);
}

/* ---- delete / release */

static void w_delete(struct gm *g, struct gm_req *rq)
{
    w_activity(g, "deleting");
    for (size_t i = 0; i < rq->nlocs; i++) {
        if (g->sm && rq->kind == REQ_DELETE) {
            GSM_SMSMessage sms;
            memset(&sms, 0, sizeof sms);
            sms.Folder = rq->locs[i].folder;
            sms.Location = rq->locs[i].location;
            GSM_Error e = GSM_DeleteSMS(g->sm, &sms);
            if (e != ERR_NONE && e != ERR_EMPTY) {
                if (is_conn_error(e))
                    w_down(g, "deleting an SMS: %s", GSM_ErrorString(e));
                else
                    w_log(g, 1, "could not delete SMS %d/%d: %s (it will be read again)",
                          sms.Folder, sms.Location, GSM_ErrorString(e));
            }
        } else if (rq->kind == REQ_DELETE) {
            w_log(g, 1, "modem down: SMS %d/%d stays on the SIM and will be read again",
                  rq->locs[i].folder, rq->locs[i].location);
        }
        inflight_remove(g, &rq->locs[i]);
    }
}

/* ---- USSD */

static void w_ussd(struct gm *g, struct gm_req *rq)
{
    if (!g->sm) {
        push_ussd(g, rq->id, PROV_GAMMU_EDOWN, "modem down");
        return;
    }
    w_activity(g, "ussd");
    g->w_ussd_fired = 0;
    g->w_ussd_waiting = 1;
    (void)GSM_SetIncomingUSSD(g->sm, TRUE); /* the answer comes as an "incoming" USSD */
    GSM_Error e = GSM_DialService(g->sm, rq->text);
    if (e != ERR_NONE) {
        g->w_ussd_waiting = 0;
        if (e == ERR_NOTSUPPORTED || e == ERR_NOTIMPLEMENTED) {
            push_ussd(g, rq->id, PROV_GAMMU_ENOTSUP, "not supported by this phone");
        } else if (is_conn_error(e)) {
            push_ussd(g, rq->id, PROV_GAMMU_EDOWN, "modem down");
            w_down(g, "dialling a USSD code: %s", GSM_ErrorString(e));
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "refused: %s", GSM_ErrorString(e));
            push_ussd(g, rq->id, PROV_GAMMU_EFAIL, msg);
        }
        return;
    }
    int64_t deadline = mono_ms() + g->opt.send_timeout_ms;
    while (!g->w_ussd_fired && !w_stopping(g) && mono_ms() < deadline) {
        if (GSM_ReadDevice(g->sm, TRUE) < 0)
            break;
    }
    g->w_ussd_waiting = 0;
    if (w_stopping(g))
        return;
    if (!g->w_ussd_fired) {
        push_ussd(g, rq->id, PROV_GAMMU_ETIMEOUT, "no answer from the network");
        return;
    }
    switch ((GSM_USSDStatus)g->w_ussd_status) {
    case USSD_NotSupported:
        push_ussd(g, rq->id, PROV_GAMMU_ENOTSUP, "not supported by this phone");
        return;
    case USSD_Timeout:
        push_ussd(g, rq->id, PROV_GAMMU_ETIMEOUT, "no answer from the network");
        return;
    default: {
        char *reply = ucs2_to_utf8(g->w_ussd_raw, GM_USSD_UNITS);
        push_ussd(g, rq->id, 0, reply);
        free(reply);
        return;
    }
    }
}

/* ---- inbound */

static int is_text_coding(GSM_Coding_Type c)
{
    return c == SMS_Coding_Unicode_No_Compression || c == SMS_Coding_Default_No_Compression ||
           c == SMS_Coding_Unicode_Compression || c == SMS_Coding_Default_Compression;
}

/* Text of one part in 16-bit units; 8-bit data is shown as hex digits. */
static size_t part_units(const GSM_SMSMessage *p)
{
    if (is_text_coding(p->Coding))
        return ucs2_len(p->Text, GSM_MAX_SMS_LENGTH);
    int n = p->Length < 0 ? 0 : p->Length > GSM_MAX_SMS_LENGTH ? GSM_MAX_SMS_LENGTH : p->Length;
    return 2 * (size_t)n;
}

static size_t part_append(const GSM_SMSMessage *p, unsigned char *dst)
{
    size_t n = part_units(p);
    if (is_text_coding(p->Coding)) {
        memcpy(dst, p->Text, 2 * n);
        return n;
    }
    static const char hexd[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n / 2; i++) {
        dst[4 * i] = 0;
        dst[4 * i + 1] = (unsigned char)hexd[p->Text[i] >> 4];
        dst[4 * i + 2] = 0;
        dst[4 * i + 3] = (unsigned char)hexd[p->Text[i] & 15];
    }
    return n;
}

static int is_concat(const GSM_SMSMessage *p)
{
    return (p->UDH.Type == UDH_ConcatenatedMessages ||
            p->UDH.Type == UDH_ConcatenatedMessages16bit) &&
           p->UDH.AllParts > 1;
}

static int concat_id(const GSM_SMSMessage *p)
{
    return p->UDH.Type == UDH_ConcatenatedMessages16bit ? p->UDH.ID16bit : p->UDH.ID8bit;
}

/* A concatenated message with parts still missing is held until they arrive or until
 * concat_timeout_ms has passed since it was first seen; returns 1 to hold it now. */
static int w_hold_incomplete(struct gm *g, const char *key)
{
    int64_t now = mono_ms();
    for (size_t i = 0; i < g->w_nincomplete; i++) {
        struct gm_incomplete *c = &g->w_incomplete[i];
        if (strcmp(c->key, key) == 0) {
            c->seen = 1;
            return now - c->first_seen < g->opt.concat_timeout_ms;
        }
    }
    if (g->w_nincomplete == GM_MAX_INCOMPLETE)
        return 0; /* table full: deliver what we have rather than hold without bound */
    struct gm_incomplete *c = &g->w_incomplete[g->w_nincomplete++];
    snprintf(c->key, sizeof c->key, "%s", key);
    c->first_seen = now;
    c->seen = 1;
    return g->opt.concat_timeout_ms > 0;
}

static void w_emit_inbound(struct gm *g, const GSM_MultiSMSMessage *mm)
{
    const GSM_SMSMessage *first = &mm->SMS[0];
    int nparts = mm->Number < 1                   ? 1
                 : mm->Number > GSM_MAX_MULTI_SMS ? GSM_MAX_MULTI_SMS
                                                  : mm->Number;
    char *from = ucs2_to_utf8(first->Number, GSM_MAX_NUMBER_LENGTH);
    char cref[16] = "-";
    if (is_concat(first)) {
        snprintf(cref, sizeof cref, "%d", concat_id(first));
        if (nparts < first->UDH.AllParts) {
            char key[160];
            snprintf(key, sizeof key, "%s|%s|%d", from, cref, first->UDH.AllParts);
            if (w_hold_incomplete(g, key)) {
                free(from);
                return;
            }
            char masked[32];
            mask_number(from, masked, sizeof masked);
            w_log(g, 1, "message from %s: %d of %d parts after %d ms, delivered incomplete", masked,
                  nparts, first->UDH.AllParts, g->opt.concat_timeout_ms);
        }
    }
    size_t units = 0;
    for (int j = 0; j < nparts; j++)
        units += part_units(&mm->SMS[j]);
    unsigned char *u = xmalloc(2 * units + 2);
    size_t pos = 0;
    for (int j = 0; j < nparts; j++)
        pos += part_append(&mm->SMS[j], u + 2 * pos);
    u[2 * pos] = u[2 * pos + 1] = 0;
    char *text = ucs2_to_utf8(u, pos);
    free(u);

    struct gm_res *r = xcalloc(1, sizeof *r);
    r->kind = RES_INBOUND;
    const GSM_DateTime *d = &first->DateTime;
    char ref[400];
    snprintf(ref, sizeof ref, "%s:%04d%02d%02dT%02d%02d%02d%+d:%s:%08" PRIx32, from, d->Year,
             d->Month, d->Day, d->Hour, d->Minute, d->Second, d->Timezone / 60, cref, fnv1a(text));
    r->ref = xstrdup(ref);
    r->code = from;
    r->text = text;
    r->when = dt_to_time(d);
    r->nlocs = (size_t)nparts;
    r->locs = xcalloc((size_t)nparts, sizeof *r->locs);
    for (int j = 0; j < nparts; j++) {
        r->locs[j].folder = mm->SMS[j].Folder;
        r->locs[j].location = mm->SMS[j].Location;
    }
    inflight_add(g, r->locs, r->nlocs);
    push_result(g, r);
}

static void w_emit_report(struct gm *g, const GSM_SMSMessage *p)
{
    /* TP-Status (3GPP TS 23.040 9.2.3.15): 0x00-0x1F delivered; 0x20-0x3F the SMSC still
     * tries (not final); 0x40-0x5F permanent error; 0x60-0x7F the SMSC gave up. */
    unsigned st = p->DeliveryStatus;
    struct gm_res *r = xcalloc(1, sizeof *r);
    r->kind = RES_DLR;
    char ref[32];
    snprintf(ref, sizeof ref, "gammu-%u", (unsigned)p->MessageReference);
    r->ref = xstrdup(ref);
    r->num = st < 0x20 || st >= 0x40; /* final */
    r->delivered = st < 0x20;
    if (st >= 0x20) {
        char detail[96];
        snprintf(detail, sizeof detail, "SMSC status 0x%02X (%s)", st,
                 st < 0x40   ? "still trying"
                 : st < 0x60 ? "permanent error"
                             : "gave up");
        r->text = xstrdup(detail);
    }
    r->nlocs = 1;
    r->locs = xcalloc(1, sizeof *r->locs);
    r->locs[0].folder = p->Folder;
    r->locs[0].location = p->Location;
    inflight_add(g, r->locs, 1);
    push_result(g, r);
}

static int same_sender(const GSM_SMSMessage *a, const GSM_SMSMessage *b)
{
    size_t la = ucs2_len(a->Number, GSM_MAX_NUMBER_LENGTH);
    size_t lb = ucs2_len(b->Number, GSM_MAX_NUMBER_LENGTH);
    return la == lb && memcmp(a->Number, b->Number, 2 * la) == 0;
}

/* Link the parts of one sender. GSM_LinkSMS compares senders with DecodeUnicodeString, which
 * returns one static buffer for both arguments (so it always sees them equal): link per
 * sender so that two senders' messages with the same reference are never mixed. */
static void w_link_sender(struct gm *g, const GSM_SMSMessage *const *parts, size_t k)
{
    GSM_MultiSMSMessage **in = xcalloc(k + 1, sizeof *in);
    GSM_MultiSMSMessage **out = xcalloc(k + 1, sizeof *out);
    for (size_t i = 0; i < k; i++) {
        in[i] = xcalloc(1, sizeof **in); /* 260 KB each, zero pages until touched */
        in[i]->Number = 1;
        in[i]->SMS[0] = *parts[i];
    }
    GSM_Error e = GSM_LinkSMS(GSM_GetDebug(g->sm), in, out, FALSE);
    if (e != ERR_NONE) {
        w_log(g, 0, "linking inbound SMS parts: %s", GSM_ErrorString(e));
    } else {
        for (size_t i = 0; out[i]; i++)
            w_emit_inbound(g, out[i]);
    }
    for (size_t i = 0; out[i]; i++)
        free(out[i]);
    for (size_t i = 0; i < k; i++)
        free(in[i]);
    free(in);
    free(out);
}

static void w_scan(struct gm *g)
{
    GSM_MultiSMSMessage *m = g->w_multi;
    memset(m, 0, sizeof *m);
    size_t n = 0, skipped = 0, iter = 0;
    int more = 0;
    gboolean start = TRUE;
    for (;;) {
        if (w_stopping(g))
            return;
        if (++iter > GM_SCAN_MAX_ITER) {
            w_log(g, 1, "inbox scan stopped after %d reads", GM_SCAN_MAX_ITER);
            break;
        }
        GSM_Error e = GSM_GetNextSMS(g->sm, m, start);
        start = FALSE;
        if (e == ERR_EMPTY)
            break;
        if (e == ERR_FILENOTSUPPORTED || e == ERR_CORRUPTED) {
            /* An unreadable entry: m->SMS[0].Folder/Location now point at it, and the next
             * call continues after it. Its other fields are stale: ignore them. */
            skipped++;
            continue;
        }
        if (e != ERR_NONE) {
            if (is_conn_error(e))
                w_down(g, "reading SMS: %s", GSM_ErrorString(e));
            else
                w_log(g, 1, "reading SMS: %s", GSM_ErrorString(e));
            if (!g->sm)
                return;
            break;
        }
        for (int i = 0; i < m->Number && i < GSM_MAX_MULTI_SMS; i++) {
            GSM_SMSMessage *p = &m->SMS[i];
            if (!p->InboxFolder || inflight_has(g, p->Folder, p->Location))
                continue;
            if (n == GM_MAX_PARTS) {
                more = 1;
                continue;
            }
            g->w_parts[n++] = *p;
        }
    }
    if (skipped != g->w_skipped) /* say it when it changes, not at every poll */
        w_log(g, skipped ? 1 : 2, "%zu unreadable SMS entr%s in the inbox (left there)", skipped,
              skipped == 1 ? "y" : "ies");
    g->w_skipped = skipped;
    if (more)
        w_log(g, 2, "more than %d SMS parts waiting; the rest at the next poll", GM_MAX_PARTS);

    for (size_t i = 0; i < g->w_nincomplete; i++)
        g->w_incomplete[i].seen = 0;
    const GSM_SMSMessage **group = xcalloc(n + 1, sizeof *group);
    char *done = xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        if (g->w_parts[i].PDU == SMS_Status_Report) {
            done[i] = 1;
            w_emit_report(g, &g->w_parts[i]);
            continue;
        }
        size_t k = 0;
        for (size_t j = i; j < n; j++) {
            if (!done[j] && g->w_parts[j].PDU != SMS_Status_Report &&
                same_sender(&g->w_parts[i], &g->w_parts[j])) {
                done[j] = 1;
                group[k++] = &g->w_parts[j];
            }
        }
        w_link_sender(g, group, k);
    }
    free(group);
    free(done);
    /* Forget incomplete messages no longer on the SIM. */
    for (size_t i = 0; i < g->w_nincomplete;) {
        if (!g->w_incomplete[i].seen)
            g->w_incomplete[i] = g->w_incomplete[--g->w_nincomplete];
        else
            i++;
    }
}

static void w_poll(struct gm *g)
{
    w_activity(g, "polling");
    /* The dummy phone keeps "working" when its directory is removed (scans just find nothing),
     * and a serial device node vanishes when the modem is unplugged: check the path. */
    struct stat st;
    if (g->opt.device[0] == '/' && stat(g->opt.device, &st) != 0) {
        w_down(g, "device %s disappeared (%s)", g->opt.device, strerror(errno));
        return;
    }
    if (w_read_radio(g) < 0)
        return;
    w_scan(g);
    pthread_mutex_lock(&g->mu);
    g->polls++;
    pthread_mutex_unlock(&g->mu);
}

static void w_handle(struct gm *g, struct gm_req *rq)
{
    switch (rq->kind) {
    case REQ_SEND:
        w_send(g, rq);
        break;
    case REQ_DELETE:
    case REQ_RELEASE:
        w_delete(g, rq);
        break;
    case REQ_USSD:
        w_ussd(g, rq);
        break;
    }
}

static void *worker_main(void *arg)
{
    struct gm *g = arg;
    g->w_multi = xcalloc(1, sizeof *g->w_multi);
    g->w_parts = xcalloc(GM_MAX_PARTS, sizeof *g->w_parts);
    g->w_backoff = g->opt.reconnect_max_ms < 1000 ? g->opt.reconnect_max_ms : 1000;
    g->w_next_connect = 0;
    for (;;) {
        struct gm_req *rq = NULL;
        int do_connect = 0, do_poll = 0;
        pthread_mutex_lock(&g->mu);
        g->activity = "idle";
        for (;;) {
            if (atomic_load(&g->stop))
                break;
            int64_t now = mono_ms();
            if (!g->sm && now >= g->w_next_connect) {
                do_connect = 1;
                break;
            }
            if (g->sm && now >= g->w_next_poll) {
                do_poll = 1;
                break;
            }
            if ((rq = TAILQ_FIRST(&g->reqs)) != NULL) {
                TAILQ_REMOVE(&g->reqs, rq, link);
                if (rq->kind == REQ_SEND || rq->kind == REQ_USSD)
                    g->nreqs--;
                break;
            }
            int64_t until = g->sm ? g->w_next_poll : g->w_next_connect;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = until - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        }
        int stop = atomic_load(&g->stop);
        pthread_mutex_unlock(&g->mu);
        if (stop) {
            req_free(rq);
            break;
        }
        if (do_connect) {
            if (w_connect(g) == 0)
                g->w_next_poll = 0; /* read what waited while we were away */
        } else if (do_poll) {
            w_poll(g);
            g->w_next_poll = mono_ms() + g->opt.poll_ms;
        } else {
            w_handle(g, rq);
            req_free(rq);
        }
    }
    if (g->sm) {
        w_release_sm(g, g->sm);
        g->sm = NULL;
    }
    free(g->w_multi);
    free(g->w_parts);
    free(g->w_inflight);
    return NULL;
}

/* ------------------------------------------------------------------------------ loop side */

static void inbound_done(void *arg, int err, int64_t id)
{
    struct gm_track *t = arg;
    struct gm *g = t->g;
    if (!g) { /* the route was destroyed meanwhile: the parts stay on the SIM */
        free(t->locs);
        free(t);
        return;
    }
    LIST_REMOVE(t, link);
    g->ntracks--;
    struct gm_req *rq = xcalloc(1, sizeof *rq);
    rq->kind = err == 0 ? REQ_DELETE : REQ_RELEASE;
    rq->nlocs = t->nlocs;
    rq->locs = t->locs;
    int dlr = t->dlr;
    free(t);
    const char *what = dlr ? "delivery report" : "inbound SMS";
    if (err == 0) {
        if (!dlr)
            g->received++;
        g->store_failing = 0;
        if (dlr)
            g->host->log(g->host->ctx, 3, "delivery report stored; deleting it from the SIM");
        else
            g->host->log(g->host->ctx, 3, "inbound SMS stored as %lld; deleting it from the SIM",
                         (long long)id);
    } else {
        g->host->log(g->host->ctx, g->store_failing ? 3 : 1,
                     "%s not stored (error %d): it stays on the SIM for the next poll", what, err);
        g->store_failing = 1;
    }
    push_request(g, rq);
}

static void deliver(struct gm *g, struct gm_res *r)
{
    const struct prov_host *h = g->host;
    switch (r->kind) {
    case RES_OUTCOME: {
        struct prov_result pr = {.msg_id = r->id,
                                 .outcome = r->outcome,
                                 .provider_ref = r->ref,
                                 .error_code = r->code,
                                 .error_msg = r->text};
        if (r->outcome == PROV_ACCEPTED)
            g->accepted++;
        else if (r->outcome == PROV_TEMPFAIL)
            g->tempfail++;
        else
            g->permfail++;
        h->outcome(h->ctx, &pr);
        break;
    }
    case RES_INBOUND: {
        struct gm_track *t = xcalloc(1, sizeof *t);
        t->g = g;
        t->nlocs = r->nlocs;
        t->locs = r->locs;
        r->locs = NULL;
        LIST_INSERT_HEAD(&g->tracks, t, link);
        g->ntracks++;
        char masked[32];
        mask_number(r->code, masked, sizeof masked);
        h->log(h->ctx, 3, "inbound SMS from %s (%zu part%s)", masked, t->nlocs,
               t->nlocs > 1 ? "s" : "");
        struct prov_inbound in = {
            .from = r->code, .text = r->text, .provider_ref = r->ref, .received_at = r->when};
        h->inbound(h->ctx, &in, inbound_done, t); /* done() may run before this returns */
        break;
    }
    case RES_DLR: {
        if (r->num) {
            /* deleted from the SIM once written (inbound_done), as an inbound SMS is */
            struct gm_track *t = xcalloc(1, sizeof *t);
            t->g = g;
            t->dlr = 1;
            t->nlocs = r->nlocs;
            t->locs = r->locs;
            r->locs = NULL;
            LIST_INSERT_HEAD(&g->tracks, t, link);
            g->ntracks++;
            struct prov_dlr d = {
                .msg_id = 0, .provider_ref = r->ref, .delivered = r->delivered, .detail = r->text};
            g->reports++;
            h->dlr(h->ctx, &d, inbound_done, t); /* done() may run before this returns */
            break;
        }
        h->log(h->ctx, 3, "delivery report %s: %s", r->ref, r->text ? r->text : "");
        struct gm_req *rq = xcalloc(1, sizeof *rq);
        rq->kind = REQ_DELETE;
        rq->nlocs = r->nlocs;
        rq->locs = r->locs;
        r->locs = NULL;
        push_request(g, rq);
        break;
    }
    case RES_USSD: {
        struct gm_ussd *u;
        LIST_FOREACH(u, &g->ussds, link)
        {
            if (u->token == r->id)
                break;
        }
        if (u) {
            LIST_REMOVE(u, link);
            prov_gammu_ussd_fn done = u->done;
            void *arg = u->arg;
            free(u);
            done(arg, r->num, r->text);
        }
        break;
    }
    case RES_LOG:
        h->log(h->ctx, r->num, "%s", r->text);
        break;
    }
}

static void on_results(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gm *g = arg;
    struct gm_res_list batch = TAILQ_HEAD_INITIALIZER(batch);
    pthread_mutex_lock(&g->mu);
    TAILQ_CONCAT(&batch, &g->results, link);
    pthread_mutex_unlock(&g->mu);
    struct gm_res *r;
    while ((r = TAILQ_FIRST(&batch)) != NULL) {
        TAILQ_REMOVE(&batch, r, link);
        deliver(g, r);
        res_free(r);
    }
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gm *g = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, GM_STACK_SIZE);
    int rc = pthread_create(&g->thread, &attr, worker_main, g);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        g->started = 1;
        return;
    }
    pthread_mutex_lock(&g->mu);
    g->state = ST_DOWN;
    snprintf(g->last_error, sizeof g->last_error, "cannot start the modem thread: %s",
             strerror(rc));
    pthread_mutex_unlock(&g->mu);
    g->host->log(g->host->ctx, 0, "cannot start the modem thread: %s", strerror(rc));
}

/* ------------------------------------------------------------------------------ prov_ops */

static void opts_free(struct gm_opts *o)
{
    free(o->device);
    free(o->connection);
    free(o->model);
    free(o->pin);
    free(o->smsc);
}

static int opts_parse(const struct prov_conf *conf, struct gm_opts *o, char *err, size_t errlen)
{
    static const char *const known[] = {"device",
                                        "connection",
                                        "model",
                                        "pin",
                                        "poll_interval_ms",
                                        "send_timeout_ms",
                                        "reconnect_max_ms",
                                        "smsc",
                                        "delivery_reports",
                                        "concat_timeout_ms"};
    if (prov_conf_check_keys(conf, "gammu", known, sizeof known / sizeof known[0], err, errlen) < 0)
        return -1;
    const char *device = prov_conf_get(conf, "device", NULL);
    if (!device || !*device) {
        snprintf(err, errlen,
                 "the gammu driver needs 'device' (e.g. /dev/ttyUSB0, or the "
                 "directory of the dummy phone)");
        return -1;
    }
    const char *connection = prov_conf_get(conf, "connection", "at");
    if (!*connection) {
        snprintf(err, errlen, "connection must not be empty (at, at115200, none, …)");
        return -1;
    }
    const char *model = prov_conf_get(conf, "model", "");
    if (strlen(model) >= sizeof(((GSM_Config *)0)->Model)) {
        snprintf(err, errlen, "model is too long");
        return -1;
    }
    const char *pin = prov_conf_get(conf, "pin", NULL);
    if (pin && (strlen(pin) < 4 || strlen(pin) > 8 || strspn(pin, "0123456789") != strlen(pin))) {
        snprintf(err, errlen, "pin must be 4 to 8 digits");
        return -1;
    }
    const char *smsc = prov_conf_get(conf, "smsc", NULL);
    if (smsc && !valid_number(smsc)) {
        snprintf(err, errlen, "smsc must be a phone number such as +33609001390");
        return -1;
    }
    if (prov_conf_int(conf, "poll_interval_ms", 5000, 100, 3600000, &o->poll_ms, err, errlen) ||
        prov_conf_int(conf, "send_timeout_ms", 30000, 100, 600000, &o->send_timeout_ms, err, errlen) ||
        prov_conf_int(conf, "reconnect_max_ms", 60000, 100, 3600000, &o->reconnect_max_ms, err, errlen) ||
        prov_conf_int(conf, "concat_timeout_ms", 600000, 0, 86400000, &o->concat_timeout_ms, err,
                errlen) ||
        prov_conf_bool(conf, "delivery_reports", 1, &o->dlr, err, errlen))
        return -1;
    o->device = xstrdup(device);
    o->connection = xstrdup(connection);
    o->model = xstrdup(model);
    o->pin = pin ? xstrdup(pin) : NULL;
    o->smsc = smsc ? xstrdup(smsc) : NULL;
    return 0;
}

static int gm_create(const struct prov_conf *conf, const struct prov_host *host, void **priv,
                     char *err, size_t errlen)
{
    struct gm_opts o;
    memset(&o, 0, sizeof o);
    if (opts_parse(conf, &o, err, errlen) < 0) {
        opts_free(&o);
        return -1;
    }
    struct gm *g = xcalloc(1, sizeof *g);
    g->host = host;
    g->opt = o;
    LIST_INIT(&g->tracks);
    LIST_INIT(&g->ussds);
    TAILQ_INIT(&g->reqs);
    TAILQ_INIT(&g->results);
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&g->stop, 0);
    g->state = ST_CONNECTING;
    g->activity = "starting";
    g->signal = -1;
    g->ev_results = event_new(host->base, -1, 0, on_results, g);
    g->ev_start = evtimer_new(host->base, on_start, g);
    if (!g->ev_results || !g->ev_start)
        abort();
    struct timeval now = {0, 0};
    evtimer_add(g->ev_start, &now);
    *priv = g;
    return 0;
}

static void gm_destroy(void *priv)
{
    struct gm *g = priv;
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    atomic_store(&g->stop, 1);
    if (g->sm_pub)
        GSM_AbortOperation(g->sm_pub); /* interrupts a blocking wait on a real modem */
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (g->started)
        pthread_join(g->thread, NULL); /* the worker terminates and frees its machine */
    event_free(g->ev_start);
    event_free(g->ev_results); /* no result can reach the host any more */
    struct gm_req *rq;
    while ((rq = TAILQ_FIRST(&g->reqs)) != NULL) {
        TAILQ_REMOVE(&g->reqs, rq, link);
        req_free(rq);
    }
    struct gm_res *r;
    while ((r = TAILQ_FIRST(&g->results)) != NULL) {
        TAILQ_REMOVE(&g->results, r, link);
        res_free(r);
    }
    struct gm_track *t;
    while ((t = LIST_FIRST(&g->tracks)) != NULL) {
        LIST_REMOVE(t, link);
        t->g = NULL; /* freed by its done(), whenever the core calls it */
    }
    struct gm_ussd *u;
    while ((u = LIST_FIRST(&g->ussds)) != NULL) { /* answered, so no caller waits for ever */
        LIST_REMOVE(u, link);
        u->done(u->arg, PROV_GAMMU_EDOWN, "the modem route stopped (restart or new options)");
        free(u);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    opts_free(&g->opt);
    free(g);
}

static int gm_send(void *priv, const struct prov_msg *m)
{
    struct gm *g = priv;
    const char *text = m->text ? m->text : "";
    struct prov_text_info ti;
    if (!valid_number(m->to)) {
        push_outcome(g, m->id, PROV_PERMFAIL, NULL, "invalid_number",
                     "the destination is not a phone number");
        return 0;
    }
    if (prov_text_analyse(text, strlen(text), &ti) != 0) {
        push_outcome(g, m->id, PROV_PERMFAIL, NULL, "invalid_text", "the text is not UTF-8");
        return 0;
    }
    if (utf16_units(text) > GM_MAX_TEXT_UNITS) {
        push_outcome(g, m->id, PROV_PERMFAIL, NULL, "text_too_long",
                     "the text is too long for a modem route");
        return 0;
    }
    pthread_mutex_lock(&g->mu);
    if (g->state == ST_DOWN) {
        char msg[300];
        snprintf(msg, sizeof msg, "modem down: %s", g->last_error);
        pthread_mutex_unlock(&g->mu);
        push_outcome(g, m->id, PROV_TEMPFAIL, NULL, "modem_down", msg); /* reported later */
        return 0;
    }
    if (g->nreqs >= GM_MAX_QUEUE) {
        pthread_mutex_unlock(&g->mu);
        return -1; /* the core retries later */
    }
    pthread_mutex_unlock(&g->mu);
    struct gm_req *rq = xcalloc(1, sizeof *rq);
    rq->kind = REQ_SEND;
    rq->id = m->id;
    rq->to = xstrdup(m->to);
    rq->text = xstrdup(text);
    push_request(g, rq);
    return 0;
}

static void gm_status(void *priv, json_t *out)
{
    struct gm *g = priv;
    pthread_mutex_lock(&g->mu);
    enum gm_state st = g->state;
    const char *activity = g->activity;
    int signal = g->signal;
    char name[64], code[16], nstate[16], last[256];
    snprintf(name, sizeof name, "%s", g->net_name);
    snprintf(code, sizeof code, "%s", g->net_code);
    snprintf(nstate, sizeof nstate, "%s", g->net_state);
    snprintf(last, sizeof last, "%s", g->last_error);
    uint64_t polls = g->polls;
    size_t queued = g->nreqs;
    pthread_mutex_unlock(&g->mu);
    json_object_set_new(out, "state", json_string(state_names[st]));
    json_object_set_new(out, "activity", json_string(activity));
    json_object_set_new(out, "device", json_string(g->opt.device));
    json_object_set_new(out, "connection", json_string(g->opt.connection));
    json_object_set_new(out, "signal_percent", signal >= 0 ? json_integer(signal) : json_null());
    json_object_set_new(out, "network_name", name[0] ? json_string(name) : json_null());
    json_object_set_new(out, "network_code", code[0] ? json_string(code) : json_null());
    json_object_set_new(out, "network_state", nstate[0] ? json_string(nstate) : json_null());
    json_object_set_new(out, "last_error", last[0] ? json_string(last) : json_null());
    json_object_set_new(out, "queued", json_integer((json_int_t)queued));
    json_object_set_new(out, "polls", json_integer((json_int_t)polls));
    json_object_set_new(out, "sent", json_integer((json_int_t)g->accepted));
    json_object_set_new(out, "temporary_failures", json_integer((json_int_t)g->tempfail));
    json_object_set_new(out, "permanent_failures", json_integer((json_int_t)g->permfail));
    json_object_set_new(out, "received", json_integer((json_int_t)g->received));
    json_object_set_new(out, "inbound_pending", json_integer((json_int_t)g->ntracks));
    json_object_set_new(out, "delivery_reports", json_integer((json_int_t)g->reports));
}

int prov_gammu_ussd(void *priv, const char *code, prov_gammu_ussd_fn done, void *arg)
{
    struct gm *g = priv;
    if (!g || !code || !done)
        return PROV_GAMMU_EINVAL;
    size_t n = strlen(code);
    if (n == 0 || n > 160 || strspn(code, "0123456789*#+") != n)
        return PROV_GAMMU_EINVAL;
    pthread_mutex_lock(&g->mu);
    int down = g->state == ST_DOWN, full = g->nreqs >= GM_MAX_QUEUE;
    pthread_mutex_unlock(&g->mu);
    if (down)
        return PROV_GAMMU_EDOWN;
    if (full)
        return PROV_GAMMU_EBUSY;
    struct gm_ussd *u = xcalloc(1, sizeof *u);
    u->token = ++g->ussd_seq;
    u->done = done;
    u->arg = arg;
    LIST_INSERT_HEAD(&g->ussds, u, link);
    struct gm_req *rq = xcalloc(1, sizeof *rq);
    rq->kind = REQ_USSD;
    rq->id = u->token;
    rq->text = xstrdup(code);
    push_request(g, rq);
    return 0;
}

const struct prov_ops prov_gammu_ops = {
    .name = "gammu",
    .create = gm_create,
    .destroy = gm_destroy,
    .send = gm_send,
    .status = gm_status,
    .ussd = prov_gammu_ussd,
};
