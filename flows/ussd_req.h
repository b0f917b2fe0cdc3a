/*
 * ussd_req.h — USSD aggregator callback: parse the request, format one reply screen.
 *
 * An aggregator (Africa's Talking and those copying its convention) POSTs one form-urlencoded
 * request per user action: the session id, the service code dialled ("*384*12#"), the phone
 * number, the operator's network code and `text`, every answer given so far joined by '*'
 * ("" on the first request, then "1", "1*2", ...). We answer text/plain "CON <screen>" (show
 * the screen and wait for input) or "END <screen>" (show it and close the session); one screen
 * is at most 182 GSM-7 characters. Other aggregators send the same fields under other names,
 * hence struct ussd_fields: a new aggregator is a new mapping, not new code.
 *
 * Pure functions: no I/O, no global state. ussd_req_parse allocates nothing; ussd_screen
 * allocates one temporary buffer (prov_text_transliterate) and frees it before returning.
 *
 * Parsing (ussd_req_parse)
 *   - body: application/x-www-form-urlencoded, at most USSD_BODY_MAX bytes (else ETOOLONG);
 *     pairs separated by '&' (empty pairs skipped, a pair without '=' has an empty value),
 *     '+' decodes to a space, %XX to that byte (hex, either case). A '%' not followed by two
 *     hex digits anywhere in the body -> EINVAL.
 *   - fields in any order; unknown names ignored (their values are not checked beyond the
 *     escapes); a known field given twice (even differently escaped) -> EINVAL. A NULL name in
 *     the mapping means this aggregator does not send that field.
 *   - decoded values of known fields must be valid UTF-8 without NUL or other control
 *     characters (U+0000..U+001F, U+007F) -> else EINVAL.
 *   - session: required, 1..64 bytes (ETOOLONG beyond), printable ASCII without spaces
 *     (0x21..0x7E, else EINVAL). Empty counts as missing (EMISSING).
 *   - phone: required. Aggregators that send a raw '+' make it a space once decoded, so a
 *     value starting with a space followed by a digit is read as '+' and the digits. Then
 *     trimmed of spaces; empty -> EMISSING; over 32 bytes -> ETOOLONG. Otherwise kept as given:
 *     the caller normalises it (libphonenumber, providers/prov_phone.h).
 *   - service (32 bytes) and network (16 bytes): optional, trimmed, ETOOLONG beyond; "" when
 *     absent.
 *   - text: missing or empty -> nsteps = 0 (first request). Otherwise (at most 182 bytes
 *     decoded, else ETOOLONG) it is split on every '*' and each step trimmed of spaces; empty
 *     steps are kept ("1*2*" -> "1", "2", ""; " " -> one step ""): the user sent an empty
 *     answer. More than USSD_MAX_STEPS steps, or a step over 32 bytes after trimming ->
 *     ETOOLONG.
 *   - required fields are checked last, so a body with several faults reports the first
 *     fault met while reading it, and "missing field" only when nothing else is wrong.
 *
 * We decode ourselves rather than with libevent's evhttp_parse_query_str/evhttp_uridecode:
 * those copy malformed escapes through unchanged (we must refuse them), turn "%00" into a
 * silently truncated C string, and would tie this pure module (and its fuzz target) to
 * libevent. The decoder is twenty lines.
 *
 * Screens (ussd_screen)
 *   "CON " or "END " followed by the text made GSM-7: prov_text_transliterate (é stays, ê -> e,
 *   ç -> c, œ -> oe, « » -> "), then every character still outside GSM 03.38 (emoji, CJK, ...)
 *   becomes '?'. If that is over USSD_SCREEN_SEPTETS septets (extension-table characters
 *   { } [ ] ~ | ^ € \ and form feed count 2), it is cut:
 *     1. at the last '\n' that has at least USSD_SCREEN_SEPTETS/2 septets before it;
 *     2. else at the last space that has at least one septet before it;
 *     3. else after the last whole character that fits.
 *   The separator a cut happens at (which may be the character right after the 182nd septet)
 *   is dropped. A cut never splits a UTF-8 sequence nor an extension character.
 *   Output bytes: every GSM-7 character is at most 2 UTF-8 bytes per septet (Greek capitals
 *   and Latin-1 letters are 2 bytes for 1 septet; € is 3 bytes for 2 septets), so a screen
 *   needs at most 4 + 2 * 182 bytes plus the NUL: USSD_SCREEN_MAX.
 */
#ifndef USSD_REQ_H
#define USSD_REQ_H

#include <stddef.h>

/* Form field names of one aggregator's callback. NULL: the aggregator does not send it. */
struct ussd_fields {
    const char *session, *service, *phone, *text, *network;
};

/* sessionId serviceCode phoneNumber text networkCode */
extern const struct ussd_fields ussd_fields_africastalking;

#define USSD_BODY_MAX 4096     /* largest request body accepted, in bytes */
#define USSD_TEXT_MAX 182      /* largest decoded `text`, in bytes */
#define USSD_MAX_STEPS 16      /* most answers in one `text` */
#define USSD_STEP_MAX 33       /* one answer: 32 bytes + NUL */
#define USSD_SCREEN_SEPTETS 182 /* one screen, in GSM-7 septets, without the "CON "/"END " */
#define USSD_SCREEN_MAX (4 + 2 * USSD_SCREEN_SEPTETS + 1) /* 369: enough for any screen + NUL */

struct ussd_req {
    char session[65]; /* required, 1..64 bytes, printable ASCII without spaces */
    char service[33]; /* optional ("" when absent), e.g. "*384*12#" */
    char phone[33];   /* required; as given, trimmed, raw '+' restored (caller normalises) */
    char network[17]; /* optional ("" when absent) */
    int nsteps;       /* 0 on the first request (text empty or absent) */
    char steps[USSD_MAX_STEPS][USSD_STEP_MAX]; /* text split on '*', each step trimmed */
};

enum { USSD_OK = 0, USSD_EMISSING = -1, USSD_EINVAL = -2, USSD_ETOOLONG = -3 };

/*
 * Parse `len` bytes of a form-urlencoded `body` (need not be NUL-terminated) with the field
 * names of `f` (see top of file). Returns USSD_OK and fills *out, or an error code and leaves
 * *out untouched. `err` (may be NULL when errlen is 0) always receives a NUL-terminated
 * English reason, cut to errlen ("" on success): "missing field sessionId", "repeated field
 * text", "text has more than 16 steps", "bad %-escape at byte 12", ...
 * NULL `f` or `out`, or NULL `body` with len > 0 -> USSD_EINVAL.
 */
int ussd_req_parse(const struct ussd_fields *f, const char *body, size_t len,
                   struct ussd_req *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Build one reply screen (see top of file) from the NUL-terminated UTF-8 `text` into `out`,
 * NUL-terminated: "END " when `final` is non-zero, else "CON ". Returns the length written
 * (without the NUL), or -1 when text is NULL or not valid UTF-8, memory runs out, or `out`
 * is too small (USSD_SCREEN_MAX always suffices); on -1, out[0] = '\0' when outlen > 0.
 */
int ussd_screen(int final, const char *text, char *out, size_t outlen)
    __attribute__((warn_unused_result));

#endif /* USSD_REQ_H */
