/*
 * isendpro_mock — a stand-in for the iSendPro HTTP API, run by the tests and the demo.
 *
 * What it is: a single-threaded libevent (evhttp) server answering at http://HOST:PORT/cgi-bin/
 * the calls the real service answers at https://apirest.isendpro.com/cgi-bin/. It is written only
 * from shared/reference/isendpro.md (what is publicly known of the API) and the GSM 03.38 table.
 * Usage: isendpro_mock --listen HOST:PORT [--keyid KEY]... [--dlr-url URL] [--dlr-delay-ms N]
 *        [--dlr-retries N] [--dlr-retry-ms N] [--credit EUROS] [--record FILE] [--stop-len N]
 *        [--nostop-lifted]
 * One line per request on stderr; the keyid is never printed ("keyid=***").
 *
 * What it simulates (publicly documented behaviour):
 *   POST /cgi-bin/sms, /smsmulti, /comptage: JSON body whatever the content type (form fields
 *     too); field rules for num (national 0XXXXXXXXX or international digits without '+'), sms
 *     (GSM 03.38 default + extension table unless ucs2:"1"; ucs2 refused towards metropolitan
 *     France), long SMS (160/153, 70/67, at most 6 parts, smslong = max parts or "999"),
 *     emetteur (4-11 of [0-9A-Z ], not all digits), tracker (< 50 alphanumerics), date_envoi
 *     ("YYYY-MM-DD hh:mm"), gmt_zone (Europe/Paris is documented as absent from the list);
 *     per-number codes 0 (sent), 11 (blacklisted), 21 (number not assigned) in an HTTP 200;
 *     a general error (no "tel") in an HTTP 400; the irregular envelopes of the official
 *     examples (etat.etat array or single object, integer or string codes, flat etat);
 *   GET|POST /cgi-bin/credit (credit=1 euros, credit=2 euros + quantite);
 *   POST /cgi-bin/setlistenoire, /dellistenoire (delListeNoire and the PHP SDK's dellisteNoire),
 *     /getlistenoire (zipped CSV);
 *   the STOP mention appended when a custom sender is used, counted in the length, removed by
 *     nostop:"1" only once the account restriction is lifted (--nostop-lifted);
 *   delivery reports pushed to a configured URL, keyed on the tracker.
 *
 * What is INVENTED (not public; documented in tests/peers/README.md as mock-only):
 *   - the general error codes "1".."10", "12".."16" and "99", and every message text: only 0,
 *     11 and 21 are real codes;
 *   - the delivery report request: GET <dlr-url>?tracker=..&tel=..&status=delivered|undelivered;
 *   - the price (0.05 EUR per SMS part), the STOP mention length (12, --stop-len), the
 *     getlistenoire CSV layout (listenoire.csv, one number per line), the "tel" echoed in
 *     answers (always international: 0612345678 -> 33612345678), comptage's integer counters,
 *     the accepted gmt_zone names (any Area/City-like name except Europe/Paris);
 *   - everything under /_mock/ (test control: fault modes, envelope shapes, number lists, credit,
 *     keys, records of requests, sends and delivery reports).
 * /cgi-bin/campagne and /cgi-bin/hlr exist but their answers are undocumented: 501 here.
 */
#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PRICE_CENTS_PER_PART 5
#define DEFAULT_CREDIT_CENTS 10000
#define DEFAULT_DLR_DELAY_MS 1000
#define DEFAULT_STOP_LEN 12
#define HOLD_MAX_MS 600000L
#define DLR_TIMEOUT_S 5
#define MAX_BODY (1024 * 1024)
#define TEL_MAX 24

enum fault { F_NORMAL, F_SLOW, F_ERROR500, F_TIMEOUT, F_RESET };
static const char *const fault_names[] = {"normal", "slow", "error500", "timeout", "reset"};

enum { SHAPE_OBJECT = 1, SHAPE_FLAT = 2, SHAPE_STRCODES = 4 };

enum hold_kind { HOLD_SLOW, HOLD_TIMEOUT, HOLD_RESET };

struct reply {
    int status;
    const char *ctype;
    char *body; /* malloc'd */
    size_t len;
};

struct held {
    struct held *prev, *next;
    enum hold_kind kind;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    struct event *watch;
    struct reply reply; /* HOLD_SLOW: the answer to give once the delay is over */
};

struct dlr_job {
    struct dlr_job *prev, *next;
    struct event *ev;
    struct evhttp_connection *evcon;
    json_t *rec;
    int stage; /* 0 waiting for the delay, 1 in flight, 2 done (free on next tick), 3 waiting
                  to try again (--dlr-retries) */
    int err;   /* enum evhttp_request_error from the error callback, -1 none */
};

static struct {
    struct event_base *base;
    struct evhttp *http;
    /* start-up configuration */
    json_t *cli_keys; /* object used as a set */
    long long cli_credit_cents;
    char *cli_dlr_url;
    long cli_dlr_delay_ms;
    long cli_dlr_retries, cli_dlr_retry_ms;
    int cli_stop_len;
    int cli_nostop_lifted;
    FILE *record;
    /* state (back to the start-up configuration on /_mock/reset) */
    json_t *keys, *blacklist, *unassigned, *undeliverable;
    long long credit_cents;
    char *dlr_url;
    struct evhttp_uri *dlr_uri;
    struct evdns_base *dns; /* only when the DLR host is a name */
    long dlr_delay_ms;
    long dlr_retries, dlr_retry_ms; /* a report not answered 2xx is sent again, that often */
    int stop_len;
    int nostop_lifted;
    enum fault mode;
    long delay_ms;
    long remaining;
    int process; /* -1 default per mode, 0 or 1 forced */
    unsigned shape;
    json_t *requests, *sent, *dlrs;
    long long seq, sent_seq, dlr_seq;
    struct held *held;
    long nheld;
    struct dlr_job *jobs;
    long njobs;
} M;

/* ---------------------------------------------------------------- utilities */

static void now_iso(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000L);
}

__attribute__((format(printf, 1, 2))) static void logline(const char *fmt, ...)
{
    char ts[40];
    va_list ap;
    now_iso(ts, sizeof ts);
    fprintf(stderr, "isendpro_mock %s ", ts);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

static void record_write(const char *kind, json_t *obj)
{
    if (!M.record)
        return;
    json_t *line = json_pack("{s:s, s:O}", "kind", kind, "data", obj);
    if (!line)
        return;
    char *s = json_dumps(line, JSON_COMPACT);
    if (s) {
        fputs(s, M.record);
        fputc('\n', M.record);
        fflush(M.record);
        free(s);
    }
    json_decref(line);
}

static struct timeval ms_tv(long ms)
{
    struct timeval tv;
    if (ms < 0)
        ms = 0;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static void set_add(json_t *set, const char *key)
{
    json_object_set_new(set, key, json_true());
}

static int set_has(json_t *set, const char *key)
{
    return json_object_get(set, key) != NULL;
}

static json_t *set_to_array(json_t *set)
{
    json_t *a = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(set, k, v)
    {
        (void)v;
        json_array_append_new(a, json_string(k));
    }
    return a;
}

static void format_euros(long long cents, char *buf, size_t n)
{
    if (cents < 0)
        cents = 0;
    snprintf(buf, n, "%lld.%02lld", cents / 100, cents % 100);
}

/* Strict UTF-8 decoder: returns bytes consumed (1..4), or 0 on an invalid sequence. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        int k = utf8_next(p + i, n - i, &cp);
        if (k == 0 || cp == 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/*
 * GSM 03.38: 1 = default alphabet (one septet), 2 = extension table (escape + septet),
 * 0 = not representable. Written from the 3GPP TS 23.038 table.
 */
static int gsm_weight(uint32_t c)
{
    static const uint16_t basic[] = {0x00A1, 0x00A3, 0x00A4, 0x00A5, 0x00A7, 0x00BF, 0x00C4, 0x00C5,
                                     0x00C6, 0x00C7, 0x00C9, 0x00D1, 0x00D6, 0x00D8, 0x00DC, 0x00DF,
                                     0x00E0, 0x00E4, 0x00E5, 0x00E6, 0x00E8, 0x00E9, 0x00EC, 0x00F1,
                                     0x00F2, 0x00F6, 0x00F8, 0x00F9, 0x00FC, 0x0393, 0x0394, 0x0398,
                                     0x039B, 0x039E, 0x03A0, 0x03A3, 0x03A6, 0x03A8, 0x03A9};
    if (c == 0x0A || c == 0x0D)
        return 1;
    if ((c >= 0x20 && c <= 0x5A) || c == 0x5F || (c >= 0x61 && c <= 0x7A))
        return 1; /* ASCII printable except [ \ ] ^ ` { | } ~ */
    if (c == 0x0C || (c >= 0x5B && c <= 0x5E) || (c >= 0x7B && c <= 0x7E) || c == 0x20AC)
        return 2; /* FF [ \ ] ^ { | } ~ € */
    for (size_t i = 0; i < sizeof basic / sizeof basic[0]; i++)
        if (basic[i] == c)
            return 1;
    return 0;
}

struct count {
    int chars; /* septets (GSM) or UTF-16 units (UCS-2), STOP mention included */
    int parts;
    uint32_t bad_cp; /* first character outside GSM 03.38 (gsm mode), 0 if none */
};

/* Counts a text as iSendPro would bill it; stop_len units are appended for the STOP mention. */
static void count_text(const char *s, int ucs2, int stop_len, struct count *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    int single = ucs2 ? 70 : 160, per = ucs2 ? 67 : 153;
    int total = 0, parts = 1, fill = 0;
    out->bad_cp = 0;
    while (i < n) {
        uint32_t cp = 0xFFFD;
        int k = utf8_next(p + i, n - i, &cp);
        if (k == 0)
            k = 1;
        i += (size_t)k;
        int w;
        if (ucs2) {
            w = cp > 0xFFFF ? 2 : 1;
        } else {
            w = gsm_weight(cp);
            if (w == 0) {
                if (!out->bad_cp)
                    out->bad_cp = cp;
                w = 1;
            }
        }
        total += w;
        if (fill + w > per) { /* an escape pair or a surrogate pair never straddles parts */
            parts++;
            fill = w;
        } else {
            fill += w;
        }
    }
    for (int j = 0; j < stop_len; j++) {
        total++;
        if (fill + 1 > per) {
            parts++;
            fill = 1;
        } else {
            fill++;
        }
    }
    out->chars = total;
    out->parts = total <= single ? 1 : parts;
}

/* num: national 0XXXXXXXXX (France) or international digits without '+'. */
static int normalize_num(const char *in, char out[TEL_MAX])
{
    size_t n = strlen(in);
    if (n == 0 || n > 15)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)in[i]))
            return -1;
    if (in[0] == '0') {
        if (n != 10 || in[1] == '0')
            return -1;
        snprintf(out, TEL_MAX, "33%s", in + 1);
        return 0;
    }
    if (n < 8)
        return -1;
    if (in[0] == '3' && in[1] == '3' && (n != 11 || in[2] == '0'))
        return -1; /* France: 33 + 9 digits */
    snprintf(out, TEL_MAX, "%s", in);
    return 0;
}

static int emetteur_valid(const char *s)
{
    size_t n = strlen(s);
    int digits = 1;
    if (n < 4 || n > 11)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c == ' '))
            return 0;
        if (!(c >= '0' && c <= '9'))
            digits = 0;
    }
    return !digits;
}

static int tracker_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 50)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return 0;
    return 1;
}

static int two(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* date_envoi: exactly "YYYY-MM-DD hh:mm" with a real calendar date. */
static int date_envoi_valid(const char *s)
{
    static const char pat[] = "dddd-dd-dd dd:dd";
    if (strlen(s) != sizeof pat - 1)
        return 0;
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
            return 0;
    }
    int y = two(s) * 100 + two(s + 2), mo = two(s + 5), d = two(s + 8);
    int h = two(s + 11), mi = two(s + 14);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59)
        return 0;
    int md = mdays[mo - 1];
    if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        md = 29;
    return d <= md;
}

/* gmt_zone: the real list (~90 names) is not public; Europe/Paris is documented as absent. */
static int gmt_zone_valid(const char *s)
{
    if (strcmp(s, "Europe/Paris") == 0)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '/' || c == '_' || c == '-' || c == '+'))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ field access */

/*
 * Scalar view of a field: strings as they are, integers, integral reals and booleans formatted
 * into buf. NULL when absent or null; *bad set when present but an array or object.
 */
static const char *scalar(json_t *v, char *buf, size_t n, int *bad)
{
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d > -1e15 && d < 1e15 && d == (double)(long long)d)
            snprintf(buf, n, "%.0f", d);
        else
            snprintf(buf, n, "%g", d);
        return buf;
    }
    if (json_is_boolean(v)) {
        snprintf(buf, n, "%s", json_is_true(v) ? "1" : "0");
        return buf;
    }
    if (bad)
        *bad = 1;
    return NULL;
}

static const char *field(json_t *obj, const char *key, char *buf, size_t n)
{
    int bad = 0;
    return scalar(json_object_get(obj, key), buf, n, &bad);
}

/* Case-insensitive lookup, for the command flags the SDKs spell differently. */
static json_t *get_ci(json_t *obj, const char *key)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return v;
    }
    return NULL;
}

static int flag_is_one(json_t *v)
{
    char buf[32];
    int bad = 0;
    const char *s = scalar(v, buf, sizeof buf, &bad);
    return s && strcmp(s, "1") == 0;
}

/* ---------------------------------------------------------- request parsing */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* application/x-www-form-urlencoded decoding; NULL when it decodes to a NUL byte. */
static char *form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
            if (c == '\0') {
                free(out);
                return NULL;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

/*
 * Parses form fields into obj. Repeated keys and keys ending in [] or [N] become arrays.
 * Returns -1 when a key or value is not valid UTF-8.
 */
static int form_parse(const char *s, size_t n, json_t *obj)
{
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp)
            amp = end;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        const char *kend = eq ? eq : amp;
        char *key = form_decode(p, (size_t)(kend - p));
        char *val = eq ? form_decode(eq + 1, (size_t)(amp - eq - 1)) : form_decode("", 0);
        if (!key || !val || !utf8_valid(key, strlen(key)) || !utf8_valid(val, strlen(val))) {
            free(key);
            free(val);
            return -1;
        }
        size_t kl = strlen(key);
        int arr = 0;
        if (kl >= 3 && key[kl - 1] == ']') {
            char *br = strchr(key, '[');
            if (br && br != key) {
                *br = '\0';
                arr = 1;
            }
        }
        if (key[0]) {
            json_t *v = json_string(val);
            json_t *cur = json_object_get(obj, key);
            if (!cur) {
                if (arr) {
                    json_t *a = json_array();
                    json_array_append_new(a, v);
                    json_object_set_new(obj, key, a);
                } else {
                    json_object_set_new(obj, key, v);
                }
            } else if (json_is_array(cur)) {
                json_array_append_new(cur, v);
            } else {
                json_t *a = json_array();
                json_array_append(a, cur);
                json_array_append_new(a, v);
                json_object_set_new(obj, key, a);
            }
        }
        free(key);
        free(val);
        p = amp + 1;
    }
    return 0;
}

static char *body_of(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    *len = n;
    return s;
}

/*
 * Query string fields, then body fields (a JSON object whatever the content type, else form
 * fields) on top. Returns NULL and sets *why when the body can't be read.
 */
static json_t *parse_fields(struct evhttp_request *req, const char **why)
{
    json_t *fields = json_object();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q && form_parse(q, strlen(q), fields) < 0) {
        *why = "paramètres d'URL mal encodés (UTF-8 attendu)";
        json_decref(fields);
        return NULL;
    }
    size_t len = 0;
    char *body = body_of(req, &len);
    if (!body) {
        json_decref(fields);
        *why = "mémoire";
        return NULL;
    }
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i]))
        i++;
    if (i < len && (body[i] == '{' || body[i] == '[')) {
        json_error_t err;
        json_t *o = json_loadb(body, len, 0, &err);
        if (!o || !json_is_object(o)) {
            json_decref(o);
            free(body);
            json_decref(fields);
            *why = "corps JSON invalide";
            return NULL;
        }
        json_object_update(fields, o);
        json_decref(o);
    } else if (i < len) {
        json_t *o = json_object();
        if (form_parse(body + i, len - i, o) < 0) {
            json_decref(o);
            free(body);
            json_decref(fields);
            *why = "corps mal encodé (UTF-8 attendu)";
            return NULL;
        }
        json_object_update(fields, o);
        json_decref(o);
    }
    free(body);
    return fields;
}

static int keyid_ok(json_t *fields)
{
    char buf[64];
    const char *k = field(fields, "keyid", buf, sizeof buf);
    if (!k || !*k)
        return 0;
    if (json_object_size(M.keys) == 0)
        return 1; /* no --keyid given: any non-empty key */
    return set_has(M.keys, k);
}

/* ------------------------------------------------------------------ replies */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    default:
        return "Status";
    }
}

static void send_raw(struct evhttp_request *req, int status, const char *ctype, const char *body,
                     size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b && len)
        evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, status, reason(status), b);
    if (b)
        evbuffer_free(b);
}

static void send_json(struct evhttp_request *req, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    send_raw(req, status, "application/json; charset=utf-8", s ? s : "null", s ? strlen(s) : 4);
    free(s);
}

static void reply_set_json(struct reply *r, int status, json_t *j)
{
    r->status = status;
    r->ctype = "application/json; charset=utf-8";
    r->body = json_dumps(j, JSON_COMPACT);
    r->len = r->body ? strlen(r->body) : 0;
}

static void reply_set_raw(struct reply *r, int status, const char *ctype, const void *data,
                          size_t len)
{
    r->status = status;
    r->ctype = ctype;
    r->body = malloc(len + 1);
    r->len = 0;
    if (r->body) {
        memcpy(r->body, data, len);
        r->body[len] = '\0';
        r->len = len;
    }
}

/* General error: HTTP 400, code as a string, no "tel". */
static json_t *general_error(const char *code, const char *message)
{
    return json_pack("{s:{s:[{s:s, s:s}]}}", "etat", "etat", "code", code, "message", message);
}

/* Wraps per-number (or per-call) elements in the envelope selected by /_mock/mode "shape". */
static json_t *envelope(json_t *elems)
{
    size_t i;
    json_t *e;
    int one = json_array_size(elems) == 1;
    if (M.shape & (SHAPE_STRCODES | SHAPE_FLAT)) {
        json_array_foreach(elems, i, e)
        {
            json_t *c = json_object_get(e, "code");
            if (json_is_integer(c) &&
                ((M.shape & SHAPE_STRCODES) || (one && (M.shape & SHAPE_FLAT)))) {
                char buf[32];
                snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(c));
                json_object_set_new(e, "code", json_string(buf));
            }
        }
    }
    json_t *out;
    if (one && (M.shape & SHAPE_FLAT))
        out = json_pack("{s:O}", "etat", json_array_get(elems, 0));
    else if (one && (M.shape & SHAPE_OBJECT))
        out = json_pack("{s:{s:O}}", "etat", "etat", json_array_get(elems, 0));
    else
        out = json_pack("{s:{s:O}}", "etat", "etat", elems);
    json_decref(elems);
    return out;
}

/* --------------------------------------------------------- delivery reports */

static void dlr_job_free(struct dlr_job *j)
{
    if (j->ev)
        event_free(j->ev);
    if (j->evcon)
        evhttp_connection_free(j->evcon);
    if (j->prev)
        j->prev->next = j->next;
    else
        M.jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    json_decref(j->rec);
    free(j);
    M.njobs--;
}

static const char *http_error_name(int e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:
        return "timeout";
    case EVREQ_HTTP_EOF:
        return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid response";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "buffer error";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "response too long";
    default:
        return "connection failed";
    }
}

static void dlr_finish(struct dlr_job *j, int code, const char *error)
{
    char ts[40];
    now_iso(ts, sizeof ts);
    json_int_t tries = json_integer_value(json_object_get(j->rec, "tries")) + 1;
    json_object_set_new(j->rec, "tries", json_integer(tries));
    if (!(code >= 200 && code < 300) && tries <= M.dlr_retries) {
        /* Like a provider that retries its callbacks: the same report again after a pause
         * (the connection is freed by the timer, outside libevent's own callback). */
        json_object_set_new(j->rec, "http_status", code > 0 ? json_integer(code) : json_null());
        json_object_set_new(j->rec, "state", json_string("retrying"));
        json_object_set_new(j->rec, "error", error ? json_string(error) : json_null());
        logline("dlr GET tracker=%s status=%s -> %d%s%s; again in %ld ms (try %lld of %ld)",
                json_string_value(json_object_get(j->rec, "tracker")),
                json_string_value(json_object_get(j->rec, "status")), code, error ? " " : "",
                error ? error : "", M.dlr_retry_ms, (long long)tries + 1, M.dlr_retries + 1);
        j->stage = 3;
        struct timeval tv = ms_tv(M.dlr_retry_ms);
        evtimer_add(j->ev, &tv);
        return;
    }
    json_object_set_new(j->rec, "done_at", json_string(ts));
    json_object_set_new(j->rec, "http_status", code > 0 ? json_integer(code) : json_null());
    json_object_set_new(j->rec, "accepted", json_boolean(code >= 200 && code < 300));
    json_object_set_new(j->rec, "state", json_string(code > 0 ? "done" : "failed"));
    json_object_set_new(j->rec, "error", error ? json_string(error) : json_null());
    logline("dlr GET tracker=%s tel=%s status=%s -> %d%s%s",
            json_string_value(json_object_get(j->rec, "tracker")),
            json_string_value(json_object_get(j->rec, "tel")),
            json_string_value(json_object_get(j->rec, "status")), code, error ? " " : "",
            error ? error : "");
    record_write("dlr", j->rec);
    j->stage = 2;
    struct timeval tv = ms_tv(0);
    evtimer_add(j->ev, &tv); /* the connection is freed outside libevent's own callback */
}

static void dlr_error_cb(enum evhttp_request_error e, void *arg)
{
    struct dlr_job *j = arg;
    j->err = (int)e;
}

static void dlr_done_cb(struct evhttp_request *req, void *arg)
{
    struct dlr_job *j = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (j->stage != 1)
        return;
    dlr_finish(j, code, code > 0 ? NULL : http_error_name(j->err));
}

static void dlr_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dlr_job *j = arg;
    (void)fd;
    (void)what;
    if (j->stage == 2) {
        dlr_job_free(j);
        return;
    }
    if (j->stage == 3 && j->evcon) {
        evhttp_connection_free(j->evcon);
        j->evcon = NULL;
    }
    const char *host = evhttp_uri_get_host(M.dlr_uri);
    int port = evhttp_uri_get_port(M.dlr_uri);
    const char *path = evhttp_uri_get_path(M.dlr_uri);
    const char *query = evhttp_uri_get_query(M.dlr_uri);
    if (port < 0)
        port = 80;
    char *et = evhttp_uriencode(json_string_value(json_object_get(j->rec, "tracker")), -1, 0);
    char *en = evhttp_uriencode(json_string_value(json_object_get(j->rec, "tel")), -1, 0);
    char *es = evhttp_uriencode(json_string_value(json_object_get(j->rec, "status")), -1, 0);
    struct evbuffer *u = evbuffer_new();
    evbuffer_add_printf(u, "%s?", path && *path ? path : "/");
    if (query && *query)
        evbuffer_add_printf(u, "%s&", query);
    evbuffer_add_printf(u, "tracker=%s&tel=%s&status=%s", et ? et : "", en ? en : "", es ? es : "");
    evbuffer_add(u, "", 1);
    const char *target = (const char *)evbuffer_pullup(u, -1);
    char hosthdr[300];
    if (port == 80)
        snprintf(hosthdr, sizeof hosthdr, "%s", host);
    else
        snprintf(hosthdr, sizeof hosthdr, "%s:%d", host, port);
    char ts[40];
    now_iso(ts, sizeof ts);
    json_object_set_new(j->rec, "sent_at", json_string(ts));
    json_object_set_new(j->rec, "target", json_string(target));
    json_object_set_new(j->rec, "state", json_string("in_flight"));

    j->stage = 1;
    j->err = -1;
    j->evcon = evhttp_connection_base_new(M.base, M.dns, host, (ev_uint16_t)port);
    struct evhttp_request *req = j->evcon ? evhttp_request_new(dlr_done_cb, j) : NULL;
    if (!req) {
        dlr_finish(j, 0, "cannot create request");
    } else {
        evhttp_connection_set_timeout(j->evcon, DLR_TIMEOUT_S);
        evhttp_request_set_error_cb(req, dlr_error_cb);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Host", hosthdr);
        evhttp_add_header(h, "Connection", "close");
        evhttp_add_header(h, "User-Agent", "isendpro_mock");
        if (evhttp_make_request(j->evcon, req, EVHTTP_REQ_GET, target) != 0)
            dlr_finish(j, 0, "cannot send request");
    }
    evbuffer_free(u);
    free(et);
    free(en);
    free(es);
}

static void dlr_schedule(const char *tracker, const char *tel, int undeliverable)
{
    if (!M.dlr_uri)
        return;
    char ts[40];
    now_iso(ts, sizeof ts);
    struct dlr_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->rec =
        json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:b, s:n, s:i}", "id",
                  (json_int_t)++M.dlr_seq, "tracker", tracker, "tel", tel, "status",
                  undeliverable ? "undelivered" : "delivered", "url", M.dlr_url, "scheduled_at", ts,
                  "state", "pending", "http_status", "accepted", 0, "error", "tries", 0);
    j->ev = evtimer_new(M.base, dlr_timer_cb, j);
    if (!j->rec || !j->ev) {
        json_decref(j->rec);
        if (j->ev)
            event_free(j->ev);
        free(j);
        return;
    }
    json_array_append(M.dlrs, j->rec);
    j->next = M.jobs;
    if (M.jobs)
        M.jobs->prev = j;
    M.jobs = j;
    M.njobs++;
    struct timeval tv = ms_tv(M.dlr_delay_ms);
    evtimer_add(j->ev, &tv);
}

static int dlr_set_url(const char *url)
{
    struct evhttp_uri *u = NULL;
    if (url && *url) {
        u = evhttp_uri_parse(url);
        if (!u || !evhttp_uri_get_scheme(u) || strcmp(evhttp_uri_get_scheme(u), "http") != 0 ||
            !evhttp_uri_get_host(u)) {
            if (u)
                evhttp_uri_free(u);
            return -1;
        }
    }
    if (u && !M.dns) {
        unsigned char addr[16];
        const char *h = evhttp_uri_get_host(u);
        if (evutil_inet_pton(AF_INET, h, addr) != 1 && evutil_inet_pton(AF_INET6, h, addr) != 1)
            M.dns = evdns_base_new(M.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    }
    if (M.dlr_uri)
        evhttp_uri_free(M.dlr_uri);
    free(M.dlr_url);
    M.dlr_uri = u;
    M.dlr_url = u ? strdup(url) : NULL;
    return 0;
}

/* ------------------------------------------------------------- /cgi-bin API */

enum send_kind { K_SMS, K_MULTI, K_COUNT };

struct target {
    char tel[TEL_MAX];
    const char *text;
    const char *tracker;
    struct count cnt;
    int code;
};

/* Collects a scalar-or-array field into n string views (numbers formatted into bufs). */
static int collect(json_t *v, int allow_array, const char **out, char (*bufs)[32], size_t max,
                   size_t *n)
{
    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_array(v)) {
        if (!allow_array)
            return -1;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            int bad = 0;
            if (i >= max)
                return -1;
            const char *s = scalar(e, bufs[i], 32, &bad);
            if (!s)
                return -1;
            out[(*n)++] = s;
        }
        return 0;
    }
    int bad = 0;
    const char *s = scalar(v, bufs[0], 32, &bad);
    if (!s)
        return -1;
    out[(*n)++] = s;
    return 0;
}

static json_t *api_send(json_t *f, enum send_kind kind, int *status)
{
    char b1[64], b2[64], b3[64], b4[64], b5[64], b6[64], msg[200];
    *status = 400;
    if (!keyid_ok(f))
        return general_error("1", "Clé d'identification (keyid) absente ou invalide");
    if (kind == K_COUNT && !flag_is_one(json_object_get(f, "comptage")))
        return general_error("15", "Paramètre comptage=1 manquant");

    json_t *jnum = json_object_get(f, "num");
    size_t nnum = json_is_array(jnum) ? json_array_size(jnum) : 1;
    if (nnum == 0)
        return general_error("10", "Numéro (num) absent");
    const char **nums = calloc(nnum, sizeof *nums);
    const char **texts = calloc(nnum, sizeof *texts);
    const char **trackers = calloc(nnum, sizeof *trackers);
    char(*nbufs)[32] = calloc(nnum, sizeof *nbufs);
    char(*tbufs)[32] = calloc(nnum, sizeof *tbufs);
    struct target *t = calloc(nnum, sizeof *t);
    json_t *res = NULL;
    size_t n = 0, ntext = 0, ntrack = 0;
    if (!nums || !texts || !trackers || !nbufs || !tbufs || !t) {
        res = general_error("99", "Erreur interne du simulateur");
        goto out;
    }
    if (collect(jnum, kind != K_SMS, nums, nbufs, nnum, &n) < 0 || n == 0) {
        res = general_error("10", kind == K_SMS ? "Numéro (num) absent ou invalide (une chaîne "
                                                  "pour /sms, un tableau pour /smsmulti)"
                                                : "Numéro (num) absent ou invalide");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (normalize_num(nums[i], t[i].tel) < 0) {
            snprintf(msg, sizeof msg,
                     "Numéro invalide « %.30s » : format national 0XXXXXXXXX ou international "
                     "sans +",
                     nums[i]);
            res = general_error("10", msg);
            goto out;
        }
    }

    /* sms */
    json_t *jsms = json_object_get(f, "sms");
    if (json_is_array(jsms) && kind == K_MULTI) {
        size_t i;
        json_t *e;
        ntext = json_array_size(jsms);
        if (ntext != 1 && ntext != n) {
            res = general_error("14", "Tableau sms : un seul texte ou un texte par numéro");
            goto out;
        }
        json_array_foreach(jsms, i, e)
        {
            texts[i] = json_string_value(e);
            if (!texts[i] || !*texts[i]) {
                res = general_error("4", "Message (sms) absent ou vide");
                goto out;
            }
        }
    } else {
        texts[0] = json_string_value(jsms);
        ntext = 1;
        if (!texts[0] || !*texts[0]) {
            res = general_error("4", "Message (sms) absent ou vide");
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        t[i].text = texts[ntext == 1 ? 0 : i];

    int ucs2 = flag_is_one(json_object_get(f, "ucs2"));
    int nostop = flag_is_one(json_object_get(f, "nostop"));

    const char *emetteur = field(f, "emetteur", b1, sizeof b1);
    if (emetteur && !*emetteur)
        emetteur = NULL;
    if (emetteur && !emetteur_valid(emetteur)) {
        res = general_error("3", "Émetteur invalide : 4 à 11 caractères 0-9, A-Z ou espace, pas "
                                 "uniquement des chiffres");
        goto out;
    }

    /* tracker(s) */
    json_t *jtr = json_object_get(f, "tracker");
    if (collect(jtr, kind != K_SMS, trackers, tbufs, n, &ntrack) < 0 ||
        (ntrack > 1 && ntrack != n)) {
        res = general_error(kind == K_SMS ? "12" : "14",
                            kind == K_SMS ? "Tracker invalide"
                                          : "Tableau tracker : un tracker par numéro");
        goto out;
    }
    if (json_is_array(jtr) && ntrack != n) {
        res = general_error("14", "Tableau tracker : un tracker par numéro");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *tr = ntrack == 0 ? "" : trackers[ntrack == 1 ? 0 : i];
        if (*tr && !tracker_valid(tr)) {
            res = general_error("12", "Tracker invalide : moins de 50 caractères alphanumériques");
            goto out;
        }
        t[i].tracker = tr;
    }

    const char *date = field(f, "date_envoi", b2, sizeof b2);
    if (date && *date && !date_envoi_valid(date)) {
        res = general_error("8", "date_envoi invalide : format attendu AAAA-MM-JJ hh:mm");
        goto out;
    }
    const char *zone = field(f, "gmt_zone", b3, sizeof b3);
    if (zone && *zone && !gmt_zone_valid(zone)) {
        res = general_error("9", "gmt_zone inconnu (Europe/Paris n'est pas dans la liste, "
                                 "utiliser Europe/Brussels)");
        goto out;
    }

    /* text checks and counting */
    int stop = (emetteur && !(nostop && M.nostop_lifted)) ? M.stop_len : 0;
    for (size_t i = 0; i < n; i++) {
        count_text(t[i].text, ucs2, stop, &t[i].cnt);
        if (!ucs2 && t[i].cnt.bad_cp) {
            snprintf(msg, sizeof msg,
                     "Caractère hors alphabet GSM 03.38 (U+%04X) : utiliser ucs2=1",
                     (unsigned)t[i].cnt.bad_cp);
            res = general_error("5", msg);
            goto out;
        }
    }
    if (ucs2) {
        for (size_t i = 0; i < n; i++) {
            if (strncmp(t[i].tel, "33", 2) == 0) {
                res = general_error("13", "ucs2 interdit vers la France métropolitaine");
                goto out;
            }
        }
    }

    if (kind == K_COUNT) {
        json_t *elems = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(elems,
                                  json_pack("{s:i, s:i, s:s}", "nb_caractere", t[i].cnt.chars,
                                            "nb_sms", t[i].cnt.parts, "tel", t[i].tel));
        *status = 200;
        res = envelope(elems);
        goto out;
    }

    /* smslong: maximum number of parts, 1..6, or 999 (computed by iSendPro) */
    const char *sl = field(f, "smslong", b4, sizeof b4);
    int maxparts = 1;
    if (sl && *sl) {
        char *end;
        errno = 0;
        long v = strtol(sl, &end, 10);
        if (errno || *end || !((v >= 1 && v <= 6) || v == 999 || v == 0)) {
            res = general_error("7", "smslong invalide : 1 à 6, ou 999");
            goto out;
        }
        maxparts = v == 0 ? 1 : v == 999 ? 6 : (int)v;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].cnt.parts > 6 || t[i].cnt.parts > maxparts) {
            snprintf(
                msg, sizeof msg, "Message trop long : %d caractères, %d SMS, smslong autorise %d%s",
                t[i].cnt.chars, t[i].cnt.parts, maxparts, stop ? " (mention STOP comprise)" : "");
            res = general_error("6", msg);
            goto out;
        }
    }

    /* per-number outcome and cost */
    long long cost = 0;
    for (size_t i = 0; i < n; i++) {
        if (set_has(M.blacklist, t[i].tel))
            t[i].code = 11;
        else if (set_has(M.unassigned, t[i].tel))
            t[i].code = 21;
        else
            cost += (long long)t[i].cnt.parts * PRICE_CENTS_PER_PART;
    }
    if (M.credit_cents <= 0 || M.credit_cents < cost) {
        format_euros(M.credit_cents, b5, sizeof b5);
        format_euros(cost, b6, sizeof b6);
        snprintf(msg, sizeof msg, "Crédit insuffisant (%s EUR, %s EUR nécessaires)", b5, b6);
        res = general_error("2", msg);
        goto out;
    }
    M.credit_cents -= cost;

    json_t *elems = json_array();
    char ts[40];
    now_iso(ts, sizeof ts);
    for (size_t i = 0; i < n; i++) {
        if (t[i].code == 11) {
            json_array_append_new(elems, json_pack("{s:i, s:s, s:s}", "code", 11, "tel", t[i].tel,
                                                   "message", "Numéro en liste noire"));
            continue;
        }
        if (t[i].code == 21) {
            json_array_append_new(elems, json_pack("{s:i, s:s, s:s}", "code", 21, "tel", t[i].tel,
                                                   "message", "Numéro non attribué"));
            continue;
        }
        char parts[16];
        snprintf(parts, sizeof parts, "%d", t[i].cnt.parts);
        json_array_append_new(elems, json_pack("{s:i, s:s, s:s, s:s}", "code", 0, "tel", t[i].tel,
                                               "message", "OK", "smslong", parts));
        json_t *rec = json_pack(
            "{s:I, s:s, s:s, s:s, s:s, s:s?, s:i, s:i, s:b, s:b, s:s?, s:s?, s:s, s:s}", "id",
            (json_int_t)++M.sent_seq, "num", t[i].tel, "num_sent", nums[i], "sms", t[i].text,
            "tracker", t[i].tracker, "emetteur", emetteur, "parts", t[i].cnt.parts, "chars",
            t[i].cnt.chars, "ucs2", ucs2, "stop_mention", stop > 0, "date_envoi",
            (date && *date) ? date : NULL, "gmt_zone", (zone && *zone) ? zone : NULL, "endpoint",
            kind == K_MULTI ? "smsmulti" : "sms", "at", ts);
        if (rec) {
            json_array_append(M.sent, rec);
            record_write("sent", rec);
            json_decref(rec);
        }
        dlr_schedule(t[i].tracker, t[i].tel, set_has(M.undeliverable, t[i].tel));
    }
    *status = 200;
    res = envelope(elems);
out:
    free(nums);
    free(texts);
    free(trackers);
    free(nbufs);
    free(tbufs);
    free(t);
    return res;
}

static json_t *api_credit(json_t *f, int *status)
{
    char b[32], e[32];
    *status = 400;
    if (!keyid_ok(f))
        return general_error("1", "Clé d'identification (keyid) absente ou invalide");
    const char *c = field(f, "credit", b, sizeof b);
    if (!c || (strcmp(c, "1") != 0 && strcmp(c, "2") != 0))
        return general_error("15", "Paramètre credit=1 ou credit=2 manquant");
    *status = 200;
    format_euros(M.credit_cents, e, sizeof e);
    if (c[0] == '1')
        return json_pack("{s:{s:s}}", "etat", "credit", e);
    char q[32];
    snprintf(q, sizeof q, "%lld", M.credit_cents > 0 ? M.credit_cents / PRICE_CENTS_PER_PART : 0);
    return json_pack("{s:{s:s, s:s}}", "etat", "credit", e, "quantite", q);
}

static json_t *api_listenoire(json_t *f, int add, int *status)
{
    char b[32], tel[TEL_MAX], msg[160];
    *status = 400;
    if (!keyid_ok(f))
        return general_error("1", "Clé d'identification (keyid) absente ou invalide");
    if (!flag_is_one(get_ci(f, add ? "setlisteNoire" : "delListeNoire")))
        return general_error("15", add ? "Paramètre setlisteNoire=1 manquant"
                                       : "Paramètre delListeNoire=1 manquant");
    const char *num = field(f, "num", b, sizeof b);
    if (!num || normalize_num(num, tel) < 0) {
        snprintf(msg, sizeof msg, "Numéro invalide « %.30s »", num ? num : "");
        return general_error("10", msg);
    }
    if (add)
        set_add(M.blacklist, tel);
    else
        json_object_del(M.blacklist, tel);
    *status = 200;
    json_t *elems = json_array();
    json_array_append_new(elems, json_pack("{s:i, s:s}", "code", 0, "message", "OK"));
    return envelope(elems);
}

/* A stored (uncompressed) ZIP archive holding one file. */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void le16(struct evbuffer *b, unsigned v)
{
    unsigned char x[2] = {(unsigned char)(v & 0xFF), (unsigned char)((v >> 8) & 0xFF)};
    evbuffer_add(b, x, 2);
}

static void le32(struct evbuffer *b, uint32_t v)
{
    le16(b, v & 0xFFFF);
    le16(b, (v >> 16) & 0xFFFF);
}

static void zip_one(struct evbuffer *z, const char *name, const unsigned char *data, size_t n)
{
    uint32_t crc = crc32_of(data, n);
    size_t nl = strlen(name);
    le32(z, 0x04034b50); /* local file header */
    le16(z, 10);
    le16(z, 0);
    le16(z, 0); /* stored */
    le16(z, 0);
    le16(z, 0x21); /* 1980-01-01 */
    le32(z, crc);
    le32(z, (uint32_t)n);
    le32(z, (uint32_t)n);
    le16(z, (unsigned)nl);
    le16(z, 0);
    evbuffer_add(z, name, nl);
    evbuffer_add(z, data, n);
    size_t cd_off = 30 + nl + n;
    le32(z, 0x02014b50); /* central directory */
    le16(z, 20);
    le16(z, 10);
    le16(z, 0);
    le16(z, 0);
    le16(z, 0);
    le16(z, 0x21);
    le32(z, crc);
    le32(z, (uint32_t)n);
    le32(z, (uint32_t)n);
    le16(z, (unsigned)nl);
    le16(z, 0);
    le16(z, 0);
    le16(z, 0);
    le16(z, 0);
    le32(z, 0);
    le32(z, 0);
    evbuffer_add(z, name, nl);
    size_t cd_len = 46 + nl;
    le32(z, 0x06054b50); /* end of central directory */
    le16(z, 0);
    le16(z, 0);
    le16(z, 1);
    le16(z, 1);
    le32(z, (uint32_t)cd_len);
    le32(z, (uint32_t)cd_off);
    le16(z, 0);
}

static json_t *api_getlistenoire(json_t *f, struct reply *r)
{
    if (!keyid_ok(f)) {
        r->status = 400;
        return general_error("1", "Clé d'identification (keyid) absente ou invalide");
    }
    if (!flag_is_one(get_ci(f, "getListeNoire"))) {
        r->status = 400;
        return general_error("15", "Paramètre getListeNoire=1 manquant");
    }
    struct evbuffer *csv = evbuffer_new(), *z = evbuffer_new();
    const char *k;
    json_t *v;
    json_object_foreach(M.blacklist, k, v)
    {
        (void)v;
        evbuffer_add_printf(csv, "%s\r\n", k);
    }
    size_t n = evbuffer_get_length(csv);
    zip_one(z, "listenoire.csv", n ? evbuffer_pullup(csv, -1) : (const unsigned char *)"", n);
    size_t zl = evbuffer_get_length(z);
    reply_set_raw(r, 200, "application/zip", evbuffer_pullup(z, -1), zl);
    evbuffer_free(csv);
    evbuffer_free(z);
    return NULL;
}

/* ------------------------------------------------------------ held requests */

static void held_unlink_free(struct held *h)
{
    if (h->timer)
        event_free(h->timer);
    if (h->watch)
        event_free(h->watch);
    if (h->prev)
        h->prev->next = h->next;
    else
        M.held = h->next;
    if (h->next)
        h->next->prev = h->prev;
    free(h->reply.body);
    free(h);
    M.nheld--;
}

/* Closes the client connection without an answer (frees the pending request with it). */
static void held_drop(struct held *h, int rst)
{
    struct evhttp_connection *evcon = h->evcon;
    if (rst) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
    }
    held_unlink_free(h);
    evhttp_connection_free(evcon);
}

static void held_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct held *h = arg;
    (void)fd;
    (void)what;
    if (h->kind == HOLD_SLOW) {
        struct evhttp_request *req = h->req;
        struct reply r = h->reply;
        h->reply.body = NULL;
        held_unlink_free(h);
        send_raw(req, r.status, r.ctype, r.body ? r.body : "", r.body ? r.len : 0);
        free(r.body);
    } else {
        if (h->kind == HOLD_TIMEOUT)
            logline("timeout hold expired after %ld ms, closing", HOLD_MAX_MS);
        held_drop(h, h->kind == HOLD_RESET);
    }
}

/* The client hung up while we hold its request: free the connection now. */
static void held_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct held *h = arg;
    char c;
    (void)what;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        logline("client closed a held connection (%s)", h->kind == HOLD_SLOW ? "slow" : "timeout");
        held_drop(h, 0);
        return;
    }
    if (r < 0)
        event_add(h->watch, NULL);
    /* r > 0: a pipelined request; stop watching, the timer still bounds the hold */
}

static void hold(struct evhttp_request *req, enum hold_kind kind, long ms, struct reply *r)
{
    struct held *h = calloc(1, sizeof *h);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!h || !evcon) {
        free(h);
        send_raw(req, 500, "text/plain", "hold failed\n", 12);
        return;
    }
    h->kind = kind;
    h->req = req;
    h->evcon = evcon;
    if (r) {
        h->reply = *r;
        r->body = NULL;
    }
    h->timer = evtimer_new(M.base, held_timer_cb, h);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (kind != HOLD_RESET && fd >= 0)
        h->watch = event_new(M.base, fd, EV_READ, held_watch_cb, h);
    h->next = M.held;
    if (M.held)
        M.held->prev = h;
    M.held = h;
    M.nheld++;
    struct timeval tv = ms_tv(ms);
    evtimer_add(h->timer, &tv);
    if (h->watch)
        event_add(h->watch, NULL);
}

/* ---------------------------------------------------------------- dispatch */

static json_t *redact(json_t *fields)
{
    json_t *c = json_deep_copy(fields);
    if (c && json_object_get(c, "keyid"))
        json_object_set_new(c, "keyid", json_string("***"));
    return c;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "OTHER";
    }
}

static const char *const html500 =
    "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n"
    "<body><h1>Internal Server Error</h1><p>The server encountered an internal error and was "
    "unable to complete your request.</p></body></html>\n";

static void api_request(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *ep = path + strlen("/cgi-bin/");
    const char *why = NULL;
    json_t *fields = parse_fields(req, &why);
    char ts[40];
    now_iso(ts, sizeof ts);

    /* fault mode for this request */
    enum fault fault = M.mode;
    long delay = M.delay_ms;
    /* error500/timeout/reset lose the request unless /_mock/mode said "process": true */
    int process = (fault == F_NORMAL || fault == F_SLOW) ? 1 : M.process > 0;
    if (fault != F_NORMAL && M.remaining > 0 && --M.remaining == 0) {
        M.mode = F_NORMAL;
        M.process = -1;
    }

    const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    json_t *rec = json_pack("{s:I, s:s, s:s, s:s, s:s?, s:o, s:b, s:s}", "seq", (json_int_t)++M.seq,
                            "at", ts, "method", method_name(m), "path", path, "content_type", ctype,
                            "fields", fields ? redact(fields) : json_object(), "keyid_ok",
                            fields ? keyid_ok(fields) : 0, "fault", fault_names[fault]);
    if (!rec) {
        json_decref(fields);
        send_raw(req, 500, "text/plain", "mock: out of memory\n", 20);
        return;
    }
    if (!fields)
        json_object_set_new(rec, "parse_error", json_string(why));
    if (fault == F_SLOW)
        json_object_set_new(rec, "delay_ms", json_integer((json_int_t)delay));

    struct reply r = {0, NULL, NULL, 0};
    json_t *answer = NULL;
    int status = 400;
    if (!process) {
        /* the request is lost before iSendPro handles it */
    } else if (!fields) {
        answer = general_error("16", why);
    } else if (strcmp(ep, "sms") == 0 || strcmp(ep, "smsmulti") == 0 ||
               strcmp(ep, "comptage") == 0) {
        if (m != EVHTTP_REQ_POST) {
            reply_set_raw(&r, 405, "text/plain", "POST only\n", 10);
        } else {
            enum send_kind k = ep[3] == 'm' ? K_MULTI : ep[0] == 'c' ? K_COUNT : K_SMS;
            answer = api_send(fields, k, &status);
        }
    } else if (strcmp(ep, "credit") == 0) {
        answer = api_credit(fields, &status);
    } else if (strcmp(ep, "setlistenoire") == 0 || strcmp(ep, "dellistenoire") == 0) {
        if (m != EVHTTP_REQ_POST && m != EVHTTP_REQ_GET)
            reply_set_raw(&r, 405, "text/plain", "POST only\n", 10);
        else
            answer = api_listenoire(fields, ep[0] == 's', &status);
    } else if (strcmp(ep, "getlistenoire") == 0) {
        answer = api_getlistenoire(fields, &r);
        status = r.status;
    } else if (strcmp(ep, "campagne") == 0 || strcmp(ep, "hlr") == 0) {
        static const char t[] = "not simulated: the answer format of this call is not public\n";
        reply_set_raw(&r, 501, "text/plain", t, sizeof t - 1);
    } else {
        static const char t[] = "<html><body><h1>404 Not Found</h1></body></html>\n";
        reply_set_raw(&r, 404, "text/html", t, sizeof t - 1);
    }
    if (answer) {
        reply_set_json(&r, status, answer);
        json_object_set(rec, "response", answer);
        json_decref(answer);
    }

    /* what the client actually gets */
    if (fault == F_ERROR500) {
        free(r.body);
        reply_set_raw(&r, 500, "text/html; charset=utf-8", html500, strlen(html500));
    }
    int http_status = (fault == F_TIMEOUT || fault == F_RESET) ? 0 : r.status;
    json_object_set_new(rec, "http_status", http_status ? json_integer(http_status) : json_null());
    json_object_set_new(rec, "processed", json_boolean(process));

    /* one log line, keyid never printed */
    char codes[64] = "";
    json_t *resp = json_object_get(rec, "response");
    if (resp) {
        json_t *etat = json_object_get(resp, "etat");
        json_t *inner = json_object_get(etat, "etat");
        json_t *first = json_is_array(inner) ? json_array_get(inner, 0) : inner ? inner : etat;
        json_t *code = json_object_get(first, "code");
        char cb[32];
        int bad = 0;
        const char *cs = scalar(code, cb, sizeof cb, &bad);
        if (cs)
            snprintf(codes, sizeof codes, " code=%s%s", cs,
                     json_is_array(inner) && json_array_size(inner) > 1 ? ",..." : "");
    }
    json_t *fnum = fields ? json_object_get(fields, "num") : NULL;
    char nb[32];
    int bad = 0;
    const char *numv = scalar(fnum, nb, sizeof nb, &bad);
    const char *outcome = fault == F_TIMEOUT ? "no answer (timeout mode)"
                          : fault == F_RESET ? "connection reset (reset mode)"
                          : fault == F_SLOW  ? "delayed"
                                             : "";
    char st[16] = "";
    if (fault != F_TIMEOUT && fault != F_RESET)
        snprintf(st, sizeof st, "%s%d", *outcome ? " " : "", r.status);
    logline("%s %s keyid=%s%s%s -> %s%s%s", method_name(m), path,
            fields && json_object_get(fields, "keyid") ? "***" : "(none)", numv ? " num=" : "",
            numv ? numv : (json_is_array(fnum) ? " num=[...]" : ""), outcome, st, codes);

    record_write("request", rec);
    json_array_append_new(M.requests, rec);
    json_decref(fields);

    switch (fault) {
    case F_SLOW:
        hold(req, HOLD_SLOW, delay, &r);
        break;
    case F_TIMEOUT:
        hold(req, HOLD_TIMEOUT, HOLD_MAX_MS, NULL);
        break;
    case F_RESET:
        hold(req, HOLD_RESET, 0, NULL);
        break;
    default:
        send_raw(req, r.status, r.ctype, r.body ? r.body : "", r.body ? r.len : 0);
        break;
    }
    free(r.body);
}

/* ---------------------------------------------------------- /_mock/ control */

static void state_reset(void)
{
    json_decref(M.keys);
    json_decref(M.blacklist);
    json_decref(M.unassigned);
    json_decref(M.undeliverable);
    json_decref(M.requests);
    json_decref(M.sent);
    json_decref(M.dlrs);
    M.keys = json_deep_copy(M.cli_keys);
    M.blacklist = json_object();
    M.unassigned = json_object();
    M.undeliverable = json_object();
    M.requests = json_array();
    M.sent = json_array();
    M.dlrs = json_array();
    M.credit_cents = M.cli_credit_cents;
    M.dlr_delay_ms = M.cli_dlr_delay_ms;
    M.dlr_retries = M.cli_dlr_retries;
    M.dlr_retry_ms = M.cli_dlr_retry_ms;
    dlr_set_url(M.cli_dlr_url);
    M.stop_len = M.cli_stop_len;
    M.nostop_lifted = M.cli_nostop_lifted;
    M.mode = F_NORMAL;
    M.delay_ms = 0;
    M.remaining = 0;
    M.process = -1;
    M.shape = 0;
    M.seq = M.sent_seq = M.dlr_seq = 0;
    while (M.jobs)
        dlr_job_free(M.jobs);
}

static const char *shape_name(char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s", M.shape == 0 ? "array" : "",
             (M.shape & SHAPE_OBJECT) ? "object" : "",
             (M.shape & SHAPE_FLAT) ? ((M.shape & SHAPE_OBJECT) ? ",flat" : "flat") : "",
             (M.shape & SHAPE_STRCODES)
                 ? ((M.shape & (SHAPE_OBJECT | SHAPE_FLAT)) ? ",string_codes" : "string_codes")
                 : "");
    return buf;
}

static json_t *state_json(void)
{
    char sh[64], cr[32];
    format_euros(M.credit_cents, cr, sizeof cr);
    return json_pack("{s:s, s:I, s:I, s:s, s:s, s:o, s:o, s:o, s:I, s:s?, s:I, s:I, s:I, s:i, "
                     "s:b, s:I, s:I, s:I, s:I, s:s}",
                     "mode", fault_names[M.mode], "delay_ms", (json_int_t)M.delay_ms, "count",
                     (json_int_t)M.remaining, "process",
                     M.process < 0 ? "default"
                     : M.process   ? "yes"
                                   : "no",
                     "shape", shape_name(sh, sizeof sh), "blacklist", set_to_array(M.blacklist),
                     "unassigned", set_to_array(M.unassigned), "undeliverable",
                     set_to_array(M.undeliverable), "keyids", (json_int_t)json_object_size(M.keys),
                     "dlr_url", M.dlr_url, "dlr_delay_ms", (json_int_t)M.dlr_delay_ms,
                     "dlr_retries", (json_int_t)M.dlr_retries, "dlr_retry_ms",
                     (json_int_t)M.dlr_retry_ms, "stop_len",
                     M.stop_len, "nostop_lifted", M.nostop_lifted, "held", (json_int_t)M.nheld,
                     "dlr_jobs", (json_int_t)M.njobs, "requests",
                     (json_int_t)json_array_size(M.requests), "sent",
                     (json_int_t)json_array_size(M.sent), "credit", cr);
}

static int ctl_bad(struct evhttp_request *req, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    send_json(req, 400, j);
    json_decref(j);
    return 400;
}

static int ctl_ok(struct evhttp_request *req)
{
    json_t *j = state_json();
    send_json(req, 200, j);
    json_decref(j);
    return 200;
}

static int ctl_mode(struct evhttp_request *req, json_t *b)
{
    json_t *jm = json_object_get(b, "mode"), *js = json_object_get(b, "shape");
    json_t *jd = json_object_get(b, "delay_ms"), *jc = json_object_get(b, "count");
    json_t *jp = json_object_get(b, "process");
    if (!jm && !js)
        return ctl_bad(req, "expected \"mode\" and/or \"shape\"");
    if ((jd && !json_is_integer(jd)) || (jc && !json_is_integer(jc)) ||
        (jp && !json_is_boolean(jp)) || (jm && !json_is_string(jm)) || (js && !json_is_string(js)))
        return ctl_bad(req, "mode/shape are strings, delay_ms/count integers, process boolean");
    unsigned shape = M.shape;
    if (js) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", json_string_value(js));
        shape = 0;
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",+ ", &save); tok; tok = strtok_r(NULL, ",+ ", &save)) {
            if (strcmp(tok, "array") == 0)
                ;
            else if (strcmp(tok, "object") == 0)
                shape |= SHAPE_OBJECT;
            else if (strcmp(tok, "flat") == 0)
                shape |= SHAPE_FLAT;
            else if (strcmp(tok, "string_codes") == 0)
                shape |= SHAPE_STRCODES;
            else
                return ctl_bad(req, "shape: array, object, flat, string_codes (combinable with ,)");
        }
    }
    int mode = -1;
    if (jm) {
        for (int i = 0; i < 5; i++)
            if (strcmp(json_string_value(jm), fault_names[i]) == 0)
                mode = i;
        if (mode < 0)
            return ctl_bad(req, "mode: normal, slow, error500, timeout, reset");
    }
    M.shape = shape;
    if (mode >= 0) {
        M.mode = (enum fault)mode;
        M.delay_ms = jd ? (long)json_integer_value(jd) : (mode == F_SLOW ? 1000 : 0);
        M.remaining = jc && json_integer_value(jc) > 0 ? (long)json_integer_value(jc) : 0;
        M.process = jp ? json_is_true(jp) : -1;
        if (mode == F_NORMAL) {
            M.remaining = 0;
            M.process = -1;
        }
    }
    return ctl_ok(req);
}

static int ctl_list(struct evhttp_request *req, json_t *b, json_t *set)
{
    json_t *jn = json_object_get(b, "num");
    int remove = json_is_true(json_object_get(b, "remove"));
    json_t *list = json_is_array(jn) ? json_incref(jn) : json_pack("[O]", jn ? jn : json_null());
    size_t i;
    json_t *e;
    char tels[64][TEL_MAX];
    size_t n = json_array_size(list);
    if (n == 0 || n > 64) {
        json_decref(list);
        return ctl_bad(req, "expected {\"num\": \"33612345678\"} or a list of up to 64");
    }
    json_array_foreach(list, i, e)
    {
        char buf[32];
        int bad = 0;
        const char *s = scalar(e, buf, sizeof buf, &bad);
        if (!s || normalize_num(s, tels[i]) < 0) {
            json_decref(list);
            return ctl_bad(req, "num: national 0XXXXXXXXX or international digits without +");
        }
    }
    for (i = 0; i < n; i++) {
        if (remove)
            json_object_del(set, tels[i]);
        else
            set_add(set, tels[i]);
    }
    json_decref(list);
    return ctl_ok(req);
}

static int ctl_credit(struct evhttp_request *req, json_t *b)
{
    json_t *c = json_object_get(b, "credit");
    double v;
    if (json_is_number(c)) {
        v = json_number_value(c);
    } else if (json_is_string(c)) {
        char *end;
        v = strtod(json_string_value(c), &end);
        if (*end)
            return ctl_bad(req, "credit: a number of euros");
    } else {
        return ctl_bad(req, "expected {\"credit\": 1.5}");
    }
    if (!isfinite(v) || v < 0 || v > 1e9)
        return ctl_bad(req, "credit: 0 .. 1e9 euros");
    M.credit_cents = (long long)(v * 100.0 + 0.5);
    return ctl_ok(req);
}

static int ctl_account(struct evhttp_request *req, json_t *b)
{
    json_t *sl = json_object_get(b, "stop_len"), *nl = json_object_get(b, "nostop_lifted");
    json_t *du = json_object_get(b, "dlr_url"), *dd = json_object_get(b, "dlr_delay_ms");
    json_t *dr = json_object_get(b, "dlr_retries"), *dw = json_object_get(b, "dlr_retry_ms");
    if ((sl &&
         (!json_is_integer(sl) || json_integer_value(sl) < 0 || json_integer_value(sl) > 100)) ||
        (nl && !json_is_boolean(nl)) || (du && !json_is_string(du) && !json_is_null(du)) ||
        (dd && (!json_is_integer(dd) || json_integer_value(dd) < 0)) ||
        (dr && (!json_is_integer(dr) || json_integer_value(dr) < 0 ||
                json_integer_value(dr) > 1000)) ||
        (dw && (!json_is_integer(dw) || json_integer_value(dw) < 1 ||
                json_integer_value(dw) > 600000)))
        return ctl_bad(req, "stop_len 0..100, nostop_lifted boolean, dlr_url string|null, "
                            "dlr_delay_ms >= 0, dlr_retries 0..1000, dlr_retry_ms 1..600000");
    if (du && dlr_set_url(json_string_value(du)) < 0)
        return ctl_bad(req, "dlr_url: http://host[:port]/path[?query]");
    if (sl)
        M.stop_len = (int)json_integer_value(sl);
    if (nl)
        M.nostop_lifted = json_is_true(nl);
    if (dd)
        M.dlr_delay_ms = (long)json_integer_value(dd);
    if (dr)
        M.dlr_retries = (long)json_integer_value(dr);
    if (dw)
        M.dlr_retry_ms = (long)json_integer_value(dw);
    return ctl_ok(req);
}

static void mock_request(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *p = path + strlen("/_mock/");
    int status = 0;
    json_t *b = NULL;
    if (m == EVHTTP_REQ_GET) {
        json_t *j = NULL;
        if (strcmp(p, "requests") == 0)
            j = json_incref(M.requests);
        else if (strcmp(p, "sent") == 0)
            j = json_incref(M.sent);
        else if (strcmp(p, "dlr") == 0)
            j = json_incref(M.dlrs);
        else if (strcmp(p, "state") == 0 || strcmp(p, "mode") == 0)
            j = state_json();
        if (j) {
            send_json(req, 200, j);
            json_decref(j);
            status = 200;
        }
    } else if (m == EVHTTP_REQ_POST) {
        size_t len = 0;
        char *body = body_of(req, &len);
        json_error_t err;
        b = body && len ? json_loadb(body, len, 0, &err) : json_object();
        free(body);
        if (!b || !json_is_object(b)) {
            status = ctl_bad(req, "body: a JSON object");
        } else if (strcmp(p, "mode") == 0) {
            status = ctl_mode(req, b);
        } else if (strcmp(p, "blacklist") == 0) {
            status = ctl_list(req, b, M.blacklist);
        } else if (strcmp(p, "unassigned") == 0) {
            status = ctl_list(req, b, M.unassigned);
        } else if (strcmp(p, "undeliverable") == 0) {
            status = ctl_list(req, b, M.undeliverable);
        } else if (strcmp(p, "credit") == 0) {
            status = ctl_credit(req, b);
        } else if (strcmp(p, "account") == 0) {
            status = ctl_account(req, b);
        } else if (strcmp(p, "keyid") == 0) {
            json_t *k = json_object_get(b, "keyid");
            if (!json_is_string(k) || !*json_string_value(k)) {
                status = ctl_bad(req, "expected {\"keyid\": \"...\"}");
            } else {
                set_add(M.keys, json_string_value(k));
                status = ctl_ok(req);
            }
        } else if (strcmp(p, "reset") == 0) {
            state_reset();
            status = ctl_ok(req);
        }
        json_decref(b);
    }
    if (!status) {
        json_t *j = json_pack("{s:s}", "error", "unknown control endpoint");
        send_json(req, 404, j);
        json_decref(j);
        status = 404;
    }
    logline("%s %s -> %d", method_name(m), path, status);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    if (strncmp(path, "/cgi-bin/", 9) == 0) {
        api_request(req, path);
    } else if (strncmp(path, "/_mock/", 7) == 0) {
        mock_request(req, path);
    } else {
        static const char t[] = "<html><body><h1>404 Not Found</h1></body></html>\n";
        send_raw(req, 404, "text/html", t, sizeof t - 1);
        logline("%s %s -> 404", method_name(evhttp_request_get_command(req)), path);
    }
}

/* -------------------------------------------------------------------- main */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    logline("signal %d, stopping", (int)sig);
    event_base_loopexit(M.base, NULL);
}

static void usage(FILE *out)
{
    fputs("usage: isendpro_mock --listen HOST:PORT [--keyid KEY]... [--dlr-url URL]\n"
          "         [--dlr-delay-ms N] [--dlr-retries N] [--dlr-retry-ms N]\n"
          "         [--credit EUROS] [--record FILE]\n"
          "         [--stop-len N] [--nostop-lifted]\n"
          "A mock of the iSendPro HTTP API under /cgi-bin, test controls under /_mock/.\n"
          "PORT 0 picks a free port (printed on stderr: \"listening on http://HOST:PORT\").\n"
          "Without --keyid any non-empty keyid is accepted.\n",
          out);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *record = NULL;
    long v;
    M.cli_keys = json_object();
    M.cli_credit_cents = DEFAULT_CREDIT_CENTS;
    M.cli_dlr_delay_ms = DEFAULT_DLR_DELAY_MS;
    M.cli_dlr_retry_ms = 1000;
    M.cli_stop_len = DEFAULT_STOP_LEN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--nostop-lifted") == 0) {
            M.cli_nostop_lifted = 1;
            continue;
        }
        if (!val) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            listen = val;
        } else if (strcmp(a, "--keyid") == 0) {
            if (!*val) {
                fputs("isendpro_mock: empty --keyid\n", stderr);
                return 2;
            }
            set_add(M.cli_keys, val);
        } else if (strcmp(a, "--dlr-url") == 0) {
            M.cli_dlr_url = strdup(val);
        } else if (strcmp(a, "--dlr-delay-ms") == 0) {
            if (parse_long(val, 0, 86400000L, &v) < 0) {
                fputs("isendpro_mock: bad --dlr-delay-ms\n", stderr);
                return 2;
            }
            M.cli_dlr_delay_ms = v;
        } else if (strcmp(a, "--dlr-retries") == 0) {
            if (parse_long(val, 0, 1000, &v) < 0) {
                fputs("isendpro_mock: bad --dlr-retries\n", stderr);
                return 2;
            }
            M.cli_dlr_retries = v;
        } else if (strcmp(a, "--dlr-retry-ms") == 0) {
            if (parse_long(val, 1, 600000, &v) < 0) {
                fputs("isendpro_mock: bad --dlr-retry-ms\n", stderr);
                return 2;
            }
            M.cli_dlr_retry_ms = v;
        } else if (strcmp(a, "--credit") == 0) {
            char *end;
            double d = strtod(val, &end);
            if (*end || !isfinite(d) || d < 0 || d > 1e9) {
                fputs("isendpro_mock: bad --credit\n", stderr);
                return 2;
            }
            M.cli_credit_cents = (long long)(d * 100.0 + 0.5);
        } else if (strcmp(a, "--record") == 0) {
            record = val;
        } else if (strcmp(a, "--stop-len") == 0) {
            if (parse_long(val, 0, 100, &v) < 0) {
                fputs("isendpro_mock: bad --stop-len\n", stderr);
                return 2;
            }
            M.cli_stop_len = (int)v;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!listen) {
        usage(stderr);
        return 2;
    }
    const char *colon = strrchr(listen, ':');
    char host[256];
    long port;
    if (!colon || (size_t)(colon - listen) >= sizeof host || colon == listen ||
        parse_long(colon + 1, 0, 65535, &port) < 0) {
        fputs("isendpro_mock: --listen HOST:PORT\n", stderr);
        return 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if (record) {
        M.record = fopen(record, "a");
        if (!M.record) {
            fprintf(stderr, "isendpro_mock: cannot open %s: %s\n", record, strerror(errno));
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    M.base = event_base_new();
    M.http = M.base ? evhttp_new(M.base) : NULL;
    if (!M.http) {
        fputs("isendpro_mock: libevent init failed\n", stderr);
        return 1;
    }
    if (M.cli_dlr_url && dlr_set_url(M.cli_dlr_url) < 0) {
        fputs("isendpro_mock: --dlr-url must be http://host[:port]/path[?query]\n", stderr);
        return 2;
    }
    evhttp_set_allowed_methods(M.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(M.http, MAX_BODY);
    evhttp_set_timeout(M.http, 600);
    evhttp_set_gencb(M.http, on_request, NULL);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(M.http, host, (ev_uint16_t)port);
    if (!bs) {
        fprintf(stderr, "isendpro_mock: cannot listen on %s\n", listen);
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int bound = (int)port;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    state_reset();
    struct event *sigint = evsignal_new(M.base, SIGINT, on_signal, NULL);
    struct event *sigterm = evsignal_new(M.base, SIGTERM, on_signal, NULL);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    logline("listening on http://%s:%d (keyids: %zu, credit %lld.%02lld EUR, dlr %s)", host, bound,
            json_object_size(M.cli_keys), M.cli_credit_cents / 100, M.cli_credit_cents % 100,
            M.cli_dlr_url ? M.cli_dlr_url : "off");

    event_base_dispatch(M.base);

    while (M.held)
        held_drop(M.held, 0);
    while (M.jobs)
        dlr_job_free(M.jobs);
    event_free(sigint);
    event_free(sigterm);
    evhttp_free(M.http);
    if (M.dns)
        evdns_base_free(M.dns, 0);
    event_base_free(M.base);
    if (M.dlr_uri)
        evhttp_uri_free(M.dlr_uri);
    free(M.dlr_url);
    free(M.cli_dlr_url);
    json_decref(M.keys);
    json_decref(M.blacklist);
    json_decref(M.unassigned);
    json_decref(M.undeliverable);
    json_decref(M.requests);
    json_decref(M.sent);
    json_decref(M.dlrs);
    json_decref(M.cli_keys);
    if (M.record)
        fclose(M.record);
    return 0;
}
