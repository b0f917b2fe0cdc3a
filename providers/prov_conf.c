/*
 * prov_conf — route option lookup and the typed readers every driver uses, so that a bad value
 * gets the same clear message ("poll_interval_ms must be a whole number between 100 and
 * 3600000") whatever the driver.
 */
#include "provider.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *prov_conf_get(const struct prov_conf *c, const char *key, const char *def)
{
    for (size_t i = c->n; i > 0; i--) /* the last occurrence wins */
        if (strcmp(c->keys[i - 1], key) == 0)
            return c->values[i - 1];
    return def;
}

int prov_conf_core_key(const char *key)
{
    static const char *const core[] = {"driver",           "rate",           "concurrency",
                                       "breaker_failures", "breaker_cooldown_ms",
                                       "callback_secret",  "callback_allow"};
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        if (strcmp(core[i], key) == 0)
            return 1;
    return 0;
}

int prov_conf_long(const struct prov_conf *c, const char *key, long def, long min, long max,
                   long *out, char *err, size_t errlen)
{
    const char *v = prov_conf_get(c, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) {
        snprintf(err, errlen, "%s must be a whole number between %ld and %ld", key, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

int prov_conf_int(const struct prov_conf *c, const char *key, int def, int min, int max, int *out,
                  char *err, size_t errlen)
{
    long n;
    if (prov_conf_long(c, key, def, min, max, &n, err, errlen) < 0)
        return -1;
    *out = (int)n;
    return 0;
}

int prov_conf_double(const struct prov_conf *c, const char *key, double def, double min,
                     double max, double *out, char *err, size_t errlen)
{
    const char *v = prov_conf_get(c, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < min || d > max) {
        snprintf(err, errlen, "%s must be a number between %g and %g", key, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

int prov_conf_bool(const struct prov_conf *c, const char *key, int def, int *out, char *err,
                   size_t errlen)
{
    const char *v = prov_conf_get(c, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    snprintf(err, errlen, "%s must be yes or no", key);
    return -1;
}

int prov_conf_check_keys(const struct prov_conf *c, const char *driver, const char *const *known,
                         size_t nknown, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->n; i++) {
        int ok = prov_conf_core_key(c->keys[i]);
        for (size_t k = 0; k < nknown && !ok; k++)
            ok = strcmp(c->keys[i], known[k]) == 0;
        if (!ok) {
            snprintf(err, errlen, "unknown option '%s' for the %s driver", c->keys[i], driver);
            return -1;
        }
    }
    return 0;
}
