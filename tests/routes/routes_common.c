/* routes_common — see routes_common.h. */
#include "routes_common.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MOCKS 8

static struct {
    char *mock_bin;
    struct r_mock *mocks[MAX_MOCKS];
    int files;
} R;

/* ------------------------------------------------------------------ init / exit */

void r_init(const char *name, int argc, char **argv)
{
    h_init(name, argc, argv);
    const char *build = getenv("PASSERELLE_BUILD");
    if (argc > 4 && argv[4][0])
        R.mock_bin = h_printf("%s", argv[4]);
    else if (build && *build)
        R.mock_bin = h_printf("%s/tests/peers/isendpro_mock", build);
    else
        R.mock_bin = h_printf("%s", "isendpro_mock");
    if (access(R.mock_bin, X_OK) != 0) {
        fprintf(stderr, "[%s] %s is not an executable (%s): build first, or run `make check`\n",
                name, R.mock_bin, strerror(errno));
        exit(1);
    }
}

const char *r_bin_mock(void)
{
    return R.mock_bin;
}

int r_exit(int failures)
{
    for (int i = 0; i < MAX_MOCKS; i++) {
        struct r_mock *m = R.mocks[i];
        if (!m)
            continue;
        if (failures) {
            char *t = r_mock_tail(m, 30);
            fprintf(stderr, "----- last lines of %s (%s) -----\n%s----- end of %s -----\n", m->log,
                    m->name, t, m->name);
            free(t);
        }
        if (m->pid > 0) {
            kill(m->pid, SIGKILL);
            waitpid(m->pid, NULL, 0);
            m->pid = 0;
        }
    }
    h_exit(failures);
}

/* ------------------------------------------------------------------ misc */

int r_contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

int r_count_lines(const char *text, const char *needle)
{
    int n = 0;
    const char *p = text;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *line = strndup(p, len);
        if (line && strstr(line, needle))
            n++;
        free(line);
        p = e ? e + 1 : NULL;
    }
    return n;
}

char *r_find_line(const char *text, const char *needle)
{
    const char *p = text;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *line = strndup(p, len);
        if (line && strstr(line, needle))
            return line;
        free(line);
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

char *r_dump(json_t *j)
{
    if (!j)
        return h_printf("(null)");
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : h_printf("(unprintable)");
}

static char *tail_lines(const char *path, int lines)
{
    char *all = h_read_file(path);
    if (!all)
        return h_printf("(cannot read %s)\n", path);
    size_t n = strlen(all), i = n;
    int seen = 0;
    while (i > 0) {
        if (all[i - 1] == '\n' && i != n && ++seen >= lines)
            break;
        i--;
    }
    char *t = h_printf("%s%s", all + i, (n && all[n - 1] != '\n') ? "\n" : "");
    free(all);
    return t;
}

/* ------------------------------------------------------------------ the iSendPro mock */

char *r_mock_tail(const struct r_mock *m, int lines)
{
    return tail_lines(m->log, lines);
}

struct r_mock *r_mock_start(const char *name, const char *const *args)
{
    struct r_mock *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    snprintf(m->name, sizeof m->name, "%s", name);
    m->log = h_printf("%s/%s.log", h_tmpdir(), name);
    unlink(m->log);
    char *argv[40];
    int a = 0;
    argv[a++] = R.mock_bin;
    argv[a++] = "--listen";
    argv[a++] = "127.0.0.1:0";
    for (int i = 0; args && args[i] && a < 39; i++)
        argv[a++] = (char *)args[i];
    argv[a] = NULL;
    m->pid = h_spawn(argv, m->log, m->log);
    for (int i = 0; i < MAX_MOCKS; i++)
        if (!R.mocks[i]) {
            R.mocks[i] = m;
            break;
        }
    double deadline = h_now() + 15;
    for (;;) {
        char *log = h_read_file(m->log);
        const char *p = log ? strstr(log, "listening on http://127.0.0.1:") : NULL;
        if (p) {
            m->port = (int)strtol(p + strlen("listening on http://127.0.0.1:"), NULL, 10);
            free(log);
            break;
        }
        int st;
        if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
            m->pid = 0;
            h_fail("isendpro_mock %s exited during start-up: %s", name, log ? log : "(no log)");
        }
        free(log);
        H_ASSERT(h_now() < deadline, "isendpro_mock %s did not say 'listening on' within 15 s",
                 name);
        h_sleep_ms(50);
    }
    H_ASSERT(m->port > 0, "isendpro_mock %s: no port in its 'listening on' line", name);
    m->url = h_printf("http://127.0.0.1:%d", m->port);
    h_log("isendpro_mock %s listening on %s (log %s)", name, m->url, m->log);
    return m;
}

json_t *r_mock_ctl(struct r_mock *m, const char *what, const char *json_body)
{
    char *url = h_printf("%s/_mock/%s", m->url, what);
    const char *b = json_body ? json_body : "{}";
    struct h_resp *r = h_http("POST", url, NULL, "application/json", b, strlen(b));
    H_ASSERT(r->status == 200 && r->json,
             "mock control POST /_mock/%s %s: expected 200, got %ld%s%s", what, b, r->status,
             r->status ? " " : " - ", r->status ? r->body : r->err);
    json_t *j = json_incref(r->json);
    h_resp_free(r);
    free(url);
    return j;
}

json_t *r_mock_get(struct r_mock *m, const char *what)
{
    char *url = h_printf("%s/_mock/%s", m->url, what);
    struct h_resp *r = h_http("GET", url, NULL, NULL, NULL, 0);
    H_ASSERT(r->status == 200 && r->json, "mock GET /_mock/%s: expected 200 with JSON, got %ld%s%s",
             what, r->status, r->status ? " " : " - ", r->status ? r->body : r->err);
    json_t *j = json_incref(r->json);
    h_resp_free(r);
    free(url);
    return j;
}

void r_mock_stop(struct r_mock *m)
{
    H_ASSERT(m->pid > 0, "isendpro_mock %s is not running", m->name);
    kill(m->pid, SIGTERM);
    int rc = h_wait(m->pid, 15);
    if (rc == -1) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
    }
    m->pid = 0;
    H_ASSERT(rc == 0, "isendpro_mock %s: expected exit status 0 after SIGTERM, got %d", m->name,
             rc);
}

static int tracker_is(json_t *v, long long id)
{
    char want[32];
    snprintf(want, sizeof want, "%lld", id);
    if (json_is_string(v))
        return strcmp(json_string_value(v), want) == 0;
    if (json_is_integer(v))
        return json_integer_value(v) == id;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (tracker_is(e, id))
                return 1;
        }
    }
    return 0;
}

json_t *r_mock_by_tracker(json_t *list, long long id)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (tracker_is(json_object_get(e, "tracker"), id))
            json_array_append(out, e);
    }
    return out;
}

json_t *r_mock_requests_for(json_t *requests, long long id)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(requests, i, e)
    {
        if (tracker_is(json_object_get(json_object_get(e, "fields"), "tracker"), id))
            json_array_append(out, e);
    }
    return out;
}

/* ------------------------------------------------------------------ configuration */

char *r_config(const char *filename, int port, const char *conninfo, const char *gateway_extra,
               const char *outbox_extra, const char *routes)
{
    char *text = h_printf("[gateway]\n"
                          "listen = 127.0.0.1:%d\n"
                          "node_id = node-a\n"
                          "max_body_bytes = 8192\n"
                          "%s"
                          "[database]\n"
                          "conninfo = %s\n"
                          "[log]\n"
                          "level = debug\n"
                          "[outbox]\n"
                          "lease_seconds = 10\n"
                          "poll_interval_ms = 100\n"
                          "backoff_base_ms = 100\n"
                          "backoff_max_ms = 1000\n"
                          "%s"
                          "%s",
                          port, gateway_extra ? gateway_extra : "", conninfo,
                          outbox_extra ? outbox_extra : "", routes);
    char *path = h_write_file(filename, text);
    free(text);
    return path;
}

long long r_centre_create(const char *config, const char *name, const char *const *routes)
{
    const char *a[16];
    int n = 0;
    for (int i = 0; routes[i] && n < 12; i++) {
        a[n++] = "--route";
        a[n++] = routes[i];
    }
    while (n < 16)
        a[n++] = NULL;
    char *out = NULL;
    int rc = h_ctl(config, &out, "centre", "create", name, a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                   a[7], a[8], a[9], a[10], a[11], NULL);
    H_ASSERT(rc == 0, "gatewayctl centre create %s failed (exit %d): %s", name, rc, h_ctl_stderr());
    char *end;
    long long id = strtoll(out, &end, 10);
    H_ASSERT(end != out && *end == '\0' && id > 0,
             "gatewayctl centre create printed '%s', expected the centre id", out);
    free(out);
    return id;
}

/* ------------------------------------------------------------------ sending */

char *r_body(const char *to, const char *text, const char *send_at)
{
    json_t *o = json_pack("{s:s,s:s}", "to", to, "text", text);
    if (send_at)
        json_object_set_new(o, "send_at", json_string(send_at));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *r_time_ahead(int seconds_ahead)
{
    time_t t = time(NULL) + seconds_ahead;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return h_printf("%s", buf);
}

long long r_send(struct h_daemon *d, const char *key, const char *to, const char *text,
                 const char *send_at)
{
    char *body = r_body(to, text, send_at);
    struct h_resp *r = h_post_json(d, "/api/v1/messages", key, body);
    H_ASSERT(r->status == 202, "POST /api/v1/messages %s: expected 202, got %ld%s%s", body,
             r->status, r->status ? " " : " - ", r->status ? r->body : r->err);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    free(body);
    return id;
}

struct one_post {
    CURL *c;
    struct curl_slist *h;
    struct h_buf body;
};

void r_send_many(struct h_daemon *d, const char *key, int n, char *const *bodies, long long *ids)
{
    CURLM *multi = curl_multi_init();
    H_ASSERT(multi, "curl_multi_init failed");
    struct one_post *p = calloc((size_t)n, sizeof *p);
    if (!p)
        abort();
    char *url = h_printf("%s/api/v1/messages", d->url);
    char *auth = h_printf("Authorization: Bearer %s", key);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    for (int i = 0; i < n; i++) {
        p[i].c = curl_easy_init();
        p[i].h = curl_slist_append(NULL, auth);
        p[i].h = curl_slist_append(p[i].h, "Content-Type: application/json");
        p[i].h = curl_slist_append(p[i].h, "Expect:");
        curl_easy_setopt(p[i].c, CURLOPT_URL, url);
        curl_easy_setopt(p[i].c, CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(p[i].c, CURLOPT_HTTPHEADER, p[i].h);
        curl_easy_setopt(p[i].c, CURLOPT_WRITEFUNCTION, h_curl_collect);
        curl_easy_setopt(p[i].c, CURLOPT_WRITEDATA, &p[i].body);
        curl_easy_setopt(p[i].c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(p[i].c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(p[i].c, CURLOPT_PROXY, "");
        curl_easy_setopt(p[i].c, CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(multi, p[i].c);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    }
    char *err = NULL;
    for (int i = 0; i < n; i++) {
        long st = 0;
        curl_easy_getinfo(p[i].c, CURLINFO_RESPONSE_CODE, &st);
        json_t *j = p[i].body.data ? json_loads(p[i].body.data, 0, NULL) : NULL;
        json_t *id = json_object_get(j, "id");
        if (st == 202 && json_is_integer(id)) {
            ids[i] = (long long)json_integer_value(id);
        } else if (!err) {
            ids[i] = 0;
            err = h_printf("parallel POST %d of %d (%s): expected 202 with an id, got %ld %s",
                           i + 1, n, bodies[i], st, p[i].body.data ? p[i].body.data : "(no body)");
        }
        json_decref(j);
        curl_multi_remove_handle(multi, p[i].c);
        curl_easy_cleanup(p[i].c);
        curl_slist_free_all(p[i].h);
        free(p[i].body.data);
    }
    curl_multi_cleanup(multi);
    free(p);
    free(url);
    free(auth);
    if (err)
        h_fail("%s", err);
}

char *r_ids_csv(const long long *ids, int n)
{
    size_t cap = (size_t)n * 22 + 2, len = 0;
    char *s = malloc(cap);
    if (!s)
        abort();
    s[0] = '\0';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%lld", i ? "," : "", ids[i]);
    return s;
}

/* ------------------------------------------------------------------ message state */

static const char *REPORT_SQL =
    "SELECT m.id, m.status, coalesce(m.route, '-'), coalesce(m.error_code, '-'),"
    " coalesce(m.provider_ref, '-'),"
    " coalesce((SELECT string_agg(e.status || coalesce('@' || e.route, ''), ','"
    "   ORDER BY e.id) FROM message_events e WHERE e.message_id = m.id), '-'),"
    " coalesce((SELECT string_agg(a.route || ':' || a.outcome || coalesce(':' || a.error_code, ''),"
    "   ',' ORDER BY a.id) FROM attempts a WHERE a.message_id = m.id), 'no attempts'),"
    " coalesce((SELECT 'queued on ' || q.route || ' due ' || to_char(q.due_at, 'HH24:MI:SS.MS')"
    "   FROM outbox_queue q WHERE q.message_id = m.id), 'not in the queue')"
    " FROM messages m";

char *r_msg_report(const char *conninfo, long long id)
{
    char *rows = h_sql_rows(conninfo, "%s WHERE m.id = %lld", REPORT_SQL, id);
    char *r =
        h_printf("[id|status|route|error_code|provider_ref|history|attempts|queue: %s]", rows);
    free(rows);
    return r;
}

char *r_msgs_report(const char *conninfo, const char *ids_csv, const char *want_csv)
{
    char *rows = h_sql_rows(conninfo,
                            "%s WHERE m.id IN (%s) AND NOT (m.status = ANY "
                            "(string_to_array('%s', ','))) ORDER BY m.id LIMIT 10",
                            REPORT_SQL, ids_csv, want_csv);
    char *r = h_printf("[id|status|route|error_code|provider_ref|history|attempts|queue, first "
                       "10 not %s: %s]",
                       want_csv, rows);
    free(rows);
    return r;
}

char *r_status(const char *conninfo, long long id)
{
    char *s = h_sql_str(conninfo, "SELECT status FROM messages WHERE id = %lld", id);
    return s ? s : h_printf("(none)");
}

void r_wait_status(const char *conninfo, long long id, const char *want_csv, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    for (;;) {
        long long ok = h_sql_int(conninfo,
                                 "SELECT count(*) FROM messages WHERE id = %lld AND status = ANY "
                                 "(string_to_array('%s', ','))",
                                 id, want_csv);
        if (ok)
            return;
        if (h_now() > deadline) {
            char *rep = r_msg_report(conninfo, id);
            h_fail("message %lld did not reach %s within %.0f s: %s", id, want_csv, timeout_s, rep);
        }
        h_sleep_ms(100);
    }
}

void r_wait_all(const char *conninfo, const char *ids_csv, long long n, const char *want_csv,
                double timeout_s)
{
    double deadline = h_now() + timeout_s;
    for (;;) {
        long long ok = h_sql_int(conninfo,
                                 "SELECT count(*) FROM messages WHERE id IN (%s) AND status = "
                                 "ANY (string_to_array('%s', ','))",
                                 ids_csv, want_csv);
        if (ok >= n)
            return;
        if (h_now() > deadline) {
            char *st = h_sql_rows(conninfo,
                                  "SELECT status, count(*) FROM messages WHERE id IN (%s) "
                                  "GROUP BY 1 ORDER BY 1",
                                  ids_csv);
            char *rep = r_msgs_report(conninfo, ids_csv, want_csv);
            h_fail("only %lld of %lld messages reached %s within %.0f s (statuses: %s); %s", ok, n,
                   want_csv, timeout_s, st, rep);
        }
        h_sleep_ms(200);
    }
}

void r_hold_status(const char *conninfo, long long id, const char *status, double hold_s)
{
    double end = h_now() + hold_s;
    while (h_now() < end) {
        char *s = r_status(conninfo, id);
        if (strcmp(s, status) != 0) {
            char *rep = r_msg_report(conninfo, id);
            h_fail("message %lld should stay '%s' for %.0f s, but it is '%s': %s", id, status,
                   hold_s, s, rep);
        }
        free(s);
        h_sleep_ms(200);
    }
}

/* ------------------------------------------------------------------ health */

json_t *r_route_health(struct h_daemon *d, const char *route, char **body)
{
    struct h_resp *r = h_get(d, "/healthz", NULL);
    json_t *v = json_object_get(json_object_get(r->json, "routes"), route);
    json_t *copy = v ? json_deep_copy(v) : NULL;
    if (body)
        *body = h_printf("HTTP %ld %s", r->status, r->status ? r->body : r->err);
    h_resp_free(r);
    return copy;
}

const char *r_route_field(json_t *route, const char *field, char *buf, size_t len)
{
    json_t *v = json_object_get(route, field);
    snprintf(buf, len, "%s", json_is_string(v) ? json_string_value(v) : "");
    return buf;
}

/* ------------------------------------------------------------------ the dummy phone */

void r_dummy_mkdirs(const char *dir)
{
    H_ASSERT(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    char *sms = h_printf("%s/sms", dir);
    H_ASSERT(mkdir(sms, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", sms, strerror(errno));
    for (int i = 1; i <= 5; i++) {
        char *p = h_printf("%s/%d", sms, i);
        H_ASSERT(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", p, strerror(errno));
        free(p);
    }
    free(sms);
}

char *r_dummy_new(const char *name)
{
    char *dir = h_printf("%s/%s", h_tmpdir(), name);
    r_dummy_mkdirs(dir);
    return dir;
}

void r_dummy_put_file(const char *dir, int folder, int loc, const char *content)
{
    char *tmp = h_printf("%s/sms/%d/.incoming-%d", dir, folder, ++R.files);
    char *dst = h_printf("%s/sms/%d/%d", dir, folder, loc);
    FILE *f = fopen(tmp, "w");
    H_ASSERT(f, "cannot write %s: %s", tmp, strerror(errno));
    fputs(content, f);
    H_ASSERT(fclose(f) == 0, "cannot write %s: %s", tmp, strerror(errno));
    H_ASSERT(rename(tmp, dst) == 0, "rename %s %s: %s", tmp, dst, strerror(errno));
    free(tmp);
    free(dst);
}

/* UTF-8 → UTF-16BE hex digits (independently of libGammu). */
static char *utf16hex(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(8 * n + 1);
    if (!out)
        abort();
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp;
        int len = *p < 0x80 ? 1 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : 4;
        cp = len == 1 ? *p : len == 2 ? *p & 0x1Fu : len == 3 ? *p & 0x0Fu : *p & 0x07u;
        for (int i = 1; i < len; i++)
            cp = cp << 6 | (p[i] & 0x3Fu);
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

void r_dummy_put_sms(const char *dir, int folder, int loc, const char *from, const char *udh,
                     const char *text)
{
    char *c = r_dummy_sms_content(folder, from, udh, text);
    r_dummy_put_file(dir, folder, loc, c);
    free(c);
}

int r_dummy_try_put_file(const char *dir, int folder, int loc, const char *content)
{
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof tmp, "%s/sms/%d/.try-%d", dir, folder, loc);
    snprintf(dst, sizeof dst, "%s/sms/%d/%d", dir, folder, loc);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fputs(content, f) >= 0;
    if (fclose(f) != 0 || !ok || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

char *r_dummy_sms_content(int folder, const char *from, const char *udh, const char *text)
{
    char *hex = utf16hex(text);
    size_t hl = strlen(hex);
    size_t cap = 1024 + hl + hl / 200 * 16;
    char *c = malloc(cap);
    if (!c)
        abort();
    int n = snprintf(c, cap,
                     "[SMSBackup000]\nSMSC = \"+33609001390\"\nPDU = Deliver\n"
                     "DateTime = 20261129T204618Z\nState = UnRead\nNumber = \"%s\"\n"
                     "Coding = Unicode\nFolder = %d\n",
                     from, folder);
    if (udh)
        n += snprintf(c + n, cap - (size_t)n, "UDH = %s\n", udh);
    for (size_t i = 0, line = 0; i < hl; i += 200, line++)
        n += snprintf(c + n, cap - (size_t)n, "Text%02zu = %.200s\n", line, hex + i);
    free(hex);
    return c;
}

int r_dummy_count(const char *dir, int folder, char **names)
{
    char *p = h_printf("%s/sms/%d", dir, folder);
    DIR *d = opendir(p);
    int n = 0;
    char list[512] = "";
    size_t len = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end;
            long v = strtol(e->d_name, &end, 10);
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && *end == '\0' && v >= 1 &&
                v <= 10000) {
                n++;
                if (len < sizeof list - 16)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? " " : "",
                                            e->d_name);
            }
        }
        closedir(d);
    } else {
        n = -1;
        snprintf(list, sizeof list, "(cannot open %s: %s)", p, strerror(errno));
    }
    if (names)
        *names = h_printf("%s", list);
    free(p);
    return n;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void r_rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *r_gammu_rc(const char *dir)
{
    char *name = h_printf("gammurc-%d", ++R.files);
    char *text = h_printf("[gammu]\nmodel = dummy\nconnection = none\ndevice = %s\n", dir);
    char *path = h_write_file(name, text);
    free(name);
    free(text);
    return path;
}

int r_gammu(const char *rc, char **out, ...)
{
    char *argv[24];
    int n = 0;
    argv[n++] = "env";
    argv[n++] = "LC_ALL=C.UTF-8";
    argv[n++] = "gammu";
    argv[n++] = "-c";
    argv[n++] = (char *)rc;
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 23)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *o = NULL, *e = NULL;
    int st = h_run(argv, &o, &e, 60);
    if (out)
        *out = h_printf("%s%s", o, e);
    free(o);
    free(e);
    return st;
}
