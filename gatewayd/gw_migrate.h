/*
 * gw_migrate — versioned SQL migrations (gatewayd/sql/NNN_name.sql, embedded at build time),
 * applied at start-up under a PostgreSQL advisory lock so that several nodes starting at once
 * apply each migration exactly once. Blocking libpq: call only before the event loop runs.
 */
#ifndef GW_MIGRATE_H
#define GW_MIGRATE_H

#include <stddef.h>

struct gw_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct gw_migration gw_migrations[];
extern const int gw_migrations_count;

/* Connects with conninfo, applies what is missing, logs each one. 0 or negative on error
 * (message in err). */
int gw_migrate_run(const char *conninfo, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
