/* prov_registry — the table of route drivers (option lookup lives in prov_conf.c). */
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
