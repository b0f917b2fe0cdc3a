/* libFuzzer target: the JSON body of POST /api/v1/messages (gatewayd/gw_send.c), with the real
 * phone shim and text encoder behind it. Accepted requests must be internally consistent;
 * rejected ones must carry a status, a code and a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_send.h"
#include "prov_phone.h"
#include "prov_text.h"

static struct gw_config *cfg;

static int normalize(void *arg, const char *in, char *out, size_t outlen)
{
    (void)arg;
    return prov_phone_normalize(in, "FR", out, outlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        char err[256];
        if (gw_config_parse("[route sim]\ndriver = sim\n", &cfg, err, sizeof err) != 0)
            abort();
    }
    struct gw_send_req r;
    const char *code = NULL;
    char msg[512] = "";
    int st = gw_send_parse((const char *)data, size, cfg, normalize, NULL, &r, &code, msg,
                           sizeof msg);
    if (st == 0) {
        struct prov_text_info ti;
        if (r.phone[0] != '+' || !r.text || !r.encoding || r.segments < 1 ||
            r.segments > cfg->max_segments || prov_text_analyse(r.text, strlen(r.text), &ti) != 0 ||
            ti.segments != r.segments)
            abort();
        gw_send_req_clear(&r);
    } else if ((st != 400 && st != 422) || !code || !msg[0] || r.text || r.idem) {
        abort();
    }
    return 0;
}
