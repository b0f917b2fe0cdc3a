/* gw_migrate — see gw_migrate.h. */
#include "gw_migrate.h"
#include "gw_log.h"
#include "gw_util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* Arbitrary constant shared by every node: the key of the migration advisory lock. */
#define MIGRATE_LOCK_KEY "7265010001"

static int exec_ok(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

int gw_migrate_run(const char *conninfo, char *err, size_t errlen)
{
    int rc = GW_ESQL;
    const char *const keys[] = {"dbname", "options", "application_name", NULL};
    const char *const vals[] = {conninfo, "-c TimeZone=UTC", "gatewayd", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return GW_EDOWN;
    }
    PQsetNoticeProcessor(pg, NULL, NULL);
    PGresult *r = PQexec(pg, "SET client_min_messages = warning");
    PQclear(r);
    if (exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen) < 0)
        goto out;
    if (exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                err, errlen) < 0)
        goto unlock;
    for (int i = 0; i < gw_migrations_count; i++) {
        const struct gw_migration *m = &gw_migrations[i];
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *p[2] = {ver, m->name};
        r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, p, NULL,
                         NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "%s", PQresultErrorMessage(r));
            PQclear(r);
            goto unlock;
        }
        int applied = PQntuples(r) > 0;
        PQclear(r);
        if (applied)
            continue;
        /* Each migration and its bookkeeping row commit together or not at all. */
        if (exec_ok(pg, "BEGIN", err, errlen) < 0)
            goto unlock;
        if (exec_ok(pg, m->sql, err, errlen) < 0) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", err);
            snprintf(err, errlen, "migration %s failed: %s", m->name, detail);
            r = PQexec(pg, "ROLLBACK");
            PQclear(r);
            goto unlock;
        }
        r = PQexecParams(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                         NULL, p, NULL, NULL, 0);
        int ins_ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ins_ok)
            snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ins_ok || exec_ok(pg, "COMMIT", err, errlen) < 0) {
            r = PQexec(pg, "ROLLBACK");
            PQclear(r);
            goto unlock;
        }
        gw_info("db", "applied migration %s", m->name);
    }
    rc = GW_OK;
unlock:
    r = PQexec(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
    PQclear(r);
out:
    PQfinish(pg);
    return rc;
}
