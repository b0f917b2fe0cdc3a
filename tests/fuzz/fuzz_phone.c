/* libFuzzer target for prov_phone: normalise arbitrary text with regions FR and BE, then mask
 * both the result and the raw input. Checks the API contract, not just memory safety:
 *  - a success is NUL-terminated E.164 ('+' then digits) that fits the buffer, and masks to
 *    something other than "***";
 *  - a failure is a known negative status and leaves the out buffer untouched;
 *  - a mask never exceeds outlen and is always NUL-terminated.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov_phone.h"

#define OUT_LEN 32
#define SENTINEL 'Z'

static void check_mask(const char *in)
{
    char m[40];
    /* Full buffer, then a few tiny ones; a canary byte after outlen must survive. */
    static const size_t lens[] = {sizeof m - 1, 1, 2, 4, 7};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t outlen = lens[i];
        memset(m, SENTINEL, sizeof m);
        if (prov_phone_mask(in, m, outlen) != m)
            abort();
        if (memchr(m, '\0', outlen) == NULL)
            abort();
        if (m[outlen] != SENTINEL)
            abort();
    }
    memset(m, SENTINEL, sizeof m);
    prov_phone_mask(in, m, 0);
    if (m[0] != SENTINEL)
        abort();
}

static void check_normalize(const char *in, const char *region)
{
    char out[OUT_LEN];
    memset(out, SENTINEL, sizeof out);
    int rc = prov_phone_normalize(in, region, out, sizeof out);
    if (rc == PROV_PHONE_OK) {
        const char *nul = memchr(out, '\0', sizeof out);
        if (nul == NULL)
            abort();
        size_t len = (size_t)(nul - out);
        if (len < 2 || len > 16 || out[0] != '+')
            abort();
        for (size_t i = 1; i < len; i++)
            if (out[i] < '0' || out[i] > '9')
                abort();
        char m[40];
        prov_phone_mask(out, m, sizeof m);
        if (strcmp(m, "***") == 0)
            abort();
        check_mask(out);
    } else {
        if (rc != PROV_PHONE_EPARSE && rc != PROV_PHONE_EINVALID && rc != PROV_PHONE_ENOTMOBILE)
            abort();
        for (size_t i = 0; i < sizeof out; i++)
            if (out[i] != SENTINEL)
                abort();
    }
    if (prov_phone_strerror(rc) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    if (size > 0)
        memcpy(in, data, size);
    in[size] = '\0';

    check_normalize(in, "FR");
    check_normalize(in, "BE");
    check_mask(in);

    free(in);
    return 0;
}
