/*
 * prov_phone — phone-number handling through libphonenumber (C++), behind a small C API.
 * Parses what residents and staff type (national "06 12 34 56 78", "+33612345678",
 * "0033 6…", "+32 470 …"), validates that the number is a valid mobile number (SMS-capable:
 * MOBILE or FIXED_LINE_OR_MOBILE), and formats it as E.164.
 * Thread-safe (libphonenumber's PhoneNumberUtil is a thread-safe singleton).
 */
#ifndef PROV_PHONE_H
#define PROV_PHONE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum prov_phone_status {
    PROV_PHONE_OK = 0,
    PROV_PHONE_EPARSE = -1,     /* not a phone number at all */
    PROV_PHONE_EINVALID = -2,   /* parses but is not a valid number for its region */
    PROV_PHONE_ENOTMOBILE = -3, /* valid but a landline / premium / other non-SMS type */
    PROV_PHONE_ESPACE = -4,     /* out buffer too small */
};

/* Normalise `in` (NUL-terminated, any common notation) using `default_region` (ISO 3166
 * alpha-2, e.g. "FR"; NULL means "FR") for national numbers. On success writes the E.164 form
 * ("+33612345678") into out (size outlen, 17 bytes is always enough (15 digits, "+", NUL)) and
 * returns PROV_PHONE_OK. Otherwise returns a negative prov_phone_status and leaves out untouched.
 */
int prov_phone_normalize(const char *in, const char *default_region, char *out, size_t outlen)
    __attribute__((warn_unused_result));

/* A short English reason for a status, for API error messages. */
const char *prov_phone_strerror(int status);

/* Mask an E.164 number for logs: "+33612345678" → "+33 6** ** ** 78" (French numbers grouped
 * by pairs; others keep the country code, first digit and last two digits, e.g.
 * "+32 4** *** *78"). Anything else (not starting with '+', or too short) → "***".
 * Writes at most outlen bytes including NUL; returns out. */
char *prov_phone_mask(const char *e164, char *out, size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
