/* http_answer.c — see http_answer.h */
#include "http_answer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Does the header block [p, end) hold "name: …" whose value contains token (case-insensitive;
 * token NULL: any value)? *val gets the value's start and *val_end its end. */
static int header_has(const char *p, const char *end, const char *name, const char *token,
                      const char **val, const char **val_end)
{
    size_t nlen = strlen(name), tlen = token ? strlen(token) : 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            if (val != NULL)
                *val = v;
            if (val_end != NULL)
                *val_end = eol;
            if (token == NULL)
                return 1;
            for (const char *q = v; q + tlen <= eol; q++)
                if (strncasecmp(q, token, tlen) == 0)
                    return 1;
        }
        p = eol + 1;
    }
    return 0;
}

/* A hexadecimal or decimal number in [p, end) (leading digits only), at most max;
 * -1 when there is no digit or it is too large. */
static long long number(const char *p, const char *end, int base, long long max)
{
    long long v = 0;
    const char *q = p;
    for (; q < end; q++) {
        int d = *q >= '0' && *q <= '9'                 ? *q - '0'
                : base == 16 && *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
                : base == 16 && *q >= 'A' && *q <= 'F' ? *q - 'A' + 10
                                                       : -1;
        if (d < 0)
            break;
        v = v * base + d;
        if (v > max)
            return -1;
    }
    return q == p ? -1 : v;
}

/* A chunked body in [p, end): once it is all there (its last chunk and final line), decoded in
 * place. Nothing is moved before. Returns its length, -1 while incomplete, -2 malformed. */
static long long dechunk(char *p, char *end)
{
    if (end - p > 2 * (long long)HTTP_ANSWER_MAX_BODY) /* chunk lines included */
        return -2;
    for (int decode = 0; decode < 2; decode++) {
        char *in = p, *outp = p;
        for (;;) {
            char *eol = memchr(in, '\n', (size_t)(end - in));
            if (eol == NULL)
                return -1;
            long long n = number(in, eol, 16, HTTP_ANSWER_MAX_BODY);
            if (n < 0 || (outp - p) + n > HTTP_ANSWER_MAX_BODY)
                return -2;
            in = eol + 1;
            if (n == 0) { /* the last chunk; trailers are not expected, then the final line */
                if (memchr(in, '\n', (size_t)(end - in)) == NULL)
                    return -1;
                if (decode)
                    return outp - p;
                break;
            }
            if (end - in < n + 2)
                return -1;
            if (decode)
                memmove(outp, in, (size_t)n);
            outp += n;
            in += n + 2; /* the chunk's CRLF */
        }
    }
    return -2; /* not reached */
}

int http_answer_parse(char *buf, size_t len, int eof, struct http_answer *a)
{
    char *hend = len >= 4 ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
    if (hend == NULL)
        return len > HTTP_ANSWER_MAX_HEAD || eof ? HTTP_ANSWER_MALFORMED : HTTP_ANSWER_INCOMPLETE;
    /* "HTTP/1.x NNN" */
    if (hend - buf > HTTP_ANSWER_MAX_HEAD || hend - buf < 12 || strncmp(buf, "HTTP/1.", 7) != 0 ||
        (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ')
        return HTTP_ANSWER_MALFORMED;
    long long code = number(buf + 9, buf + 12, 10, 999);
    if (code < 100 || (buf[12] != ' ' && buf[12] != '\r'))
        return HTTP_ANSWER_MALFORMED;
    char *body = hend + 4, *end = buf + len;
    int close = buf[7] == '0' || header_has(buf, hend, "Connection", "close", NULL, NULL);
    const char *cl = NULL, *cl_end = NULL;
    long long blen;
    if (code == 204 || code == 304 || code < 200) {
        blen = 0;
    } else if (header_has(buf, hend, "Transfer-Encoding", "chunked", NULL, NULL)) {
        blen = dechunk(body, end);
        if (blen == -2 || (blen == -1 && eof))
            return HTTP_ANSWER_MALFORMED;
        if (blen < 0)
            return HTTP_ANSWER_INCOMPLETE;
    } else if (header_has(buf, hend, "Content-Length", NULL, &cl, &cl_end)) {
        blen = number(cl, cl_end, 10, HTTP_ANSWER_MAX_BODY);
        if (blen < 0)
            return HTTP_ANSWER_MALFORMED;
        if (end - body < blen)
            return eof ? HTTP_ANSWER_MALFORMED : HTTP_ANSWER_INCOMPLETE;
    } else if (!eof) { /* the body lasts until the server closes */
        return end - body > HTTP_ANSWER_MAX_BODY ? HTTP_ANSWER_MALFORMED : HTTP_ANSWER_INCOMPLETE;
    } else {
        blen = end - body;
        if (blen > HTTP_ANSWER_MAX_BODY)
            return HTTP_ANSWER_MALFORMED;
        close = 1;
    }
    a->code = (int)code;
    a->body = body;
    a->body_len = (size_t)blen;
    a->close = close;
    return HTTP_ANSWER_DONE;
}
