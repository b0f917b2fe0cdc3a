/* libFuzzer target: the RFC 3339 timestamp parser used for send_at and list filters. A parsed
 * time formats back to a string that parses to the same instant. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[64];
    if (size >= sizeof buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    int64_t t;
    if (gw_parse_rfc3339(buf, &t) == GW_OK) {
        char out[40];
        int64_t t2;
        gw_format_rfc3339(t, out, sizeof out);
        if (gw_parse_rfc3339(out, &t2) != GW_OK || t2 != t)
            abort();
    }
    return 0;
}
