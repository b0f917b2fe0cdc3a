/*
 * gw_api — the centre-facing send API (DESIGN.md §6): POST /api/v1/messages,
 * GET /api/v1/messages/{id}, GET /api/v1/messages?to=&direction=&since=&before=&limit=.
 * Authenticated with a centre API key (gw_auth); every query carries the key's centre id.
 */
#ifndef GW_API_H
#define GW_API_H

struct gw_http;
struct gw_db;
struct gw_auth;
struct gw_outbox;
struct gw_config;
struct gw_api;

#include "gw_send.h"

struct gw_api *gw_api_new(struct gw_http *http, struct gw_db *db, struct gw_auth *auth,
                          struct gw_outbox *outbox, const struct gw_config *cfg);
/* Sends per second allowed per API key (burst: two seconds' worth); 0 = no limit. Beyond it
 * POST /api/v1/messages answers 429 rate_limited with Retry-After. */
void gw_api_set_key_rate(struct gw_api *api, int per_second);
struct evbuffer;
void gw_api_metrics(const struct gw_api *api, struct evbuffer *out);
void gw_api_free(struct gw_api *api);

#endif
