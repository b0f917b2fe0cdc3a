/* gw_limit — see gw_limit.h. */
#include "gw_limit.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct bucket {
    double tokens, at;
    UT_hash_handle hh;
    char key[]; /* NUL-terminated */
};

struct gw_limit {
    double rate, burst;
    struct bucket *buckets;
    size_t prune_at; /* prune idle buckets when the table reaches this size */
};

#define PRUNE_MIN 1024

struct gw_limit *gw_limit_new(double rate, double burst)
{
    struct gw_limit *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->prune_at = PRUNE_MIN;
    gw_limit_set(l, rate, burst);
    return l;
}

void gw_limit_set(struct gw_limit *l, double rate, double burst)
{
    l->rate = rate > 0 ? rate : 0;
    l->burst = burst >= 1 ? burst : 1;
}

static void refill(const struct gw_limit *l, struct bucket *b, double now)
{
    if (now > b->at) {
        b->tokens += (now - b->at) * l->rate;
        b->at = now;
    }
    if (b->tokens > l->burst)
        b->tokens = l->burst;
}

/* Drop the buckets that are full again: they hold nothing a new bucket would not. */
static void prune(struct gw_limit *l, double now)
{
    struct bucket *b, *tmp;
    HASH_ITER(hh, l->buckets, b, tmp)
    {
        refill(l, b, now);
        if (b->tokens >= l->burst) {
            HASH_DEL(l->buckets, b);
            free(b);
        }
    }
    size_t n = HASH_COUNT(l->buckets);
    l->prune_at = n * 2 > PRUNE_MIN ? n * 2 : PRUNE_MIN;
}

int gw_limit_take(struct gw_limit *l, const char *key, double now, double *retry_after)
{
    if (l->rate <= 0)
        return 1;
    struct bucket *b;
    size_t len = strlen(key);
    HASH_FIND(hh, l->buckets, key, len, b);
    if (!b) {
        if (HASH_COUNT(l->buckets) >= l->prune_at)
            prune(l, now);
        b = calloc(1, sizeof *b + len + 1);
        if (!b)
            abort();
        memcpy(b->key, key, len + 1);
        b->tokens = l->burst;
        b->at = now;
        HASH_ADD_KEYPTR(hh, l->buckets, b->key, len, b);
    }
    refill(l, b, now);
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 1;
    }
    if (retry_after)
        *retry_after = (1 - b->tokens) / l->rate;
    return 0;
}

size_t gw_limit_size(const struct gw_limit *l)
{
    return HASH_COUNT(l->buckets);
}

void gw_limit_free(struct gw_limit *l)
{
    if (!l)
        return;
    struct bucket *b, *tmp;
    HASH_ITER(hh, l->buckets, b, tmp)
    {
        HASH_DEL(l->buckets, b);
        free(b);
    }
    free(l);
}
