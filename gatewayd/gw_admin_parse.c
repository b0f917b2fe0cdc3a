/* gw_admin_parse — see gw_admin_parse.h. */
#include "gw_admin_parse.h"
#include "prov_phone.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* ---------------------------------------------------------------- endpoints */

const struct gw_admin_endpoint gw_admin_endpoints[] = {
    {"GET", "me", GW_ADMIN_R_ALL, GW_ADMIN_H_ME},
    {"POST", "logout", GW_ADMIN_R_ALL, GW_ADMIN_H_LOGOUT},
    {"POST", "logout-all", GW_ADMIN_R_ALL, GW_ADMIN_H_LOGOUT_ALL},
    {"POST", "me/password", GW_ADMIN_R_ALL, GW_ADMIN_H_ME_PW},
    {"GET", "dashboard", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"GET", "residents", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"POST", "residents", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_RES_CREATE},
    {"GET", "residents/#", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"PATCH", "residents/#", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"GET", "residents/#/export", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"POST", "residents/#/erase", GW_ADMIN_R_ADMIN, GW_ADMIN_H_GENERIC},
    {"POST", "reminders/preview", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_PREVIEW},
    {"POST", "reminders", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_REM_CREATE},
    {"DELETE", "reminders/#", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"GET", "messages", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"GET", "messages/#", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"POST", "messages", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_MSG_SEND},
    {"GET", "inbox", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"POST", "inbox/#/reply", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_INBOX_REPLY},
    {"POST", "inbox/#/done", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"POST", "inbox/#/assign", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_GENERIC},
    {"GET", "activities", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"POST", "activities", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_GENERIC},
    {"POST", "activities/#/sessions", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_GENERIC},
    {"GET", "sessions/#/attendance", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"GET", "activities/report.csv", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"GET", "loans", GW_ADMIN_R_ALL, GW_ADMIN_H_GENERIC},
    {"POST", "loans/#/confirm", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_LOAN},
    {"POST", "loans/#/refuse", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_LOAN},
    {"POST", "loans/#/returned", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_LOAN},
    {"GET", "audit", GW_ADMIN_R_ADMIN, GW_ADMIN_H_GENERIC},
    /* second increment: sql/010_admin_more.sql */
    {"GET", "jobs", GW_ADMIN_R_ALL, GW_ADMIN_H_MORE},
    {"POST", "jobs", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE},
    {"POST", "jobs/#/expire", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE},
    {"POST", "job-categories", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE},
    {"GET", "alerts", GW_ADMIN_R_ALL, GW_ADMIN_H_MORE},
    {"POST", "alert-topics", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE},
    {"POST", "alerts/preview", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE_SMS},
    {"POST", "alerts", GW_ADMIN_R_ADMIN | GW_ADMIN_R_STAFF, GW_ADMIN_H_MORE_SMS},
    {"GET", "routes", GW_ADMIN_R_ALL, GW_ADMIN_H_ROUTES},
    {"PUT", "routes", GW_ADMIN_R_ADMIN, GW_ADMIN_H_ROUTES_SET},
    {"GET", "settings", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"PATCH", "settings", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"PUT", "templates", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "templates/preview", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "templates/reset", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "staff", GW_ADMIN_R_ADMIN, GW_ADMIN_H_STAFF_PW},
    {"POST", "staff/#/password", GW_ADMIN_R_ADMIN, GW_ADMIN_H_STAFF_PW},
    {"POST", "staff/#/disable", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "staff/#/enable", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "partners", GW_ADMIN_R_ADMIN, GW_ADMIN_H_SECRET},
    {"POST", "partners/#/revoke", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "api-keys", GW_ADMIN_R_ADMIN, GW_ADMIN_H_SECRET},
    {"POST", "api-keys/#/revoke", GW_ADMIN_R_ADMIN, GW_ADMIN_H_MORE},
    {"POST", "residents/import", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_IMPORT},
    {"GET", "reminders/#", GW_ADMIN_R_ALL, GW_ADMIN_H_MORE},
    {"PATCH", "reminders/#", GW_ADMIN_R_ADMIN | GW_ADMIN_R_REFERENT, GW_ADMIN_H_REM_UPDATE},
};
const size_t gw_admin_nendpoints = sizeof gw_admin_endpoints / sizeof gw_admin_endpoints[0];

int gw_admin_path_match(const char *pattern, const char *path, long long *id)
{
    while (*pattern && *path) {
        if (*pattern == '#') {
            char *end;
            if (*path < '0' || *path > '9')
                return 0;
            long long v = strtoll(path, &end, 10);
            if (end - path > 18)
                return 0;
            *id = v;
            path = end;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return !*pattern && !*path;
}

const struct gw_admin_endpoint *gw_admin_endpoint_find(const char *method, const char *path,
                                                       long long *id)
{
    for (size_t i = 0; i < gw_admin_nendpoints; i++)
        if (!strcmp(gw_admin_endpoints[i].method, method) &&
            gw_admin_path_match(gw_admin_endpoints[i].pattern, path, id))
            return &gw_admin_endpoints[i];
    return NULL;
}

void gw_admin_query_parse(const char *q, json_t *out)
{
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (!q || evhttp_parse_query_str(q, &params) < 0)
        return;
    for (struct evkeyval *kv = params.tqh_first; kv; kv = kv->next.tqe_next)
        if (strlen(kv->key) < 32 && strlen(kv->value) < 200)
            json_object_set_new(out, kv->key, json_string(kv->value));
    evhttp_clear_headers(&params);
}

/* ---------------------------------------------------------------- reminders */

int gw_admin_parse_local(const char *s, struct sched_local *l, char copy[20])
{
    int n = 0;
    if (!s ||
        sscanf(s, "%4d-%2d-%2d %2d:%2d%n", &l->year, &l->month, &l->day, &l->hour, &l->minute,
               &n) != 5 ||
        s[n])
        return -1;
    int64_t t;
    if (sched_local_to_utc("UTC", l, &t) != 0)
        return -1;
    snprintf(copy, 20, "%04d-%02d-%02d %02d:%02d", l->year, l->month, l->day, l->hour, l->minute);
    return 0;
}

int gw_admin_reminder_parse(json_t *j, const char *tz, int64_t now, struct gw_admin_reminder *in,
                            int64_t next[5], const char **why)
{
    memset(in, 0, sizeof *in);
    in->schedule = json_string_value(json_object_get(j, "schedule"));
    in->text = json_string_value(json_object_get(j, "text"));
    in->rrule = json_string_value(json_object_get(j, "rrule"));
    in->place = json_string_value(json_object_get(j, "place"));
    in->offsets = json_object_get(j, "offsets");
    in->urgent = json_is_true(json_object_get(j, "urgent"));
    in->ack = json_is_true(json_object_get(j, "ack"));
    char err[200] = "";
    *why = NULL;
    if (!json_is_integer(json_object_get(j, "resident_id")))
        *why = "Choisissez un habitant.";
    else if (!in->text || !*in->text || strlen(in->text) > 1000)
        *why = "Écrivez le texte du rappel (1000 caractères au plus).";
    else if (!in->schedule || (strcmp(in->schedule, "once") && strcmp(in->schedule, "rrule") &&
                               strcmp(in->schedule, "appointment")))
        *why = "Choisissez le type de rappel : une fois, récurrent ou avant un rendez-vous.";
    else if (!strcmp(in->schedule, "once") &&
             gw_admin_parse_local(json_string_value(json_object_get(j, "at")), &in->start,
                                  in->start_s))
        *why = "Indiquez la date et l'heure (AAAA-MM-JJ HH:MM).";
    else if (!strcmp(in->schedule, "rrule") &&
             (gw_admin_parse_local(json_string_value(json_object_get(j, "start")), &in->start,
                                   in->start_s) ||
              !in->rrule))
        *why = "Indiquez la règle de récurrence et la date de début.";
    else if (!strcmp(in->schedule, "rrule") && sched_rrule_check(in->rrule, err, sizeof err))
        *why = "Cette récurrence n'est pas valable (au plus une fois par jour).";
    else if (!strcmp(in->schedule, "appointment") &&
             (gw_admin_parse_local(json_string_value(json_object_get(j, "appointment")), &in->appt,
                                   in->appt_s) ||
              !json_is_array(in->offsets) || json_array_size(in->offsets) == 0 ||
              json_array_size(in->offsets) > 8))
        *why = "Indiquez la date du rendez-vous et au moins un rappel (8 au plus).";
    if (*why)
        return -1;
    int64_t t = now - now % 60 - 1;
    int n = 0;
    if (!strcmp(in->schedule, "once")) {
        int64_t at;
        if (sched_local_to_utc(tz, &in->start, &at) == 0 && at > t)
            next[n++] = at;
    } else if (!strcmp(in->schedule, "rrule")) {
        while (n < 5) {
            int64_t at;
            int rc = sched_rrule_next(tz, in->rrule, &in->start, t, &at, err, sizeof err);
            if (rc != 1)
                break;
            next[n++] = at;
            t = at;
        }
    } else {
        int64_t appt;
        if (sched_local_to_utc(tz, &in->appt, &appt) != 0) {
            *why = "Date du rendez-vous invalide.";
            return -1;
        }
        size_t i;
        json_t *o;
        int64_t all[8];
        int k = 0;
        json_array_foreach(in->offsets, i, o)
        {
            json_t *days = json_object_get(o, "days"), *mins = json_object_get(o, "minutes");
            const char *tm = json_string_value(json_object_get(o, "time"));
            int64_t at;
            if (json_is_integer(days) && json_integer_value(days) >= 0 &&
                json_integer_value(days) <= 60) {
                struct sched_local d = in->appt, back;
                d.hour = 12;
                d.minute = 0;
                int64_t noon;
                if (sched_local_to_utc(tz, &d, &noon) ||
                    sched_utc_to_local(tz, noon - json_integer_value(days) * 86400, &back, NULL))
                    continue;
                back.hour = in->appt.hour;
                back.minute = in->appt.minute;
                if (tm && (sscanf(tm, "%d:%d", &back.hour, &back.minute) != 2 || back.hour < 0 ||
                           back.hour > 23 || back.minute < 0 || back.minute > 59)) {
                    *why = "Heure de rappel invalide (HH:MM).";
                    return -1;
                }
                if (sched_local_to_utc(tz, &back, &at) == 0)
                    all[k++] = at;
            } else if (json_is_integer(mins) && json_integer_value(mins) >= 0 &&
                       json_integer_value(mins) <= 60 * 24 * 60) {
                all[k++] = appt - json_integer_value(mins) * 60;
            } else {
                *why = "Chaque rappel est « N jours avant (à HH:MM) » ou « N minutes avant ».";
                return -1;
            }
        }
        for (int x = 0; x < k; x++) /* sorted, future ones */
            for (int y = x + 1; y < k; y++)
                if (all[y] < all[x]) {
                    int64_t tmp = all[x];
                    all[x] = all[y];
                    all[y] = tmp;
                }
        for (int x = 0; x < k && n < 5; x++)
            if (all[x] > t && all[x] < appt + 1)
                next[n++] = all[x];
    }
    return n;
}

/* ---------------------------------------------------------------- residents */

#define BAD_MOBILE "Ce numéro n'est pas un numéro de portable valide (ex. 06 12 34 56 78)."

static int refuse_422(const char **code, const char **msg, const char *c, const char *m)
{
    *code = c;
    *msg = m;
    return 422;
}

int gw_admin_resident_parse(json_t *body, const char *region, struct gw_admin_resident *out,
                            const char **code, const char **msg)
{
    const char *phone = json_string_value(json_object_get(body, "phone"));
    const char *first = json_string_value(json_object_get(body, "first_name"));
    const char *lang = json_string_value(json_object_get(body, "language"));
    const char *consent = json_string_value(json_object_get(body, "consent_source"));
    char e164[24];
    if (!phone || prov_phone_normalize(phone, region, e164, sizeof e164) != 0)
        return refuse_422(code, msg, "invalid_phone", BAD_MOBILE);
    if (!consent ||
        (strcmp(consent, "paper") && strcmp(consent, "verbal") && strcmp(consent, "sms")))
        return refuse_422(code, msg, "invalid_consent",
                          "Indiquez comment l'habitant a donné son accord (formulaire papier, "
                          "oral ou SMS).");
    if ((first && strlen(first) > 80) || (lang && strcmp(lang, "fr") && strcmp(lang, "en")))
        return refuse_422(code, msg, "invalid_field",
                          "Prénom trop long (80 caractères) ou langue inconnue.");
    memcpy(out->phone, e164, sizeof out->phone);
    out->first_name = first;
    out->language = lang;
    out->consent = consent;
    return 0;
}

/* ---------------------------------------------------------------- CSV import */

#define CSV_FIELDS 16
#define CSV_FIELD_MAX 512

struct csv_rec {
    char f[CSV_FIELDS][CSV_FIELD_MAX + 1];
    size_t n;
};

/* Reads one record from s[*pos..len): 1 with a record, 0 at the end, -1 on a quote that is
 * never closed. *lines counts the line breaks consumed. Fields beyond CSV_FIELDS are dropped,
 * bytes beyond CSV_FIELD_MAX are dropped (such a field is wrong anyway). Unquoted fields are
 * trimmed of spaces. */
static int csv_record(const char *s, size_t len, size_t *pos, char sep, struct csv_rec *r,
                      int *lines)
{
    size_t i = *pos;
    if (i >= len)
        return 0;
    r->n = 0;
    for (;;) {
        char tmp[CSV_FIELD_MAX + 1];
        size_t bl = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < len && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= len)
                    return -1;
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        if (bl < CSV_FIELD_MAX)
                            tmp[bl++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (s[i] == '\n')
                    (*lines)++;
                if (bl < CSV_FIELD_MAX)
                    tmp[bl++] = s[i];
                i++;
            }
        }
        /* unquoted text (or what follows a closing quote, kept: lenient) */
        while (i < len && s[i] != sep && s[i] != '\n' && s[i] != '\r') {
            if (bl < CSV_FIELD_MAX)
                tmp[bl++] = s[i];
            i++;
        }
        while (bl > 0 && (tmp[bl - 1] == ' ' || tmp[bl - 1] == '\t'))
            bl--;
        tmp[bl] = '\0';
        if (r->n < CSV_FIELDS) {
            memcpy(r->f[r->n], tmp, bl + 1);
            r->n++;
        }
        if (i < len && s[i] == sep) {
            i++;
            continue;
        }
        if (i < len && s[i] == '\r') {
            i++;
            if (i < len && s[i] == '\n')
                i++;
            (*lines)++;
        } else if (i < len && s[i] == '\n') {
            i++;
            (*lines)++;
        }
        break;
    }
    *pos = i;
    return 1;
}

/* Lowercase ASCII letters and digits only, French accents made plain ("Téléphone" →
 * "telephone", "first_name" → "firstname"). */
static void csv_fold(const char *in, char *out, size_t outlen)
{
    static const char lat1[65] = "aaaaaaaceeeeiiii" "dnooooo ouuuuy  " /* C3 80..9F */
                                 "aaaaaaaceeeeiiii" "dnooooo ouuuuy y"; /* C3 A0..BF */
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < outlen; p++) {
        char c = 0;
        if (*p >= 'A' && *p <= 'Z')
            c = (char)(*p - 'A' + 'a');
        else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            c = (char)*p;
        else if (*p == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF)
            c = lat1[*++p - 0x80];
        if (c && c != ' ')
            out[o++] = c;
    }
    out[o] = '\0';
}

static int utf8_ok(const char *s)
{
    json_t *j = json_string(s); /* NULL when s is not valid UTF-8 */
    json_decref(j);
    return j != NULL;
}

static int csv_is(const char *folded, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(folded, *names))
            return 1;
    return 0;
}

/* The separator: the header line's ';' or ',' (';' when it has both or neither). */
static char csv_separator(const char *csv, size_t len)
{
    size_t semi = 0, comma = 0;
    int inq = 0;
    for (size_t i = 0; i < len && (inq || (csv[i] != '\n' && csv[i] != '\r')); i++) {
        if (csv[i] == '"')
            inq = !inq;
        else if (!inq && csv[i] == ';')
            semi++;
        else if (!inq && csv[i] == ',')
            comma++;
    }
    return comma > semi ? ',' : ';';
}

/* The columns of the header record (-1: absent). */
struct csv_cols {
    int phone, first, lang, consent;
};

/* 0 with *cols set, or -1 when the header has no phone column. */
static int csv_columns(const struct csv_rec *rec, struct csv_cols *cols)
{
    static const char *const phone_names[] = {"telephone", "tel", "numero", "phone",
                                               "portable", "mobile", NULL};
    static const char *const first_names[] = {"prenom", "firstname", NULL};
    static const char *const lang_names[] = {"langue", "language", "lang", NULL};
    static const char *const consent_names[] = {"consentement", "consent", "consentsource",
                                                 "accord", NULL};
    *cols = (struct csv_cols){-1, -1, -1, -1};
    for (size_t c = 0; c < rec->n; c++) {
        char f[64];
        csv_fold(rec->f[c], f, sizeof f);
        if (cols->phone < 0 && csv_is(f, phone_names))
            cols->phone = (int)c;
        else if (cols->first < 0 && csv_is(f, first_names))
            cols->first = (int)c;
        else if (cols->lang < 0 && csv_is(f, lang_names))
            cols->lang = (int)c;
        else if (cols->consent < 0 && csv_is(f, consent_names))
            cols->consent = (int)c;
    }
    return cols->phone < 0 ? -1 : 0;
}

/* "fr" or "en" for a folded language ("" is French), else NULL. */
static const char *csv_language(const char *f)
{
    if (!*f || !strcmp(f, "fr") || !strcmp(f, "francais"))
        return "fr";
    if (!strcmp(f, "en") || !strcmp(f, "anglais") || !strcmp(f, "english"))
        return "en";
    return NULL;
}

/* "paper", "verbal" or "sms" for a folded consent, else NULL. */
static const char *csv_consent(const char *f)
{
    if (csv_is(f, (const char *const[]){"papier", "paper", "formulaire", "formulairepapier",
                                         "ecrit", NULL}))
        return "paper";
    if (csv_is(f, (const char *const[]){"oral", "verbal", "accordoral", NULL}))
        return "verbal";
    if (csv_is(f, (const char *const[]){"sms", "smsstart", "start", NULL}))
        return "sms";
    return NULL;
}

/* A row keeps its first error. */
static void row_error(const char **code, const char **msg, const char *c, const char *m)
{
    if (!*code) {
        *code = c;
        *msg = m;
    }
}

/* One record as a row of gw_admin_csv_parse (see gw_admin_parse.h); line: where it starts. */
static json_t *csv_row(const struct csv_rec *rec, const struct csv_cols *cols, const char *region,
                       int line)
{
#define COL(c) ((c) >= 0 && (size_t)(c) < rec->n ? rec->f[c] : "")
    const char *phone = COL(cols->phone), *first = COL(cols->first), *lang = COL(cols->lang),
               *consent = COL(cols->consent);
#undef COL
    const char *code = NULL, *msg = NULL;
    json_t *row = json_object();
    json_object_set_new(row, "line", json_integer(line));
    json_t *js_phone = json_string(phone), *js_first = json_string(first);
    char e164[24], f[32];
    if (!js_phone || !js_first || !utf8_ok(lang) || !utf8_ok(consent))
        row_error(&code, &msg, "invalid_text", "Texte illisible : enregistrez le fichier en UTF-8.");
    if (!*phone)
        row_error(&code, &msg, "invalid_phone", "Numéro de téléphone manquant.");
    else if (!code && prov_phone_normalize(phone, region, e164, sizeof e164) != 0)
        row_error(&code, &msg, "invalid_phone", BAD_MOBILE);
    json_object_set_new(row, "phone", code && !strcmp(code, "invalid_text")
                                          ? json_string("?")
                                          : code ? json_incref(js_phone) : json_string(e164));
    json_object_set_new(row, "first_name", js_first ? json_incref(js_first) : json_string("?"));
    json_decref(js_phone);
    json_decref(js_first);
    if (strlen(first) > 80)
        row_error(&code, &msg, "invalid_first_name", "Prénom trop long (80 caractères au plus).");
    csv_fold(lang, f, sizeof f);
    const char *language = csv_language(f);
    if (!language)
        row_error(&code, &msg, "invalid_language", "Langue inconnue : fr (français) ou en (anglais).");
    json_object_set_new(row, "language", json_string(language ? language : "fr"));
    csv_fold(consent, f, sizeof f);
    const char *source = csv_consent(f);
    if (!source && *f)
        row_error(&code, &msg, "invalid_consent", "Accord inconnu : papier, oral ou sms.");
    else if (!source)
        row_error(&code, &msg, "missing_consent",
                  "Accord de l'habitant manquant (papier, oral ou sms) : sans accord, pas de SMS.");
    if (source)
        json_object_set_new(row, "consent_source", json_string(source));
    if (code) {
        json_object_set_new(row, "error", json_string(code));
        json_object_set_new(row, "message", json_string(msg));
    }
    return row;
}

static int csv_blank(const struct csv_rec *rec)
{
    for (size_t c = 0; c < rec->n; c++)
        if (rec->f[c][0])
            return 0;
    return 1;
}

int gw_admin_csv_parse(const char *csv, size_t len, const char *region, json_t **rows,
                       const char **why)
{
    static const char unclosed[] = "Guillemet ouvert mais jamais fermé : vérifiez le fichier.";
    if (len >= 3 && !memcmp(csv, "\xEF\xBB\xBF", 3)) {
        csv += 3;
        len -= 3;
    }
    char sep = csv_separator(csv, len);
    struct csv_rec *rec = malloc(sizeof *rec);
    if (!rec)
        abort();
    json_t *out = NULL;
    size_t pos = 0;
    int lines = 0, n = 0, rc;
    struct csv_cols cols;
    do /* the header: the first record that is not blank */
        rc = csv_record(csv, len, &pos, sep, rec, &lines);
    while (rc > 0 && rec->n <= 1 && !rec->f[0][0]);
    if (rc < 0) {
        *why = unclosed;
        goto refuse;
    }
    if (rc == 0) {
        *why = "Le fichier est vide.";
        goto refuse;
    }
    if (csv_columns(rec, &cols) < 0) {
        *why = "La première ligne doit nommer les colonnes, dont « telephone » "
               "(ex. telephone;prenom;langue;consentement).";
        goto refuse;
    }
    out = json_array();
    for (;;) {
        int start = lines + 1;
        rc = csv_record(csv, len, &pos, sep, rec, &lines);
        if (rc == 0)
            break;
        if (rc < 0) {
            *why = unclosed;
            goto refuse;
        }
        if (csv_blank(rec))
            continue;
        if (++n > GW_ADMIN_CSV_MAX) {
            *why = "Fichier trop long : 2000 habitants au plus par import.";
            goto refuse;
        }
        json_array_append_new(out, csv_row(rec, &cols, region, start));
    }
    free(rec);
    *rows = out;
    return n;
refuse:
    json_decref(out);
    free(rec);
    return -1;
}
