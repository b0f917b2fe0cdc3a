/* prov_registry — the table of route drivers, and route option lookup. */
#include "prov_gammu.h"
#include "provider.h"

#include <stddef.h>
#include <string.h>

static const struct prov_ops *const drivers[] = {
    &prov_sim_ops,
    &prov_isendpro_ops,
    &prov_gammu_ops,
};

const struct prov_ops *prov_find(const char *driver)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (strcmp(drivers[i]->name, driver) == 0)
            return drivers[i];
    return NULL;
}

const char *prov_conf_get(const struct prov_conf *c, const char *key, const char *def)
{
    for (size_t i = c->n; i > 0; i--) /* the last occurrence wins */
        if (strcmp(c->keys[i - 1], key) == 0)
            return c->values[i - 1];
    return def;
}

int prov_conf_core_key(const char *key)
{
    static const char *const core[] = {"driver", "rate", "concurrency", "breaker_failures",
                                       "breaker_cooldown_ms"};
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        if (strcmp(core[i], key) == 0)
            return 1;
    return 0;
}
