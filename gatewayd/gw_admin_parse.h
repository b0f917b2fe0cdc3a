/*
 * gw_admin_parse — the pure half of the admin API (gw_admin.h, admin/API.md): the endpoint
 * table and path matching, query strings, local date-times, and the validation of the
 * reminder and resident bodies. No I/O, no clock (the caller passes "now"), no global state,
 * so that it is unit-testable and fuzzable on its own (tests/unit/test_gw_admin_parse.c,
 * tests/fuzz/fuzz_admin_body.c). The refusal messages are French: they are shown to staff as
 * they are.
 *
 * Ownership: the endpoint table is static; parsed bodies borrow their strings from the JSON
 * body they were parsed from (keep it alive while you use them).
 */
#ifndef GW_ADMIN_PARSE_H
#define GW_ADMIN_PARSE_H

#include <jansson.h>
#include <stdint.h>

#include "sched_time.h"

/* Roles (bits) and the handler of each endpoint. */
enum {
    GW_ADMIN_R_ADMIN = 1,
    GW_ADMIN_R_REFERENT = 2,
    GW_ADMIN_R_STAFF = 4,
    GW_ADMIN_R_VIEWER = 8,
    GW_ADMIN_R_ALL = 15
};
enum {
    GW_ADMIN_H_GENERIC, /* one call of gw_admin_call (sql/006_admin.sql) */
    GW_ADMIN_H_ME,
    GW_ADMIN_H_LOGOUT,
    GW_ADMIN_H_LOGOUT_ALL,
    GW_ADMIN_H_RES_CREATE,
    GW_ADMIN_H_PREVIEW,
    GW_ADMIN_H_REM_CREATE,
    GW_ADMIN_H_MSG_SEND,
    GW_ADMIN_H_INBOX_REPLY,
    GW_ADMIN_H_LOAN,
    GW_ADMIN_H_MORE,       /* one call of gw_admin_more (sql/010_admin_more.sql) */
    GW_ADMIN_H_MORE_SMS,   /* the body's "text" is checked as an SMS first, then gw_admin_more */
    GW_ADMIN_H_ROUTES,     /* GET routes: the centre's routes with their live state */
    GW_ADMIN_H_ROUTES_SET, /* PUT routes: names checked against the configuration */
    GW_ADMIN_H_STAFF_PW,   /* staff accounts with a password (argon2id on a thread) */
    GW_ADMIN_H_SECRET,     /* partners and API keys: random secrets made by the daemon */
    GW_ADMIN_H_IMPORT,     /* residents/import: the CSV parsed here, checked and saved in SQL */
    GW_ADMIN_H_REM_UPDATE, /* PATCH reminders/#: validated like a new one, then recomputed */
    GW_ADMIN_H_ME_PW       /* POST me/password: one's own password (argon2id on a thread) */
};

struct gw_admin_endpoint {
    const char *method, *pattern; /* pattern: path after /admin/api/; '#' = one number */
    int roles, handler;
};

/* The endpoint table (POST login is handled before it, without a session). */
extern const struct gw_admin_endpoint gw_admin_endpoints[];
extern const size_t gw_admin_nendpoints;

/* 1 when path matches pattern, where '#' stands for 1 to 18 digits (the number goes to *id);
 * else 0 (*id may have been written). */
int gw_admin_path_match(const char *pattern, const char *path, long long *id);

/* The first endpoint of the table for method and path (the path after /admin/api/, without
 * the query), with its number in *id; NULL when none (*id may have been written). */
const struct gw_admin_endpoint *gw_admin_endpoint_find(const char *method, const char *path,
                                                       long long *id);

/* Adds the parameters of the query string q (without '?'; may be NULL) to the JSON object out
 * as strings: keys under 32 bytes, values under 200; others (and those that are not valid
 * UTF-8 once decoded) are dropped. A malformed query adds nothing. */
void gw_admin_query_parse(const char *q, json_t *out);

/* "YYYY-MM-DD HH:MM", a valid local date-time in SCHED_YEAR_MIN..MAX: 0 with *l set and the
 * normalised text in copy (20 bytes), else -1. */
int gw_admin_parse_local(const char *s, struct sched_local *l, char copy[20])
    __attribute__((warn_unused_result));

/* A validated reminder body (POST reminders and reminders/preview). */
struct gw_admin_reminder {
    const char *schedule; /* "once", "rrule" or "appointment" */
    const char *text, *rrule, *place;
    struct sched_local start, appt;
    json_t *offsets; /* appointment: 1 to 8 of {days, time?} or {minutes} */
    int urgent, ack;
    char start_s[20], appt_s[20]; /* start (once, rrule) or appointment, normalised */
};

/*
 * Validates a reminder body (may be NULL) for a centre in zone tz at Unix time now; fills *in
 * and next[] with the next (up to) 5 occurrences after the start of the current minute.
 * Returns their count (0: the reminder would never fire), or -1 with *why set to the French
 * message of the 422 invalid_reminder answer.
 */
int gw_admin_reminder_parse(json_t *body, const char *tz, int64_t now, struct gw_admin_reminder *in,
                            int64_t next[5], const char **why) __attribute__((warn_unused_result));

/* A validated resident body (POST residents). */
struct gw_admin_resident {
    char phone[24];                              /* E.164 */
    const char *first_name, *language, *consent; /* first_name and language may be NULL */
};

/* Validates a resident body (may be NULL); phone numbers are read as in region ("FR").
 * Returns 0, or 422 with *code (invalid_phone, invalid_consent, invalid_field) and *msg
 * (French) set (both static). */
int gw_admin_resident_parse(json_t *body, const char *region, struct gw_admin_resident *out,
                            const char **code, const char **msg)
    __attribute__((warn_unused_result));

/*
 * Residents from a CSV file (POST residents/import). UTF-8 (a BOM is skipped), lines ending
 * in LF or CRLF, fields separated by ';' or ',' (whichever the header line uses), quoted with
 * '"' ("" inside quotes is one '"'; quoted fields may hold separators and line breaks).
 * The first line names the columns, in any order, case and accents ignored:
 *   telephone (téléphone, tel, numero, phone) — required;
 *   prenom (prénom, first_name), langue (language), consentement (consent, consent_source).
 * Other columns are ignored; blank lines are skipped.
 * Each record becomes {"line": n (the line where it starts), "phone": E.164 (or the text as
 * given when invalid), "first_name", "language": "fr"|"en", "consent_source":
 * "paper"|"verbal"|"sms"}, plus {"error": code, "message": French} when it is wrong:
 * invalid_phone, invalid_first_name (over 80 characters), invalid_language, missing_consent,
 * invalid_consent, invalid_text (not UTF-8). Duplicates and numbers already known are the
 * database's checks (gw_admin_import).
 * Returns the number of records (at most GW_ADMIN_CSV_MAX) with *rows set to a new JSON array
 * (the caller owns it), or -1 with *why (French, static) when the whole file is refused (no
 * header, no phone column, too many lines, an unterminated quote).
 */
#define GW_ADMIN_CSV_MAX 2000
int gw_admin_csv_parse(const char *csv, size_t len, const char *region, json_t **rows,
                       const char **why) __attribute__((warn_unused_result));

#endif
