/*
 * http_answer.h — the HTTP/1.x answer parser of bench/loadgen (one answer per request on a
 * keep-alive connection): status line, then the body framed by Content-Length, chunked
 * transfer coding, or the connection's end. Pure: bytes in, verdict out (fuzzed by
 * tests/fuzz/fuzz_http_answer.c).
 */
#ifndef HTTP_ANSWER_H
#define HTTP_ANSWER_H

#include <stddef.h>

#define HTTP_ANSWER_MAX_HEAD 65536     /* status line and headers */
#define HTTP_ANSWER_MAX_BODY (1 << 20) /* a body over this is malformed */

enum { HTTP_ANSWER_MALFORMED = -1, HTTP_ANSWER_INCOMPLETE = 0, HTTP_ANSWER_DONE = 1 };

struct http_answer {
    int code;         /* 100..999 */
    const char *body; /* inside buf */
    size_t body_len;
    int close; /* the server closes the connection after this answer */
};

/* buf[0, len): what the server sent since the request went out; eof: it has closed the
 * connection. Returns HTTP_ANSWER_DONE with *a filled, HTTP_ANSWER_INCOMPLETE while more is
 * needed (never when eof), or HTTP_ANSWER_MALFORMED. A chunked body is decoded in place, and
 * only once it is complete: an incomplete buffer is left as it was, to be parsed again with
 * more bytes. */
int http_answer_parse(char *buf, size_t len, int eof, struct http_answer *a);

#endif
