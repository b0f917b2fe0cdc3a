/* gw_auth — see gw_auth.h. */
#include "gw_auth.h"
#include "gw_db.h"
#include "gw_log.h"
#include "gw_util.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#define CACHE_TTL_MS 60000
#define CACHE_MAX 4096

struct cached {
    char prefix[GW_KEY_PREFIX_LEN];
    uint8_t hash[GW_KEY_HASH_LEN];
    int64_t centre_id;
    int64_t expires_ms;
    UT_hash_handle hh;
};

struct gw_auth {
    struct gw_db *db;
    struct cached *cache;
};

struct pending {
    struct gw_auth *auth;
    char prefix[GW_KEY_PREFIX_LEN];
    uint8_t hash[GW_KEY_HASH_LEN];
    gw_auth_cb cb;
    void *arg;
};

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void gw_auth_key_generate(char key[GW_KEY_LEN], char prefix[GW_KEY_PREFIX_LEN],
                          uint8_t hash[GW_KEY_HASH_LEN])
{
    uint8_t pre[6], sec[16];
    char pre_hex[13], sec_hex[33];
    randombytes_buf(pre, sizeof pre);
    randombytes_buf(sec, sizeof sec);
    hex_encode(pre, sizeof pre, pre_hex);
    hex_encode(sec, sizeof sec, sec_hex);
    snprintf(key, GW_KEY_LEN, "psk_%s_%s", pre_hex, sec_hex);
    snprintf(prefix, GW_KEY_PREFIX_LEN, "psk_%s", pre_hex);
    crypto_generichash(hash, GW_KEY_HASH_LEN, (const uint8_t *)key, strlen(key), NULL, 0);
    sodium_memzero(sec, sizeof sec);
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int gw_auth_key_parse(const char *key, char prefix[GW_KEY_PREFIX_LEN],
                      uint8_t hash[GW_KEY_HASH_LEN])
{
    /* psk_ + 12 hex + _ + 32 hex */
    if (strlen(key) != 49 || strncmp(key, "psk_", 4) != 0 || key[16] != '_' ||
        !all_hex(key + 4, 12) || !all_hex(key + 17, 32))
        return GW_EINVAL;
    memcpy(prefix, key, 16); /* "psk_" + 12 hex */
    prefix[16] = '\0';
    crypto_generichash(hash, GW_KEY_HASH_LEN, (const uint8_t *)key, strlen(key), NULL, 0);
    return GW_OK;
}

struct gw_auth *gw_auth_new(struct gw_db *db)
{
    struct gw_auth *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    a->db = db;
    return a;
}

void gw_auth_free(struct gw_auth *a)
{
    if (!a)
        return;
    struct cached *c, *tmp;
    HASH_ITER(hh, a->cache, c, tmp)
    {
        HASH_DEL(a->cache, c);
        free(c);
    }
    free(a);
}

static void cache_put(struct gw_auth *a, const char *prefix, const uint8_t *hash, int64_t centre)
{
    struct cached *c;
    HASH_FIND_STR(a->cache, prefix, c);
    if (!c) {
        if (HASH_COUNT(a->cache) >= CACHE_MAX) {
            struct cached *x, *tmp;
            HASH_ITER(hh, a->cache, x, tmp)
            {
                HASH_DEL(a->cache, x);
                free(x);
            }
        }
        c = calloc(1, sizeof *c);
        if (!c)
            abort();
        memcpy(c->prefix, prefix, GW_KEY_PREFIX_LEN);
        HASH_ADD_STR(a->cache, prefix, c);
    }
    memcpy(c->hash, hash, GW_KEY_HASH_LEN);
    c->centre_id = centre;
    c->expires_ms = gw_now_ms() + CACHE_TTL_MS;
}

static void on_key_row(void *arg, PGresult *res, const char *err)
{
    struct pending *p = arg;
    if (err) {
        p->cb(p->arg, GW_EDOWN, 0);
        free(p);
        return;
    }
    int rc = GW_ENOTFOUND;
    int64_t centre = 0;
    if (PQntuples(res) == 1 && PQgetlength(res, 0, 1) == 2 * GW_KEY_HASH_LEN) {
        uint8_t stored[GW_KEY_HASH_LEN];
        size_t bin_len = 0;
        if (sodium_hex2bin(stored, sizeof stored, PQgetvalue(res, 0, 1), 2 * GW_KEY_HASH_LEN, NULL,
                           &bin_len, NULL) == 0 &&
            bin_len == GW_KEY_HASH_LEN && sodium_memcmp(stored, p->hash, GW_KEY_HASH_LEN) == 0 &&
            gw_parse_i64(PQgetvalue(res, 0, 0), 1, INT64_MAX, &centre) == GW_OK) {
            rc = GW_OK;
            cache_put(p->auth, p->prefix, p->hash, centre);
        }
    }
    p->cb(p->arg, rc, rc == GW_OK ? centre : 0);
    free(p);
}

void gw_auth_check(struct gw_auth *a, const char *authorization, gw_auth_cb cb, void *arg)
{
    char prefix[GW_KEY_PREFIX_LEN];
    uint8_t hash[GW_KEY_HASH_LEN];
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        cb(arg, GW_ENOTFOUND, 0);
        return;
    }
    const char *key = authorization + 7;
    while (*key == ' ')
        key++;
    if (gw_auth_key_parse(key, prefix, hash) != GW_OK) {
        cb(arg, GW_ENOTFOUND, 0);
        return;
    }
    struct cached *c;
    HASH_FIND_STR(a->cache, prefix, c);
    if (c && c->expires_ms > gw_now_ms()) {
        if (sodium_memcmp(c->hash, hash, GW_KEY_HASH_LEN) == 0)
            cb(arg, GW_OK, c->centre_id);
        else
            cb(arg, GW_ENOTFOUND, 0);
        return;
    }
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->auth = a;
    memcpy(p->prefix, prefix, sizeof prefix);
    memcpy(p->hash, hash, sizeof hash);
    p->cb = cb;
    p->arg = arg;
    const char *params[1] = {prefix};
    int rc = gw_db_query(a->db,
                         "SELECT centre_id, encode(key_hash, 'hex') FROM api_keys"
                         " WHERE prefix = $1 AND revoked_at IS NULL",
                         1, params, on_key_row, p);
    if (rc != GW_OK) {
        free(p);
        cb(arg, GW_EDOWN, 0);
    }
}
