/*
 * gw_auth — centre API keys. A key looks like "psk_<12 hex>_<32 hex>": the first part (the
 * prefix) finds the row, and only a BLAKE2b-256 hash of the whole key is stored, so a stolen
 * database does not reveal usable keys. Keys are 128-bit random, so a fast hash is enough
 * (no password stretching needed). Verified keys are cached in memory for a minute so the send
 * path does not pay a database round-trip per request; revoking a key takes effect within that
 * minute.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct gw_db;
struct gw_auth;

#define GW_KEY_LEN 50        /* "psk_" + 12 + "_" + 32 + NUL, rounded */
#define GW_KEY_PREFIX_LEN 17 /* "psk_" + 12 hex + NUL */
#define GW_KEY_HASH_LEN 32

/* Generate a new key (NUL-terminated, into key[GW_KEY_LEN]), its prefix and its hash. */
void gw_auth_key_generate(char key[GW_KEY_LEN], char prefix[GW_KEY_PREFIX_LEN],
                          uint8_t hash[GW_KEY_HASH_LEN]);
/* Split and hash a presented key. Returns 0 or GW_EINVAL when it is not shaped like a key. */
int gw_auth_key_parse(const char *key, char prefix[GW_KEY_PREFIX_LEN],
                      uint8_t hash[GW_KEY_HASH_LEN]) __attribute__((warn_unused_result));

/* rc: 0 with the centre id; GW_ENOTFOUND for a wrong, revoked or malformed key; GW_EDOWN
 * when the database could not be asked. */
typedef void (*gw_auth_cb)(void *arg, int rc, int64_t centre_id);

struct gw_auth *gw_auth_new(struct gw_db *db);
void gw_auth_free(struct gw_auth *a);
/* Check an "Authorization" header value ("Bearer psk_…"). The callback may run before this
 * returns (cache hit or malformed key). */
void gw_auth_check(struct gw_auth *a, const char *authorization, gw_auth_cb cb, void *arg);

#endif
