/*
 * provider.h — the contract between the outbox core (gatewayd/) and a route driver.
 *
 * A *route* is one configured provider instance ("[route sim]" with driver = sim). The core
 * creates it with the driver's ops->create, hands it messages with ops->send, and hears back
 * through the prov_host callbacks. Modelled on Kannel's smscconn contract:
 *
 *   - ops->send must not block and must copy whatever it keeps from *msg (the core frees
 *     the message right after send returns).
 *   - For every message accepted by ops->send (return 0), the driver reports exactly one
 *     outcome through host->outcome, on the loop thread, never from inside ops->send itself
 *     (defer with an event if the answer is immediate), and never after ops->destroy.
 *   - If ops->send returns non-zero, no outcome will be reported; the core treats it as a
 *     temporary failure and retries later.
 *   - Delivery reports and inbound messages may come at any time after; they go through
 *     host->dlr and host->inbound.
 *   - ops->http handles provider callbacks under /providers/{route}/{subpath}; the driver must
 *     answer the request exactly once (possibly later, after host->inbound's completion).
 *
 * Ownership: strings passed to host callbacks are borrowed for the duration of the call.
 */
#ifndef PROVIDER_H
#define PROVIDER_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

struct event_base;
struct evhttp_request;
struct json_t;

enum prov_outcome {
    PROV_ACCEPTED = 0, /* provider took it; delivery report may follow */
    PROV_TEMPFAIL = 1, /* try again later (backoff) */
    PROV_PERMFAIL = 2, /* will never work: mark failed */
};

/* A message handed to ops->send. Borrowed: copy what you keep. */
struct prov_msg {
    int64_t id; /* our message id; use it as the provider tracker where possible */
    int64_t centre_id;
    const char *to;   /* E.164, "+33612345678" */
    const char *text; /* UTF-8 */
    int encoding;     /* enum prov_encoding from prov_text.h */
    int segments;
    int attempt; /* 1 for the first try */
};

/* The outcome of one send. */
struct prov_result {
    int64_t msg_id;
    enum prov_outcome outcome;
    const char *provider_ref; /* provider's id for the message, may be NULL */
    const char *error_code;   /* short machine code on failure, e.g. "timeout", "21" */
    const char *error_msg;    /* human text on failure (no secrets!) */
    int optout;               /* 1 when the provider says the number is blacklisted */
};

/* A delivery report. msg_id > 0 when the driver knows our id (tracker), else provider_ref. */
struct prov_dlr {
    int64_t msg_id;
    const char *provider_ref;
    int delivered; /* 1 delivered, 0 undelivered */
    const char *detail;
};

/* An inbound SMS, already reassembled. */
struct prov_inbound {
    const char *from;         /* as received; the core normalises it */
    const char *text;         /* UTF-8 */
    const char *provider_ref; /* provider's id, for de-duplication; may be NULL */
    time_t received_at;       /* 0 = now */
};

typedef void (*prov_done_fn)(void *arg, int err, int64_t id);

/* Callbacks into the core. ctx is the core's; pass it back unchanged. */
struct prov_host {
    void *ctx;
    struct event_base *base;
    const char *route; /* route name, for logs and callbacks */
    void (*outcome)(void *ctx, const struct prov_result *r);
    /* A delivery report. done (may be NULL) is called once, on the loop thread, possibly before
     * dlr returns: done(arg, 0, 0) when the report is written (answer the provider OK, delete
     * it from the SIM), done(arg, <0, 0) when it could not be now (answer with a retryable
     * error, keep it: it is also kept on our side and applied later, so a repeat is harmless).
     * Acknowledge a provider only from done: a crash before the write must not lose a report
     * we said we had. */
    void (*dlr)(void *ctx, const struct prov_dlr *d, prov_done_fn done, void *arg);
    /* Store an inbound message durably; done(arg, 0, id) after commit, done(arg, <0, 0) when
     * it could not be stored (database down: answer the provider with a retryable error). */
    void (*inbound)(void *ctx, const struct prov_inbound *in, prov_done_fn done, void *arg);
    /* Log on behalf of the route (level: 0 error, 1 warn, 2 info, 3 debug). */
    void (*log)(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
};

/* Route options from the INI section; borrowed for the life of the route. */
struct prov_conf {
    size_t n;
    const char *const *keys;
    const char *const *values;
};
const char *prov_conf_get(const struct prov_conf *c, const char *key, const char *def);
/* 1 for the keys the core reads itself in every route section (driver, rate, concurrency,
 * breaker_*): drivers accept them without using them. */
int prov_conf_core_key(const char *key);
/* Typed option readers (prov_conf.c): absent → def; present but malformed or out of range →
 * -1 with "KEY must be …" in err. */
int prov_conf_long(const struct prov_conf *c, const char *key, long def, long min, long max,
                   long *out, char *err, size_t errlen);
int prov_conf_int(const struct prov_conf *c, const char *key, int def, int min, int max, int *out,
                  char *err, size_t errlen);
int prov_conf_double(const struct prov_conf *c, const char *key, double def, double min,
                     double max, double *out, char *err, size_t errlen);
int prov_conf_bool(const struct prov_conf *c, const char *key, int def, int *out, char *err,
                   size_t errlen);
/* -1 with "unknown option 'K' for the DRIVER driver" when a key is neither a core key nor in
 * known[]. */
int prov_conf_check_keys(const struct prov_conf *c, const char *driver, const char *const *known,
                         size_t nknown, char *err, size_t errlen);

struct prov_ops {
    const char *name;
    /* Create a route. On error return negative and write a message into err. */
    int (*create)(const struct prov_conf *conf, const struct prov_host *host, void **priv,
                  char *err, size_t errlen);
    void (*destroy)(void *priv); /* accepts NULL; no host callback after it returns */
    int (*send)(void *priv, const struct prov_msg *msg);
    /* Optional: provider callbacks. Return 0 if handled (request answered or will be). */
    int (*http)(void *priv, struct evhttp_request *req, const char *subpath);
    /* Optional: add health fields ("state", "last_error", …) to a JSON object. */
    void (*status)(void *priv, struct json_t *out);
    /* Optional: called once after start for each message this route accepted on this node
     * (before a crash, say) whose delivery report has not come yet. A real provider delivers
     * and reports on its own; the simulator, whose pending reports died with the process,
     * schedules them again, as the provider it stands for would still send them. */
    void (*resume)(void *priv, int64_t msg_id, const char *provider_ref);
    /* Optional: dial an operator USSD code ("*100#") and call done(arg, 0, reply) later on the
     * loop thread, or done(arg, <0, human reason). Returns <0 without calling done when it
     * refuses at once. Not called back after destroy. */
    int (*ussd)(void *priv, const char *code, void (*done)(void *arg, int err, const char *reply),
                void *arg);
    /* Optional: a resident of a centre using this route opted out (1, STOP) or back in
     * (0, START); a provider that keeps its own blacklist is told (iSendPro). Asynchronous,
     * failures logged. */
    void (*optout)(void *priv, const char *e164, int opted_out);
};

/* Registry: find a driver by name ("sim", later "isendpro", "gammu"). NULL if unknown. */
const struct prov_ops *prov_find(const char *driver);

extern const struct prov_ops prov_sim_ops;
extern const struct prov_ops prov_isendpro_ops;

/* iSendPro opt-out sync: add (STOP) or remove (START) a number on the account's blacklist
 * (setlistenoire / dellistenoire). priv must be an isendpro route's. Asynchronous; failures
 * are logged. Also reachable as prov_isendpro_ops.optout. */
int prov_isendpro_blacklist(void *priv, const char *e164, int add);

#endif
