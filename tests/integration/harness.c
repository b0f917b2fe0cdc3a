/* harness — see harness.h. */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED 32
#define TAIL_LINES 40

static struct {
    char name[64];
    char *tmpdir;
    const char *test_pg;
    char *gatewayd, *gatewayctl, *loadgen;
    struct h_daemon *daemons[MAX_TRACKED];
    struct h_loadgen *loadgens[MAX_TRACKED];
    struct h_pg *clusters[MAX_TRACKED];
    struct {
        char *base;
        char *name;
    } dbs[MAX_TRACKED];
    int ndbs;
    int files; /* counter for unique file names */
    char *ctl_err; /* stderr of the last gatewayctl run */
} H;

/* ------------------------------------------------------------------ small things */

static void die_setup(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_setup(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] harness: ", H.name[0] ? H.name : "integration");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static char *vprintf_alloc(const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        abort();
    char *s = malloc((size_t)n + 1);
    if (!s)
        abort();
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *h_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vprintf_alloc(fmt, ap);
    va_end(ap);
    return s;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

void h_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vprintf_alloc(fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%s] %s\n", H.name, s);
    fflush(stderr);
    free(s);
}

double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double h_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int h_poll(double timeout_s, int interval_ms, int (*pred)(void *arg), void *arg)
{
    double deadline = h_now() + timeout_s;
    for (;;) {
        if (pred(arg))
            return 1;
        if (h_now() > deadline)
            return 0;
        h_sleep_ms(interval_ms);
    }
}

const char *h_name(void)
{
    return H.name;
}
const char *h_tmpdir(void)
{
    return H.tmpdir;
}
const char *h_test_pg(void)
{
    return H.test_pg;
}
const char *h_bin_gatewayd(void)
{
    return H.gatewayd;
}
const char *h_bin_gatewayctl(void)
{
    return H.gatewayctl;
}
const char *h_bin_loadgen(void)
{
    return H.loadgen;
}

static char *tail_of(const char *path, int lines)
{
    char *all = h_read_file(path);
    if (!all)
        return h_printf("(cannot read %s)", path);
    size_t n = strlen(all);
    int seen = 0;
    size_t i = n;
    while (i > 0) {
        if (all[i - 1] == '\n' && i != n && ++seen >= lines)
            break;
        i--;
    }
    char *t = xstrdup(all + i);
    free(all);
    return t;
}

void h_daemon_print_tail(struct h_daemon *d, int lines)
{
    char *t = tail_of(d->log, lines);
    fprintf(stderr, "----- last %d lines of %s (%s, port %d, %s) -----\n%s%s----- end of %s -----\n",
            lines, d->log, d->name, d->port, d->pid ? "running" : "not running", t,
            (*t && t[strlen(t) - 1] != '\n') ? "\n" : "", d->name);
    free(t);
}

void h_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vprintf_alloc(fmt, ap);
    va_end(ap);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (H.daemons[i] && H.daemons[i]->starts > 0)
            h_daemon_print_tail(H.daemons[i], TAIL_LINES);
    fprintf(stderr, "[%s] FAILED: %s\n", H.name, msg);
    fflush(stderr);
    fail_msg("%s", msg);
    abort(); /* not reached: fail_msg jumps out of the test */
}

int h_check(struct h_checks *c, int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vprintf_alloc(fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%s] check %s: %s\n", H.name, ok ? "ok    " : "FAILED", msg);
    if (ok) {
        c->npassed++;
    } else {
        c->nfailed++;
        char *all = h_printf("%s\n  - %s", c->failures ? c->failures : "", msg);
        free(c->failures);
        c->failures = all;
    }
    free(msg);
    return ok;
}

void h_checks_done(struct h_checks *c, const char *what)
{
    if (c->nfailed) {
        char *f = c->failures;
        c->failures = NULL;
        h_fail("%s: %d of %d checks failed:%s", what, c->nfailed, c->nfailed + c->npassed, f);
    }
    free(c->failures);
    c->failures = NULL;
}

char *h_write_file(const char *filename, const char *text)
{
    char *path = h_printf("%s/%s", H.tmpdir, filename);
    FILE *f = fopen(path, "w");
    H_ASSERT(f, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    H_ASSERT(fclose(f) == 0, "cannot write %s: %s", path, strerror(errno));
    return path;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b)
        abort();
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            b = realloc(b, cap);
            if (!b)
                abort();
        }
    }
    fclose(f);
    b[n] = '\0';
    return b;
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    H_ASSERT(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    H_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind 127.0.0.1:0: %s",
             strerror(errno));
    socklen_t len = sizeof a;
    H_ASSERT(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname: %s",
             strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ init / finish */

static char *bin_path(int argc, char **argv, int idx, const char *build, const char *rel)
{
    if (argc > idx && argv[idx][0])
        return xstrdup(argv[idx]);
    if (!build || !*build)
        die_setup("no path for %s: pass it as argument %d or set PASSERELLE_BUILD "
                  "(run the integration tests with `make check`)",
                  rel, idx);
    return h_printf("%s/%s", build, rel);
}

void h_init(const char *name, int argc, char **argv)
{
    snprintf(H.name, sizeof H.name, "%s", name);
    H.test_pg = getenv("PASSERELLE_TEST_PG");
    const char *tmp = getenv("PASSERELLE_TEST_TMPDIR");
    const char *build = getenv("PASSERELLE_BUILD");
    if (!H.test_pg || !*H.test_pg)
        die_setup("PASSERELLE_TEST_PG is not set: the integration tests need a running "
                  "PostgreSQL. Run them with `make check` (e.g. make check ARGS=\"-R %s\"), "
                  "which starts a throwaway cluster and sets the environment",
                  name);
    if (!tmp || !*tmp)
        die_setup("PASSERELLE_TEST_TMPDIR is not set. Run the integration tests with "
                  "`make check` (e.g. make check ARGS=\"-R %s\")",
                  name);
    H.gatewayd = bin_path(argc, argv, 1, build, "gatewayd/gatewayd");
    H.gatewayctl = bin_path(argc, argv, 2, build, "gatewayd/gatewayctl");
    H.loadgen = bin_path(argc, argv, 3, build, "bench/loadgen");
    const char *bins[3] = {H.gatewayd, H.gatewayctl, H.loadgen};
    for (int i = 0; i < 3; i++)
        if (access(bins[i], X_OK) != 0)
            die_setup("%s is not an executable (%s); build first, or run `make check`", bins[i],
                      strerror(errno));
    char *templ = h_printf("%s/%s.XXXXXX", tmp, name);
    if (!mkdtemp(templ))
        die_setup("mkdtemp %s: %s", templ, strerror(errno));
    chmod(templ, 0755);
    H.tmpdir = templ;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        die_setup("curl_global_init failed");
    signal(SIGPIPE, SIG_IGN);
    h_log("temp dir %s, gatewayd %s", H.tmpdir, H.gatewayd);
}

static void drop_db(const char *base, const char *name)
{
    char *ci = h_conninfo_with_db(base, "postgres");
    PGconn *pg = PQconnectdb(ci);
    free(ci);
    if (PQstatus(pg) == CONNECTION_OK) {
        PQclear(PQexec(pg, "SET client_min_messages = warning"));
        char *sql = h_printf("DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fprintf(stderr, "[%s] could not drop database %s: %s", H.name, name,
                    PQresultErrorMessage(r));
        PQclear(r);
        free(sql);
    } else {
        fprintf(stderr, "[%s] could not drop database %s: %s", H.name, name,
                PQerrorMessage(pg));
    }
    PQfinish(pg);
}

int h_finish(int failures)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        struct h_loadgen *l = H.loadgens[i];
        if (l && l->pid > 0) {
            kill(l->pid, SIGKILL);
            waitpid(l->pid, NULL, 0);
            l->pid = 0;
        }
    }
    for (int i = 0; i < MAX_TRACKED; i++) {
        struct h_daemon *d = H.daemons[i];
        if (d && d->pid > 0) {
            fprintf(stderr, "[%s] killing %s (pid %d), still running at the end\n", H.name,
                    d->name, (int)d->pid);
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
        }
    }
    if (failures == 0)
        for (int i = 0; i < H.ndbs; i++)
            drop_db(H.dbs[i].base, H.dbs[i].name);
    for (int i = 0; i < MAX_TRACKED; i++) {
        struct h_pg *pg = H.clusters[i];
        if (!pg)
            continue;
        if (pg->running) {
            char *argv[] = {"bash", getenv("PASSERELLE_PGCTL"), "stop", pg->datadir, NULL};
            char *err = NULL;
            if (h_run(argv, NULL, &err, 120) != 0)
                fprintf(stderr, "[%s] could not stop the cluster in %s: %s\n", H.name,
                        pg->datadir, err ? err : "");
            free(err);
            pg->running = 0;
        }
        if (failures == 0)
            rm_rf(pg->dir);
        else
            fprintf(stderr, "[%s] kept the private cluster in %s (log: %s/log)\n", H.name,
                    pg->dir, pg->datadir);
    }
    if (failures == 0) {
        rm_rf(H.tmpdir);
    } else {
        fprintf(stderr, "[%s] %d failure(s); kept the logs and config files in %s", H.name,
                failures, H.tmpdir);
        for (int i = 0; i < H.ndbs; i++)
            fprintf(stderr, "%s database %s", i ? "," : " and the", H.dbs[i].name);
        fputc('\n', stderr);
    }
    free(H.ctl_err);
    H.ctl_err = NULL;
    curl_global_cleanup();
    return failures;
}

int h_exit(int failures)
{
    int f = h_finish(failures);
    fflush(stdout);
    fflush(stderr);
    if (f)
        _exit(1);
    exit(0);
}

/* ------------------------------------------------------------------ databases and SQL */

static int needs_quotes(const char *v)
{
    if (!*v)
        return 1;
    for (const char *p = v; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\'' || *p == '\\')
            return 1;
    return 0;
}

char *h_conninfo_with_db(const char *base, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    H_ASSERT(opts, "cannot parse the conninfo '%s': %s", base, err ? err : "?");
    size_t cap = 1024, n = 0;
    char *out = malloc(cap);
    if (!out)
        abort();
    out[0] = '\0';
    int have_db = 0;
    for (PQconninfoOption *o = opts;; o++) {
        if (!o->keyword)
            break;
        const char *val = o->val;
        if (!strcmp(o->keyword, "dbname")) {
            val = dbname;
            have_db = 1;
        }
        if (!val)
            continue;
        size_t need = strlen(o->keyword) + 2 * strlen(val) + 8;
        while (n + need >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            if (!out)
                abort();
        }
        n += (size_t)snprintf(out + n, cap - n, "%s%s=", n ? " " : "", o->keyword);
        if (needs_quotes(val)) {
            out[n++] = '\'';
            for (const char *p = val; *p; p++) {
                if (*p == '\'' || *p == '\\')
                    out[n++] = '\\';
                out[n++] = *p;
            }
            out[n++] = '\'';
            out[n] = '\0';
        } else {
            n += (size_t)snprintf(out + n, cap - n, "%s", val);
        }
    }
    PQconninfoFree(opts);
    H_ASSERT(have_db, "libpq knows no dbname keyword");
    return out;
}

static PGconn *sql_connect(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        char *e = xstrdup(PQerrorMessage(pg));
        PQfinish(pg);
        h_fail("cannot connect to PostgreSQL (%s): %s", conninfo, e);
    }
    return pg;
}

static PGresult *sql_run(const char *conninfo, const char *fmt, va_list ap, PGconn **pgout)
{
    char *sql = vprintf_alloc(fmt, ap);
    PGconn *pg = sql_connect(conninfo);
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char *e = xstrdup(PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(pg);
        h_fail("SQL failed: %s\n  statement: %s", e, sql);
    }
    free(sql);
    *pgout = pg;
    return r;
}

char *h_sql_str(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg;
    PGresult *r = sql_run(conninfo, fmt, ap, &pg);
    va_end(ap);
    char *v = NULL;
    if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        v = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(pg);
    return v;
}

struct sql_wait {
    const char *conninfo, *sql, *want;
    char *got;
};

static int sql_wait_pred(void *arg)
{
    struct sql_wait *w = arg;
    free(w->got);
    w->got = h_sql_str(w->conninfo, "%s", w->sql);
    return w->want ? w->got && !strcmp(w->got, w->want) : w->got != NULL;
}

char *h_poll_sql(const char *conninfo, double timeout_s, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = NULL;
    if (vasprintf(&sql, fmt, ap) < 0)
        sql = NULL;
    va_end(ap);
    H_ASSERT(sql, "out of memory");
    struct sql_wait w = {conninfo, sql, want, NULL};
    h_poll(timeout_s, 100, sql_wait_pred, &w);
    free(sql);
    return w.got;
}

long long h_sql_int(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg;
    PGresult *r = sql_run(conninfo, fmt, ap, &pg);
    va_end(ap);
    int ok = PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0);
    char *v = ok ? xstrdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    PQfinish(pg);
    H_ASSERT(v, "SQL returned no value where an integer was expected");
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    H_ASSERT(!errno && end != v && !*end, "SQL returned '%s' where an integer was expected", v);
    free(v);
    return n;
}

void h_sql_exec(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg;
    PGresult *r = sql_run(conninfo, fmt, ap, &pg);
    va_end(ap);
    PQclear(r);
    PQfinish(pg);
}

char *h_sql_rows(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGconn *pg;
    PGresult *r = sql_run(conninfo, fmt, ap, &pg);
    va_end(ap);
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    if (!out)
        abort();
    out[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++) {
        for (int j = 0; j < PQnfields(r); j++) {
            const char *v = PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j);
            size_t need = strlen(v) + 4;
            while (n + need >= cap) {
                cap *= 2;
                out = realloc(out, cap);
                if (!out)
                    abort();
            }
            n += (size_t)snprintf(out + n, cap - n, "%s%s", j ? "|" : (i ? "; " : ""), v);
        }
    }
    if (n == 0) {
        free(out);
        out = xstrdup("(no rows)");
    }
    PQclear(r);
    PQfinish(pg);
    return out;
}

char *h_db_create(const char *base, const char *suffix, char **dbname_out)
{
    H_ASSERT(H.ndbs < MAX_TRACKED, "too many databases");
    char *name = h_printf("t_%s_%d", suffix, (int)getpid());
    char *admin = h_conninfo_with_db(base, "postgres");
    h_sql_exec(admin, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    h_sql_exec(admin, "CREATE DATABASE \"%s\"", name);
    free(admin);
    H.dbs[H.ndbs].base = xstrdup(base);
    H.dbs[H.ndbs].name = xstrdup(name);
    H.ndbs++;
    char *ci = h_conninfo_with_db(base, name);
    if (dbname_out)
        *dbname_out = name;
    else
        free(name);
    return ci;
}

char *h_undelivered_report(const char *conninfo)
{
    char *st = h_sql_rows(conninfo, "SELECT status, count(*) FROM messages GROUP BY 1 ORDER BY 1");
    long long queue = h_sql_int(conninfo, "SELECT count(*) FROM outbox_queue");
    long long lost_dlr = h_sql_int(conninfo,
                                   "SELECT count(*) FROM messages m WHERE m.status = 'sent' AND"
                                   " NOT EXISTS (SELECT 1 FROM outbox_queue q WHERE q.message_id"
                                   " = m.id) AND (SELECT count(*) FROM attempts a WHERE"
                                   " a.message_id = m.id AND a.outcome = 'accepted') = 1");
    char *first = h_sql_rows(
        conninfo,
        "SELECT m.id, m.status, m.attempts,"
        " (SELECT string_agg(e.status || '@' || to_char(e.at, 'HH24:MI:SS.MS'), ',' ORDER BY"
        " e.id) FROM message_events e WHERE e.message_id = m.id),"
        " coalesce((SELECT string_agg(a.outcome || '@' || a.node, ',' ORDER BY a.id) FROM"
        " attempts a WHERE a.message_id = m.id), '-'),"
        " coalesce((SELECT 'due ' || q.due_at::text || ' lease ' || coalesce(q.lease_node, '-')"
        " FROM outbox_queue q WHERE q.message_id = m.id), 'not queued')"
        " FROM messages m WHERE m.direction = 'out' AND m.status <> 'delivered' ORDER BY m.id"
        " LIMIT 8");
    char *r = h_printf("statuses: %s; outbox_queue rows: %lld; 'sent' with their one accepted "
                       "attempt and no queue row (waiting for a delivery report): %lld; first "
                       "undelivered (id|status|attempts|history|attempts|queue): %s",
                       st, queue, lost_dlr, first);
    free(st);
    free(first);
    return r;
}

long long h_wait_delivered(const char *conninfo, long long want, double timeout_s,
                           double stable_s, struct h_daemon *const *daemons)
{
    double deadline = h_now() + timeout_s;
    char *last = NULL;
    double last_change = h_now();
    for (;;) {
        long long delivered =
            h_sql_int(conninfo, "SELECT count(*) FROM messages WHERE status = 'delivered'");
        if (delivered >= want) {
            free(last);
            return delivered;
        }
        char *now = h_sql_rows(conninfo, "SELECT status, count(*) FROM messages GROUP BY 1 "
                                         "ORDER BY 1");
        if (!last || strcmp(now, last)) {
            free(last);
            last = now;
            last_change = h_now();
        } else {
            free(now);
            long long moving = h_sql_int(conninfo,
                                         "SELECT (SELECT count(*) FROM outbox_queue) + (SELECT"
                                         " count(*) FROM messages WHERE status IN ('queued',"
                                         " 'sending'))");
            if (moving == 0 && h_now() - last_change >= stable_s) {
                h_log("nothing moves any more after %.0f s: %lld of %lld delivered (%s)",
                      stable_s, delivered, want, last);
                free(last);
                return delivered;
            }
        }
        for (int i = 0; daemons && daemons[i]; i++)
            H_ASSERT(h_daemon_alive(daemons[i]), "%s exited while messages were being delivered",
                     daemons[i]->name);
        if (h_now() > deadline) {
            char *rep = h_undelivered_report(conninfo);
            free(last);
            h_fail("only %lld of %lld messages delivered within %.0f s and things still move; %s",
                   delivered, want, timeout_s, rep);
        }
        h_sleep_ms(500);
    }
}

/* ------------------------------------------------------------------ configuration */

char *h_config_write(const struct h_config *c, const char *filename)
{
    H_ASSERT(c->conninfo && c->port > 0, "h_config_write: conninfo and port are required");
    char *text = h_printf("[gateway]\n"
                          "listen = 127.0.0.1:%d\n"
                          "node_id = %s\n"
                          "max_body_bytes = 8192\n"
                          "%s"
                          "[database]\n"
                          "conninfo = %s\n"
                          "%s"
                          "[log]\n"
                          "level = info\n"
                          "[outbox]\n"
                          "%s"
                          "%s"
                          "[route sim]\n"
                          "driver = sim\n"
                          "%s",
                          c->port, c->node_id ? c->node_id : "node-a",
                          c->gateway ? c->gateway : "", c->conninfo,
                          c->database ? c->database : "",
                          c->outbox ? c->outbox
                                    : "lease_seconds = 5\n"
                                      "poll_interval_ms = 100\n"
                                      "backoff_base_ms = 100\n"
                                      "backoff_max_ms = 1000\n",
                          c->outbox_add ? c->outbox_add : "",
                          c->route_sim ? c->route_sim : "latency_ms = 20\ndlr_delay_ms = 100\n");
    char *path = h_write_file(filename, text);
    free(text);
    return path;
}

/* ------------------------------------------------------------------ processes */

static void child_exec(char *const argv[], int out_fd, int err_fd) __attribute__((noreturn));
static void child_exec(char *const argv[], int out_fd, int err_fd)
{
    /* Die with the test: a test killed by ctest's timeout must not leave a daemon behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    if (out_fd >= 0)
        dup2(out_fd, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    dprintf(2, "harness: cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int open_out(const char *path)
{
    int fd = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    H_ASSERT(fd >= 0, "cannot open %s: %s", path ? path : "/dev/null", strerror(errno));
    return fd;
}

pid_t h_spawn(char *const argv[], const char *out_path, const char *err_path)
{
    int out = open_out(out_path);
    int err = open_out(err_path);
    pid_t parent = getpid();
    pid_t pid = fork();
    H_ASSERT(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (getppid() != parent)
            _exit(126);
        child_exec(argv, out, err);
    }
    close(out);
    close(err);
    return pid;
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int h_wait(pid_t pid, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        H_ASSERT(r == 0, "waitpid(%d): %s", (int)pid, strerror(errno));
        if (h_now() > deadline)
            return -1;
        h_sleep_ms(20);
    }
}

int h_run(char *const argv[], char **out, char **err, int timeout_s)
{
    int n = ++H.files;
    char *op = h_printf("%s/run-%d.out", H.tmpdir, n);
    char *ep = h_printf("%s/run-%d.err", H.tmpdir, n);
    unlink(op);
    unlink(ep);
    pid_t pid = h_spawn(argv, op, ep);
    int rc = h_wait(pid, timeout_s);
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (out) {
        *out = h_read_file(op);
        if (!*out)
            *out = xstrdup("");
    }
    if (err) {
        *err = h_read_file(ep);
        if (!*err)
            *err = xstrdup("");
    }
    unlink(op);
    unlink(ep);
    free(op);
    free(ep);
    return rc;
}

/* ------------------------------------------------------------------ gatewayd */

static void track_daemon(struct h_daemon *d)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!H.daemons[i]) {
            H.daemons[i] = d;
            return;
        }
    h_fail("too many daemons");
}

static void launch(struct h_daemon *d)
{
    d->starts++;
    FILE *f = fopen(d->log, "a");
    H_ASSERT(f, "cannot open %s: %s", d->log, strerror(errno));
    fprintf(f, "===== harness: start #%d of %s (%s --config %s) =====\n", d->starts, d->name,
            H.gatewayd, d->config);
    fclose(f);
    char *argv[] = {H.gatewayd, "--config", d->config, NULL};
    d->pid = h_spawn(argv, d->log, d->log);
    double deadline = h_now() + 20;
    char *url = h_printf("%s/healthz", d->url);
    long last = 0;
    char last_body[256] = "";
    for (;;) {
        if (!h_daemon_alive(d)) {
            free(url);
            h_fail("%s exited during start-up (see its log above)", d->name);
        }
        struct h_resp *r = h_http("GET", url, NULL, NULL, NULL, 0);
        last = r->status;
        snprintf(last_body, sizeof last_body, "%s", r->status ? (r->body ? r->body : "")
                                                              : r->err);
        h_resp_free(r);
        if (last == 200)
            break;
        if (h_now() > deadline) {
            free(url);
            h_fail("%s: GET /healthz did not answer 200 within 20 s (last: HTTP %ld %s)",
                   d->name, last, last_body);
        }
        h_sleep_ms(100);
    }
    free(url);
}

struct h_daemon *h_daemon_start(const char *name, const char *config, int port)
{
    struct h_daemon *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    snprintf(d->name, sizeof d->name, "%s", name);
    d->port = port;
    d->config = xstrdup(config);
    d->log = h_printf("%s/%s.log", H.tmpdir, name);
    d->url = h_printf("http://127.0.0.1:%d", port);
    track_daemon(d);
    launch(d);
    return d;
}

void h_daemon_restart(struct h_daemon *d)
{
    H_ASSERT(d->pid == 0, "%s is still running (pid %d)", d->name, (int)d->pid);
    launch(d);
}

static void log_note(struct h_daemon *d, const char *fmt, ...)
{
    FILE *f = fopen(d->log, "a");
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("===== harness: ", f);
    vfprintf(f, fmt, ap);
    fputs(" =====\n", f);
    va_end(ap);
    fclose(f);
}

int h_daemon_alive(struct h_daemon *d)
{
    if (d->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    int rc = r == d->pid ? decode_status(st) : -1;
    log_note(d, "pid %d exited on its own with status %d", (int)d->pid, rc);
    d->pid = 0;
    return 0;
}

/* The first sanitizer report marker in d's log, or NULL. */
static const char *sanitizer_report(struct h_daemon *d)
{
    static const char *const bad[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                      "runtime error:", "UndefinedBehaviorSanitizer",
                                      "AddressSanitizer:DEADLYSIGNAL"};
    char *all = h_read_file(d->log);
    const char *found = NULL;
    for (size_t i = 0; all && !found && i < sizeof bad / sizeof bad[0]; i++)
        if (strstr(all, bad[i]))
            found = bad[i];
    free(all);
    return found;
}

void h_daemon_check_log(struct h_daemon *d)
{
    const char *bad = sanitizer_report(d);
    if (bad)
        h_fail("%s: its log holds a sanitizer report ('%s'); see %s", d->name, bad, d->log);
}

/* Stops d; returns NULL after a clean exit, else what went wrong (malloc'ed). */
static char *daemon_stop(struct h_daemon *d)
{
    if (d->pid <= 0)
        return h_printf("%s is not running: it cannot be stopped cleanly", d->name);
    pid_t pid = d->pid;
    log_note(d, "SIGTERM to pid %d", (int)pid);
    if (kill(pid, SIGTERM) != 0)
        return h_printf("kill(%d, SIGTERM): %s", (int)pid, strerror(errno));
    int rc = h_wait(pid, 30);
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        d->pid = 0;
        return h_printf("%s did not exit within 30 s of SIGTERM (killed)", d->name);
    }
    d->pid = 0;
    log_note(d, "pid %d exited with status %d", (int)pid, rc);
    if (rc != 0)
        return h_printf("%s: expected a clean shutdown (exit status 0) after SIGTERM, got %d%s",
                        d->name, rc, rc == 23 ? " (23 = LeakSanitizer found leaks)" : "");
    const char *bad = sanitizer_report(d);
    if (bad)
        return h_printf("%s: its log holds a sanitizer report ('%s'); see %s", d->name, bad,
                        d->log);
    return NULL;
}

void h_daemon_stop(struct h_daemon *d)
{
    char *err = daemon_stop(d);
    if (err)
        h_fail("%s", err);
}

void h_daemon_stop_check(struct h_daemon *d, struct h_checks *c)
{
    char *err = daemon_stop(d);
    if (err && d->starts > 0)
        h_daemon_print_tail(d, TAIL_LINES);
    h_check(c, err == NULL, "%s stops cleanly on SIGTERM (exit status 0, no sanitizer report)%s%s",
            d->name, err ? ": " : "", err ? err : "");
    free(err);
}

void h_daemon_kill9(struct h_daemon *d)
{
    H_ASSERT(d->pid > 0, "%s is not running", d->name);
    pid_t pid = d->pid;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    log_note(d, "SIGKILL to pid %d", (int)pid);
}

void h_daemon_free(struct h_daemon *d)
{
    if (!d)
        return;
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    for (int i = 0; i < MAX_TRACKED; i++)
        if (H.daemons[i] == d)
            H.daemons[i] = NULL;
    free(d->config);
    free(d->log);
    free(d->url);
    free(d);
}

/* ------------------------------------------------------------------ gatewayctl */

int h_ctl(const char *config, char **out, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = H.gatewayctl;
    argv[n++] = "--config";
    argv[n++] = (char *)config;
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *o = NULL, *e = NULL;
    int rc = h_run(argv, &o, &e, 60);
    size_t len = strlen(o);
    while (len && (o[len - 1] == '\n' || o[len - 1] == '\r'))
        o[--len] = '\0';
    len = strlen(e);
    while (len && (e[len - 1] == '\n' || e[len - 1] == '\r'))
        e[--len] = '\0';
    free(H.ctl_err);
    H.ctl_err = e;
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

const char *h_ctl_stderr(void)
{
    return H.ctl_err ? H.ctl_err : "";
}

long long h_centre_create(const char *config, const char *name)
{
    char *out = NULL;
    int rc = h_ctl(config, &out, "centre", "create", name, "--route", "sim", NULL);
    H_ASSERT(rc == 0, "gatewayctl centre create %s --route sim failed (exit %d): %s", name, rc,
             h_ctl_stderr());
    char *end;
    long long id = strtoll(out, &end, 10);
    H_ASSERT(end != out && *end == '\0' && id > 0,
             "gatewayctl centre create printed '%s', expected the centre id", out);
    free(out);
    return id;
}

char *h_key_create(const char *config, const char *centre)
{
    char *out = NULL;
    int rc = h_ctl(config, &out, "key", "create", centre, NULL);
    H_ASSERT(rc == 0, "gatewayctl key create %s failed (exit %d): %s", centre, rc,
             h_ctl_stderr());
    H_ASSERT(strncmp(out, "psk_", 4) == 0 && strlen(out) == 49,
             "gatewayctl key create printed '%s', expected a psk_… key", out);
    return out;
}

/* ------------------------------------------------------------------ HTTP */

size_t h_curl_collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct h_buf *b = arg;
    size_t n = size * nmemb;
    char *d = realloc(b->data, b->len + n + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, ptr, n);
    b->data = d;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

struct h_resp *h_http(const char *method, const char *url, const char *authz, const char *ctype,
                      const char *body, size_t len)
{
    struct h_resp *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    CURL *c = curl_easy_init();
    H_ASSERT(c, "curl_easy_init failed");
    struct h_buf b = {0};
    struct curl_slist *h = NULL;
    char line[1200];
    if (authz) {
        snprintf(line, sizeof line, "Authorization: %s", authz);
        h = curl_slist_append(h, line);
    }
    if (ctype) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(r->err, sizeof r->err, "%s %s: %s", method, url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            snprintf(r->content_type, sizeof r->content_type, "%s", ct);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r->body = b.data ? b.data : xstrdup("");
    r->len = b.len;
    r->json = json_loadb(r->body, r->len, 0, NULL);
    return r;
}

static char *bearer(const char *key)
{
    return key ? h_printf("Bearer %s", key) : NULL;
}

struct h_resp *h_get(const struct h_daemon *d, const char *path, const char *key)
{
    char *url = h_printf("%s%s", d->url, path);
    char *a = bearer(key);
    struct h_resp *r = h_http("GET", url, a, NULL, NULL, 0);
    free(a);
    free(url);
    return r;
}

struct h_resp *h_post_json(const struct h_daemon *d, const char *path, const char *key,
                           const char *body)
{
    char *url = h_printf("%s%s", d->url, path);
    char *a = bearer(key);
    struct h_resp *r = h_http("POST", url, a, "application/json", body, strlen(body));
    free(a);
    free(url);
    return r;
}

struct h_resp *h_post_form(const struct h_daemon *d, const char *path, const char *body)
{
    char *url = h_printf("%s%s", d->url, path);
    struct h_resp *r =
        h_http("POST", url, NULL, "application/x-www-form-urlencoded", body, strlen(body));
    free(url);
    return r;
}

void h_resp_free(struct h_resp *r)
{
    if (!r)
        return;
    free(r->body);
    json_decref(r->json);
    free(r);
}

json_t *h_jget(json_t *root, const char *path)
{
    json_t *cur = root;
    const char *p = path;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char key[128];
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

const char *h_jstr(json_t *root, const char *path)
{
    json_t *v = h_jget(root, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long h_jint(json_t *root, const char *path)
{
    json_t *v = h_jget(root, path);
    if (!json_is_integer(v)) {
        char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
        char msg[600];
        snprintf(msg, sizeof msg, "expected an integer at '%s' in %s", path, s ? s : "(no JSON)");
        free(s);
        h_fail("%s", msg);
    }
    return (long long)json_integer_value(v);
}

void h_expect_error(struct h_resp *r, long status, const char *code, const char *what)
{
    H_ASSERT(r->status == status,
             "%s: expected HTTP %ld (error.code %s), got %ld%s%s: %s", what, status, code,
             r->status, r->status ? "" : " - ", r->status ? "" : r->err, r->body);
    const char *c = h_jstr(r->json, "error.code");
    H_ASSERT(c && !strcmp(c, code), "%s: expected error.code '%s', got body %s", what, code,
             r->body);
    const char *m = h_jstr(r->json, "error.message");
    H_ASSERT(m && *m, "%s: the error has no message: %s", what, r->body);
}

/* ------------------------------------------------------------------ loadgen */

struct h_loadgen *h_loadgen_start(const struct h_loadgen_opts *o)
{
    struct h_loadgen *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    int n = ++H.files;
    char *keyfile = h_printf("loadgen-%d.key", n);
    char *key_text = h_printf("%s\n", o->key);
    char *keypath = h_write_file(keyfile, key_text);
    free(keyfile);
    free(key_text);
    l->out = h_printf("%s/loadgen-%d.out", H.tmpdir, n);
    l->err = h_printf("%s/loadgen-%d.err", H.tmpdir, n);
    char count[32], conc[16], maxs[16];
    snprintf(count, sizeof count, "%lld", o->count);
    snprintf(conc, sizeof conc, "%d", o->concurrency > 0 ? o->concurrency : 32);
    snprintf(maxs, sizeof maxs, "%d", o->max_seconds > 0 ? o->max_seconds : 600);
    char *argv[32];
    int a = 0;
    argv[a++] = H.loadgen;
    argv[a++] = "--url";
    argv[a++] = (char *)o->url;
    argv[a++] = "--key-file";
    argv[a++] = keypath;
    argv[a++] = "--count";
    argv[a++] = count;
    argv[a++] = "--concurrency";
    argv[a++] = conc;
    argv[a++] = "--text";
    argv[a++] = (char *)(o->text ? o->text : "Passerelle test %d");
    argv[a++] = "--max-seconds";
    argv[a++] = maxs;
    argv[a++] = "--json";
    if (o->idem_prefix) {
        argv[a++] = "--idempotency-prefix";
        argv[a++] = (char *)o->idem_prefix;
    }
    if (o->retry)
        argv[a++] = "--retry";
    if (o->to_base) {
        argv[a++] = "--to-base";
        argv[a++] = (char *)o->to_base;
    }
    if (o->ids_out) {
        argv[a++] = "--ids-out";
        argv[a++] = (char *)o->ids_out;
    }
    argv[a] = NULL;
    l->pid = h_spawn(argv, l->out, l->err);
    l->rc = -1;
    free(keypath);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!H.loadgens[i]) {
            H.loadgens[i] = l;
            break;
        }
    return l;
}

int h_loadgen_wait(struct h_loadgen *l, double timeout_s)
{
    H_ASSERT(l->pid > 0, "loadgen is not running");
    int rc = h_wait(l->pid, timeout_s);
    if (rc == -1) {
        kill(l->pid, SIGTERM); /* loadgen prints its summary on SIGTERM */
        rc = h_wait(l->pid, 10);
        if (rc == -1) {
            kill(l->pid, SIGKILL);
            waitpid(l->pid, NULL, 0);
        }
        l->pid = 0;
        char *out = h_read_file(l->out);
        h_fail("loadgen did not finish within %.0f s; its output: %s", timeout_s,
               out ? out : "(none)");
    }
    l->pid = 0;
    l->rc = rc;
    char *out = h_read_file(l->out);
    char *err = h_read_file(l->err);
    json_t *j = NULL;
    if (out) {
        /* the summary is the last line */
        size_t n = strlen(out);
        while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
            out[--n] = '\0';
        char *last = strrchr(out, '\n');
        j = json_loads(last ? last + 1 : out, 0, NULL);
    }
    if (!json_is_object(j)) {
        char msg[2048];
        snprintf(msg, sizeof msg, "loadgen (exit %d) printed no JSON summary; stdout: %s; "
                                  "stderr: %s",
                 rc, out ? out : "(none)", err ? err : "(none)");
        free(out);
        free(err);
        json_decref(j);
        h_fail("%s", msg);
    }
    free(out);
    free(err);
    l->summary = j;
    return rc;
}

long long h_loadgen_status(const struct h_loadgen *l, int code)
{
    char k[8];
    snprintf(k, sizeof k, "%d", code);
    json_t *v = json_object_get(json_object_get(l->summary, "status"), k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

void h_loadgen_free(struct h_loadgen *l)
{
    if (!l)
        return;
    if (l->pid > 0) {
        kill(l->pid, SIGKILL);
        waitpid(l->pid, NULL, 0);
    }
    for (int i = 0; i < MAX_TRACKED; i++)
        if (H.loadgens[i] == l)
            H.loadgens[i] = NULL;
    free(l->out);
    free(l->err);
    json_decref(l->summary);
    free(l);
}

/* ------------------------------------------------------------------ private PostgreSQL */

static void pgctl(struct h_pg *pg, char **out, const char *cmd, const char *a1, const char *a2,
                  const char *a3)
{
    const char *script = getenv("PASSERELLE_PGCTL");
    H_ASSERT(script && *script, "PASSERELLE_PGCTL is not set: run the integration tests with "
                                "`make check`");
    char *argv[] = {"bash", (char *)script, (char *)cmd, (char *)a1, (char *)a2, (char *)a3,
                    NULL};
    char *o = NULL, *e = NULL;
    int rc = h_run(argv, &o, &e, 180);
    if (rc != 0) {
        char msg[2048];
        snprintf(msg, sizeof msg, "pgctl.sh %s %s failed (exit %d): %s%s", cmd, a1, rc, e, o);
        free(o);
        free(e);
        (void)pg;
        h_fail("%s", msg);
    }
    free(e);
    if (out) {
        size_t n = strlen(o);
        while (n && (o[n - 1] == '\n' || o[n - 1] == '\r'))
            o[--n] = '\0';
        *out = o;
    } else {
        free(o);
    }
}

struct h_pg *h_pg_new(void)
{
    const char *tmp = getenv("PASSERELLE_TEST_TMPDIR");
    struct h_pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        abort();
    char *templ = h_printf("%s/pg-%s.XXXXXX", tmp, H.name);
    H_ASSERT(mkdtemp(templ), "mkdtemp %s: %s", templ, strerror(errno));
    chmod(templ, 0755);
    pg->dir = templ;
    pg->datadir = h_printf("%s/pg", templ);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (!H.clusters[i]) {
            H.clusters[i] = pg;
            break;
        }
    /* unix socket only, in a directory of our own: any port number is free there */
    pg->port = 56400 + (int)(getpid() % 1000);
    char port[16];
    snprintf(port, sizeof port, "%d", pg->port);
    pgctl(pg, NULL, "init", pg->datadir, NULL, NULL);
    h_pg_start(pg);
    pgctl(pg, &pg->conninfo, "conninfo", pg->datadir, port, "postgres");
    h_log("private PostgreSQL in %s (port %d): %s", pg->datadir, pg->port, pg->conninfo);
    return pg;
}

void h_pg_start(struct h_pg *pg)
{
    char port[16];
    snprintf(port, sizeof port, "%d", pg->port);
    pgctl(pg, NULL, "start", pg->datadir, port, NULL);
    pg->running = 1;
}

void h_pg_stop(struct h_pg *pg)
{
    pgctl(pg, NULL, "stop", pg->datadir, NULL, NULL);
    pg->running = 0;
}

double h_metric(struct h_daemon *d, const char *series)
{
    struct h_resp *r = h_get(d, "/metrics", NULL);
    H_ASSERT(r->status == 200 && r->body, "GET /metrics on %s: %ld %s", d->name, r->status, r->err);
    size_t n = strlen(series);
    double v = -1;
    int found = 0;
    for (const char *p = r->body; p && *p;) {
        if (!strncmp(p, series, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            found = 1;
            break;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    H_ASSERT(found, "/metrics on %s has no line '%s':\n%s", d->name, series, r->body);
    h_resp_free(r);
    return v;
}
