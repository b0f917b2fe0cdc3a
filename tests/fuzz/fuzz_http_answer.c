/*
 * fuzz_http_answer.c — libFuzzer target for bench/http_answer (loadgen's HTTP answer parser).
 *
 *   tests/fuzz/run.sh build/fuzz fuzz_http_answer
 *
 * Input: byte 0 picks where the bytes are cut (a split point for the incremental check) and
 * whether the connection has ended; the rest is what the server sent, copied into an exact-size
 * heap buffer so that reading past it is caught by ASan.
 *
 * abort()s when one of these properties breaks:
 *   1. the verdict is DONE, INCOMPLETE or MALFORMED; never INCOMPLETE with eof;
 *   2. DONE: code 100..999, the body right after the head's blank line, inside the buffer;
 *   3. a buffer left INCOMPLETE is unchanged (it is parsed again when more bytes come);
 *   4. a prefix of an answer that is DONE is never MALFORMED (bytes arriving in two reads must
 *      not break a good answer);
 *   5. an answer complete in a prefix is the answer of the whole input: later bytes (the
 *      connection's end, bytes after it) change neither its status nor its body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_copy(const uint8_t *data, size_t len, int eof, struct http_answer *a, char **keep)
{
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, data, len);
    int r = http_answer_parse(buf, len, eof, a);
    if (r == HTTP_ANSWER_INCOMPLETE && memcmp(buf, data, len) != 0)
        abort(); /* 3 */
    if (r == HTTP_ANSWER_DONE) {
        const char *hend = memmem(buf, len, "\r\n\r\n", 4);
        if (a->code < 100 || a->code > 999 || !hend || a->body != hend + 4 ||
            a->body + a->body_len > buf + len)
            abort(); /* 2 */
    } else if (r != HTTP_ANSWER_INCOMPLETE && r != HTTP_ANSWER_MALFORMED) {
        abort(); /* 1 */
    }
    if (r == HTTP_ANSWER_INCOMPLETE && eof)
        abort(); /* 1 */
    *keep = buf;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int eof = data[0] & 1;
    data++;
    size--;
    size_t cut = size ? (size_t)(data[-1] >> 1) * size / 128 : 0;

    struct http_answer a, p;
    char *ba, *bp;
    int ra = parse_copy(data, size, eof, &a, &ba);
    int rp = parse_copy(data, cut, 0, &p, &bp);
    if (ra == HTTP_ANSWER_DONE && rp == HTTP_ANSWER_MALFORMED)
        abort(); /* 4 */
    if (rp == HTTP_ANSWER_DONE &&
        (ra != HTTP_ANSWER_DONE || a.code != p.code || a.body - ba != p.body - bp ||
         a.body_len != p.body_len || memcmp(a.body, p.body, a.body_len) != 0))
        abort(); /* 5 */
    free(ba);
    free(bp);
    return 0;
}
