/*
 * prov_isendpro_parse — pure parser for the answers of the iSendPro HTTP API (/sms, /smsmulti,
 * /comptage, /credit). No I/O and no global state. Uses jansson. Full notes on the accepted
 * shapes are at the top of prov_isendpro_parse.c; the facts come from
 * shared/reference/isendpro.md ("Responses").
 *
 * Ownership: prov_isp_parse fills a caller-owned struct prov_isp_result. The only heap memory it
 * holds is `items` (NULL when n == 0); release it with prov_isp_result_free, which is safe to
 * call on a result that failed to parse, twice, or on a zeroed struct. Every string in the
 * result is a fixed-size array, always NUL-terminated, truncated on a UTF-8 character boundary,
 * with control characters replaced by spaces (so it can go to a log line as is).
 * prov_isp_find returns a pointer into the result (valid until prov_isp_result_free).
 * Input bodies need not be NUL-terminated: only `len` bytes are read.
 */
#ifndef PROV_ISENDPRO_PARSE_H
#define PROV_ISENDPRO_PARSE_H

#include <stddef.h>

enum prov_isp_kind {
    PROV_ISP_SENT = 0,            /* code 0 */
    PROV_ISP_BLACKLISTED = 11,    /* code 11: on iSendPro's blacklist, treat as opted out */
    PROV_ISP_INVALID_NUMBER = 21, /* code 21: number not assigned */
    PROV_ISP_OTHER_ERROR = -1,    /* any other code, or no/unparseable code: permanent */
    PROV_ISP_TEMPORARY = -2,      /* never set on an item by the parser; for callers that fold
                                     result.temporary into a per-number outcome */
};

struct prov_isp_item {
    int code;                /* numeric code (string codes converted), -1 when absent/unparseable */
    enum prov_isp_kind kind; /* 0 sent, 11 blacklisted, 21 invalid number, else OTHER_ERROR */
    char tel[24];            /* number as returned ("33612345678"), trimmed; "" for a general
                                error. A JSON number is printed in decimal. A value of 23 bytes
                                or more was (possibly) truncated and prov_isp_find never
                                matches it. */
    char message[160];       /* provider text, truncated, NUL-terminated, "" if none */
    int parts;               /* "smslong" (or "nb_sms" from /comptage) when given, else 0 */
};

struct prov_isp_result {
    int http_status;
    int general_error; /* 1 when at least one element has no tel and a non-zero (or missing)
                          code: it applies to every number of the request. A number may also
                          have its own item; this parser reports both and the driver decides
                          which wins. */
    struct prov_isp_item general; /* the first such general error, when general_error; otherwise
                                     code -1 / OTHER_ERROR / "" (never reads as "sent") */
    int general_ok; /* ADDITION to the brief: count of elements with no tel and code 0 (the
                       "inner level dropped" single-send shape {"etat":{"code":"0",...}}
                       usually names no number). Such elements are neither items nor
                       errors; what they mean for a number absent from `items` is the
                       driver's policy. */
    size_t n;       /* per-number items (elements that carry a tel) */
    struct prov_isp_item *items; /* malloc'd, in answer order, NULL when n == 0; caller frees
                                    with prov_isp_result_free */
    int temporary;   /* 1 when the whole request should be retried later: HTTP 5xx, 429, 0 or
                        negative (no answer), whatever the body says (even when it parsed) */
    char error[160]; /* set (non-empty) exactly when prov_isp_parse returned -1 */
};

/*
 * Parses one answer. Returns 0 when the body was understood (items / general error filled), or
 * -1 when it was not (empty, not JSON, not an object, no "etat", no result element, an element
 * that is not an object): then n == 0, general_error == 0 and out->error says why; every number
 * fails permanently unless out->temporary. out->temporary depends only on http_status. A 4xx
 * whose body parses returns 0 and reports the codes it carries (including code 0 items).
 * Returns -1 with nothing else done when out is NULL.
 */
int prov_isp_parse(int http_status, const char *body, size_t len, struct prov_isp_result *out);

/* Frees items and resets n / items. NULL is accepted. */
void prov_isp_result_free(struct prov_isp_result *r);

/*
 * Finds the first item for a number. Both the argument and each item's tel may be written
 * "+33612345678", "33612345678", "0033612345678" or national "0612345678" (spaces, dots,
 * dashes, parentheses ignored). A national number (single leading 0) matches an international
 * one of the French numbering plan: +33, and the overseas +262, +508, +590, +594, +596 (iSendPro
 * takes national numbers for those too). NULL when absent, when r or e164 is NULL, or when
 * e164 holds no digits or other characters.
 */
const struct prov_isp_item *prov_isp_find(const struct prov_isp_result *r, const char *e164);

/*
 * Credit answer {"etat":{"credit":"12.34","quantite":"240"}}: values as strings (decimal point
 * or comma) or JSON numbers, maybe one level deeper ({"etat":{"etat":{...}}} or
 * {"etat":{"etat":[{...}]}}, first element holding "credit"). Returns 0 with *euros and
 * *quantity (-1 when quantite is absent, unparseable or negative), or -1 (no credit, error
 * answer, garbage, NULL pointers) with *euros = 0 and *quantity = -1 when the pointers are
 * non-NULL. Never depends on the process locale.
 */
int prov_isp_parse_credit(const char *body, size_t len, double *euros, long *quantity);

#endif
