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
 *   2. DONE: code 100..999, the body inside the buffer, after the head;
 *   3. a buffer left INCOMPLETE is unchanged (it is parsed again when more bytes come);
 *   4. a prefix of an answer that is DONE is never MALFORMED (bytes arriving in two reads must
 *      not break a good answer);
 *   5. parsing is deterministic (two copies, the same verdict and answer).
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
        if (a->code < 100 || a->code > 999 || a->body < buf + 4 ||
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

    struct http_answer a, b, p;
    char *ba, *bb, *bp;
    int ra = parse_copy(data, size, eof, &a, &ba);
    int rb = parse_copy(data, size, eof, &b, &bb);
    if (ra != rb)
        abort(); /* 5 */
    if (ra == HTTP_ANSWER_DONE &&
        (a.code != b.code || a.body - ba != b.body - bb || a.body_len != b.body_len ||
         a.close != b.close || memcmp(a.body, b.body, a.body_len) != 0))
        abort(); /* 5 */

    int rp = parse_copy(data, cut, 0, &p, &bp);
    if (ra == HTTP_ANSWER_DONE && rp == HTTP_ANSWER_MALFORMED)
        abort(); /* 4 */
    free(ba);
    free(bb);
    free(bp);
    return 0;
}
