/*
 * gw_db — asynchronous PostgreSQL access on the event loop (libpq non-blocking API, in the
 * manner of pgbouncer/pgqd). A small pool of connections; each runs one statement at a time;
 * statements wait in one FIFO for a free connection. Connections that fail are retried with
 * exponential backoff; while none is up, gw_db_query fails at once with GW_EDOWN so that HTTP
 * handlers can answer 503 without waiting.
 *
 * Only single statements go through here (use data-modifying CTEs or SQL functions for
 * multi-step work): each statement is its own transaction, so "the callback ran without
 * error" means "committed".
 *
 * Ownership: gw_db_query copies sql and params. The PGresult passed to a callback is borrowed:
 * it is cleared when the callback returns. A callback may submit new queries.
 * gw_db_free() calls every pending callback with err "shutting down" before returning.
 */
#ifndef GW_DB_H
#define GW_DB_H

#include <libpq-fe.h>
#include <stdint.h>

struct event_base;
struct gw_db;

/* res: the statement's result when err is NULL (TUPLES_OK or COMMAND_OK).
 * err: non-NULL on failure (SQL error text, "connection to the database lost", …); res may
 * then be NULL. */
typedef void (*gw_db_cb)(void *arg, PGresult *res, const char *err);

struct gw_db *gw_db_new(struct event_base *base, const char *conninfo, int pool_size);
/* Start connecting every pool slot (asynchronously). */
void gw_db_start(struct gw_db *db);
void gw_db_free(struct gw_db *db);

/* Queue a statement. Returns 0 (cb will be called exactly once, later, never from inside this
 * call), GW_EDOWN when no connection is up (cb is not called), GW_ECLOSED while shutting down. */
int gw_db_query(struct gw_db *db, const char *sql, int nparams, const char *const *params,
                gw_db_cb cb, void *arg) __attribute__((warn_unused_result));

/* 1 when at least one connection is up. */
int gw_db_up(const struct gw_db *db);
/* Statements queued or running. */
int gw_db_pending(const struct gw_db *db);

/* Called on every up/down transition of the pool as a whole. */
void gw_db_on_state(struct gw_db *db, void (*fn)(void *arg, int up), void *arg);

struct gw_db_stats {
    uint64_t queries;        /* statements completed (ok or error) */
    uint64_t errors;         /* statements that failed */
    uint64_t reconnects;     /* successful (re)connections */
    uint64_t rtt_us_sum;     /* sum of round-trip times */
    uint64_t rtt_buckets[8]; /* <=1ms, 5, 10, 50, 100, 500, 1000ms, +Inf */
};
const struct gw_db_stats *gw_db_stats(const struct gw_db *db);
extern const double gw_db_rtt_bounds_ms[7];



/* The integer in a result cell; 0 when NULL or not an integer (columns we selected ourselves
 * are always well-formed, so callers need no error path). */
int64_t gw_db_int(const PGresult *res, int row, int col);
#endif
