/*
 * prov_gammu — the GSM modem route driver (driver = gammu): a phone or USB modem driven through
 * libGammu, one worker thread per route. See prov_gammu.md for its options and behaviour.
 *
 * Besides the route contract of provider.h (prov_gammu_ops), it offers operators one extra:
 * USSD codes ("*100#" for the prepaid balance), answered by the network through the modem.
 *
 * Threading: every function here runs on the loop thread of the route (host->base), like the
 * prov_ops functions. Callbacks are called on that thread too, never after ops->destroy.
 */
#ifndef PROV_GAMMU_H
#define PROV_GAMMU_H

#include "provider.h"

extern const struct prov_ops prov_gammu_ops;

/* Errors passed to a USSD completion (and returned by prov_gammu_ussd). */
enum prov_gammu_err {
    PROV_GAMMU_ENOTSUP = -1,  /* the phone or modem cannot do it */
    PROV_GAMMU_EDOWN = -2,    /* the modem is not connected */
    PROV_GAMMU_ETIMEOUT = -3, /* no answer within send_timeout_ms */
    PROV_GAMMU_EFAIL = -4,    /* the phone or the network refused */
    PROV_GAMMU_EINVAL = -5,   /* bad argument */
    PROV_GAMMU_EBUSY = -6,    /* too many requests queued for the modem */
};

typedef void (*prov_gammu_ussd_fn)(void *arg, int err, const char *reply);

/* Dial the USSD `code` (digits, '*', '#', '+'; at most 160 characters) on the route `priv`
 * (a priv from prov_gammu_ops.create). Returns 0 when the request was queued: `done` is then
 * called exactly once, later, on the loop thread, with err 0 and the network's UTF-8 reply, or
 * err < 0 and a human reply ("not supported by this phone", "modem down", …); a route destroyed
 * first calls it from destroy with PROV_GAMMU_EDOWN.
 * Returns a negative PROV_GAMMU_E… without calling `done` when the request is refused at once
 * (bad code, modem down, queue full). The reply string is borrowed for the call. Interactive
 * USSD menus are not supported: the first answer is returned and the session left to expire. */
int prov_gammu_ussd(void *priv, const char *code, prov_gammu_ussd_fn done, void *arg)
    __attribute__((warn_unused_result));

#endif
