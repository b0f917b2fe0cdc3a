/*
 * loadgen — HTTP load generator for the Passerelle submission API.
 *
 * Sends --count POST /api/v1/messages requests to a running gatewayd over
 * --concurrency keep-alive HTTP/1.1 connections (one per worker, on libevent's
 * loop with a minimal HTTP/1.1 client of its own; each worker sends its next
 * request as soon as the answer to the previous one has arrived), then prints a summary: requests
 * sent, accepted (202), counts per HTTP status, connection errors, elapsed
 * time, accepted/s and latency percentiles.
 *
 * Usage:
 *   loadgen --key-file /etc/passerelle/bench.key --count 10000 --concurrency 32
 *   loadgen --url http://127.0.0.1:8080 --key KEY --retry --idempotency-prefix run1 \
 *           --ids-out /tmp/ids.txt --json
 *   loadgen --help
 *
 * Request i (0 <= i < --count) is {"to": to-base + (i % --distinct),
 * "text": --text with its first "%d" replaced by i, "idempotency_key": "P-i"
 * when --idempotency-prefix P is given}. The text is never used as a printf
 * format: it is split at "%d" and the decimal number is inserted between the
 * two halves.
 *
 * With --retry, a request answered 503 or lost to a connection error is sent
 * again (same i, same body) 200 ms later, until it is accepted or
 * --max-seconds have elapsed. Use --idempotency-prefix together with --retry:
 * a request lost to a connection error may have been accepted by the server
 * before the connection dropped, and only the idempotency key keeps the retry
 * from creating a second message.
 *
 * Two other request shapes share the same workers, retries and summary:
 *   --inbound ROUTE   POST /providers/ROUTE/inbound, form from=<number>&text=<text>
 *                     (gatewayd's simulator injection endpoint; no API key): a 200
 *                     with a readable "id" is accepted;
 *   --get TEMPLATE    GET TEMPLATE (a path and query, e.g. Kannel's
 *                     /cgi-bin/sendsms?...&to={to}&text={text}), {to}, {text} and
 *                     {i} replaced by the URL-encoded values; any 2xx is accepted.
 * --texts-file FILE gives several texts: request i uses line i % lines.
 *
 * Exit status: 0 when every request got a 202 (after retries) with a readable
 * id (other modes: their success answer), 1 otherwise, 2 on a usage or setup
 * error.
 *
 * See bench/README.md for what each figure of the summary means.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "http_answer.h"

#define API_PATH "/api/v1/messages"
#define RETRY_DELAY_MS 200
#define REQUEST_TIMEOUT_S 30
#define MAX_CONCURRENCY 10000
#define MAX_STATUS 600
#define MAX_TEXTS 1000

enum mode { MODE_API, MODE_INBOUND, MODE_GET };

/* ---- configuration ---------------------------------------------------- */

static struct {
    char host[256];       /* as given to getaddrinfo (no brackets) */
    char host_hdr[300];   /* Host header value, "host:port" */
    char url_shown[4400]; /* for the summary */
    unsigned short port;
    char *key; /* heap: from --key or --key-file */
    long long count;
    int concurrency;
    unsigned long long to_base;
    int to_digits;
    long long distinct;
    /* texts[k]: prefix = text before the first "%d" (heap copy), suffix = text after it,
     * NULL when the text has no "%d"; request i uses texts[i % ntexts] */
    struct {
        char *prefix;
        const char *suffix;
    } texts[MAX_TEXTS];
    int ntexts;
    enum mode mode;
    char *path; /* request path: API_PATH, /providers/ROUTE/inbound or the GET template */
    const char *idem_prefix;
    const char *ids_out_path;
    int retry;
    long long max_seconds;
    int json;
} cfg;

/* ---- run state -------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

struct worker {
    int fd;              /* the keep-alive connection, -1 when none */
    int connecting;      /* its non-blocking connect is in progress */
    int eof;             /* the server closed it (seen while reading) */
    struct event *rev;   /* EV_READ | EV_PERSIST on fd once connected */
    struct event *wev;   /* EV_WRITE: the connect's completion, or the rest of a request */
    struct event *timer; /* delay before a retry or after a connection error */
    long long cur;       /* request index being worked on, -1 when none */
    int is_retry;        /* the next send of cur is a retry */
    int inflight;        /* a request is on the wire, its answer not yet read */
    int done;
    struct timespec t0;
    struct sbuf out; /* the request being sent, out_off of it sent */
    size_t out_off;
    struct sbuf body; /* its body while it is built */
    struct sbuf in;   /* what the server answered so far */
};

static struct {
    struct event_base *base;
    struct worker *workers;
    int workers_done;
    long long next_index;
    int stopping;
    const char *stop_reason;
    struct timespec start;

    long long sent;     /* HTTP requests put on the wire, retries included */
    long long retries;  /* of which retries */
    long long accepted; /* requests answered 202 */
    long long failed;   /* requests given up without a 202 */
    long long conn_errors;
    long long malformed; /* 202 answers without a readable id */
    long long status[MAX_STATUS];
    long long status_other; /* status outside 100..599 */

    double *lat; /* ms, one per HTTP answer (any status) */
    size_t lat_n, lat_cap;
    int oom;

    FILE *ids_out;
    struct sockaddr_storage addr; /* the server's, resolved once */
    socklen_t addrlen;
    struct sbuf hdrs; /* the headers every request carries */
} st;

/* ---- helpers ---------------------------------------------------------- */

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: loadgen (--key KEY | --key-file FILE) [options]\n"
          "       loadgen (--inbound ROUTE | --get TEMPLATE) [options]\n"
          "  --url URL                 http://host:port (default http://127.0.0.1:8080);\n"
          "                            the path is always " API_PATH "\n"
          "  --key KEY                 API key, sent as Authorization: Bearer KEY\n"
          "  --key-file FILE           read the API key from the first line of FILE\n"
          "  --count N                 total requests (default 10000)\n"
          "  --concurrency C           connections / requests in flight (default 32)\n"
          "  --to-base E164            first recipient (default +33600000000)\n"
          "  --distinct D              request i goes to to-base + (i % D) (default 1000000)\n"
          "  --text TEXT               message text; its first %d becomes i\n"
          "                            (default \"Bonjour, ceci est un test de charge "
          "Passerelle n\xc2\xb0%d\")\n"
          "  --idempotency-prefix P    send idempotency_key \"P-i\" with request i\n"
          "  --ids-out FILE            write each accepted id, one per line\n"
          "  --retry                   resend on 503 or connection error after 200 ms\n"
          "  --max-seconds S           stop after S seconds and report (default 600)\n"
          "  --json                    print the summary as one JSON object\n"
          "  --texts-file FILE         one text per line; request i uses line i % lines\n"
          "  --inbound ROUTE           POST /providers/ROUTE/inbound from=<to>&text=<text>\n"
          "                            instead (no key; 200 with an id is accepted)\n"
          "  --get TEMPLATE            GET TEMPLATE instead (no key; any 2xx is accepted);\n"
          "                            {to} {text} {i} become the URL-encoded values\n"
          "  --help                    this text\n"
          "exit status: 0 every request accepted, 1 otherwise, 2 usage error\n",
          f);
}

/* "http://host[:port][/]" or with the fixed API path; IPv6 as [addr]. */
static int parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        fprintf(stderr, "loadgen: --url must start with http:// (got \"%s\")\n", url);
        return -1;
    }
    p += 7;
    const char *host_start, *host_end;
    if (*p == '[') {
        host_start = p + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL) {
            fprintf(stderr, "loadgen: --url: unterminated [ in \"%s\"\n", url);
            return -1;
        }
        p = host_end + 1;
    } else {
        host_start = p;
        while (*p != '\0' && *p != ':' && *p != '/')
            p++;
        host_end = p;
    }
    size_t hlen = (size_t)(host_end - host_start);
    if (hlen == 0 || hlen >= sizeof cfg.host) {
        fprintf(stderr, "loadgen: --url: bad host in \"%s\"\n", url);
        return -1;
    }
    memcpy(cfg.host, host_start, hlen);
    cfg.host[hlen] = '\0';

    long long port = 80;
    if (*p == ':') {
        p++;
        const char *ps = p;
        while (*p >= '0' && *p <= '9')
            p++;
        char pbuf[8];
        size_t plen = (size_t)(p - ps);
        if (plen == 0 || plen >= sizeof pbuf) {
            fprintf(stderr, "loadgen: --url: bad port in \"%s\"\n", url);
            return -1;
        }
        memcpy(pbuf, ps, plen);
        pbuf[plen] = '\0';
        if (parse_ll(pbuf, 1, 65535, &port) != 0) {
            fprintf(stderr, "loadgen: --url: bad port in \"%s\"\n", url);
            return -1;
        }
    }
    if (*p != '\0' && strcmp(p, "/") != 0 && (cfg.mode != MODE_API || strcmp(p, API_PATH) != 0)) {
        if (cfg.mode == MODE_API)
            fprintf(stderr, "loadgen: --url: the path is fixed to " API_PATH "; drop \"%s\"\n", p);
        else
            fprintf(stderr,
                    "loadgen: --url: give http://host:port only with --inbound/--get; "
                    "drop \"%s\"\n",
                    p);
        return -1;
    }
    cfg.port = (unsigned short)port;
    int ipv6 = strchr(cfg.host, ':') != NULL;
    snprintf(cfg.host_hdr, sizeof cfg.host_hdr, "%s%s%s:%u", ipv6 ? "[" : "", cfg.host,
             ipv6 ? "]" : "", (unsigned)cfg.port);
    snprintf(cfg.url_shown, sizeof cfg.url_shown, "http://%s%s", cfg.host_hdr, cfg.path);
    return 0;
}

static int valid_key(const char *k)
{
    if (*k == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p < 0x21 || *p == 0x7f)
            return 0;
    return 1;
}

static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "loadgen: --key-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n < 0) {
        free(line);
        fprintf(stderr, "loadgen: --key-file %s: empty file\n", path);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    return line;
}

/* "+digits" -> value and digit count; the range base .. base+distinct-1
 * must keep the same number of digits. */
static int parse_to_base(const char *s)
{
    if (s[0] != '+') {
        fprintf(stderr, "loadgen: --to-base must be E.164, e.g. +33600000000 (got \"%s\")\n", s);
        return -1;
    }
    size_t nd = strlen(s + 1);
    if (nd < 8 || nd > 15 || s[1] == '0' || strspn(s + 1, "0123456789") != nd) {
        fprintf(stderr, "loadgen: --to-base must be + and 8 to 15 digits (got \"%s\")\n", s);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s + 1, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "loadgen: --to-base: bad number \"%s\"\n", s);
        return -1;
    }
    cfg.to_base = v;
    cfg.to_digits = (int)nd;
    return 0;
}

static int check_to_range(void)
{
    unsigned long long limit = 1;
    for (int i = 0; i < cfg.to_digits; i++)
        limit *= 10;
    if (cfg.to_base + (unsigned long long)(cfg.distinct - 1) >= limit) {
        fprintf(stderr, "loadgen: --to-base + --distinct overflows the number's %d digits\n",
                cfg.to_digits);
        return -1;
    }
    return 0;
}

static int valid_utf8(const char *s)
{
    json_t *probe = json_string(s); /* NULL when s is not valid UTF-8 */
    int ok = probe != NULL;
    json_decref(probe);
    return ok;
}

static int add_text(const char *text)
{
    if (!valid_utf8(text)) {
        fprintf(stderr, "loadgen: --text is not valid UTF-8\n");
        return -1;
    }
    if (cfg.ntexts == MAX_TEXTS) {
        fprintf(stderr, "loadgen: at most %d texts\n", MAX_TEXTS);
        return -1;
    }
    char *copy = strdup(text);
    if (copy == NULL)
        return -1;
    char *pct = strstr(copy, "%d");
    int k = cfg.ntexts++;
    if (pct != NULL) {
        *pct = '\0';
        cfg.texts[k].suffix = pct + 2;
    } else {
        cfg.texts[k].suffix = NULL;
    }
    cfg.texts[k].prefix = copy;
    return 0;
}

/* One text per line (trailing CR/LF removed; empty lines skipped). */
static int read_texts_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "loadgen: --texts-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n > 0)
            rc = add_text(line);
    }
    free(line);
    fclose(f);
    if (rc == 0 && cfg.ntexts == 0) {
        fprintf(stderr, "loadgen: --texts-file %s: no text in it\n", path);
        rc = -1;
    }
    return rc;
}

/* "/providers/ROUTE/inbound"; the route name is a plain word */
static int set_inbound_path(const char *route)
{
    size_t n = strlen(route);
    if (n == 0 || n > 64 ||
        strspn(route, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789_-") != n) {
        fprintf(stderr, "loadgen: --inbound: bad route name \"%s\"\n", route);
        return -1;
    }
    size_t cap = n + 32;
    cfg.path = malloc(cap);
    if (cfg.path == NULL)
        return -1;
    snprintf(cfg.path, cap, "/providers/%s/inbound", route);
    return 0;
}

static int set_get_template(const char *tpl)
{
    if (tpl[0] != '/' || strlen(tpl) > 4000) {
        fprintf(stderr,
                "loadgen: --get: the template must be a path starting with / (got \"%s\")\n", tpl);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)tpl; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            fprintf(stderr, "loadgen: --get: the template must be URL-encoded already (no "
                            "spaces, control or non-ASCII bytes)\n");
            return -1;
        }
    }
    cfg.path = strdup(tpl);
    return cfg.path ? 0 : -1;
}

/* ---- buffers ---------------------------------------------------------- */

static int sb_reserve(struct sbuf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t ncap = b->cap ? b->cap : 512;
    while (ncap - b->len < more)
        ncap *= 2;
    char *n = realloc(b->p, ncap);
    if (n == NULL)
        return -1;
    b->p = n;
    b->cap = ncap;
    return 0;
}

static int sb_add(struct sbuf *b, const void *s, size_t n)
{
    if (sb_reserve(b, n + 1) != 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_adds(struct sbuf *b, const char *s)
{
    return sb_add(b, s, strlen(s));
}

/* ---- requests --------------------------------------------------------- */

static void recipient(long long i, char *to, size_t cap)
{
    unsigned long long v = cfg.to_base + (unsigned long long)(i % cfg.distinct);
    snprintf(to, cap, "+%0*llu", cfg.to_digits, v);
}

/* Appends the text of request i to b, through add (escaping) */
static int add_text_of(long long i, struct sbuf *b, int (*add)(struct sbuf *, const char *))
{
    const char *prefix = cfg.texts[i % cfg.ntexts].prefix;
    const char *suffix = cfg.texts[i % cfg.ntexts].suffix;
    if (add(b, prefix) != 0)
        return -1;
    if (suffix == NULL)
        return 0;
    char num[24];
    snprintf(num, sizeof num, "%lld", i);
    return add(b, num) == 0 && add(b, suffix) == 0 ? 0 : -1;
}

/* Appends s percent-encoded (every byte but the unreserved ones) to b. */
static int add_escaped(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        if ((plain ? sb_add(b, p, 1) : sb_add(b, e, 3)) != 0)
            return -1;
    }
    return 0;
}

/* Appends s as the inside of a JSON string (s is valid UTF-8, checked at start-up):
 * '"', '\' and control bytes escaped, everything else as is (what json_dumps writes). */
static int add_json_chars(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '\0' && c != '"' && c != '\\' && c >= 0x20)
            continue;
        if (sb_add(b, run, (size_t)(p - run)) != 0)
            return -1;
        if (c == '\0')
            return 0;
        char e[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        if (c < 0x20) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            n = 6;
        }
        if (sb_add(b, e, n) != 0)
            return -1;
        run = p + 1;
    }
}

/* --get: the template with {to}, {text}, {i} replaced (URL-encoded) into b */
static int build_get_path(long long i, struct sbuf *b)
{
    char to[24], num[24];
    recipient(i, to, sizeof to);
    snprintf(num, sizeof num, "%lld", i);
    int rc = 0;
    for (const char *p = cfg.path; *p && rc == 0;) {
        if (strncmp(p, "{to}", 4) == 0) {
            rc = add_escaped(b, to);
            p += 4;
        } else if (strncmp(p, "{i}", 3) == 0) {
            rc = add_escaped(b, num);
            p += 3;
        } else if (strncmp(p, "{text}", 6) == 0) {
            rc = add_text_of(i, b, add_escaped);
            p += 6;
        } else {
            rc = sb_add(b, p, 1);
            p++;
        }
    }
    return rc;
}

/* --inbound: from=<to>&text=<text> into b */
static int build_form(long long i, struct sbuf *b)
{
    char to[24];
    recipient(i, to, sizeof to);
    return sb_adds(b, "from=") == 0 && add_escaped(b, to) == 0 && sb_adds(b, "&text=") == 0 &&
                   add_text_of(i, b, add_escaped) == 0
               ? 0
               : -1;
}

/* the API's JSON body: {"to":…,"text":…[,"idempotency_key":…]} into b */
static int build_json(long long i, struct sbuf *b)
{
    char to[24];
    recipient(i, to, sizeof to);
    int rc = sb_adds(b, "{\"to\":\"") == 0 && sb_adds(b, to) == 0 &&
                     sb_adds(b, "\",\"text\":\"") == 0 && add_text_of(i, b, add_json_chars) == 0 &&
                     sb_adds(b, "\"") == 0
                 ? 0
                 : -1;
    if (rc == 0 && cfg.idem_prefix != NULL) {
        char num[24];
        snprintf(num, sizeof num, "-%lld", i);
        rc = sb_adds(b, ",\"idempotency_key\":\"") == 0 &&
                     add_json_chars(b, cfg.idem_prefix) == 0 && sb_adds(b, num) == 0 &&
                     sb_adds(b, "\"") == 0
                 ? 0
                 : -1;
    }
    return rc == 0 ? sb_adds(b, "}") : -1;
}

/* The whole HTTP/1.1 request for index i into out (emptied first): the request line and
 * headers, then the body. One write puts it on the wire. */
static int build_request(long long i, struct sbuf *out, struct sbuf *body)
{
    out->len = body->len = 0;
    int rc;
    if (cfg.mode == MODE_GET) {
        rc = sb_adds(out, "GET ") == 0 && build_get_path(i, out) == 0 &&
                     sb_adds(out, " HTTP/1.1\r\n") == 0
                 ? 0
                 : -1;
    } else {
        rc = (cfg.mode == MODE_API ? build_json(i, body) : build_form(i, body)) == 0 &&
                     sb_adds(out, "POST ") == 0 && sb_adds(out, cfg.path) == 0 &&
                     sb_adds(out, " HTTP/1.1\r\n") == 0
                 ? 0
                 : -1;
    }
    if (rc != 0)
        return -1;
    /* the headers every request carries, made once: Host, keep-alive, and for the API the
     * key and the content types */
    if (sb_add(out, st.hdrs.p, st.hdrs.len) != 0)
        return -1;
    if (cfg.mode != MODE_GET) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n\r\n", body->len);
        return sb_adds(out, cl) == 0 && sb_add(out, body->p, body->len) == 0 ? 0 : -1;
    }
    return sb_adds(out, "\r\n");
}

static void record_latency(double ms)
{
    if (st.lat_n == st.lat_cap) {
        size_t ncap = st.lat_cap ? st.lat_cap * 2 : 1024;
        double *n = realloc(st.lat, ncap * sizeof *n);
        if (n == NULL) {
            st.oom = 1;
            return;
        }
        st.lat = n;
        st.lat_cap = ncap;
    }
    st.lat[st.lat_n++] = ms;
}

static void stop(const char *reason)
{
    if (st.stopping)
        return;
    st.stopping = 1;
    st.stop_reason = reason;
    event_base_loopbreak(st.base);
}

static void worker_next(struct worker *w);
static void handle_conn_error(struct worker *w);

static void arm_delay(struct worker *w)
{
    struct timeval tv = {RETRY_DELAY_MS / 1000, (RETRY_DELAY_MS % 1000) * 1000};
    evtimer_add(w->timer, &tv);
}

static void write_id(const char *body, size_t len)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    json_t *id = json_is_object(root) ? json_object_get(root, "id") : NULL;
    if (json_is_integer(id)) {
        if (st.ids_out)
            fprintf(st.ids_out, "%" JSON_INTEGER_FORMAT "\n", json_integer_value(id));
    } else if (json_is_string(id)) {
        if (st.ids_out)
            fprintf(st.ids_out, "%s\n", json_string_value(id));
    } else {
        st.malformed++;
    }
    json_decref(root);
}

/* An HTTP answer to the request in flight. */
static void on_response(struct worker *w, int code, const char *body, size_t len)
{
    w->inflight = 0;
    if (st.stopping)
        return;

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    record_latency(ms_between(&w->t0, &now));
    if (code < MAX_STATUS && code >= 100)
        st.status[code]++;
    else
        st.status_other++;

    int ok = cfg.mode == MODE_API       ? code == 202
             : cfg.mode == MODE_INBOUND ? code == 200
                                        : code >= 200 && code < 300;
    if (ok) {
        if (cfg.mode != MODE_GET)
            write_id(body, len);
        st.accepted++;
        w->cur = -1;
        worker_next(w);
    } else if (code == 503 && cfg.retry) {
        w->is_retry = 1;
        arm_delay(w);
    } else {
        st.failed++;
        w->cur = -1;
        worker_next(w);
    }
}

/* ---- connections -------------------------------------------------------
 * One keep-alive connection per worker on a non-blocking socket, one request on it at a time:
 * the request goes out in one send(), the answer is read as it comes and parsed by
 * http_answer.c (status line, Content-Length or chunked body, Connection: close). No HTTP
 * library's client: the load
 * generator shares the machine with what it measures, so it should cost as little as it can. */

static void conn_close(struct worker *w)
{
    if (w->rev != NULL)
        event_free(w->rev);
    if (w->wev != NULL)
        event_free(w->wev);
    w->rev = w->wev = NULL;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->connecting = 0;
    w->in.len = 0;
}

/* The connection broke (or the server answered nonsense): the request in flight, if any,
 * gets no answer. A close while idle (the server's keep-alive timeout) is not an error. */
static void conn_fail(struct worker *w)
{
    conn_close(w);
    if (w->inflight) {
        w->inflight = 0;
        if (!st.stopping)
            handle_conn_error(w);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static int conn_open(struct worker *w)
{
    w->fd = socket(st.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0)
        return -1;
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    w->rev = event_new(st.base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->wev = event_new(st.base, w->fd, EV_WRITE, on_writable, w);
    if (w->rev == NULL || w->wev == NULL) {
        conn_close(w);
        return -1;
    }
    if (connect(w->fd, (const struct sockaddr *)&st.addr, st.addrlen) == 0) {
        event_add(w->rev, NULL);
        return 0;
    }
    if (errno != EINPROGRESS) {
        conn_close(w);
        return -1;
    }
    w->connecting = 1;
    event_add(w->wev, NULL);
    return 0;
}

/* Writes what is left of the request; the rest waits for EV_WRITE. */
static void flush_out(struct worker *w)
{
    while (w->out_off < w->out.len) {
        ssize_t n = send(w->fd, w->out.p + w->out_off, w->out.len - w->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            w->out_off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (errno != EINTR) {
                event_add(w->wev, NULL);
                return;
            }
        } else {
            conn_fail(w);
            return;
        }
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (w->connecting) {
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            conn_fail(w);
            return;
        }
        w->connecting = 0;
        event_add(w->rev, NULL);
    }
    flush_out(w);
}

/* Is a whole answer in w->in? Then handles it (and returns 1); 0 while incomplete, -1 when
 * malformed. */
static int try_response(struct worker *w)
{
    struct http_answer a;
    int r = http_answer_parse(w->in.p, w->in.len, w->eof, &a);
    if (r != HTTP_ANSWER_DONE)
        return r == HTTP_ANSWER_INCOMPLETE ? 0 : -1;
    /* consumed: one request at a time, so nothing follows the answer */
    w->in.len = 0;
    if (a.close || w->eof)
        conn_close(w); /* a.body stays valid: the buffer is kept */
    w->eof = 0;
    on_response(w, a.code, a.body, a.body_len); /* may send the next request */
    return 1;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (sb_reserve(&w->in, 16384) != 0) {
        st.oom = 1;
        stop("out of memory");
        return;
    }
    ssize_t n = recv(fd, w->in.p + w->in.len, w->in.cap - w->in.len - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0)
        w->eof = 1;
    else
        w->in.len += (size_t)n;
    if (!w->inflight) { /* closed while idle, or bytes nobody asked for: start afresh */
        conn_close(w);
        w->eof = 0;
        return;
    }
    int r = try_response(w);
    if (r < 0 || (r == 0 && w->eof)) {
        w->eof = 0;
        conn_fail(w);
    }
}

/* ---- workers ---------------------------------------------------------- */

/* No HTTP answer (refused, reset, closed before the response, timeout): the connection is
 * already closed; a new one is made after a short delay, so a dead server costs a few
 * wakeups per second per worker, not a busy loop. */
static void handle_conn_error(struct worker *w)
{
    st.conn_errors++;
    if (cfg.retry) {
        w->is_retry = 1;
    } else {
        st.failed++;
        w->cur = -1;
    }
    arm_delay(w);
}

static void send_current(struct worker *w)
{
    if (build_request(w->cur, &w->out, &w->body) != 0) {
        st.oom = 1;
        stop("out of memory");
        return;
    }
    st.sent++;
    if (w->is_retry)
        st.retries++;
    w->is_retry = 0;
    w->inflight = 1;
    w->out_off = 0;
    clock_gettime(CLOCK_MONOTONIC, &w->t0);
    if (w->fd < 0 && conn_open(w) != 0) {
        if (errno != ECONNREFUSED && errno != ENETUNREACH && errno != EHOSTUNREACH)
            fprintf(stderr, "loadgen: cannot connect to %s: %s\n", cfg.host_hdr, strerror(errno));
        w->inflight = 0;
        handle_conn_error(w);
        return;
    }
    if (!w->connecting)
        flush_out(w);
}

static void worker_next(struct worker *w)
{
    if (st.stopping)
        return;
    if (w->cur < 0) {
        if (st.next_index >= cfg.count) {
            if (!w->done) {
                w->done = 1;
                if (++st.workers_done == cfg.concurrency)
                    stop("done");
            }
            return;
        }
        w->cur = st.next_index++;
        w->is_retry = 0;
    }
    send_current(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_next(arg);
}

/* once a second: a request without an answer after REQUEST_TIMEOUT_S is a connection error */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (int i = 0; i < cfg.concurrency && !st.stopping; i++) {
        struct worker *w = &st.workers[i];
        if (w->inflight && ms_between(&w->t0, &now) > REQUEST_TIMEOUT_S * 1e3)
            conn_fail(w);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    stop("max-seconds");
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    stop("signal");
}

/* ---- summary ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of the sorted latencies */
static double percentile(double p)
{
    if (st.lat_n == 0)
        return 0.0;
    size_t rank = (size_t)((p / 100.0) * (double)st.lat_n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > st.lat_n)
        rank = st.lat_n;
    return st.lat[rank - 1];
}

static void print_summary(double elapsed_s, long long aborted)
{
    qsort(st.lat, st.lat_n, sizeof *st.lat, cmp_double);
    double p50 = percentile(50), p90 = percentile(90), p99 = percentile(99);
    double max = st.lat_n ? st.lat[st.lat_n - 1] : 0.0;
    double rate = elapsed_s > 0 ? (double)st.accepted / elapsed_s : 0.0;
    long long unfinished = cfg.count - st.accepted - st.failed;

    if (cfg.json) {
        json_t *status = json_object();
        for (int c = 100; c < MAX_STATUS; c++) {
            if (st.status[c]) {
                char k[8];
                snprintf(k, sizeof k, "%d", c);
                json_object_set_new(status, k, json_integer(st.status[c]));
            }
        }
        if (st.status_other)
            json_object_set_new(status, "other", json_integer(st.status_other));
        json_t *lat = st.lat_n == 0
                          ? json_pack("{s:I, s:n, s:n, s:n, s:n}", "answers", (json_int_t)0, "p50",
                                      "p90", "p99", "max")
                          : json_pack("{s:I, s:f, s:f, s:f, s:f}", "answers", (json_int_t)st.lat_n,
                                      "p50", p50, "p90", p90, "p99", p99, "max", max);
        json_t *o = json_pack(
            "{s:s, s:I, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:f, s:f, s:o, "
            "s:s}",
            "url", cfg.url_shown, "requests", (json_int_t)cfg.count, "concurrency", cfg.concurrency,
            "retry", cfg.retry, "sent", (json_int_t)st.sent, "retries", (json_int_t)st.retries,
            "accepted", (json_int_t)st.accepted, "failed", (json_int_t)st.failed, "unfinished",
            (json_int_t)unfinished, "aborted", (json_int_t)aborted, "status", status,
            "connection_errors", (json_int_t)st.conn_errors, "malformed_202",
            (json_int_t)st.malformed, "elapsed_s", elapsed_s, "accepted_per_s", rate, "latency_ms",
            lat, "stop_reason", st.stop_reason ? st.stop_reason : "done");
        if (o != NULL) {
            json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
            fputc('\n', stdout);
            json_decref(o);
        } else {
            fprintf(stderr, "loadgen: cannot build the JSON summary\n");
        }
        return;
    }

    printf("loadgen: %s  concurrency %d  retry %s\n", cfg.url_shown, cfg.concurrency,
           cfg.retry ? "on" : "off");
    printf("requests      %lld  (accepted %lld, failed %lld, unfinished %lld)\n", cfg.count,
           st.accepted, st.failed, unfinished);
    printf("sent          %lld  (retries %lld, aborted in flight %lld)\n", st.sent, st.retries,
           aborted);
    printf("status       ");
    int any = 0;
    for (int c = 100; c < MAX_STATUS; c++) {
        if (st.status[c]) {
            printf(" %d:%lld", c, st.status[c]);
            any = 1;
        }
    }
    if (st.status_other) {
        printf(" other:%lld", st.status_other);
        any = 1;
    }
    printf("%s\n", any ? "" : " (none)");
    printf("conn errors   %lld\n", st.conn_errors);
    if (st.malformed)
        printf("malformed 202 %lld  (202 without a readable \"id\")\n", st.malformed);
    printf("elapsed       %.3f s", elapsed_s);
    if (st.stop_reason != NULL && strcmp(st.stop_reason, "done") != 0)
        printf("  (stopped early: %s)", st.stop_reason);
    printf("\n");
    printf("accepted/s    %.1f\n", rate);
    if (st.lat_n == 0)
        printf("latency ms    n/a  (no HTTP answer)\n");
    else
        printf("latency ms    p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (%zu answers)\n", p50, p90,
               p99, max, st.lat_n);
}

/* The server's address, resolved once (the first answer of getaddrinfo). */
static int resolve_server(void)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(cfg.host, port, &hints, &res);
    if (rc != 0 || res == NULL || res->ai_addrlen > sizeof st.addr) {
        fprintf(stderr, "loadgen: cannot resolve %s: %s\n", cfg.host,
                rc != 0 ? gai_strerror(rc) : "no address");
        if (res != NULL)
            freeaddrinfo(res);
        return -1;
    }
    memcpy(&st.addr, res->ai_addr, res->ai_addrlen);
    st.addrlen = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The headers every request carries, after its request line. */
static int build_common_headers(void)
{
    int rc = sb_adds(&st.hdrs, "Host: ") == 0 && sb_adds(&st.hdrs, cfg.host_hdr) == 0 &&
                     sb_adds(&st.hdrs, "\r\nConnection: keep-alive\r\n") == 0
                 ? 0
                 : -1;
    if (rc == 0 && cfg.mode == MODE_API)
        rc = sb_adds(&st.hdrs, "Authorization: Bearer ") == 0 && sb_adds(&st.hdrs, cfg.key) == 0 &&
                     sb_adds(&st.hdrs, "\r\nContent-Type: application/json\r\n"
                                       "Accept: application/json\r\n") == 0
                 ? 0
                 : -1;
    else if (rc == 0 && cfg.mode == MODE_INBOUND)
        rc = sb_adds(&st.hdrs, "Content-Type: application/x-www-form-urlencoded\r\n");
    if (rc != 0)
        fprintf(stderr, "loadgen: out of memory\n");
    return rc;
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"key", required_argument, NULL, 'k'},
        {"key-file", required_argument, NULL, 'K'},
        {"count", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"to-base", required_argument, NULL, 't'},
        {"distinct", required_argument, NULL, 'd'},
        {"text", required_argument, NULL, 'x'},
        {"idempotency-prefix", required_argument, NULL, 'i'},
        {"ids-out", required_argument, NULL, 'o'},
        {"retry", no_argument, NULL, 'r'},
        {"max-seconds", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"texts-file", required_argument, NULL, 'T'},
        {"inbound", required_argument, NULL, 'I'},
        {"get", required_argument, NULL, 'G'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = "http://127.0.0.1:8080";
    const char *key = NULL, *key_file = NULL;
    const char *to_base = "+33600000000";
    const char *text = "Bonjour, ceci est un test de charge Passerelle n\xc2\xb0%d";
    const char *texts_file = NULL, *inbound_route = NULL, *get_tpl = NULL;
    int text_given = 0;
    long long v;

    cfg.count = 10000;
    cfg.concurrency = 32;
    cfg.distinct = 1000000;
    cfg.max_seconds = 600;

    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'K':
            key_file = optarg;
            break;
        case 'n':
            if (parse_ll(optarg, 1, LLONG_MAX / 2, &v) != 0) {
                fprintf(stderr, "loadgen: --count must be a positive integer\n");
                return 2;
            }
            cfg.count = v;
            break;
        case 'c':
            if (parse_ll(optarg, 1, MAX_CONCURRENCY, &v) != 0) {
                fprintf(stderr, "loadgen: --concurrency must be 1..%d\n", MAX_CONCURRENCY);
                return 2;
            }
            cfg.concurrency = (int)v;
            break;
        case 't':
            to_base = optarg;
            break;
        case 'd':
            if (parse_ll(optarg, 1, 100000000000000LL, &v) != 0) {
                fprintf(stderr, "loadgen: --distinct must be a positive integer\n");
                return 2;
            }
            cfg.distinct = v;
            break;
        case 'x':
            text = optarg;
            text_given = 1;
            break;
        case 'T':
            texts_file = optarg;
            break;
        case 'I':
            inbound_route = optarg;
            break;
        case 'G':
            get_tpl = optarg;
            break;
        case 'i':
            cfg.idem_prefix = optarg;
            break;
        case 'o':
            cfg.ids_out_path = optarg;
            break;
        case 'r':
            cfg.retry = 1;
            break;
        case 's':
            if (parse_ll(optarg, 1, 86400 * 365, &v) != 0) {
                fprintf(stderr, "loadgen: --max-seconds must be a positive integer\n");
                return 2;
            }
            cfg.max_seconds = v;
            break;
        case 'j':
            cfg.json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (inbound_route != NULL && get_tpl != NULL) {
        fprintf(stderr, "loadgen: give at most one of --inbound and --get\n");
        return 2;
    }
    cfg.mode = inbound_route ? MODE_INBOUND : get_tpl ? MODE_GET : MODE_API;
    if (cfg.mode == MODE_API && (key == NULL) == (key_file == NULL)) {
        fprintf(stderr, "loadgen: give exactly one of --key and --key-file\n");
        usage(stderr);
        return 2;
    }
    if (cfg.mode != MODE_API && (key != NULL || key_file != NULL || cfg.idem_prefix != NULL)) {
        fprintf(stderr, "loadgen: --key, --key-file and --idempotency-prefix are for the API\n");
        return 2;
    }
    if (cfg.mode == MODE_GET && cfg.ids_out_path != NULL) {
        fprintf(stderr, "loadgen: --ids-out does not go with --get (no id in the answers)\n");
        return 2;
    }
    if (texts_file != NULL && text_given) {
        fprintf(stderr, "loadgen: give at most one of --text and --texts-file\n");
        return 2;
    }
    if (cfg.mode == MODE_INBOUND ? set_inbound_path(inbound_route) != 0
        : cfg.mode == MODE_GET   ? set_get_template(get_tpl) != 0
                                 : (cfg.path = strdup(API_PATH)) == NULL)
        return 2;
    if (cfg.idem_prefix != NULL && (strlen(cfg.idem_prefix) == 0 || strlen(cfg.idem_prefix) > 256 ||
                                    !valid_utf8(cfg.idem_prefix))) {
        fprintf(stderr, "loadgen: --idempotency-prefix must be 1..256 bytes of UTF-8\n");
        return 2;
    }
    int rc = 2;
    if (parse_url(url) != 0 || parse_to_base(to_base) != 0 || check_to_range() != 0)
        goto out_key;

    if (cfg.mode == MODE_API) {
        cfg.key = key_file ? read_key_file(key_file) : strdup(key);
        if (cfg.key == NULL)
            goto out_key;
        if (!valid_key(cfg.key) || strlen(cfg.key) > 900) {
            fprintf(stderr,
                    "loadgen: the API key is empty, too long or has spaces/control bytes\n");
            goto out_key;
        }
    }
    if (texts_file ? read_texts_file(texts_file) != 0 : add_text(text) != 0)
        goto out_text;
    if (cfg.ids_out_path != NULL) {
        st.ids_out = fopen(cfg.ids_out_path, "w");
        if (st.ids_out == NULL) {
            fprintf(stderr, "loadgen: --ids-out %s: %s\n", cfg.ids_out_path, strerror(errno));
            goto out_text;
        }
    }

    /* a peer closing mid-write must be an error return, not a killed process */
    signal(SIGPIPE, SIG_IGN);
    if (resolve_server() != 0 || build_common_headers() != 0)
        goto out_text;

    st.base = event_base_new();
    st.workers = calloc((size_t)cfg.concurrency, sizeof *st.workers);
    st.lat_cap = cfg.count < 1000000 ? (size_t)cfg.count : 1000000;
    st.lat = malloc(st.lat_cap * sizeof *st.lat);
    struct event *deadline = st.base ? evtimer_new(st.base, on_deadline, NULL) : NULL;
    struct event *tick = st.base ? event_new(st.base, -1, EV_PERSIST, on_tick, NULL) : NULL;
    struct event *sigint = st.base ? evsignal_new(st.base, SIGINT, on_signal, NULL) : NULL;
    struct event *sigterm = st.base ? evsignal_new(st.base, SIGTERM, on_signal, NULL) : NULL;
    if (st.base == NULL || st.workers == NULL || st.lat == NULL || deadline == NULL ||
        tick == NULL || sigint == NULL || sigterm == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out_events;
    }
    for (int i = 0; i < cfg.concurrency; i++) {
        st.workers[i].cur = -1;
        st.workers[i].fd = -1;
        st.workers[i].timer = evtimer_new(st.base, on_timer, &st.workers[i]);
        if (st.workers[i].timer == NULL) {
            fprintf(stderr, "loadgen: out of memory\n");
            goto out_events;
        }
    }
    struct timeval dl = {(time_t)cfg.max_seconds, 0};
    evtimer_add(deadline, &dl);
    struct timeval one_s = {1, 0};
    event_add(tick, &one_s);
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);

    clock_gettime(CLOCK_MONOTONIC, &st.start);
    for (int i = 0; i < cfg.concurrency && !st.stopping; i++)
        worker_next(&st.workers[i]);
    if (!st.stopping)
        event_base_dispatch(st.base);
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double elapsed_s = ms_between(&st.start, &end) / 1e3;

    long long aborted = 0;
    for (int i = 0; i < cfg.concurrency; i++)
        aborted += st.workers[i].inflight;

    if (st.ids_out != NULL) {
        if (fclose(st.ids_out) != 0)
            fprintf(stderr, "loadgen: --ids-out %s: %s\n", cfg.ids_out_path, strerror(errno));
        st.ids_out = NULL;
    }
    if (st.oom)
        fprintf(stderr, "loadgen: out of memory during the run; figures are incomplete\n");
    print_summary(elapsed_s, aborted);
    fflush(stdout);
    rc = (st.accepted == cfg.count && st.malformed == 0 && !st.oom) ? 0 : 1;

out_events:
    if (st.workers != NULL) {
        for (int i = 0; i < cfg.concurrency; i++) {
            struct worker *w = &st.workers[i];
            conn_close(w);
            if (w->timer != NULL)
                event_free(w->timer);
            free(w->out.p);
            free(w->body.p);
            free(w->in.p);
        }
    }
    free(st.workers);
    free(st.lat);
    if (deadline)
        event_free(deadline);
    if (tick)
        event_free(tick);
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    if (st.base)
        event_base_free(st.base);
    libevent_global_shutdown();
    if (st.ids_out != NULL)
        fclose(st.ids_out);
out_text:
    free(st.hdrs.p);
    for (int k = 0; k < cfg.ntexts; k++)
        free(cfg.texts[k].prefix);
out_key:
    free(cfg.key);
    free(cfg.path);
    return rc;
}
