/* libFuzzer target: the INI configuration parser (gatewayd/gw_config.c, over inih). Any text
 * must either parse into a configuration that passes its own checks or give an error message;
 * never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct gw_config *c = NULL;
    char err[256];
    int rc = gw_config_parse(text, &c, err, sizeof err);
    if (rc == 0) {
        /* what the daemon relies on after a successful parse */
        if (!c || c->nroutes == 0 || !c->default_route || !gw_config_route(c, c->default_route) ||
            !c->node_id || c->listen_port < 0 || c->listen_port > 65535)
            abort();
        for (size_t i = 0; i < c->nroutes; i++)
            if (!c->routes[i].driver || c->routes[i].concurrency < 1)
                abort();
        gw_config_free(c);
    } else if (c != NULL || err[0] == '\0') {
        abort();
    }
    free(text);
    return 0;
}
