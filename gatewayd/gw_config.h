/*
 * gw_config — the INI configuration file (parsed with inih). Every option, its default and
 * its meaning is documented in README.md "Configuration"; keep the two in step.
 * Unknown sections and keys are errors (a typo must not silently fall back to a default),
 * except inside [route NAME] sections, whose extra keys belong to the route's driver.
 * Ownership: gw_config_load/parse return a config the caller frees with gw_config_free.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>

struct gw_route_conf {
    char *name;
    char *driver;
    double rate;     /* messages per second, 0 = unlimited */
    int concurrency; /* sends in flight at most */
    int breaker_failures;    /* consecutive temporary failures that open the circuit */
    int breaker_cooldown_ms; /* first pause before a probe (doubles while it keeps failing) */
    char *callback_secret;   /* required on /providers/NAME/… (header or ?secret=) when set */
    char *callback_allow;    /* comma-separated addresses / IPv4 CIDRs allowed to call back */
    size_t n;        /* driver options (every key of the section, in file order) */
    char **keys;
    char **values;
};

struct gw_config {
    /* [gateway] */
    char *listen_host;
    int listen_port;
    char *node_id;
    char *default_route;
    size_t max_body_bytes;
    char *default_region;
    int max_segments;
    int transliterate;
    char *ops_token; /* bearer token of the /ops/ endpoints (gatewayctl); NULL = disabled */
    int max_connections;             /* HTTP connections served at once */
    int max_connections_per_address; /* … from one client address */
    int address_rate;  /* requests/s per client address on the public endpoints, 0 = no limit */
    char *rate_exempt; /* addresses / IPv4 CIDRs the per-address limits do not apply to */
    int key_rate;      /* sends/s per API key, 0 = no limit */
    /* [database] */
    char *db_conninfo;
    int db_pool_size;
    /* [log] */
    int log_json;
    int log_level;
    /* [outbox] */
    int batch_size;
    int lease_seconds;
    int poll_interval_ms;
    int max_attempts;
    int backoff_base_ms;
    int backoff_max_ms;
    int handoff; /* an enqueue may claim its messages for a route with room (012) */
    /* [admin] */
    char *admin_www_dir;      /* the UI's files; NULL = the source tree's admin/www */
    int admin_secure_cookies; /* add Secure to the session cookie (behind TLS) */
    int admin_idle_minutes;   /* a session unused this long ends */
    int admin_absolute_hours; /* a session ends this long after login, used or not */
    /* [scheduler] */
    int sched_enabled;     /* run the scheduler on this node (any node may; one at a time) */
    int sched_interval_ms; /* pause between passes when there is nothing more to do */
    int sched_batch_size;  /* reminders / deliveries per claim */
    /* [ussd] */
    char *ussd_token; /* required as ?token= on /ussd/{centre} when set */
    char *ussd_field_session, *ussd_field_service, *ussd_field_phone, *ussd_field_text,
        *ussd_field_network;
    /* [route NAME]… */
    struct gw_route_conf *routes;
    size_t nroutes;
};

/* Parse a file. On error returns -1 and writes "FILE:LINE: reason" into err. */
int gw_config_load(const char *path, struct gw_config **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Parse INI text (for tests and --check-config of generated files). */
int gw_config_parse(const char *text, struct gw_config **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void gw_config_free(struct gw_config *c);
const struct gw_route_conf *gw_config_route(const struct gw_config *c, const char *name);

#endif
