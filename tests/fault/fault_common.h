/*
 * fault_common — what the fault-injection scenarios (tests/fault/) share: a "world" (a database,
 * the iSendPro mock or libGammu's dummy phone, one gatewayd, one centre), a mixed load that runs
 * on a thread of its own while the scenario breaks things, and the accounting done afterwards
 * from the database and the peers, printed as one table of counts.
 *
 * The load is what real clients do. API sends carry an idempotency key and are sent again on a
 * 503 or a lost connection until they get their 202 (as bench/loadgen --retry does); inbound
 * keyword SMS come through the simulator's POST /providers/sim/inbound with a provider id (a
 * provider sends a callback again until it gets its 200) or, on the modem, as files in the
 * dummy phone's inbox (held back while the phone is gone, as the network would); due reminders
 * are created with the SQL function `gatewayctl reminder create` calls, made idempotent by a
 * unique text. Nothing is timed: each request is retried until a deadline.
 *
 * Randomness (operation mix, fault moments and kinds) comes from one seed, printed at the start
 * and taken from $FAULT_SEED when set, so that a failure can be replayed with the same
 * schedule (the daemon's own timing still varies).
 *
 * After the load: every acknowledged request must have exactly one row and end in its final
 * state (delivered; `sent` on the dummy modem, which has no delivery reports), no message may
 * have two accepted attempts or two peer records that neither a lost answer nor a crash
 * explains, every inbound SMS is stored once and answered (its flow run and every reply it
 * decided on), every reminder gives exactly one SMS, /healthz is 200 again.
 */
#ifndef PASSERELLE_FAULT_COMMON_H
#define PASSERELLE_FAULT_COMMON_H

#include "routes_common.h"

#include <pthread.h>

enum f_kind { F_API, F_INBOUND, F_MODEM_IN, F_REMINDER, F_NKINDS };

struct f_opts {
    const char *name;      /* the scenario: temp dir, database, log prefix */
    int private_pg;        /* a cluster of its own (the scenario stops and starts it) */
    int modem;             /* the centre sends through the dummy phone; else the iSendPro mock */
    double load_s;         /* how long new requests are started */
    double rate[F_NKINDS]; /* new requests per second of each kind */
};

struct f_op {
    int kind, idx;
    int state; /* 0 not yet answered, 1 acknowledged, 2 refused (an unexpected answer) */
    int tries;
    double next_try;
    long long id; /* the message id of the 202 / 200 */
    long last_status;
    char last[160]; /* the last error or unexpected answer */
};

struct f_world {
    struct f_opts o;
    unsigned seed;
    unsigned rnd; /* the main thread's random state (rand_r) */
    char prefix[24];
    struct h_pg *pg;
    char *conninfo;
    int port;
    struct r_mock *mock;
    char *phone_dir; /* the dummy phone (modem scenario) */
    char *config;
    char *key;
    long long centre;
    struct h_daemon *d;

    /* the load (its thread owns ops; read them after f_load_finish) */
    pthread_t thr;
    int thr_started;
    pthread_mutex_t mu;
    struct f_op *ops;
    int nops, capops;
    double load_end, retry_deadline;
    long long http_retries; /* requests sent again */
    long long by_kind[F_NKINDS];

    /* what the scenario did */
    double kills[64];
    int nkills;
    int restarts;
    int faults;
    char fault_log[2048];
};

/* Sets up the world: seed, database (private cluster when o->private_pg), the mock (delivery
 * reports to the daemon, retried like a real provider's) or the dummy phone, the configuration,
 * one seeded centre with quiet hours off, its API key, and a running daemon. */
struct f_world *f_world_start(int argc, char **argv, const struct f_opts *o);
/* Random integer in [lo, hi] and double in [lo, hi) from the main thread's state. */
int f_rand(struct f_world *w, int lo, int hi);
double f_randf(struct f_world *w, double lo, double hi);
/* Appends one line to the fault log (printed with the counts) and logs it. */
void f_note(struct f_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts the load thread for o->load_s seconds (the clock starts now). */
void f_load_start(struct f_world *w);
/* Seconds since f_load_start. */
double f_load_elapsed(const struct f_world *w);
/* Sleeps until f_load_elapsed() >= t. */
void f_sleep_until(const struct f_world *w, double t);
/* Waits for the load to end and every request to be answered (or retry_s to pass). */
void f_load_finish(struct f_world *w, double retry_s);

/* SIGKILL at a moment chosen by the caller, then a restart on the same port and database as a
 * supervisor would do it; the kill time is kept to explain resends. */
void f_kill9_restart(struct f_world *w);

/* Waits until everything settled, checks it all (see above), prints the counts table, stops the
 * daemon (clean exit checked) and fails listing every failed check. */
void f_verify(struct f_world *w);

/* Stops the mock; r_exit. */
int f_exit(struct f_world *w, int failures) __attribute__((noreturn));

#endif
