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

int gw_admin_resident_parse(json_t *body, const char *region, struct gw_admin_resident *out,
                            const char **code, const char **msg)
{
    const char *phone = json_string_value(json_object_get(body, "phone"));
    const char *first = json_string_value(json_object_get(body, "first_name"));
    const char *lang = json_string_value(json_object_get(body, "language"));
    const char *consent = json_string_value(json_object_get(body, "consent_source"));
    char e164[24];
    if (!phone || prov_phone_normalize(phone, region, e164, sizeof e164) != 0) {
        *code = "invalid_phone";
        *msg = "Ce numéro n'est pas un numéro de portable valide (ex. 06 12 34 56 78).";
        return 422;
    }
    if (!consent ||
        (strcmp(consent, "paper") && strcmp(consent, "verbal") && strcmp(consent, "sms"))) {
        *code = "invalid_consent";
        *msg = "Indiquez comment l'habitant a donné son accord (formulaire papier, oral ou SMS).";
        return 422;
    }
    if ((first && strlen(first) > 80) || (lang && strcmp(lang, "fr") && strcmp(lang, "en"))) {
        *code = "invalid_field";
        *msg = "Prénom trop long (80 caractères) ou langue inconnue.";
        return 422;
    }
    memcpy(out->phone, e164, sizeof out->phone);
    out->first_name = first;
    out->language = lang;
    out->consent = consent;
    return 0;
}
