/*
 * test_gammu_driver — the gammu route driver (providers/prov_gammu.c) against libGammu's real
 * dummy phone (a directory of SMS files), with a fake prov_host on a real event_base.
 *
 * What is observed, never assumed:
 *   - what was sent: GSM_SendSMS is wrapped at link time (-Wl,--wrap=GSM_SendSMS); the wrap
 *     calls the real function and records each part (and can save a copy in the dummy's
 *     outbox folder for the gammu command-line tool to read back);
 *   - what was received: SMS files written into the dummy's inbox (under a dot-name, then
 *     renamed, as a modem would make them appear), and whether the driver deleted them;
 *   - USSD failures: GSM_DialService is wrapped too, to make the phone say "not supported".
 * Waits poll with deadlines and report the route's status when they time out; the "polls"
 * counter of the status says when a full inbox scan has happened after an injection.
 *
 * Run with GAMMU_TEST_VERBOSE=1 to see the route's log.
 */
#include "prov_gammu.h"
#include "provider.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <ftw.h>
#include <gammu.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* prov_conf_get and prov_conf_core_key live in prov_registry.c, which pulls in every driver.
 * Weak copies: a build that links the registry uses the real ones. */
__attribute__((weak)) const char *prov_conf_get(const struct prov_conf *c, const char *key,
                                                const char *def)
{
    for (size_t i = c->n; i > 0; i--)
        if (strcmp(c->keys[i - 1], key) == 0)
            return c->values[i - 1];
    return def;
}

__attribute__((weak)) int prov_conf_core_key(const char *key)
{
    static const char *const core[] = {"driver", "rate", "concurrency", "breaker_failures",
                                       "breaker_cooldown_ms"};
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        if (strcmp(core[i], key) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------ link-time wraps */

#define MAX_WRAPPED 64
static pthread_mutex_t wrap_mu = PTHREAD_MUTEX_INITIALIZER;
static GSM_SMSMessage wrap_parts[MAX_WRAPPED]; /* 5 KB each: static, not on a stack */
static int wrap_n;
static GSM_Error wrap_fail = ERR_NONE; /* the next GSM_SendSMS returns this, sending nothing */
static int wrap_save;                  /* also store a copy in the dummy's outbox (folder 2) */
static GSM_Error dial_fail = ERR_NONE; /* the next GSM_DialService returns this */

GSM_Error __real_GSM_SendSMS(GSM_StateMachine *s, GSM_SMSMessage *sms);
GSM_Error __wrap_GSM_SendSMS(GSM_StateMachine *s, GSM_SMSMessage *sms);
GSM_Error __real_GSM_DialService(GSM_StateMachine *s, char *number);
GSM_Error __wrap_GSM_DialService(GSM_StateMachine *s, char *number);

GSM_Error __wrap_GSM_SendSMS(GSM_StateMachine *s, GSM_SMSMessage *sms)
{
    pthread_mutex_lock(&wrap_mu);
    GSM_Error fail = wrap_fail;
    wrap_fail = ERR_NONE;
    int save = wrap_save;
    pthread_mutex_unlock(&wrap_mu);
    if (fail != ERR_NONE)
        return fail;
    GSM_Error e = __real_GSM_SendSMS(s, sms);
    if (e != ERR_NONE)
        return e;
    pthread_mutex_lock(&wrap_mu);
    if (wrap_n < MAX_WRAPPED)
        wrap_parts[wrap_n++] = *sms;
    pthread_mutex_unlock(&wrap_mu);
    if (save) {
        /* Runs on the driver's worker thread, outside any callback: a libGammu call is fine.
         * Stored as a plain Submit (a Status_Report PDU would be saved as a report). */
        static GSM_SMSMessage copy;
        copy = *sms;
        copy.Folder = 2;
        copy.Location = 0;
        copy.State = SMS_Sent;
        copy.PDU = SMS_Submit;
        (void)GSM_AddSMS(s, &copy);
    }
    return e;
}

GSM_Error __wrap_GSM_DialService(GSM_StateMachine *s, char *number)
{
    pthread_mutex_lock(&wrap_mu);
    GSM_Error fail = dial_fail;
    dial_fail = ERR_NONE;
    pthread_mutex_unlock(&wrap_mu);
    if (fail != ERR_NONE)
        return fail;
    return __real_GSM_DialService(s, number);
}

static int wrapped_count(void)
{
    pthread_mutex_lock(&wrap_mu);
    int n = wrap_n;
    pthread_mutex_unlock(&wrap_mu);
    return n;
}

/* ------------------------------------------------------------------------ fake host */

struct rec_outcome {
    int64_t id;
    int outcome;
    char ref[64], code[64], msg[300];
};

struct rec_inbound {
    char from[64];
    char *text;
    char ref[400];
    time_t when;
};

struct rec_dlr {
    char ref[64];
    int delivered;
};

struct stored {
    char ref[400];
    int64_t id;
};

static struct {
    struct event_base *base;
    struct prov_host host;
    void *route; /* destroyed by the teardown if a test fails half-way */
    char root[256], phone[300], rc[300];
    struct rec_outcome out[32];
    int nout;
    struct rec_inbound in[32];
    int nin;
    struct rec_dlr dlr[16];
    int ndlr;
    struct stored db[32]; /* what the "database" holds: provider_ref → id */
    int ndb;
    int inbound_fail; /* the next N stores fail */
    int delay_ms;     /* time a store takes */
    int pending;      /* done() not yet called */
    int dones;        /* done() called */
    int destroyed;    /* callbacks from now on are defects */
    int late_calls;
} F;

static void host_outcome(void *ctx, const struct prov_result *r)
{
    (void)ctx;
    if (F.destroyed)
        F.late_calls++;
    assert_true(F.nout < 32);
    struct rec_outcome *o = &F.out[F.nout++];
    o->id = r->msg_id;
    o->outcome = r->outcome;
    snprintf(o->ref, sizeof o->ref, "%s", r->provider_ref ? r->provider_ref : "");
    snprintf(o->code, sizeof o->code, "%s", r->error_code ? r->error_code : "");
    snprintf(o->msg, sizeof o->msg, "%s", r->error_msg ? r->error_msg : "");
}

static void host_dlr(void *ctx, const struct prov_dlr *d, prov_done_fn done, void *arg)
{
    (void)ctx;
    if (F.destroyed)
        F.late_calls++;
    assert_true(F.ndlr < 16);
    snprintf(F.dlr[F.ndlr].ref, sizeof F.dlr[F.ndlr].ref, "%s",
             d->provider_ref ? d->provider_ref : "");
    F.dlr[F.ndlr].delivered = d->delivered;
    F.ndlr++;
    if (done)
        done(arg, 0, 0); /* written: the driver deletes the report from the phone */
}

struct pending_done {
    prov_done_fn done;
    void *arg;
    int err;
    char ref[400];
};

static void fire_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pending_done *p = arg;
    int64_t id = 0;
    if (p->err == 0) { /* like the core: a known provider_ref answers with the first id */
        for (int i = 0; i < F.ndb; i++)
            if (strcmp(F.db[i].ref, p->ref) == 0)
                id = F.db[i].id;
        if (!id) {
            assert_true(F.ndb < 32);
            id = 1000 + F.ndb;
            snprintf(F.db[F.ndb].ref, sizeof F.db[F.ndb].ref, "%s", p->ref);
            F.db[F.ndb++].id = id;
        }
    }
    F.pending--;
    F.dones++;
    p->done(p->arg, p->err, id);
    free(p);
}

static void host_inbound(void *ctx, const struct prov_inbound *in, prov_done_fn done, void *arg)
{
    (void)ctx;
    if (F.destroyed)
        F.late_calls++;
    assert_true(F.nin < 32);
    struct rec_inbound *r = &F.in[F.nin++];
    snprintf(r->from, sizeof r->from, "%s", in->from);
    r->text = strdup(in->text);
    snprintf(r->ref, sizeof r->ref, "%s", in->provider_ref ? in->provider_ref : "");
    r->when = in->received_at;
    struct pending_done *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->done = done;
    p->arg = arg;
    p->err = 0;
    if (F.inbound_fail > 0) {
        F.inbound_fail--;
        p->err = -2; /* GW_EDOWN: the database is unavailable */
    }
    snprintf(p->ref, sizeof p->ref, "%s", r->ref);
    F.pending++;
    struct timeval tv = {F.delay_ms / 1000, (F.delay_ms % 1000) * 1000};
    assert_int_equal(event_base_once(F.base, -1, EV_TIMEOUT, fire_done, p, &tv), 0);
}

__attribute__((format(printf, 3, 4))) static void host_log(void *ctx, int level, const char *fmt,
                                                           ...)
{
    (void)ctx;
    if (!getenv("GAMMU_TEST_VERBOSE"))
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[route gsm] <%d> ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------------ helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the loop for about ms milliseconds. */
static void spin(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(F.base, &tv);
    event_base_dispatch(F.base);
}

static char status_buf[4096];

static const char *status_text(void)
{
    if (!F.route)
        return "(no route)";
    json_t *o = json_object();
    prov_gammu_ops.status(F.route, o);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(status_buf, sizeof status_buf, "%s", s ? s : "?");
    free(s);
    json_decref(o);
    return status_buf;
}

static char field_buf[512];

/* A status field as text ("" when null or missing). */
static const char *st_str(const char *key)
{
    json_t *o = json_object();
    prov_gammu_ops.status(F.route, o);
    json_t *v = json_object_get(o, key);
    field_buf[0] = '\0';
    if (json_is_string(v))
        snprintf(field_buf, sizeof field_buf, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(field_buf, sizeof field_buf, "%lld", (long long)json_integer_value(v));
    json_decref(o);
    return field_buf;
}

static long long st_int(const char *key)
{
    return strtoll(st_str(key), NULL, 10);
}

#define WAIT_FOR(cond, ms, what)                                                                   \
    do {                                                                                           \
        int64_t deadline_ = now_ms() + (ms);                                                       \
        while (!(cond) && now_ms() < deadline_)                                                    \
            spin(10);                                                                              \
        if (!(cond))                                                                               \
            fail_msg("timed out after %d ms waiting for %s; route status %s", (ms), (what),        \
                     status_text());                                                               \
    } while (0)

/* Wait for two complete inbox scans to start and end after this point. */
static void wait_two_scans(void)
{
    long long p0 = st_int("polls");
    WAIT_FOR(st_int("polls") >= p0 + 2, 20000, "two more inbox scans");
}

static int exists(const char *dir, int folder, int loc)
{
    char p[400];
    snprintf(p, sizeof p, "%s/sms/%d/%d", dir, folder, loc);
    return access(p, F_OK) == 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_phone_dirs(const char *phone)
{
    char p[400];
    assert_int_equal(mkdir(phone, 0755), 0);
    assert_int_equal(snprintf(p, sizeof p, "%s/sms", phone) < (int)sizeof p, 1);
    assert_int_equal(mkdir(p, 0755), 0);
    for (int i = 1; i <= 5; i++) {
        snprintf(p, sizeof p, "%s/sms/%d", phone, i);
        assert_int_equal(mkdir(p, 0755), 0);
    }
}

/* UTF-8 → UTF-16BE hex digits, done here independently of libGammu. */
static char *utf16hex(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(8 * n + 1);
    assert_non_null(out);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp;
        int len = *p < 0x80 ? 1 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : 4;
        cp = len == 1 ? *p : len == 2 ? *p & 0x1F : len == 3 ? *p & 0x0F : *p & 0x07;
        for (int i = 1; i < len; i++)
            cp = cp << 6 | (p[i] & 0x3F);
        p += len;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            o += (size_t)snprintf(out + o, 9, "%04X%04X", 0xD800 + (cp >> 10),
                                  0xDC00 + (cp & 0x3FF));
        } else {
            o += (size_t)snprintf(out + o, 5, "%04X", cp);
        }
    }
    out[o] = '\0';
    return out;
}

/* Write a file into the dummy phone as a modem would make it appear: whole, at once. */
static void put_file(int folder, int loc, const char *content)
{
    char tmp[400], dst[400];
    snprintf(tmp, sizeof tmp, "%s/sms/%d/.incoming", F.phone, folder);
    snprintf(dst, sizeof dst, "%s/sms/%d/%d", F.phone, folder, loc);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

/* An SMS-DELIVER in Gammu's SMS backup format; udh may be NULL. */
static void put_sms(int folder, int loc, const char *from, const char *udh, const char *text)
{
    char *hex = utf16hex(text);
    size_t hl = strlen(hex);
    size_t cap = 1024 + hl + hl / 200 * 16;
    char *c = malloc(cap);
    assert_non_null(c);
    int n = snprintf(c, cap,
                     "[SMSBackup000]\nSMSC = \"+33609001390\"\nPDU = Deliver\n"
                     "DateTime = 20261129T204618Z\nState = UnRead\nNumber = \"%s\"\n"
                     "Coding = Unicode\nFolder = %d\n",
                     from, folder);
    if (udh)
        n += snprintf(c + n, cap - (size_t)n, "UDH = %s\n", udh);
    for (size_t i = 0, line = 0; i < hl; i += 200, line++)
        n += snprintf(c + n, cap - (size_t)n, "Text%02zu = %.200s\n", line, hex + i);
    put_file(folder, loc, c);
    free(c);
    free(hex);
}

static void *route_new(const char *const *extra, char *err, size_t errlen)
{
    const char *keys[32], *values[32];
    size_t n = 0;
    keys[n] = "driver", values[n++] = "gammu";
    keys[n] = "device", values[n++] = F.phone;
    keys[n] = "connection", values[n++] = "none";
    keys[n] = "model", values[n++] = "dummy";
    keys[n] = "poll_interval_ms", values[n++] = "200";
    keys[n] = "reconnect_max_ms", values[n++] = "300";
    keys[n] = "send_timeout_ms", values[n++] = "3000";
    keys[n] = "rate", values[n++] = "5";
    keys[n] = "concurrency", values[n++] = "1";
    keys[n] = "breaker_failures", values[n++] = "5"; /* core keys are accepted, unused */
    for (size_t i = 0; extra && extra[i]; i += 2) {
        keys[n] = extra[i];
        values[n++] = extra[i + 1];
    }
    struct prov_conf conf = {.n = n, .keys = keys, .values = values};
    void *priv = NULL;
    if (prov_gammu_ops.create(&conf, &F.host, &priv, err, errlen) != 0)
        return NULL;
    return priv;
}

static void start_route(const char *const *extra)
{
    char err[256] = "";
    F.route = route_new(extra, err, sizeof err);
    if (!F.route)
        fail_msg("create failed: %s", err);
    WAIT_FOR(strcmp(st_str("state"), "up") == 0, 15000, "the modem to come up");
}

static void stop_route(void)
{
    prov_gammu_ops.destroy(F.route);
    F.route = NULL;
}

static void send_msg(int64_t id, const char *to, const char *text)
{
    struct prov_msg m = {.id = id, .to = to, .text = text, .segments = 1, .attempt = 1};
    assert_int_equal(prov_gammu_ops.send(F.route, &m), 0);
}

static const struct rec_outcome *outcome_for(int64_t id)
{
    for (int i = 0; i < F.nout; i++)
        if (F.out[i].id == id)
            return &F.out[i];
    return NULL;
}

static const struct rec_outcome *wait_outcome(int64_t id)
{
    WAIT_FOR(outcome_for(id) != NULL, 15000, "an outcome");
    return outcome_for(id);
}

static char *to_utf8(const unsigned char *ucs2)
{
    char *s = malloc(4 * UnicodeLength(ucs2) + 1);
    assert_non_null(s);
    EncodeUTF8(s, ucs2);
    return s;
}

/* Decode the wrapped parts [from, from + n) back to UTF-8 with libGammu's own decoder. */
static char *decode_sent(int from, int n)
{
    GSM_MultiSMSMessage *mm = calloc(1, sizeof *mm);
    assert_non_null(mm);
    pthread_mutex_lock(&wrap_mu);
    for (int i = 0; i < n; i++) {
        mm->SMS[i] = wrap_parts[from + i];
        mm->SMS[i].PDU = SMS_Submit;
    }
    pthread_mutex_unlock(&wrap_mu);
    mm->Number = n;
    GSM_MultiPartSMSInfo info;
    GSM_ClearMultiPartSMSInfo(&info);
    assert_true(GSM_DecodeMultiPartSMS(NULL, &info, mm, FALSE));
    assert_true(info.EntriesNum >= 1);
    assert_non_null(info.Entries[0].Buffer);
    char *text = to_utf8(info.Entries[0].Buffer);
    GSM_FreeMultiPartSMSInfo(&info);
    free(mm);
    return text;
}

/* ------------------------------------------------------------------------ fixtures */

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    F.base = event_base_new();
    assert_non_null(F.base);
    F.host = (struct prov_host){.ctx = &F,
                                .base = F.base,
                                .route = "gsm",
                                .outcome = host_outcome,
                                .dlr = host_dlr,
                                .inbound = host_inbound,
                                .log = host_log};
    F.delay_ms = 20;
    const char *tmp = getenv("TMPDIR");
    snprintf(F.root, sizeof F.root, "%s/gammu-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(F.root));
    snprintf(F.phone, sizeof F.phone, "%s/phone", F.root);
    snprintf(F.rc, sizeof F.rc, "%s/gammurc", F.root);
    make_phone_dirs(F.phone);
    pthread_mutex_lock(&wrap_mu);
    wrap_n = 0;
    wrap_save = 0;
    wrap_fail = ERR_NONE;
    dial_fail = ERR_NONE;
    pthread_mutex_unlock(&wrap_mu);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (F.route)
        stop_route();
    for (int64_t d = now_ms() + 5000; F.pending > 0 && now_ms() < d;)
        spin(10); /* let the fake database answer what it still holds */
    for (int i = 0; i < F.nin; i++)
        free(F.in[i].text);
    event_base_free(F.base);
    remove_tree(F.root);
    return 0;
}

/* ------------------------------------------------------------------------ tests */

static const char LONG_FR[] =
    "Bonjour Mme Dupont, votre rendez-vous à la CAF est confirmé pour demain 10 h 30. "
    "Pensez à apporter votre pièce d'identité, l'attestation de la CAF et le courrier reçu. "
    "Merci ! 😊";

/* (1) A long French text with ç and an emoji goes out as concatenated UCS-2 parts that decode
 * back to the very same text; the gammu command-line tool reads the same back. */
static void test_send_long_french(void **state)
{
    (void)state;
    FILE *rc = fopen(F.rc, "w");
    assert_non_null(rc);
    fprintf(rc, "[gammu]\nmodel = dummy\nconnection = none\ndevice = %s\n", F.phone);
    assert_int_equal(fclose(rc), 0);
    start_route(NULL);
    assert_int_equal(st_int("signal_percent"), 42);
    assert_string_equal(st_str("network_name"), "GammuT3l");
    assert_string_equal(st_str("network_code"), "999 99");
    pthread_mutex_lock(&wrap_mu);
    wrap_save = 1;
    pthread_mutex_unlock(&wrap_mu);

    send_msg(1, "+33612345678", LONG_FR);
    const struct rec_outcome *o = wait_outcome(1);
    assert_int_equal(o->outcome, PROV_ACCEPTED);
    assert_string_equal(o->ref, "gammu-255"); /* the dummy's reference for every SMS */

    int n = wrapped_count();
    assert_int_equal(n, 3); /* 182 UTF-16 units: 67 + 67 + 48 */
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&wrap_mu);
        GSM_SMSMessage *p = &wrap_parts[i];
        int coding = p->Coding, type = p->UDH.Type, part = p->UDH.PartNumber;
        int all = p->UDH.AllParts, pdu = p->PDU;
        char *num = to_utf8(p->Number);
        pthread_mutex_unlock(&wrap_mu);
        assert_string_equal(num, "+33612345678");
        free(num);
        assert_int_equal(coding, SMS_Coding_Unicode_No_Compression);
        assert_int_equal(type, UDH_ConcatenatedMessages);
        assert_int_equal(part, i + 1);
        assert_int_equal(all, n);
        /* a delivery report is requested on the last part only */
        assert_int_equal(pdu, i == n - 1 ? SMS_Status_Report : SMS_Submit);
    }
    char *back = decode_sent(0, n);
    assert_string_equal(back, LONG_FR);
    free(back);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "LC_ALL=C.UTF-8 gammu -c '%s' geteachsms 2>&1", F.rc);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char out[65536];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int rcode = pclose(p);
    if (rcode != 0 || !strstr(out, "\"+33612345678\"") || !strstr(out, LONG_FR))
        fail_msg("gammu geteachsms (exit %d) does not show the message:\n%s", rcode, out);
    stop_route();
}

/* (1b) A long text whose accents are all in GSM-7 stays GSM-7 (2 parts, not 3 in UCS-2);
 * delivery_reports = no requests none. */
static void test_send_gsm7_no_reports(void **state)
{
    (void)state;
    static const char text[] =
        "Bonjour, votre dossier est complet. Le rendez-vous à la mairie est confirmé pour lundi "
        "à 9 h. Pièce d'identité et justificatif de domicile à apporter. Où ? Au guichet 3. "
        "Merci et à lundi.";
    const char *extra[] = {"delivery_reports", "no", NULL};
    start_route(extra);
    send_msg(7, "+33612345678", text);
    const struct rec_outcome *o = wait_outcome(7);
    assert_int_equal(o->outcome, PROV_ACCEPTED);
    int n = wrapped_count();
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&wrap_mu);
        int coding = wrap_parts[i].Coding, pdu = wrap_parts[i].PDU;
        pthread_mutex_unlock(&wrap_mu);
        assert_int_equal(coding, SMS_Coding_Default_No_Compression);
        assert_int_equal(pdu, SMS_Submit);
    }
    char *back = decode_sent(0, n);
    assert_string_equal(back, text);
    free(back);
    stop_route();
}

/* (1c) Failures: a bad number and invalid data are permanent; a modem timeout is temporary,
 * takes the route down and it reconnects; then sending works again. */
static void test_send_failures(void **state)
{
    (void)state;
    start_route(NULL);
    send_msg(10, "hello", "x");
    const struct rec_outcome *o = wait_outcome(10);
    assert_int_equal(o->outcome, PROV_PERMFAIL);
    assert_string_equal(o->code, "invalid_number");
    send_msg(11, "+33612345678", "caf\xC3"); /* truncated UTF-8 */
    o = wait_outcome(11);
    assert_int_equal(o->outcome, PROV_PERMFAIL);
    assert_string_equal(o->code, "invalid_text");
    assert_int_equal(wrapped_count(), 0); /* neither reached the modem */

    pthread_mutex_lock(&wrap_mu);
    wrap_fail = ERR_INVALIDDATA;
    pthread_mutex_unlock(&wrap_mu);
    send_msg(12, "+33612345678", "bonjour");
    o = wait_outcome(12);
    assert_int_equal(o->outcome, PROV_PERMFAIL);
    assert_string_equal(o->code, "gammu_invaliddata");

    pthread_mutex_lock(&wrap_mu);
    wrap_fail = ERR_TIMEOUT;
    pthread_mutex_unlock(&wrap_mu);
    long long polls = st_int("polls");
    send_msg(13, "+33612345678", "bonjour");
    o = wait_outcome(13);
    assert_int_equal(o->outcome, PROV_TEMPFAIL);
    assert_string_equal(o->code, "gammu_timeout");
    /* it reconnects by itself and polls again */
    WAIT_FOR(strcmp(st_str("state"), "up") == 0 && st_int("polls") > polls + 1, 15000,
             "the route to reconnect after a timeout");
    send_msg(14, "+33612345678", "bonjour");
    o = wait_outcome(14);
    assert_int_equal(o->outcome, PROV_ACCEPTED);
    assert_int_equal(st_int("permanent_failures"), 3);
    assert_int_equal(st_int("temporary_failures"), 1);
    assert_int_equal(st_int("sent"), 1);
    stop_route();
}

static const char P1[] = "Bonjour, je confirme le rendez-vous ";
static const char P2[] = "de demain à 10 h 30 à la mairie, ";
static const char P3[] = "merci beaucoup ! Élodie 😊";

/* (2) Three parts of one message in two inbox folders, written out of order → one inbound
 * with the whole text; after the store is confirmed the parts are gone; nothing comes twice. */
static void test_inbound_concatenated(void **state)
{
    (void)state;
    start_route(NULL);
    put_sms(1, 4, "+33698765432", "050003A70303", P3);
    put_sms(3, 7, "+33698765432", "050003A70302", P2);
    put_sms(1, 2, "+33698765432", "050003A70301", P1);
    WAIT_FOR(F.nin >= 1, 15000, "the inbound message");
    assert_string_equal(F.in[0].from, "+33698765432");
    char whole[256];
    snprintf(whole, sizeof whole, "%s%s%s", P1, P2, P3);
    assert_string_equal(F.in[0].text, whole);
    struct tm tm = {
        .tm_year = 126, .tm_mon = 10, .tm_mday = 29, .tm_hour = 20, .tm_min = 46, .tm_sec = 18};
    assert_int_equal(F.in[0].when, timegm(&tm));
    assert_non_null(strstr(F.in[0].ref, "+33698765432:"));
    WAIT_FOR(!exists(F.phone, 1, 2) && !exists(F.phone, 3, 7) && !exists(F.phone, 1, 4), 15000,
             "the three parts to be deleted after the store");
    wait_two_scans();
    assert_int_equal(F.nin, 1);
    assert_int_equal(st_int("received"), 1);
    stop_route();
}

/* (2b) When the store fails the message stays on the SIM and comes again at the next poll,
 * with the same provider_ref; when it is stored it is deleted. */
static void test_inbound_store_failure(void **state)
{
    (void)state;
    F.inbound_fail = 1;
    start_route(NULL);
    put_sms(1, 1, "+33698765432", NULL, "Oui, je serai là.");
    WAIT_FOR(F.nin >= 1 && F.dones >= 1, 15000, "the first (failing) store");
    assert_true(exists(F.phone, 1, 1)); /* kept after the failure */
    WAIT_FOR(F.nin >= 2, 15000, "the message offered again");
    assert_string_equal(F.in[1].ref, F.in[0].ref);
    assert_string_equal(F.in[1].text, "Oui, je serai là.");
    WAIT_FOR(!exists(F.phone, 1, 1), 15000, "the message to be deleted once stored");
    wait_two_scans();
    assert_int_equal(F.nin, 2);
    stop_route();
}

/* (2c) A concatenated message with a part missing is held until the part arrives; with a
 * short concat_timeout_ms it is delivered as it is. */
static void test_inbound_incomplete(void **state)
{
    (void)state;
    start_route(NULL);
    put_sms(1, 1, "+33698765432", "050003110301", P1);
    put_sms(1, 3, "+33698765432", "050003110303", P3);
    wait_two_scans();
    assert_int_equal(F.nin, 0);
    put_sms(1, 2, "+33698765432", "050003110302", P2);
    WAIT_FOR(F.nin >= 1, 15000, "the message once complete");
    char whole[256];
    snprintf(whole, sizeof whole, "%s%s%s", P1, P2, P3);
    assert_string_equal(F.in[0].text, whole);
    WAIT_FOR(!exists(F.phone, 1, 1) && !exists(F.phone, 1, 2) && !exists(F.phone, 1, 3), 15000,
             "the parts to be deleted");
    stop_route();

    const char *extra[] = {"concat_timeout_ms", "300", NULL};
    start_route(extra);
    put_sms(1, 5, "+33611111111", "050003220301", P1);
    put_sms(1, 6, "+33611111111", "050003220302", P2);
    WAIT_FOR(F.nin >= 2, 15000, "the incomplete message after concat_timeout_ms");
    char two[256];
    snprintf(two, sizeof two, "%s%s", P1, P2);
    assert_string_equal(F.in[1].text, two);
    assert_string_equal(F.in[1].from, "+33611111111");
    stop_route();
}

/* (2d) Two senders using the same concatenation reference are not mixed up. */
static void test_inbound_two_senders_same_ref(void **state)
{
    (void)state;
    start_route(NULL);
    put_sms(1, 1, "+33611111111", "050003420201", "Alice un ");
    put_sms(1, 2, "+33622222222", "050003420201", "Bob un ");
    put_sms(1, 3, "+33622222222", "050003420202", "Bob deux");
    put_sms(1, 4, "+33611111111", "050003420202", "Alice deux");
    WAIT_FOR(F.nin >= 2, 15000, "two inbound messages");
    int alice = strcmp(F.in[0].from, "+33611111111") == 0 ? 0 : 1;
    assert_string_equal(F.in[alice].from, "+33611111111");
    assert_string_equal(F.in[alice].text, "Alice un Alice deux");
    assert_string_equal(F.in[1 - alice].from, "+33622222222");
    assert_string_equal(F.in[1 - alice].text, "Bob un Bob deux");
    stop_route();
}

/* (3) Garbage and an empty file in the inbox neither hang the scan nor hide the real messages
 * after them; they are left alone. */
static void test_inbound_garbage(void **state)
{
    (void)state;
    start_route(NULL);
    put_file(1, 1, "this is not an SMS backup\n\x01\x02\n");
    put_file(1, 2, "");
    put_sms(1, 3, "+33698765432", NULL, "Premier après les déchets");
    put_sms(3, 1, "+33698765433", NULL, "Second, mémoire du téléphone");
    WAIT_FOR(F.nin >= 2, 15000, "both real messages");
    int first = strcmp(F.in[0].from, "+33698765432") == 0 ? 0 : 1;
    assert_string_equal(F.in[first].text, "Premier après les déchets");
    assert_string_equal(F.in[1 - first].text, "Second, mémoire du téléphone");
    WAIT_FOR(!exists(F.phone, 1, 3) && !exists(F.phone, 3, 1), 15000, "their deletion");
    wait_two_scans(); /* scans keep completing */
    assert_true(exists(F.phone, 1, 1));
    assert_true(exists(F.phone, 1, 2));
    assert_int_equal(F.nin, 2);
    stop_route();
}

struct ussd_rec {
    int called, err;
    char reply[256];
};

static void on_ussd(void *arg, int err, const char *reply)
{
    struct ussd_rec *r = arg;
    if (F.destroyed)
        F.late_calls++;
    r->called++;
    r->err = err;
    snprintf(r->reply, sizeof r->reply, "%s", reply);
}

/* (4) The phone goes away: the route goes down, sends fail temporarily at once; it comes back
 * by itself when the phone is back. A route whose phone is missing at start is down too. */
static void test_device_gone_and_back(void **state)
{
    (void)state;
    start_route(NULL);
    remove_tree(F.phone);
    WAIT_FOR(strcmp(st_str("state"), "down") == 0, 15000, "the route to go down");
    assert_non_null(strstr(st_str("last_error"), "disappeared"));
    send_msg(20, "+33612345678", "pendant la panne");
    const struct rec_outcome *o = wait_outcome(20);
    assert_int_equal(o->outcome, PROV_TEMPFAIL);
    assert_string_equal(o->code, "modem_down");
    struct ussd_rec ur = {0};
    assert_int_equal(prov_gammu_ussd(F.route, "*100#", on_ussd, &ur), PROV_GAMMU_EDOWN);

    assert_int_equal(mkdir(F.phone, 0755), 0); /* the dummy makes its sms/1..5 itself */
    WAIT_FOR(strcmp(st_str("state"), "up") == 0, 15000, "the route to come back");
    send_msg(21, "+33612345678", "après la panne");
    o = wait_outcome(21);
    assert_int_equal(o->outcome, PROV_ACCEPTED);
    stop_route();

    remove_tree(F.phone);
    char err[256];
    F.route = route_new(NULL, err, sizeof err);
    assert_non_null(F.route);
    WAIT_FOR(strcmp(st_str("state"), "down") == 0, 15000, "a route without phone to be down");
    assert_non_null(strstr(st_str("last_error"), "not found"));
    send_msg(22, "+33612345678", "x");
    o = wait_outcome(22);
    assert_int_equal(o->outcome, PROV_TEMPFAIL);
    stop_route();
}

/* (5) USSD: the dummy answers "Reply for <code>"; a phone without USSD says so. */
static void test_ussd(void **state)
{
    (void)state;
    start_route(NULL);
    struct ussd_rec r = {0};
    assert_int_equal(prov_gammu_ussd(F.route, "*100#", on_ussd, &r), 0);
    WAIT_FOR(r.called, 15000, "the USSD answer");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.reply, "Reply for *100#");

    pthread_mutex_lock(&wrap_mu);
    dial_fail = ERR_NOTSUPPORTED;
    pthread_mutex_unlock(&wrap_mu);
    struct ussd_rec r2 = {0};
    assert_int_equal(prov_gammu_ussd(F.route, "*123#", on_ussd, &r2), 0);
    WAIT_FOR(r2.called, 15000, "the USSD refusal");
    assert_true(r2.err < 0);
    assert_int_equal(r2.err, PROV_GAMMU_ENOTSUP);
    assert_string_equal(r2.reply, "not supported by this phone");

    struct ussd_rec r3 = {0};
    assert_int_equal(prov_gammu_ussd(F.route, "*100#; rm", on_ussd, &r3), PROV_GAMMU_EINVAL);
    spin(50);
    assert_int_equal(r3.called, 0);
    assert_int_equal(r.called, 1);
    stop_route();
}

/* (6) A status report becomes a delivery report keyed gammu-<reference>, then is deleted. */
static void test_status_report(void **state)
{
    (void)state;
    start_route(NULL);
    put_file(1, 9,
             "[SMSBackup000]\nSMSC = \"+33609001390\"\nPDU = Status_Report\n"
             "DateTime = 20261129T204618Z\nSMSCDateTime = 20261129T204620Z\nState = UnRead\n"
             "Number = \"+33612345678\"\nMessageReference = 255\nFolder = 1\n");
    WAIT_FOR(F.ndlr >= 1, 15000, "the delivery report");
    assert_string_equal(F.dlr[0].ref, "gammu-255");
    assert_int_equal(F.dlr[0].delivered, 1);
    WAIT_FOR(!exists(F.phone, 1, 9), 15000, "the report to be deleted");
    assert_int_equal(F.nin, 0); /* a report is not an inbound message */
    wait_two_scans();
    assert_int_equal(F.ndlr, 1);
    stop_route();
}

/* (7) destroy() during a scan returns promptly, answers a pending USSD request (modem down),
 * nothing reaches the host afterwards, and a message whose store was still pending stays on the
 * SIM (read again at the next start). */
static void test_destroy_during_poll(void **state)
{
    (void)state;
    F.delay_ms = 1500; /* a slow database: the store is still pending at destroy() */
    start_route(NULL);
    put_sms(1, 1, "+33698765432", NULL, "Message en cours d'enregistrement");
    WAIT_FOR(F.nin >= 1, 15000, "the inbound message");
    struct ussd_rec r = {0};
    WAIT_FOR(strcmp(st_str("activity"), "polling") == 0, 15000, "a scan in progress");
    assert_int_equal(prov_gammu_ussd(F.route, "*100#", on_ussd, &r), 0);
    send_msg(30, "+33612345678", "queued behind the scan");
    int64_t t0 = now_ms();
    stop_route();
    int64_t took = now_ms() - t0;
    /* One dummy scan call walks up to 50,000 file names (~0.1 s, ~1 s under ASan): the
     * worker stops between calls. */
    if (took > 3000)
        fail_msg("destroy() took %lld ms", (long long)took);
    F.destroyed = 1;
    int nin = F.nin, nout = F.nout;
    put_sms(1, 2, "+33698765432", "050003330201", "plus rien");
    WAIT_FOR(F.pending == 0, 15000, "the pending store to answer"); /* done() after destroy */
    spin(300);
    assert_int_equal(F.late_calls, 0);
    assert_int_equal(F.nin, nin);
    assert_int_equal(F.nout, nout);
    /* the USSD request queued behind the scan was answered by destroy(), not left hanging */
    assert_int_equal(r.called, 1);
    assert_int_equal(r.err, PROV_GAMMU_EDOWN);
    assert_true(exists(F.phone, 1, 1)); /* its store answered after destroy: not deleted */
}

/* (8) Options: unknown keys, a missing device and bad values are refused with a clear error. */
static void test_options(void **state)
{
    (void)state;
    struct {
        const char *k, *v, *expect;
    } bad[] = {
        {"baud", "115200", "unknown option 'baud'"},
        {"poll_interval_ms", "abc", "poll_interval_ms"},
        {"poll_interval_ms", "10", "poll_interval_ms"},
        {"send_timeout_ms", "-1", "send_timeout_ms"},
        {"pin", "12a4", "pin"},
        {"smsc", "SMSC", "smsc"},
        {"delivery_reports", "maybe", "delivery_reports"},
        {"device", "", "device"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *extra[] = {bad[i].k, bad[i].v, NULL};
        char err[256] = "";
        void *p = route_new(extra, err, sizeof err);
        if (p) {
            prov_gammu_ops.destroy(p);
            fail_msg("%s = %s was accepted", bad[i].k, bad[i].v);
        }
        if (!strstr(err, bad[i].expect))
            fail_msg("%s = %s: error \"%s\" does not mention \"%s\"", bad[i].k, bad[i].v, err,
                     bad[i].expect);
    }
    /* good ones, and a route that is destroyed before its loop ever ran */
    const char *good[] = {
        "pin", "1234", "smsc", "+33609001390", "delivery_reports", "yes", "concat_timeout_ms",
        "0",   NULL};
    char err[256] = "";
    void *p = route_new(good, err, sizeof err);
    assert_non_null(p);
    prov_gammu_ops.destroy(p);
    prov_gammu_ops.destroy(NULL);
}

int main(void)
{
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "libevent without pthreads\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_long_french, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_gsm7_no_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_concatenated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_store_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_incomplete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_two_senders_same_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_gone_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ussd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_during_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
