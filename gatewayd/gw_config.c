/* gw_config — see gw_config.h. */
#include "gw_config.h"
#include "gw_log.h"
#include "gw_util.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct parse_ctx {
    struct gw_config *c;
    char err[256];
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* out of memory: nothing sensible to do */
    return d;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(v);
}

static int parse_int(const char *v, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max)
        return -1;
    *out = (int)n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
        !strcasecmp(v, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_listen(struct gw_config *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v)
        return -1;
    int port;
    if (parse_int(colon + 1, 0, 65535, &port) < 0)
        return -1;
    free(c->listen_host);
    c->listen_host = strndup(v, (size_t)(colon - v));
    if (!c->listen_host)
        abort();
    c->listen_port = port;
    return 0;
}

static struct gw_route_conf *route_get(struct gw_config *c, const char *name)
{
    for (size_t i = 0; i < c->nroutes; i++)
        if (!strcmp(c->routes[i].name, name))
            return &c->routes[i];
    struct gw_route_conf *r = realloc(c->routes, (c->nroutes + 1) * sizeof *r);
    if (!r)
        abort();
    c->routes = r;
    r = &c->routes[c->nroutes++];
    memset(r, 0, sizeof *r);
    r->name = xstrdup(name);
    r->concurrency = 100;
    r->breaker_failures = 5;
    r->breaker_cooldown_ms = 30000;
    return r;
}

#define ERR(...)                                                                                   \
    do {                                                                                           \
        snprintf(p->err, sizeof p->err, __VA_ARGS__);                                              \
        return 0;                                                                                  \
    } while (0)

static int route_key(struct parse_ctx *p, const char *route, const char *key, const char *value)
{
    if (!*route)
        ERR("a route section needs a name: [route NAME]");
    for (const char *s = route; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '-' || *s == '_'))
            ERR("route name '%s': use letters, digits, '-' and '_' only", route);
    struct gw_route_conf *r = route_get(p->c, route);
    if (!strcmp(key, "driver")) {
        set_str(&r->driver, value);
    } else if (!strcmp(key, "rate")) {
        char *end;
        double d = strtod(value, &end);
        if (end == value || *end || !isfinite(d) || d < 0)
            ERR("rate must be a number of messages per second >= 0 (0 = unlimited)");
        r->rate = d;
    } else if (!strcmp(key, "concurrency")) {
        if (parse_int(value, 1, 100000, &r->concurrency) < 0)
            ERR("concurrency must be an integer between 1 and 100000");
    } else if (!strcmp(key, "breaker_failures")) {
        if (parse_int(value, 1, 10000, &r->breaker_failures) < 0)
            ERR("breaker_failures must be an integer between 1 and 10000");
    } else if (!strcmp(key, "breaker_cooldown_ms")) {
        if (parse_int(value, 100, 3600000, &r->breaker_cooldown_ms) < 0)
            ERR("breaker_cooldown_ms must be between 100 and 3600000");
    } else if (!strcmp(key, "callback_secret")) {
        if (strlen(value) < 16 || strlen(value) > 200 || strpbrk(value, " &=?#/%+"))
            ERR("callback_secret must be 16 to 200 characters without spaces or &=?#/%%+");
        set_str(&r->callback_secret, value);
    } else if (!strcmp(key, "callback_allow")) {
        if (gw_addr_list_check(value) != 0)
            ERR("callback_allow must list IPv4/IPv6 addresses or IPv4 CIDRs, comma-separated");
        set_str(&r->callback_allow, value);
    }
    /* Every key, known or not, is handed to the driver as an option. */
    char **k = realloc(r->keys, (r->n + 1) * sizeof *k);
    if (!k)
        abort();
    r->keys = k;
    char **v = realloc(r->values, (r->n + 1) * sizeof *v);
    if (!v)
        abort();
    r->values = v;
    r->keys[r->n] = xstrdup(key);
    r->values[r->n] = xstrdup(value);
    r->n++;
    return 1;
}

/* inih handler: returns 1 to go on, 0 to stop with an error (the line number comes back
 * from ini_parse). */
static int handler(void *user, const char *section, const char *key, const char *value)
{
    struct parse_ctx *p = user;
    struct gw_config *c = p->c;
    if (!key)
        return 1; /* a section header alone (inih with INI_CALL_HANDLER_ON_NEW_SECTION) */
    if (!strncmp(section, "route ", 6))
        return route_key(p, section + 6, key, value);
    if (!strcmp(section, "gateway")) {
        if (!strcmp(key, "listen")) {
            if (parse_listen(c, value) < 0)
                ERR("listen must be ADDRESS:PORT, e.g. 127.0.0.1:8080");
        } else if (!strcmp(key, "node_id")) {
            set_str(&c->node_id, value);
        } else if (!strcmp(key, "default_route")) {
            set_str(&c->default_route, value);
        } else if (!strcmp(key, "max_body_bytes")) {
            int n;
            if (parse_int(value, 1024, 16 * 1024 * 1024, &n) < 0)
                ERR("max_body_bytes must be between 1024 and 16777216");
            c->max_body_bytes = (size_t)n;
        } else if (!strcmp(key, "default_region")) {
            if (strlen(value) != 2)
                ERR("default_region must be a two-letter country code such as FR");
            set_str(&c->default_region, value);
        } else if (!strcmp(key, "max_segments")) {
            if (parse_int(value, 1, 20, &c->max_segments) < 0)
                ERR("max_segments must be between 1 and 20");
        } else if (!strcmp(key, "ops_token")) {
            if (strlen(value) < 16)
                ERR("ops_token must be at least 16 characters");
            set_str(&c->ops_token, value);
        } else if (!strcmp(key, "ops_token_file")) {
            FILE *f = fopen(value, "r");
            char buf[256] = "";
            if (!f || !fgets(buf, sizeof buf, f)) {
                if (f)
                    fclose(f);
                ERR("ops_token_file %s cannot be read", value);
            }
            fclose(f);
            buf[strcspn(buf, "\r\n")] = '\0';
            if (strlen(buf) < 16)
                ERR("the token in ops_token_file must be at least 16 characters");
            set_str(&c->ops_token, buf);
        } else if (!strcmp(key, "transliterate")) {
            if (parse_bool(value, &c->transliterate) < 0)
                ERR("transliterate must be yes or no");
        } else if (!strcmp(key, "max_connections")) {
            if (parse_int(value, 1, 1000000, &c->max_connections) < 0)
                ERR("max_connections must be between 1 and 1000000");
        } else if (!strcmp(key, "max_connections_per_address")) {
            if (parse_int(value, 1, 1000000, &c->max_connections_per_address) < 0)
                ERR("max_connections_per_address must be between 1 and 1000000");
        } else if (!strcmp(key, "address_rate")) {
            if (parse_int(value, 0, 1000000, &c->address_rate) < 0)
                ERR("address_rate must be a number of requests per second between 0 (no "
                    "limit) and 1000000");
        } else if (!strcmp(key, "rate_exempt")) {
            if (*value && gw_addr_list_check(value) < 0)
                ERR("rate_exempt must list IPv4/IPv6 addresses or IPv4 CIDRs, comma-separated");
            set_str(&c->rate_exempt, value);
        } else if (!strcmp(key, "key_rate")) {
            if (parse_int(value, 0, 1000000, &c->key_rate) < 0)
                ERR("key_rate must be a number of sends per second between 0 (no limit) and "
                    "1000000");
        } else {
            ERR("unknown key '%s' in [gateway]", key);
        }
    } else if (!strcmp(section, "database")) {
        if (!strcmp(key, "conninfo")) {
            set_str(&c->db_conninfo, value);
        } else if (!strcmp(key, "pool_size")) {
            if (parse_int(value, 1, 64, &c->db_pool_size) < 0)
                ERR("pool_size must be between 1 and 64");
        } else {
            ERR("unknown key '%s' in [database]", key);
        }
    } else if (!strcmp(section, "log")) {
        if (!strcmp(key, "format")) {
            if (!strcmp(value, "text"))
                c->log_json = 0;
            else if (!strcmp(value, "json"))
                c->log_json = 1;
            else
                ERR("log format must be text or json");
        } else if (!strcmp(key, "level")) {
            enum gw_log_level l;
            if (gw_log_level_parse(value, &l) < 0)
                ERR("log level must be error, warn, info or debug");
            c->log_level = (int)l;
        } else {
            ERR("unknown key '%s' in [log]", key);
        }
    } else if (!strcmp(section, "outbox")) {
        if (!strcmp(key, "handoff")) {
            if (parse_bool(value, &c->handoff) < 0)
                ERR("handoff must be yes or no");
            return 1;
        }
        struct {
            const char *name;
            int *dst;
            long min, max;
        } ints[] = {
            {"batch_size", &c->batch_size, 1, 10000},
            {"lease_seconds", &c->lease_seconds, 2, 86400},
            {"poll_interval_ms", &c->poll_interval_ms, 10, 60000},
            {"max_attempts", &c->max_attempts, 1, 100},
            {"backoff_base_ms", &c->backoff_base_ms, 1, 3600000},
            {"backoff_max_ms", &c->backoff_max_ms, 1, 86400000},
        };
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            if (!strcmp(key, ints[i].name)) {
                if (parse_int(value, ints[i].min, ints[i].max, ints[i].dst) < 0)
                    ERR("%s must be an integer between %ld and %ld", key, ints[i].min, ints[i].max);
                return 1;
            }
        }
        ERR("unknown key '%s' in [outbox]", key);
    } else if (!strcmp(section, "admin")) {
        if (!strcmp(key, "www_dir")) {
            set_str(&c->admin_www_dir, value);
        } else if (!strcmp(key, "secure_cookies")) {
            if (parse_bool(value, &c->admin_secure_cookies) < 0)
                ERR("secure_cookies must be yes or no");
        } else if (!strcmp(key, "idle_minutes")) {
            if (parse_int(value, 1, 1440, &c->admin_idle_minutes) < 0)
                ERR("idle_minutes must be between 1 and 1440");
        } else if (!strcmp(key, "absolute_hours")) {
            if (parse_int(value, 1, 720, &c->admin_absolute_hours) < 0)
                ERR("absolute_hours must be between 1 and 720");
        } else {
            ERR("unknown key '%s' in [admin]", key);
        }
    } else if (!strcmp(section, "scheduler")) {
        if (!strcmp(key, "enabled")) {
            if (parse_bool(value, &c->sched_enabled) < 0)
                ERR("enabled must be yes or no");
        } else if (!strcmp(key, "interval_ms")) {
            if (parse_int(value, 50, 60000, &c->sched_interval_ms) < 0)
                ERR("interval_ms must be between 50 and 60000");
        } else if (!strcmp(key, "batch_size")) {
            if (parse_int(value, 1, 20000, &c->sched_batch_size) < 0)
                ERR("batch_size must be between 1 and 20000");
        } else {
            ERR("unknown key '%s' in [scheduler]", key);
        }
    } else if (!strcmp(section, "ussd")) {
        /* the aggregator's callback: a token in its URL, and its form field names */
        struct {
            const char *name;
            char **dst;
        } strs[] = {
            {"field_session", &c->ussd_field_session}, {"field_service", &c->ussd_field_service},
            {"field_phone", &c->ussd_field_phone},     {"field_text", &c->ussd_field_text},
            {"field_network", &c->ussd_field_network},
        };
        if (!strcmp(key, "token")) {
            if (strlen(value) < 16)
                ERR("ussd token must be at least 16 characters");
            set_str(&c->ussd_token, value);
            return 1;
        }
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
            if (!strcmp(key, strs[i].name)) {
                if (!*value || strlen(value) > 64)
                    ERR("%s must be a form field name of 1 to 64 characters", key);
                set_str(strs[i].dst, value);
                return 1;
            }
        }
        ERR("unknown key '%s' in [ussd]", key);
    } else {
        ERR("unknown section [%s]", section);
    }
    return 1;
}

static void defaults(struct gw_config *c)
{
    c->listen_host = xstrdup("127.0.0.1");
    c->listen_port = 8080;
    c->max_body_bytes = 65536;
    c->default_region = xstrdup("FR");
    c->max_segments = 6;
    c->transliterate = 1;
    c->max_connections = 1024;
    c->max_connections_per_address = 256;
    c->address_rate = 50;
    c->rate_exempt = xstrdup("127.0.0.1,::1");
    c->key_rate = 0;
    c->db_conninfo = xstrdup("dbname=passerelle");
    c->db_pool_size = 4;
    c->log_json = 0;
    c->log_level = GW_LOG_INFO;
    c->batch_size = 500;
    c->lease_seconds = 60;
    c->poll_interval_ms = 500;
    c->handoff = 1;
    c->admin_idle_minutes = 30;
    c->admin_absolute_hours = 12;
    c->sched_enabled = 1;
    c->sched_interval_ms = 1000;
    c->sched_batch_size = 1000;
    /* Africa's Talking's field names, the de-facto convention */
    c->ussd_field_session = xstrdup("sessionId");
    c->ussd_field_service = xstrdup("serviceCode");
    c->ussd_field_phone = xstrdup("phoneNumber");
    c->ussd_field_text = xstrdup("text");
    c->ussd_field_network = xstrdup("networkCode");
    c->max_attempts = 8;
    c->backoff_base_ms = 2000;
    c->backoff_max_ms = 3600000;
}

/* Checks that need the whole file. */
static int finish(struct gw_config *c, char *err, size_t errlen)
{
    if (!c->node_id) {
        char host[128] = "node";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        char buf[160];
        snprintf(buf, sizeof buf, "%s-%ld", host, (long)getpid());
        c->node_id = xstrdup(buf);
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        if (!c->routes[i].driver) {
            snprintf(err, errlen, "route '%s' has no driver (driver = sim)", c->routes[i].name);
            return -1;
        }
    }
    if (c->nroutes == 0) {
        snprintf(err, errlen, "no route configured: add a [route NAME] section with a driver");
        return -1;
    }
    if (!c->default_route) {
        c->default_route = xstrdup(c->routes[0].name);
    } else if (!gw_config_route(c, c->default_route)) {
        snprintf(err, errlen, "default_route '%s' is not a configured route", c->default_route);
        return -1;
    }
    if (c->backoff_max_ms < c->backoff_base_ms) {
        snprintf(err, errlen, "backoff_max_ms must be at least backoff_base_ms");
        return -1;
    }
    return 0;
}

static int parse_common(int (*run)(const void *src, ini_handler h, void *user), const void *src,
                        const char *label, struct gw_config **out, char *err, size_t errlen)
{
    struct parse_ctx p = {.c = calloc(1, sizeof(struct gw_config))};
    if (!p.c)
        abort();
    defaults(p.c);
    int rc = run(src, handler, &p);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read the file", label);
        goto fail;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: %s", label, rc, p.err[0] ? p.err : "syntax error");
        goto fail;
    }
    char ferr[256];
    if (finish(p.c, ferr, sizeof ferr) < 0) {
        snprintf(err, errlen, "%s: %s", label, ferr);
        goto fail;
    }
    *out = p.c;
    return 0;
fail:
    gw_config_free(p.c);
    return -1;
}

static int run_file(const void *src, ini_handler h, void *user)
{
    return ini_parse((const char *)src, h, user);
}

static int run_string(const void *src, ini_handler h, void *user)
{
    return ini_parse_string((const char *)src, h, user);
}

int gw_config_load(const char *path, struct gw_config **out, char *err, size_t errlen)
{
    return parse_common(run_file, path, path, out, err, errlen);
}

int gw_config_parse(const char *text, struct gw_config **out, char *err, size_t errlen)
{
    return parse_common(run_string, text, "(config)", out, err, errlen);
}

const struct gw_route_conf *gw_config_route(const struct gw_config *c, const char *name)
{
    for (size_t i = 0; i < c->nroutes; i++)
        if (!strcmp(c->routes[i].name, name))
            return &c->routes[i];
    return NULL;
}

void gw_config_free(struct gw_config *c)
{
    if (!c)
        return;
    free(c->listen_host);
    free(c->node_id);
    free(c->default_route);
    free(c->default_region);
    free(c->db_conninfo);
    free(c->ops_token);
    free(c->rate_exempt);
    free(c->ussd_token);
    free(c->admin_www_dir);
    free(c->ussd_field_session);
    free(c->ussd_field_service);
    free(c->ussd_field_phone);
    free(c->ussd_field_text);
    free(c->ussd_field_network);
    for (size_t i = 0; i < c->nroutes; i++) {
        struct gw_route_conf *r = &c->routes[i];
        free(r->name);
        free(r->driver);
        free(r->callback_secret);
        free(r->callback_allow);
        for (size_t k = 0; k < r->n; k++) {
            free(r->keys[k]);
            free(r->values[k]);
        }
        free(r->keys);
        free(r->values);
    }
    free(c->routes);
    free(c);
}
