/*
 * gatewayctl — the operator's command line.
 *
 * Set-up commands talk to the database directly (they work before the daemon runs):
 *   gatewayctl --config FILE migrate
 *   gatewayctl --config FILE centre create NAME [--timezone TZ] [--route ROUTE]… [--if-missing]
 *   gatewayctl --config FILE centre list
 *   gatewayctl --config FILE key create CENTRE [--label TEXT]     (prints the key, once)
 *   gatewayctl --config FILE key check KEY                        (exit 0 if valid)
 *   gatewayctl --config FILE key revoke PREFIX
 * Runtime commands talk to a running daemon over HTTP:
 *   gatewayctl [--url URL] status
 *   gatewayctl [--url URL] --key KEY send TO TEXT [--at RFC3339] [--idempotency-key K]
 *
 *   gatewayctl [--url URL] [--config FILE | --key TOKEN] ussd ROUTE CODE
 *   gatewayctl [--url URL] [--config FILE | --key TOKEN] tail [--centre C] [--route R]
 *              [--state S] [--phone-suffix NN] [--json]      (GET /ops/events, until Ctrl-C)
 *   gatewayctl --config FILE retry --failed-since TIME [--centre C] [--dry-run]
 *
 * Exit codes: 0 ok, 1 failure (the message says why), 2 usage error, 3 not found,
 * 4 not supported.
 */
#include "gw_auth.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_migrate.h"
#include "prov_phone.h"
#include "sched_time.h"
#include "gw_util.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdarg.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PASSERELLE_VERSION
#define PASSERELLE_VERSION "dev"
#endif

static const char *opt_config, *opt_url, *opt_key;

static const char USAGE[] =
            "usage: gatewayctl [--config FILE] [--url URL] [--key KEY] COMMAND …\n"
            "\n"
            "set-up (database, needs --config):\n"
            "  migrate                          apply the database migrations\n"
            "  centre create NAME [--timezone TZ] [--route ROUTE]… [--if-missing]\n"
            "                                   create a centre (prints its id)\n"
            "  centre list                      list centres\n"
            "  centre routes CENTRE [--kind K] ROUTE…   set a centre's routes, in order of\n"
            "                                   preference, for one kind of traffic (all,\n"
            "                                   replies, reminders, alerts)\n"
            "  centre seed CENTRE               add demo activities (check-in codes 1234, 5678),\n"
            "                                   items, job offers and alert topics\n"
            "  centre set CENTRE KEY=VALUE…     change centre settings (see README: unknown_numbers,\n"
            "                                   loop_max_per_hour, checkin_open_before_min, …)\n"
            "  template list CENTRE             the reply templates the centre uses\n"
            "  template set CENTRE NAME TEXT    override one template for the centre ('-' = default)\n"
            "  loan list CENTRE                 loans waiting for staff or out\n"
            "  reminder create CENTRE PHONE --text TEXT (--at TIME | --rrule RULE --start TIME |\n"
            "           --appointment TIME --offset 1d@18:00 --offset 2h …) [--place P] [--urgent]\n"
            "           [--ack [--followup-min N]] [--by LOGIN]   times are local YYYY-MM-DD HH:MM\n"
            "  reminder list CENTRE [PHONE]     reminders and their next occurrence\n"
            "  staff create CENTRE LOGIN [--role admin|referent|staff|viewer] [--name N]\n"
            "           [--password-file F]     an admin UI account (prints a generated password\n"
            "                                   once when no file is given)\n"
            "  admin create CENTRE LOGIN [--name N] [--password-file F]   the centre's first\n"
            "                                   admin account (= staff create … --role admin)\n"
            "  staff password LOGIN [--password-file F]   new password; ends its sessions\n"
            "  staff disable LOGIN | staff list CENTRE\n"
            "  resident export CENTRE PHONE     everything stored about that number (JSON)\n"
            "  resident erase CENTRE PHONE --yes   erase that person (statistics stay anonymous;\n"
            "                                   an opted-out number stays opted out)\n"
            "  audit export CENTRE [--since TIME]   staff actions as JSON lines\n"
            "  reminder cancel ID               cancel a reminder and what it has not sent yet\n"
            "  key create CENTRE [--label TEXT] create an API key for a centre (shown once)\n"
            "  key check KEY                    exit 0 when KEY is a valid, unrevoked key\n"
            "  key revoke PREFIX                revoke a key (psk_xxxxxxxxxxxx)\n"
            "  partner create CENTRE NAME [--topics T,…] [--jobs] [--rate N]   a partner's webhook\n"
            "                                   key id and secret (shown once); partner list\n"
            "                                   CENTRE; partner revoke KEYID\n"
            "  retry --failed-since TIME [--centre C] [--dry-run]   queue again the messages\n"
            "                                   that failed (or came back undelivered) since TIME\n"
            "                                   (RFC 3339 or local YYYY-MM-DD HH:MM), except to\n"
            "                                   numbers that opted out; --dry-run prints the count\n"
            "\n"
            "runtime (HTTP, default --url http://127.0.0.1:8080):\n"
            "  status                           daemon, database and route health\n"
            "  send TO TEXT [--at TIME] [--idempotency-key K]   send an SMS (needs --key)\n"
            "  ussd ROUTE CODE                  dial a USSD code on a modem route (operator token:\n"
            "                                   --key, or ops_token from --config); exit 4 when\n"
            "                                   the route cannot do USSD\n"
            "  loan confirm|refuse|returned ID [--days N]   a staff decision on a loan; the\n"
            "                                   resident gets an SMS (operator token as above)\n"
            "  tail [--centre C] [--route R] [--state S] [--phone-suffix 78] [--json]\n"
            "                                   follow message state changes live (operator\n"
            "                                   token); reconnects by itself; Ctrl-C stops\n"
            "\n"
            "  --version, --help                COMMAND --help: that command's lines\n"
            "  man gatewayctl                   the whole manual\n";

static void usage(FILE *f)
{
    fputs(USAGE, f);
}

/* `gatewayctl COMMAND … --help`: the lines of the usage about COMMAND (a line that starts
 * with "  COMMAND " and the indented lines that go on from it). Returns 0, or 2 for a
 * command the usage does not know. */
static int command_help(const char *cmd)
{
    size_t n = strlen(cmd);
    int found = 0, in = 0;
    for (const char *l = USAGE; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        int starts = len > n + 2 && !strncmp(l, "  ", 2) && !strncmp(l + 2, cmd, n) &&
                     (l[n + 2] == ' ' || l[n + 2] == '|');
        int goes_on = in && len > 4 && !strncmp(l, "    ", 4);
        in = starts || goes_on;
        if (in) {
            if (!found)
                printf("usage: gatewayctl [--config FILE] [--url URL] [--key KEY] …\n");
            found = 1;
            printf("%.*s\n", (int)len, l);
        }
        l += len + (e ? 1 : 0);
    }
    if (!found) {
        fprintf(stderr, "gatewayctl: unknown command '%s' (see gatewayctl --help)\n", cmd);
        return 2;
    }
    printf("(exit codes: 0 ok, 1 failure, 2 usage error, 3 not found, 4 not supported; "
           "man gatewayctl)\n");
    return 0;
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("gatewayctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static struct gw_config *load_config(void)
{
    if (!opt_config)
        die(2, "this command needs --config FILE (the daemon's configuration)");
    struct gw_config *cfg;
    char err[512];
    if (gw_config_load(opt_config, &cfg, err, sizeof err) != 0)
        die(1, "%s", err);
    return cfg;
}

static PGconn *db_connect(struct gw_config *cfg)
{
    char err[512];
    if (gw_migrate_run(cfg->db_conninfo, err, sizeof err) != GW_OK)
        die(1, "%s", err);
    const char *const keys[] = {"dbname", "options", "application_name", NULL};
    const char *const vals[] = {cfg->db_conninfo, "-c TimeZone=UTC", "gatewayctl", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK)
        die(1, "cannot connect to the database: %s", PQerrorMessage(pg));
    return pg;
}

static PGresult *q(PGconn *pg, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        die(1, "database error: %s", PQresultErrorMessage(r));
    return r;
}

/* The id of the centre named (or numbered) `name`, as text; exits 3 when there is none. */
static void centre_id(PGconn *pg, const char *name, char out[24])
{
    const char *p[1] = {name};
    /* a centre named "2" wins over the centre whose id is 2 */
    PGresult *r = q(pg,
                    "SELECT id FROM centres WHERE name = $1 OR id::text = $1"
                    " ORDER BY name = $1 DESC LIMIT 1",
                    1, p);
    if (PQntuples(r) != 1)
        die(3, "no centre named '%s'", name);
    snprintf(out, 24, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static int cmd_centre(int argc, char **argv)
{
    if (argc < 1)
        die(2, "centre: expected create or list");
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    if (!strcmp(argv[0], "list")) {
        PGresult *r = q(pg,
                        "SELECT c.id, c.name, c.timezone, coalesce(string_agg(cr.kind || ':' ||"
                        " cr.route, ',' ORDER BY cr.kind, cr.position), '')"
                        " FROM centres c LEFT JOIN centre_routes cr"
                        " ON cr.centre_id = c.id GROUP BY c.id ORDER BY c.id",
                        0, NULL);
        printf("%-6s %-32s %-18s %s\n", "ID", "NAME", "TIME ZONE", "ROUTES");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-6s %-32s %-18s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
        PQclear(r);
    } else if (!strcmp(argv[0], "create")) {
        const char *name = NULL, *tz = "Europe/Paris";
        const char *routes[16];
        int nroutes = 0, if_missing = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--timezone") && i + 1 < argc)
                tz = argv[++i];
            else if (!strcmp(argv[i], "--route") && i + 1 < argc && nroutes < 16)
                routes[nroutes++] = argv[++i];
            else if (!strcmp(argv[i], "--if-missing"))
                if_missing = 1;
            else if (argv[i][0] != '-' && !name)
                name = argv[i];
            else
                die(2, "centre create: unexpected argument '%s'", argv[i]);
        }
        if (!name || !*name)
            die(2, "centre create: a NAME is required");
        const char *p1[1] = {tz};
        PGresult *r = PQexecParams(pg, "SELECT $1::text IN (SELECT name FROM pg_timezone_names)",
                                   1, NULL, p1, NULL, NULL, 0);
        int tz_ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (!tz_ok)
            die(1, "unknown time zone '%s' (use an IANA name such as Europe/Paris)", tz);
        const char *p[2] = {name, tz};
        r = q(pg,
              "INSERT INTO centres (name, timezone) VALUES ($1, $2)"
              " ON CONFLICT (name) DO NOTHING RETURNING id",
              2, p);
        int created = PQntuples(r) == 1;
        PQclear(r);
        if (!created && !if_missing)
            die(1, "a centre named '%s' already exists (add --if-missing to accept that)", name);
        const char *pn[1] = {name};
        r = q(pg, "SELECT id FROM centres WHERE name = $1", 1, pn);
        char id[24];
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        for (int i = 0; i < nroutes; i++) {
            char pos[12];
            snprintf(pos, sizeof pos, "%d", i);
            const char *pr[3] = {id, routes[i], pos};
            PQclear(q(pg,
                      "INSERT INTO centre_routes (centre_id, route, position) VALUES ($1, $2, $3)"
                      " ON CONFLICT (centre_id, kind, route) DO UPDATE SET position = $3",
                      3, pr));
        }
        fprintf(stderr, "centre '%s' %s (id %s)\n", name, created ? "created" : "exists", id);
        printf("%s\n", id);
    } else if (!strcmp(argv[0], "routes")) {
        /* centre routes CENTRE [--kind K] ROUTE…: replace that kind's list, in this order */
        const char *centre = NULL, *kind = "all";
        const char *routes[16];
        int nroutes = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--kind") && i + 1 < argc)
                kind = argv[++i];
            else if (!centre)
                centre = argv[i];
            else if (nroutes < 16)
                routes[nroutes++] = argv[i];
            else
                die(2, "centre routes: at most 16 routes");
        }
        if (!centre)
            die(2, "centre routes: expected CENTRE [--kind KIND] ROUTE…");
        char id[24];
        centre_id(pg, centre, id);
        const char *pk[2] = {id, kind};
        PQclear(q(pg, "BEGIN", 0, NULL));
        PQclear(q(pg, "DELETE FROM centre_routes WHERE centre_id = $1 AND kind = $2", 2, pk));
        for (int i = 0; i < nroutes; i++) {
            char pos[12];
            snprintf(pos, sizeof pos, "%d", i);
            const char *pr[4] = {id, routes[i], pos, kind};
            PQclear(q(pg,
                      "INSERT INTO centre_routes (centre_id, route, position, kind)"
                      " VALUES ($1, $2, $3, $4)",
                      4, pr));
        }
        PQclear(q(pg, "COMMIT", 0, NULL));
        printf("centre %s, %s traffic:", id, kind);
        for (int i = 0; i < nroutes; i++)
            printf(" %s%s", i ? "→ " : "", routes[i]);
        printf("%s\n", nroutes ? "" : " (none: the 'all' list, else the default route)");
    } else if (!strcmp(argv[0], "set")) {
        /* known settings and the values they accept (as read by gatewayd/sql/002_flows.sql) */
        static const struct {
            const char *key, *pattern, *what;
        } known[] = {
            {"unknown_numbers", "^(contact|inbox)$", "contact or inbox"},
            {"loop_max_per_hour", "^[1-9][0-9]{0,3}$", "a number from 1 to 9999"},
            {"checkin_open_before_min", "^[0-9]{1,4}$", "minutes (0-9999)"},
            {"checkin_close_after_min", "^[0-9]{1,4}$", "minutes (0-9999)"},
            {"conversation_timeout_min", "^[1-9][0-9]{0,3}$", "minutes (1-9999)"},
            {"loan_days", "^[1-9][0-9]{0,2}$", "days (1-999)"},
            {"ussd_timeout_s", "^[1-9][0-9]{0,3}$", "seconds (1-9999)"},
            {"display_name", "^.{1,40}$", "a name of at most 40 characters"},
            {"retention_days", "^([1-9][0-9]{0,3})$", "days (1-9999)"},
            {"fanout_max", "^([1-9][0-9]{0,5}|1000000)$", "a number from 1 to 1000000"},
            {"daily_cap", "^([1-9]|[1-4][0-9]|50)$", "a number from 1 to 50"},
            {"quiet_start", "^([01][0-9]|2[0-3]):[0-5][0-9]$", "a time HH:MM"},
            {"quiet_end", "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", "a time HH:MM (24:00 = midnight at the end of the day)"},
            {"quiet_sundays", "^(yes|no)$", "yes or no"},
            {"quiet_holidays", "^(yes|no)$", "yes or no"},
            {"catchup_min", "^([0-9]{1,4}|100[0-7][0-9]|10080)$", "minutes (0-10080)"},
        };
        if (argc < 3)
            die(2, "centre set: expected CENTRE KEY=VALUE…");
        json_t *patch = json_object();
        for (int i = 2; i < argc; i++) {
            const char *eq = strchr(argv[i], '=');
            size_t k = 0;
            if (eq)
                while (k < sizeof known / sizeof known[0] &&
                       (strlen(known[k].key) != (size_t)(eq - argv[i]) ||
                        strncmp(known[k].key, argv[i], (size_t)(eq - argv[i])) != 0))
                    k++;
            if (!eq || k == sizeof known / sizeof known[0])
                die(2, "centre set: '%s' is not KEY=VALUE with a known key (see README)", argv[i]);
            regex_t re;
            int bad = regcomp(&re, known[k].pattern, REG_EXTENDED | REG_NOSUB) != 0 ||
                      regexec(&re, eq + 1, 0, NULL, 0) != 0;
            regfree(&re);
            if (bad)
                die(2, "centre set: %s must be %s", known[k].key, known[k].what);
            json_object_set_new(patch, known[k].key, json_string(eq + 1));
        }
        char *pj = json_dumps(patch, JSON_COMPACT);
        json_decref(patch);
        const char *pp[2] = {argv[1], pj};
        PGresult *r = q(pg,
                        "UPDATE centres SET settings = settings || $2::jsonb"
                        " WHERE name = $1 OR id::text = $1 RETURNING settings::text",
                        2, pp);
        free(pj);
        if (PQntuples(r) != 1)
            die(3, "no centre named '%s'", argv[1]);
        printf("%s\n", PQgetvalue(r, 0, 0));
        PQclear(r);
    } else if (!strcmp(argv[0], "seed")) {
        if (argc != 2)
            die(2, "centre seed: expected CENTRE");
        char id[24];
        centre_id(pg, argv[1], id);
        const char *pid[1] = {id};
        PQclear(q(pg, "SELECT gw_demo_seed($1::bigint)", 1, pid));
        printf("centre '%s' seeded: check-in codes 1234 (Atelier cuisine) and 5678 (Accueil café,"
               " anonymous), items 12 15 20, job offers 1-4, alert topics SORTIE ATELIER\n",
               argv[1]);
    } else {
        die(2, "centre: unknown subcommand '%s'", argv[0]);
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

static int cmd_template(int argc, char **argv)
{
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    if (argc == 2 && !strcmp(argv[0], "list")) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "SELECT d.name, CASE WHEN o.body IS NULL THEN 'default' ELSE 'centre' END,"
                        " replace(coalesce(o.body, d.body), E'\\n', ' | ')"
                        " FROM centres c JOIN templates d ON d.centre_id IS NULL AND d.language = 'fr'"
                        " LEFT JOIN templates o ON o.centre_id = c.id AND o.language = 'fr'"
                        "  AND o.name = d.name"
                        " WHERE c.name = $1 OR c.id::text = $1 ORDER BY d.name",
                        1, p);
        if (PQntuples(r) == 0)
            die(3, "no centre named '%s'", argv[1]);
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-24s %-8s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2));
        PQclear(r);
    } else if (argc == 4 && !strcmp(argv[0], "set")) {
        const char *p[3] = {argv[1], argv[2], argv[3]};
        PGresult *r = q(pg, "SELECT 1 FROM templates WHERE centre_id IS NULL AND name = $1", 1,
                        p + 1);
        if (PQntuples(r) == 0)
            die(3, "no template named '%s' (gatewayctl template list CENTRE)", argv[2]);
        PQclear(r);
        if (!strcmp(argv[3], "-"))
            r = q(pg,
                  "DELETE FROM templates t USING centres c WHERE t.centre_id = c.id"
                  " AND (c.name = $1 OR c.id::text = $1) AND t.name = $2 AND $3 = '-'",
                  3, p);
        else
            r = q(pg,
                  "INSERT INTO templates (centre_id, language, name, body)"
                  " SELECT c.id, 'fr', $2, $3 FROM centres c WHERE c.name = $1 OR c.id::text = $1"
                  " ON CONFLICT (centre_id, language, name) DO UPDATE SET body = EXCLUDED.body",
                  3, p);
        printf("%s template '%s' %s\n", argv[1], argv[2],
               !strcmp(argv[3], "-") ? "back to the default" : "set");
        PQclear(r);
    } else {
        die(2, "template: expected list CENTRE, or set CENTRE NAME TEXT");
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

static int cmd_key(int argc, char **argv)
{
    if (argc < 2)
        die(2, "key: expected create CENTRE, check KEY or revoke PREFIX");
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    int rc = 0;
    if (!strcmp(argv[0], "create")) {
        const char *label = "";
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--label") && i + 1 < argc)
                label = argv[++i];
            else
                die(2, "key create: unexpected argument '%s'", argv[i]);
        }
        char centre[24];
        centre_id(pg, argv[1], centre);
        char key[GW_KEY_LEN], prefix[GW_KEY_PREFIX_LEN], hex[2 * GW_KEY_HASH_LEN + 3];
        uint8_t hash[GW_KEY_HASH_LEN];
        gw_auth_key_generate(key, prefix, hash);
        hex[0] = '\\';
        hex[1] = 'x';
        sodium_bin2hex(hex + 2, sizeof hex - 2, hash, sizeof hash);
        const char *p[4] = {centre, prefix, hex, label};
        PQclear(q(pg,
                  "INSERT INTO api_keys (centre_id, prefix, key_hash, label)"
                  " VALUES ($1, $2, $3::bytea, $4)",
                  4, p));
        fprintf(stderr, "API key %s created for centre %s; it is shown only now:\n", prefix,
                centre);
        printf("%s\n", key);
        sodium_memzero(key, sizeof key);
    } else if (!strcmp(argv[0], "check")) {
        char prefix[GW_KEY_PREFIX_LEN], hex[2 * GW_KEY_HASH_LEN + 1];
        uint8_t hash[GW_KEY_HASH_LEN];
        if (gw_auth_key_parse(argv[1], prefix, hash) != GW_OK) {
            fprintf(stderr, "gatewayctl: that is not an API key (psk_…)\n");
            rc = 1;
        } else {
            sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
            const char *p[2] = {prefix, hex};
            PGresult *r = q(pg,
                            "SELECT c.name FROM api_keys k JOIN centres c ON c.id = k.centre_id"
                            " WHERE k.prefix = $1 AND k.key_hash = decode($2, 'hex')"
                            " AND k.revoked_at IS NULL",
                            2, p);
            if (PQntuples(r) == 1) {
                printf("valid key for centre '%s'\n", PQgetvalue(r, 0, 0));
            } else {
                fprintf(stderr, "gatewayctl: unknown or revoked key\n");
                rc = 1;
            }
            PQclear(r);
        }
    } else if (!strcmp(argv[0], "revoke")) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1"
                        " AND revoked_at IS NULL RETURNING id",
                        1, p);
        if (PQntuples(r) == 0) {
            fprintf(stderr, "gatewayctl: no active key with prefix %s\n", argv[1]);
            rc = 3;
        } else {
            printf("revoked %s (takes effect within a minute on running daemons)\n", argv[1]);
        }
        PQclear(r);
    } else {
        die(2, "key: unknown subcommand '%s'", argv[0]);
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return rc;
}

/* Partner organisations (signed webhooks, gw_partners.c): the secret is kept as given, since
 * the daemon needs it to check HMAC signatures; it is printed once, at creation. */
/* "YYYY-MM-DD HH:MM" */
static int valid_local(const char *t)
{
    struct sched_local l;
    int64_t utc;
    return t && sscanf(t, "%d-%d-%d %d:%d", &l.year, &l.month, &l.day, &l.hour, &l.minute) == 5 &&
           sched_local_to_utc("UTC", &l, &utc) == 0;
}

/* --offset 1d@18:00 (the day before at 18:00), 1d (the day before, same time), 2h, 30m */
static json_t *parse_offset(const char *o)
{
    char *end;
    long n = strtol(o, &end, 10);
    if (end == o || n < 0 || n > 10000)
        return NULL;
    if (*end == 'd') {
        json_t *j = json_pack("{s:I}", "days", (json_int_t)n);
        if (end[1] == '@') {
            int h, m;
            char tail;
            if (sscanf(end + 2, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 ||
                m > 59) {
                json_decref(j);
                return NULL;
            }
            char hm[8];
            snprintf(hm, sizeof hm, "%02d:%02d", h, m);
            json_object_set_new(j, "time", json_string(hm));
        } else if (end[1]) {
            json_decref(j);
            return NULL;
        }
        return j;
    }
    if ((*end == 'h' || *end == 'm') && !end[1])
        return json_pack("{s:I}", "minutes", (json_int_t)(*end == 'h' ? n * 60 : n));
    return NULL;
}

/* staff create CENTRE LOGIN [--role R] [--name N] [--password-file F]; staff password LOGIN
 * [--password-file F]; staff disable LOGIN; staff list CENTRE */
static int cmd_staff(int argc, char **argv)
{
    if (argc < 2)
        die(2, "staff: expected create CENTRE LOGIN …, password LOGIN, disable LOGIN or list CENTRE");
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    const char *sub = argv[0];
    if (!strcmp(sub, "list")) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "SELECT st.login, st.role, st.name, CASE WHEN st.disabled_at IS NULL THEN"
                        " 'active' ELSE 'disabled' END FROM staff st JOIN centres c ON c.id ="
                        " st.centre_id WHERE c.name = $1 OR c.id::text = $1 ORDER BY st.login",
                        1, p);
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-24s %-9s %-9s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 3), PQgetvalue(r, i, 2));
        PQclear(r);
        PQfinish(pg);
        gw_config_free(cfg);
        return 0;
    }
    if (!strcmp(sub, "disable")) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "WITH s AS (UPDATE staff SET disabled_at = coalesce(disabled_at, now())"
                        " WHERE login = $1 RETURNING id)"
                        " UPDATE admin_sessions SET revoked_at = now() FROM s"
                        " WHERE admin_sessions.staff_id = s.id AND revoked_at IS NULL",
                        1, p);
        PQclear(r);
        r = q(pg, "SELECT 1 FROM staff WHERE login = $1", 1, p);
        if (PQntuples(r) == 0)
            die(3, "no staff account '%s'", argv[1]);
        PQclear(r);
        printf("staff account '%s' disabled; its sessions are ended\n", argv[1]);
        PQfinish(pg);
        gw_config_free(cfg);
        return 0;
    }
    const char *centre = NULL, *login = NULL, *role = "referent", *name = "", *pwfile = NULL;
    int k = 1;
    if (!strcmp(sub, "create"))
        centre = argv[k++];
    else if (strcmp(sub, "password"))
        die(2, "staff: unknown subcommand '%s'", sub);
    login = k < argc ? argv[k++] : NULL;
    for (; k < argc; k++) {
        if (!strcmp(argv[k], "--role") && k + 1 < argc)
            role = argv[++k];
        else if (!strcmp(argv[k], "--name") && k + 1 < argc)
            name = argv[++k];
        else if (!strcmp(argv[k], "--password-file") && k + 1 < argc)
            pwfile = argv[++k];
        else
            die(2, "staff: unexpected argument '%s'", argv[k]);
    }
    if (!login || !*login || strlen(login) > 60)
        die(2, "staff: a login of 1 to 60 characters is needed");
    if (strcmp(role, "admin") && strcmp(role, "referent") && strcmp(role, "staff") &&
        strcmp(role, "viewer"))
        die(2, "staff: --role is admin, referent, staff or viewer");
    char pw[257] = "";
    int generated = 0;
    if (pwfile) {
        FILE *f = fopen(pwfile, "r");
        if (!f || !fgets(pw, sizeof pw, f))
            die(1, "cannot read the password from %s", pwfile);
        fclose(f);
        pw[strcspn(pw, "\r\n")] = '\0';
        if (strlen(pw) < 10)
            die(2, "staff: the password must have at least 10 characters");
    } else {
        unsigned char raw[12];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2base64(pw, sizeof pw, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        generated = 1;
    }
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        die(1, "out of memory while hashing the password");
    PGresult *r;
    if (!strcmp(sub, "create")) {
        const char *p[5] = {centre, login, role, name, hash};
        r = PQexecParams(pg,
                         "INSERT INTO staff (centre_id, login, role, name, password_hash)"
                         " SELECT c.id, $2, $3, $4, $5 FROM centres c"
                         " WHERE c.name = $1 OR c.id::text = $1 RETURNING id",
                         5, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            if (strstr(PQresultErrorMessage(r), "staff_login_key"))
                die(1, "the login '%s' is already taken", login);
            die(1, "database error: %s", PQresultErrorMessage(r));
        }
        if (PQntuples(r) != 1)
            die(3, "no centre named '%s'", centre);
    } else {
        const char *p[2] = {login, hash};
        r = q(pg,
              "WITH s AS (UPDATE staff SET password_hash = $2 WHERE login = $1 RETURNING id)"
              " UPDATE admin_sessions SET revoked_at = now() FROM s"
              " WHERE admin_sessions.staff_id = s.id AND revoked_at IS NULL RETURNING 1",
              2, p);
        PQclear(r);
        r = q(pg, "SELECT id FROM staff WHERE login = $1", 1, p);
        if (PQntuples(r) != 1)
            die(3, "no staff account '%s'", login);
    }
    PQclear(r);
    if (generated)
        printf("login %s\npassword %s\n(shown once: give it to %s)\n", login, pw, login);
    else
        printf("staff account '%s' %s\n", login, !strcmp(sub, "create") ? "created" : "updated");
    sodium_memzero(pw, sizeof pw);
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

/* resident export CENTRE PHONE | resident erase CENTRE PHONE --yes | audit export CENTRE
 * [--since TIME] — data protection (RGPD), on the database. */
static int cmd_rgpd(const char *cmd, int argc, char **argv)
{
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    if (!strcmp(cmd, "audit")) {
        if (argc < 2 || strcmp(argv[0], "export"))
            die(2, "audit: expected export CENTRE [--since TIME]");
        const char *since = NULL;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--since") && i + 1 < argc)
                since = argv[++i];
            else
                die(2, "audit export: unexpected argument '%s'", argv[i]);
        }
        const char *p[2] = {argv[1], since};
        PGresult *r = q(pg,
                        "SELECT json_build_object('at', a.at, 'login', a.login, 'action', a.action,"
                        " 'object', a.object, 'detail', a.detail)::text"
                        " FROM audit_log a JOIN centres c ON c.id = a.centre_id"
                        " WHERE (c.name = $1 OR c.id::text = $1)"
                        "   AND ($2::timestamptz IS NULL OR a.at >= $2::timestamptz) ORDER BY a.id",
                        2, p);
        for (int i = 0; i < PQntuples(r); i++)
            printf("%s\n", PQgetvalue(r, i, 0));
        PQclear(r);
    } else {
        if (argc < 3 || (strcmp(argv[0], "export") && strcmp(argv[0], "erase")))
            die(2, "resident: expected export CENTRE PHONE, or erase CENTRE PHONE --yes");
        char e164[24];
        if (prov_phone_normalize(argv[2], cfg->default_region, e164, sizeof e164) != 0)
            snprintf(e164, sizeof e164, "%s", argv[2]); /* a short code or a sender name */
        const char *p[3] = {argv[1], e164, "gatewayctl"};
        char cid[24];
        centre_id(pg, argv[1], cid);
        p[0] = cid;
        PGresult *r;
        if (!strcmp(argv[0], "export")) {
            r = q(pg, "SELECT jsonb_pretty(gw_resident_export($1::bigint, $2))", 2, p);
            printf("%s\n", PQgetvalue(r, 0, 0));
        } else {
            if (argc < 4 || strcmp(argv[3], "--yes"))
                die(2, "resident erase removes this person's data for good: add --yes");
            r = q(pg, "SELECT gw_resident_erase($1::bigint, $2, $3)::text", 3, p);
            printf("erased %s at centre %s: %s\n", e164, argv[1], PQgetvalue(r, 0, 0));
        }
        PQclear(r);
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

static int cmd_reminder(int argc, char **argv)
{
    if (argc < 1)
        die(2, "reminder: expected create, list or cancel (see --help)");
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    if (!strcmp(argv[0], "create")) {
        const char *centre = NULL, *phone = NULL, *text = NULL, *at = NULL, *rrule = NULL,
                   *start = NULL, *appt = NULL, *place = NULL, *by = "gatewayctl";
        int urgent = 0, ack = 0, followup = 180;
        json_t *offsets = json_array();
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (!strcmp(a, "--urgent"))
                urgent = 1;
            else if (!strcmp(a, "--ack"))
                ack = 1;
            else if (v && !strcmp(a, "--text"))
                text = v, i++;
            else if (v && !strcmp(a, "--at"))
                at = v, i++;
            else if (v && !strcmp(a, "--rrule"))
                rrule = v, i++;
            else if (v && !strcmp(a, "--start"))
                start = v, i++;
            else if (v && !strcmp(a, "--appointment"))
                appt = v, i++;
            else if (v && !strcmp(a, "--place"))
                place = v, i++;
            else if (v && !strcmp(a, "--by"))
                by = v, i++;
            else if (v && !strcmp(a, "--followup-min")) {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 5 || n > 10080)
                    die(2, "reminder create: --followup-min must be 5 to 10080");
                followup = (int)n;
                i++;
            } else if (v && !strcmp(a, "--offset")) {
                json_t *o = parse_offset(v);
                if (!o)
                    die(2, "reminder create: --offset '%s': expected 1d, 1d@18:00, 2h or 30m", v);
                json_array_append_new(offsets, o);
                i++;
            } else if (!centre && a[0] != '-')
                centre = a;
            else if (!phone && a[0] != '-')
                phone = a;
            else
                die(2, "reminder create: unexpected argument '%s'", a);
        }
        if (!centre || !phone || !text || !*text)
            die(2, "reminder create: expected CENTRE PHONE --text TEXT and a schedule");
        const char *schedule = at ? "once" : rrule ? "rrule" : appt ? "appointment" : NULL;
        if (!schedule || (!!at + !!rrule + !!appt) != 1)
            die(2, "reminder create: give exactly one of --at TIME, --rrule RULE --start TIME, "
                   "--appointment TIME --offset …");
        const char *local = at ? at : rrule ? start : appt;
        if (!valid_local(local))
            die(2, "reminder create: times are local \"YYYY-MM-DD HH:MM\" (got '%s')",
                local ? local : "nothing");
        char err[200];
        if (rrule && sched_rrule_check(rrule, err, sizeof err) != 0)
            die(2, "reminder create: --rrule: %s", err);
        if (appt && json_array_size(offsets) == 0)
            die(2, "reminder create: --appointment needs at least one --offset");
        char e164[24];
        if (prov_phone_normalize(phone, cfg->default_region, e164, sizeof e164) != 0)
            die(2, "reminder create: '%s' is not a mobile number", phone);
        if (at) {
            const char *pp[2] = {centre, at};
            PGresult *past = q(pg,
                               "SELECT ($2::timestamp AT TIME ZONE c.timezone) <"
                               " date_trunc('minute', now()) FROM centres c"
                               " WHERE c.name = $1 OR c.id::text = $1",
                               2, pp);
            if (PQntuples(past) == 1 && PQgetvalue(past, 0, 0)[0] == 't')
                die(2, "reminder create: --at %s has already passed (centre time)", at);
            PQclear(past);
        }
        char fu[12];
        snprintf(fu, sizeof fu, "%d", followup);
        char *offs = json_dumps(offsets, JSON_COMPACT);
        const char *p[13] = {centre, e164, by, text, schedule,
                             at ? at : rrule ? start : NULL, rrule, appt, place,
                             appt ? offs : NULL, urgent ? "t" : "f", ack ? "t" : "f", fu};
        PGresult *r = q(pg,
                        "SELECT gw_reminder_create(c.id, $2, $3, $4, $5, $6::timestamp, $7,"
                        " $8::timestamp, $9, $10::jsonb, $11::boolean, $12::boolean, $13::int)"
                        " FROM centres c WHERE c.name = $1 OR c.id::text = $1",
                        13, p);
        free(offs);
        if (PQntuples(r) != 1)
            die(3, "no centre named '%s'", centre);
        printf("reminder %s created for %s (%s); the scheduler computes its first occurrence\n",
               PQgetvalue(r, 0, 0), e164, schedule);
        PQclear(r);
        json_decref(offsets);
    } else if (!strcmp(argv[0], "list") && argc >= 2) {
        const char *p[2] = {argv[1], argc > 2 ? argv[2] : NULL};
        char e164[24];
        if (p[1]) {
            if (prov_phone_normalize(p[1], cfg->default_region, e164, sizeof e164) != 0)
                die(2, "reminder list: '%s' is not a mobile number", p[1]);
            p[1] = e164;
        }
        PGresult *r = q(pg,
                        "SELECT r.id, ct.phone, r.schedule, r.status,"
                        " coalesce(to_char(r.next_at AT TIME ZONE c.timezone, 'YYYY-MM-DD HH24:MI'),"
                        " '-'), left(r.body, 50)"
                        " FROM reminders r JOIN centres c ON c.id = r.centre_id"
                        " JOIN contacts ct ON ct.id = r.contact_id"
                        " WHERE (c.name = $1 OR c.id::text = $1) AND ($2::text IS NULL OR ct.phone = $2)"
                        " ORDER BY r.next_at NULLS LAST, r.id LIMIT 500",
                        2, p);
        printf("%-6s %-14s %-12s %-10s %-17s %s\n", "id", "phone", "schedule", "status", "next",
               "text");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-6s %-14s %-12s %-10s %-17s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                   PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                   PQgetvalue(r, i, 5));
        PQclear(r);
    } else if (!strcmp(argv[0], "cancel") && argc == 2) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg, "SELECT gw_reminder_reset($1::bigint, false)", 1, p);
        int ok = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (!ok)
            die(3, "no reminder %s", argv[1]);
        printf("reminder %s cancelled, with its occurrences not sent yet\n", argv[1]);
    } else {
        die(2, "reminder: expected create CENTRE PHONE …, list CENTRE [PHONE], or cancel ID");
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

static int cmd_partner(int argc, char **argv)
{
    if (argc < 2)
        die(2, "partner: expected create CENTRE NAME [--topics T,…] [--jobs] [--rate N], "
               "list CENTRE or revoke KEYID");
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    int rc = 0;
    if (!strcmp(argv[0], "create")) {
        if (argc < 3)
            die(2, "partner create: expected CENTRE NAME [--topics T,…] [--jobs] [--rate N]");
        const char *topics = "", *rate = "60";
        int jobs = 0;
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--topics") && i + 1 < argc)
                topics = argv[++i];
            else if (!strcmp(argv[i], "--jobs"))
                jobs = 1;
            else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
                rate = argv[++i];
            else
                die(2, "partner create: unexpected argument '%s'", argv[i]);
        }
        int64_t rv;
        if (gw_parse_i64(rate, 1, 100000, &rv) != GW_OK)
            die(2, "partner create: --rate is requests a minute, from 1 to 100000");
        if (!*argv[2] || strlen(argv[2]) > 100)
            die(2, "partner create: the name must be 1 to 100 characters");
        /* "sortie, Atelier" → ["sortie","atelier"] */
        json_t *list = json_array();
        for (const char *s = topics; *s;) {
            const char *end = strchr(s, ',');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            char t[128];
            while (n && *s == ' ')
                s++, n--;
            while (n && s[n - 1] == ' ')
                n--;
            if (n >= sizeof t)
                die(2, "partner create: topic name too long");
            memcpy(t, s, n);
            t[n] = '\0';
            for (char *x = t; *x; x++)
                if (*x >= 'A' && *x <= 'Z')
                    *x = (char)(*x - 'A' + 'a');
            if (n)
                json_array_append_new(list, json_string(t));
            s = end ? end + 1 : s + strlen(s);
        }
        char *tj = json_dumps(list, JSON_COMPACT);
        json_decref(list);
        char centre[24];
        centre_id(pg, argv[1], centre);
        PGresult *r;
        const char *pt[2] = {centre, tj};
        r = q(pg,
              "SELECT t FROM json_array_elements_text($2::json) t WHERE NOT EXISTS"
              " (SELECT 1 FROM topics WHERE centre_id = $1 AND kind = 'alert' AND name = t)",
              2, pt);
        if (PQntuples(r) > 0)
            die(1, "centre '%s' has no alert topic '%s'", argv[1], PQgetvalue(r, 0, 0));
        PQclear(r);
        const char *pn[2] = {centre, argv[2]};
        r = q(pg, "SELECT 1 FROM partners WHERE centre_id = $1 AND name = $2", 2, pn);
        if (PQntuples(r) > 0)
            die(1, "centre '%s' already has a partner named '%s' (partner list)", argv[1],
                argv[2]);
        PQclear(r);
        uint8_t kid[8], sec[32];
        char key_id[3 + 2 * sizeof kid + 1], secret[2 * sizeof sec + 1];
        randombytes_buf(kid, sizeof kid);
        randombytes_buf(sec, sizeof sec);
        memcpy(key_id, "pk_", 3);
        sodium_bin2hex(key_id + 3, sizeof key_id - 3, kid, sizeof kid);
        sodium_bin2hex(secret, sizeof secret, sec, sizeof sec);
        sodium_memzero(sec, sizeof sec);
        char rs[24];
        snprintf(rs, sizeof rs, "%lld", (long long)rv);
        const char *pp[7] = {centre, argv[2], key_id, secret, tj, jobs ? "true" : "false", rs};
        PQclear(q(pg,
                  "INSERT INTO partners (centre_id, name, key_id, secret, topics, may_post_jobs,"
                  " rate_per_min) VALUES ($1, $2, $3, $4,"
                  " ARRAY(SELECT json_array_elements_text($5::json)), $6, $7)",
                  7, pp));
        free(tj);
        fprintf(stderr, "partner '%s' created for centre %s; the secret is shown only now:\n",
                argv[2], centre);
        printf("key_id %s\nsecret %s\n", key_id, secret);
        sodium_memzero(secret, sizeof secret);
    } else if (!strcmp(argv[0], "list")) {
        char centre[24];
        centre_id(pg, argv[1], centre);
        PGresult *r = q(pg,
              "SELECT p.key_id, p.name, coalesce(nullif(array_to_string(p.topics, ','), ''), '-'),"
              " CASE WHEN p.may_post_jobs THEN 'yes' ELSE 'no' END, p.rate_per_min,"
              " to_char(p.created_at AT TIME ZONE c.timezone, 'YYYY-MM-DD'),"
              " coalesce(to_char(p.revoked_at AT TIME ZONE c.timezone, 'YYYY-MM-DD'), '-')"
              " FROM partners p JOIN centres c ON c.id = p.centre_id"
              " WHERE c.id = $1::bigint ORDER BY p.id",
              1, (const char *const[]){centre});
        printf("%-20s %-24s %-24s %-5s %-6s %-10s %s\n", "key id", "name", "topics", "jobs",
               "rate", "created", "revoked");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-20s %-24s %-24s %-5s %-6s %-10s %s\n", PQgetvalue(r, i, 0),
                   PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                   PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
        PQclear(r);
    } else if (!strcmp(argv[0], "revoke")) {
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "UPDATE partners SET revoked_at = now() WHERE key_id = $1"
                        " AND revoked_at IS NULL RETURNING name",
                        1, p);
        if (PQntuples(r) == 0) {
            fprintf(stderr, "gatewayctl: no active partner with key id %s\n", argv[1]);
            rc = 3;
        } else {
            printf("revoked %s (%s); takes effect within a minute on running daemons\n", argv[1],
                   PQgetvalue(r, 0, 0));
        }
        PQclear(r);
    } else {
        die(2, "partner: unknown subcommand '%s'", argv[0]);
    }
    PQfinish(pg);
    gw_config_free(cfg);
    return rc;
}

struct buf {
    char *data;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    char *d = realloc(b->data, b->len + n + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, ptr, n);
    b->data = d;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* One HTTP request to the daemon; returns the status, body in *out (caller frees). */
static long http(const char *method, const char *path, const char *body, char **out)
{
    const char *base = opt_url ? opt_url : "http://127.0.0.1:8080";
    char url[1024];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *c = curl_easy_init();
    struct buf b = {0};
    struct curl_slist *h = NULL;
    char auth[256];
    if (opt_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", opt_key);
        h = curl_slist_append(h, auth);
    }
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc != CURLE_OK)
        die(1, "cannot reach the daemon at %s: %s", base, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    *out = b.data ? b.data : strdup("");
    return status;
}

static int cmd_status(void)
{
    char *body;
    long st = http("GET", "/healthz", NULL, &body);
    json_t *j = json_loads(body, 0, NULL);
    if (!j)
        die(1, "unexpected answer (HTTP %ld): %s", st, body);
    printf("gatewayd %s on node %s, up %llds\n",
           json_string_value(json_object_get(j, "version")),
           json_string_value(json_object_get(j, "node")),
           (long long)json_integer_value(json_object_get(j, "uptime_s")));
    printf("database: %s\n", json_string_value(json_object_get(j, "db")));
    const char *name;
    json_t *r;
    json_object_foreach(json_object_get(j, "routes"), name, r)
    {
        printf("route %-12s driver %-8s state %-6s in flight %lld, queued %lld (due %lld)",
               name, json_string_value(json_object_get(r, "driver")),
               json_string_value(json_object_get(r, "state")),
               (long long)json_integer_value(json_object_get(r, "in_flight")),
               (long long)json_integer_value(json_object_get(r, "queued")),
               (long long)json_integer_value(json_object_get(r, "due")));
        const char *circuit = json_string_value(json_object_get(r, "circuit"));
        if (circuit && strcmp(circuit, "closed") != 0)
            printf(", circuit %s", circuit);
        json_t *credit = json_object_get(r, "credit_euros");
        if (json_is_number(credit))
            printf(", credit %.2f EUR", json_number_value(credit));
        json_t *signal = json_object_get(r, "signal_percent");
        if (json_is_number(signal))
            printf(", signal %d%%", (int)json_number_value(signal));
        const char *net = json_string_value(json_object_get(r, "network_name"));
        if (net)
            printf(", network %s", net);
        const char *le = json_string_value(json_object_get(r, "last_error"));
        if (le)
            printf(", last error: %s", le);
        printf("\n");
    }
    json_decref(j);
    free(body);
    return st == 200 ? 0 : 1;
}

static const char *ops_token(void)
{
    if (!opt_key && opt_config) {
        struct gw_config *cfg = load_config();
        if (cfg->ops_token)
            opt_key = strdup(cfg->ops_token);
        gw_config_free(cfg);
    }
    return opt_key;
}

static int cmd_ussd(int argc, char **argv)
{
    if (argc != 2)
        die(2, "ussd: expected ROUTE CODE, e.g. gatewayctl ussd modem '*100#'");
    if (!ops_token())
        die(2, "ussd needs the operator token: --key TOKEN, or --config FILE with ops_token");
    json_t *o = json_pack("{s:s,s:s}", "route", argv[0], "code", argv[1]);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *out;
    long st = http("POST", "/ops/ussd", body, &out);
    free(body);
    json_t *j = json_loads(out, 0, NULL);
    int rc = 1;
    if (st == 200 && j) {
        printf("%s\n", json_string_value(json_object_get(j, "reply")));
        rc = 0;
    } else {
        const char *msg = j ? json_string_value(json_object_get(json_object_get(j, "error"),
                                                                "message"))
                            : NULL;
        fprintf(stderr, "gatewayctl: %s (HTTP %ld)\n", msg ? msg : out, st);
        rc = st == 501 ? 4 : 1;
    }
    json_decref(j);
    free(out);
    return rc;
}

static int cmd_loan(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[0], "list")) {
        struct gw_config *cfg = load_config();
        PGconn *pg = db_connect(cfg);
        const char *p[1] = {argv[1]};
        PGresult *r = q(pg,
                        "SELECT l.id, l.status, upper(i.code), i.name, ct.phone,"
                        " to_char(l.requested_at AT TIME ZONE c.timezone, 'YYYY-MM-DD HH24:MI'),"
                        " coalesce(to_char(l.due_at AT TIME ZONE c.timezone, 'YYYY-MM-DD'), '-')"
                        " FROM loans l JOIN items i ON i.id = l.item_id"
                        " JOIN contacts ct ON ct.id = l.contact_id JOIN centres c ON c.id = l.centre_id"
                        " WHERE (c.name = $1 OR c.id::text = $1)"
                        "   AND l.status IN ('requested', 'confirmed', 'return_requested')"
                        " ORDER BY l.id",
                        1, p);
        printf("%-6s %-17s %-6s %-20s %-14s %-17s %s\n", "id", "status", "item", "name", "phone",
               "requested", "due");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-6s %-17s %-6s %-20s %-14s %-17s %s\n", PQgetvalue(r, i, 0),
                   PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                   PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
        PQclear(r);
        PQfinish(pg);
        gw_config_free(cfg);
        return 0;
    }
    if (argc < 2 || (strcmp(argv[0], "confirm") && strcmp(argv[0], "refuse") &&
                     strcmp(argv[0], "returned")))
        die(2, "loan: expected list CENTRE, or confirm|refuse|returned ID [--days N]");
    char *end;
    long long id = strtoll(argv[1], &end, 10);
    if (*end || id <= 0)
        die(2, "loan: '%s' is not a loan id", argv[1]);
    const char *days = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--days") && i + 1 < argc)
            days = argv[++i];
        else
            die(2, "loan: unexpected argument '%s'", argv[i]);
    }
    if (!ops_token())
        die(2, "loan needs the operator token: --key TOKEN, or --config FILE with ops_token");
    char path[96];
    snprintf(path, sizeof path, "/ops/loans/%lld/%s%s%s", id, argv[0], days ? "?days=" : "",
             days ? days : "");
    char *out;
    long st = http("POST", path, "", &out);
    json_t *j = json_loads(out, 0, NULL);
    int rc = 1;
    if (st == 200 && j) {
        json_t *sms = json_array_get(json_object_get(j, "sms"), 0);
        if (json_is_true(json_object_get(j, "resident_opted_out")))
            printf("loan %lld: %s done; no SMS: the resident opted out (STOP)\n", id, argv[0]);
        else
            printf("loan %lld: %s done; SMS to the resident: %s\n", id, argv[0],
                   json_string_value(json_object_get(sms, "text")));
        rc = 0;
    } else {
        const char *msg = j ? json_string_value(json_object_get(json_object_get(j, "error"),
                                                                "message"))
                            : NULL;
        fprintf(stderr, "gatewayctl: %s (HTTP %ld)\n", msg ? msg : out, st);
        rc = st == 404 ? 3 : 1;
    }
    json_decref(j);
    free(out);
    return rc;
}

static int cmd_send(int argc, char **argv)
{
    if (!opt_key)
        die(2, "send needs --key KEY (a centre API key)");
    const char *to = NULL, *text = NULL, *at = NULL, *idem = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--at") && i + 1 < argc)
            at = argv[++i];
        else if (!strcmp(argv[i], "--idempotency-key") && i + 1 < argc)
            idem = argv[++i];
        else if (!to)
            to = argv[i];
        else if (!text)
            text = argv[i];
        else
            die(2, "send: unexpected argument '%s'", argv[i]);
    }
    if (!to || !text)
        die(2, "send: expected TO and TEXT");
    json_t *o = json_pack("{s:s,s:s}", "to", to, "text", text);
    if (at)
        json_object_set_new(o, "send_at", json_string(at));
    if (idem)
        json_object_set_new(o, "idempotency_key", json_string(idem));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *out;
    long st = http("POST", "/api/v1/messages", body, &out);
    free(body);
    printf("%s", out);
    free(out);
    if (st == 202)
        return 0;
    fprintf(stderr, "gatewayctl: the daemon answered HTTP %ld\n", st);
    return 1;
}

/* ---- tail: follow GET /ops/events (Server-Sent Events), reconnecting by itself. */

static volatile sig_atomic_t tail_stop;

static void on_tail_signal(int sig)
{
    (void)sig;
    tail_stop = 1;
}

struct sse {
    CURL *curl;
    int json;
    long status;        /* of the current connection; 0 until the first bytes */
    int connected;      /* it answered 200 */
    struct buf line;    /* the line being read */
    struct buf data;    /* the data lines of the event being read */
    char id[24], event[32];
    long long last_id;  /* the last event id seen; -1: none yet */
    struct buf errbody; /* the body of an answer other than 200 */
    const char *url;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
    char *d = realloc(b->data, b->len + n + 1);
    if (!d)
        die(1, "out of memory");
    memcpy(d + b->len, p, n);
    b->data = d;
    b->len += n;
    b->data[b->len] = '\0';
}

/* One readable line: `2026-11-30 10:00:01 centre "Les Oliviers" route sim +33 6** ** ** 78
 * delivered (1 segment)`, then the error or detail when there is one. */
static void tail_print_readable(const char *data)
{
    json_t *j = json_loads(data, 0, NULL);
    if (!j) {
        printf("%s\n", data);
        return;
    }
    char when[32] = "?";
    int64_t t;
    const char *at = json_string_value(json_object_get(j, "at"));
    if (at && gw_parse_rfc3339(at, &t) == GW_OK) {
        time_t tt = (time_t)t;
        struct tm tm;
        if (localtime_r(&tt, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    }
    const char *centre = json_string_value(json_object_get(j, "centre"));
    const char *route = json_string_value(json_object_get(j, "route"));
    const char *phone = json_string_value(json_object_get(j, "phone"));
    const char *state = json_string_value(json_object_get(j, "state"));
    const char *error = json_string_value(json_object_get(j, "error"));
    const char *detail = json_string_value(json_object_get(j, "detail"));
    long long seg = (long long)json_integer_value(json_object_get(j, "segments"));
    printf("%s centre \"%s\" route %s %s %s (%lld segment%s)", when, centre ? centre : "?",
           route ? route : "-", phone ? phone : "***", state ? state : "?", seg,
           seg == 1 ? "" : "s");
    if (error)
        printf(", error: %s", error);
    else if (detail)
        printf(", %s", detail);
    printf("\n");
    json_decref(j);
}

static void tail_dispatch(struct sse *s)
{
    if (s->id[0]) {
        char *end;
        long long v = strtoll(s->id, &end, 10);
        if (!*end && v >= 0)
            s->last_id = v;
    }
    if (s->data.len && (!s->event[0] || !strcmp(s->event, "message"))) {
        if (s->data.data[s->data.len - 1] == '\n')
            s->data.data[--s->data.len] = '\0';
        if (s->json)
            printf("%s\n", s->data.data);
        else
            tail_print_readable(s->data.data);
        fflush(stdout);
    }
    s->data.len = 0;
    if (s->data.data)
        s->data.data[0] = '\0';
    s->id[0] = s->event[0] = '\0';
}

static void tail_line(struct sse *s, char *line)
{
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
        line[--n] = '\0';
    if (n == 0) {
        tail_dispatch(s);
        return;
    }
    if (line[0] == ':')
        return; /* a comment (keepalive) */
    char *value = strchr(line, ':');
    if (value) {
        *value++ = '\0';
        if (*value == ' ')
            value++;
    } else {
        value = line + n;
    }
    if (!strcmp(line, "data")) {
        buf_add(&s->data, value, strlen(value));
        buf_add(&s->data, "\n", 1);
    } else if (!strcmp(line, "id")) {
        snprintf(s->id, sizeof s->id, "%s", value);
    } else if (!strcmp(line, "event")) {
        snprintf(s->event, sizeof s->event, "%s", value);
    }
}

static size_t tail_on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sse *s = arg;
    size_t n = size * nmemb;
    if (!s->status)
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 200) {
        if (s->errbody.len < 4096)
            buf_add(&s->errbody, ptr, n);
        return n;
    }
    if (!s->connected) {
        s->connected = 1;
        fprintf(stderr, "gatewayctl: following %s\n", s->url);
    }
    for (size_t i = 0; i < n; i++) {
        if (ptr[i] == '\n') {
            tail_line(s, s->line.data ? s->line.data : (char[]){'\0'});
            s->line.len = 0;
            if (s->line.data)
                s->line.data[0] = '\0';
        } else {
            buf_add(&s->line, ptr + i, 1);
        }
    }
    return n;
}

static int tail_on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)arg;
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return tail_stop ? 1 : 0;
}

static void tail_sleep(double seconds)
{
    for (double slept = 0; slept < seconds && !tail_stop; slept += 0.1) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int cmd_tail(int argc, char **argv)
{
    const char *names[4] = {"centre", "route", "state", "phone_suffix"};
    const char *vals[4] = {NULL, NULL, NULL, NULL};
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--centre") && i + 1 < argc)
            vals[0] = argv[++i];
        else if (!strcmp(argv[i], "--route") && i + 1 < argc)
            vals[1] = argv[++i];
        else if (!strcmp(argv[i], "--state") && i + 1 < argc)
            vals[2] = argv[++i];
        else if (!strcmp(argv[i], "--phone-suffix") && i + 1 < argc)
            vals[3] = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else
            die(2, "tail: unexpected argument '%s'", argv[i]);
    }
    if (vals[3]) {
        size_t n = strlen(vals[3]);
        if (n < 2 || n > 4 || strspn(vals[3], "0123456789") != n)
            die(2, "tail: --phone-suffix is the last 2 to 4 digits of the number");
    }
    if (!ops_token())
        die(2, "tail needs the operator token: --key TOKEN, or --config FILE with ops_token");
    CURL *c = curl_easy_init();
    if (!c)
        die(1, "cannot initialise libcurl");
    const char *base = opt_url ? opt_url : "http://127.0.0.1:8080";
    struct buf url = {0};
    buf_add(&url, base, strlen(base));
    buf_add(&url, "/ops/events", 11);
    for (int k = 0, first = 1; k < 4; k++) {
        if (!vals[k])
            continue;
        char *esc = curl_easy_escape(c, vals[k], 0);
        if (!esc)
            die(1, "out of memory");
        buf_add(&url, first ? "?" : "&", 1);
        buf_add(&url, names[k], strlen(names[k]));
        buf_add(&url, "=", 1);
        buf_add(&url, esc, strlen(esc));
        curl_free(esc);
        first = 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tail_signal; /* no SA_RESTART: sleeps end at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct sse s = {.curl = c, .json = json, .last_id = -1, .url = url.data};
    char auth[300], last[64];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", opt_key);
    double backoff = 0.5;
    int rc = 0;
    while (!tail_stop) {
        struct curl_slist *h = curl_slist_append(NULL, auth);
        h = curl_slist_append(h, "Accept: text/event-stream");
        if (s.last_id >= 0) {
            snprintf(last, sizeof last, "Last-Event-ID: %lld", s.last_id);
            h = curl_slist_append(h, last);
        }
        s.status = 0;
        s.connected = 0;
        s.errbody.len = s.line.len = s.data.len = 0;
        s.id[0] = s.event[0] = '\0';
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url.data);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tail_on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, tail_on_progress);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        /* the daemon writes at least every 15 s: 45 s of silence is a dead connection */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 45L);
        CURLcode cc = curl_easy_perform(c);
        curl_slist_free_all(h);
        if (tail_stop)
            break;
        long st = s.status;
        if (!st)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        char why[300];
        if (s.connected) {
            backoff = 0.5; /* it worked: the next drop is retried soon */
            snprintf(why, sizeof why, "the stream ended (%s)",
                     cc == CURLE_OK ? "closed by the daemon" : curl_easy_strerror(cc));
        } else if (st >= 400 && st < 500 && st != 408 && st != 429) {
            json_t *j = s.errbody.data ? json_loads(s.errbody.data, 0, NULL) : NULL;
            const char *msg = json_string_value(
                json_object_get(json_object_get(j, "error"), "message"));
            fprintf(stderr, "gatewayctl: %s (HTTP %ld)\n",
                    msg ? msg : (s.errbody.data ? s.errbody.data : ""), st);
            json_decref(j);
            rc = st == 404 ? 3 : st == 400 || st == 422 ? 2 : 1;
            break;
        } else if (st) {
            snprintf(why, sizeof why, "the daemon answered HTTP %ld", st);
        } else {
            snprintf(why, sizeof why, "cannot reach the daemon at %s (%s)", base,
                     curl_easy_strerror(cc));
        }
        fprintf(stderr, "gatewayctl: %s; reconnecting in %.1f s\n", why, backoff);
        tail_sleep(backoff);
        backoff = backoff * 2 > 10 ? 10 : backoff * 2;
    }
    curl_easy_cleanup(c);
    free(url.data);
    free(s.line.data);
    free(s.data.data);
    free(s.errbody.data);
    return rc;
}

/* ---- retry: re-queue failed messages (database, needs --config). */

/* RFC 3339, or "YYYY-MM-DD HH:MM" in the local time of this machine (TZ). */
static int parse_since(const char *s, int64_t *out)
{
    if (gw_parse_rfc3339(s, out) == GW_OK)
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d %2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &n) != 5 ||
        s[n] != '\0')
        return -1;
    struct tm want = tm;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    /* mktime normalises 2026-02-30 into March: refuse what did not exist as written */
    if (t == (time_t)-1 || tm.tm_year + 1900 != want.tm_year || tm.tm_mon + 1 != want.tm_mon ||
        tm.tm_mday != want.tm_mday || tm.tm_min != want.tm_min)
        return -1;
    *out = (int64_t)t;
    return 0;
}

static int cmd_retry(int argc, char **argv)
{
    const char *since = NULL, *centre = NULL;
    int dry = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--failed-since") && i + 1 < argc)
            since = argv[++i];
        else if (!strcmp(argv[i], "--centre") && i + 1 < argc)
            centre = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else
            die(2, "retry: unexpected argument '%s'", argv[i]);
    }
    if (!since)
        die(2, "retry: --failed-since TIME is required (RFC 3339, or local \"YYYY-MM-DD HH:MM\")");
    int64_t t;
    if (parse_since(since, &t) != 0)
        die(2, "retry: '%s' is not a time (RFC 3339, or local \"YYYY-MM-DD HH:MM\")", since);
    struct gw_config *cfg = load_config();
    PGconn *pg = db_connect(cfg);
    char cid[24] = "";
    if (centre)
        centre_id(pg, centre, cid);
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)t);
    const char *p[3] = {ts, centre ? cid : NULL, dry ? "true" : "false"};
    PGresult *r = q(pg,
                    "SELECT retried, opted_out FROM gw_retry_failed(to_timestamp($1::bigint),"
                    " $2::bigint, $3::boolean)",
                    3, p);
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    long long opted = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (dry)
        printf("%lld\n", n);
    else
        printf("%lld message%s queued again\n", n, n == 1 ? "" : "s");
    if (opted)
        fprintf(stderr, "gatewayctl: %lld failed message%s left alone: the number opted out\n",
                opted, opted == 1 ? "" : "s");
    PQfinish(pg);
    gw_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    /* "+": stop at the first non-option so that command arguments keep their own flags. */
    while ((c = getopt_long(argc, argv, "+c:u:k:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': opt_config = optarg; break;
        case 'u': opt_url = optarg; break;
        case 'k': opt_key = optarg; break;
        case 'V': printf("gatewayctl (Passerelle) %s\n", PASSERELLE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (sodium_init() < 0)
        die(1, "libsodium failed to initialise");
    gw_log_setup(0, GW_LOG_WARN);
    const char *cmd = argv[optind];
    int n = argc - optind - 1;
    char **rest = argv + optind + 1;
    for (int i = 0; i < n; i++)
        if (!strcmp(rest[i], "--help") || !strcmp(rest[i], "-h"))
            return command_help(!strcmp(cmd, "audit") ? "audit" : cmd);
    if (!strcmp(cmd, "migrate")) {
        struct gw_config *cfg = load_config();
        gw_log_setup(0, GW_LOG_INFO);
        char err[512];
        if (gw_migrate_run(cfg->db_conninfo, err, sizeof err) != GW_OK)
            die(1, "%s", err);
        gw_config_free(cfg);
        printf("database schema is up to date\n");
        return 0;
    }
    if (!strcmp(cmd, "centre"))
        return cmd_centre(n, rest);
    if (!strcmp(cmd, "key"))
        return cmd_key(n, rest);
    if (!strcmp(cmd, "template"))
        return cmd_template(n, rest);
    if (!strcmp(cmd, "reminder"))
        return cmd_reminder(n, rest);
    if (!strcmp(cmd, "staff"))
        return cmd_staff(n, rest);
    if (!strcmp(cmd, "admin")) {
        /* admin create CENTRE LOGIN … = staff create CENTRE LOGIN --role admin … */
        if (n < 3 || strcmp(rest[0], "create"))
            die(2, "admin: expected create CENTRE LOGIN [--name N] [--password-file F]");
        char **args = calloc((size_t)n + 3, sizeof *args);
        if (!args)
            die(1, "out of memory");
        for (int i = 0; i < n; i++)
            args[i] = rest[i];
        for (int i = 3; i < n; i++)
            if (!strcmp(rest[i], "--role"))
                die(2, "admin create: the role is admin (use staff create for another role)");
        args[n] = "--role";
        args[n + 1] = "admin";
        return cmd_staff(n + 2, args);
    }
    if (!strcmp(cmd, "resident") || !strcmp(cmd, "audit"))
        return cmd_rgpd(cmd, n, rest);
    if (!strcmp(cmd, "partner"))
        return cmd_partner(n, rest);
    if (!strcmp(cmd, "retry"))
        return cmd_retry(n, rest);
    if (!strcmp(cmd, "loan") && n >= 1 && !strcmp(rest[0], "list"))
        return cmd_loan(n, rest);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(cmd, "status"))
        rc = cmd_status();
    else if (!strcmp(cmd, "send"))
        rc = cmd_send(n, rest);
    else if (!strcmp(cmd, "ussd"))
        rc = cmd_ussd(n, rest);
    else if (!strcmp(cmd, "loan"))
        rc = cmd_loan(n, rest);
    else if (!strcmp(cmd, "tail"))
        rc = cmd_tail(n, rest);
    else
        die(2, "unknown command '%s' (see gatewayctl --help)", cmd);
    curl_global_cleanup();
    return rc;
}
