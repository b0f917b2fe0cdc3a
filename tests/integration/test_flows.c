/*
 * test_flows — the keyword flows and the USSD menu of a real gatewayd against a real
 * PostgreSQL, as a resident and the staff see them: inbound SMS injected through the
 * simulator (POST /providers/sim/inbound), the flow run the daemon recorded (flow_runs), the
 * exact reply texts as stored and delivered (idempotency key 'flow:<inbound id>:<n>'), and what
 * each flow changed in the database (opt-outs, attendance, loans, subscriptions, the inbox,
 * conversations, reminder acknowledgements).
 *
 * One daemon ("main", database t_flows_<pid>) with the centre "Les Oliviers" bound to the
 * `sim` route and seeded with `gatewayctl centre seed` (check-in codes 1234 named, 5678
 * anonymous, 4321 closed; items 12, 15 available, 20 lent; job offers 1-4; alert topics
 * SORTIE and ATELIER; job categories cuisine and menage). The tests run in order and share
 * that state:
 *   1. the table: 79 inbound texts, each with its outcome, reply and database effect;
 *   2. staff decisions on loans with gatewayctl loan confirm|refuse|returned;
 *   3. STOP while 100 scheduled messages wait: all cancelled at once, none ever sent;
 *   4. loop protection (25 texts from one phone in a row);
 *   5. the centre setting unknown_numbers = inbox;
 *   6. the USSD menu (POST /ussd/{centre}): every branch, bad input, unknown and expired
 *      sessions, unknown centre, malformed requests;
 *   7. an inbound SMS that is not valid UTF-8;
 *   8. a clean stop of the daemon.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CENTRE "Les Oliviers"
#define OPS_TOKEN "flows-ops-token-0123456789abcdef"
#define SERVICE "*384*12#"
#define REPLY_TIMEOUT_S 20

static struct {
    char *conninfo;
    char *config;
    struct h_daemon *d;
    long long centre;
    char *key;
    int rows_run, replies_delivered;
} G;

/* ------------------------------------------------------------------ expected texts */

/* The templates of 002_flows.sql filled for this centre, as stored: ê, â, î, ô, û, ç, œ, « »
 * are transliterated (the text is then GSM-7); é, è, à, ù are GSM-7 and stay. */
#define T_HELP                                                                                     \
    "Les Oliviers : CHECK + code pour pointer, JOB pour les offres, PRET pour emprunter, "        \
    "ALERTE pour les alertes, OK pour un rappel, STOP pour arreter."
#define T_STOP "Vous ne recevrez plus de SMS de Les Oliviers. Pour vous réinscrire, envoyez START."
#define T_START                                                                                    \
    "C'est noté : vous recevez à nouveau les SMS de Les Oliviers. Envoyez AIDE pour l'aide."
#define T_START_ALREADY "Vous recevez déjà les SMS de Les Oliviers. Envoyez AIDE pour l'aide."
#define T_UNKNOWN                                                                                  \
    "Message transmis à l'équipe de Les Oliviers. Envoyez AIDE pour la liste des mots-clés."
#define T_CHECK_OK(act, n) "Merci ! Présence enregistrée : " act ", " n " personne(s)."
#define T_CHECK_UPD(act, n) "C'est corrigé : " act ", " n " personne(s)."
#define T_CHECK_ASK                                                                                \
    "Quel est le code de l'activité ? Répondez avec le code affiché (ex. 1234)."
#define T_CHECK_UNKNOWN(code)                                                                      \
    "Code " code " inconnu. Vérifiez le code sur l'affiche et renvoyez CHECK + code."
/* the same on a USSD screen, which cannot be answered by SMS */
#define T_USSD_CHECK_UNKNOWN(code)                                                                  \
    "Code " code " inconnu. Vérifiez le code sur l'affiche et composez à nouveau *384*12#."
#define T_JOB_LIST                                                                                 \
    "Offres : 4 Vendeur en boulangerie ; 3 Aide cuisinier ; 2 Agent d'entretien. Envoyez JOB + " \
    "numéro pour le détail."
#define T_JOB1 "Plongeur : Restaurant Le Midi, 20 h/semaine, débutant accepté. Contact : 04 78 00 00 01"
#define T_JOB2                                                                                     \
    "Agent d'entretien : Bureaux, 6 h-9 h du lundi au vendredi, CDD 6 mois. Contact : 04 78 00 " \
    "00 02"
#define T_JOB3 "Aide cuisinier : Cantine scolaire, 30 h/semaine, CDI. Contact : 04 78 00 00 03"
#define T_JOB4 "Vendeur en boulangerie : Samedi et dimanche matin. Contact : 04 78 00 00 04"
#define T_LOAN_LIST2                                                                               \
    "Disponible : 12 Perceuse ; 15 Poussette. Envoyez PRET + code pour emprunter."
#define T_LOAN_LIST1 "Disponible : 15 Poussette. Envoyez PRET + code pour emprunter."
#define T_LOAN_PENDING(item)                                                                       \
    "Demande enregistrée : " item ". L'équipe vous confirmera par SMS."
#define T_ALERT_TOPICS "Alertes : ATELIER, SORTIE. Envoyez ALERTE + thème pour vous inscrire."
#define T_ALERT_SUB(t)                                                                             \
    "Inscription aux alertes " t " enregistrée. Pour arreter : ALERTE STOP " t "."
#define T_ACK_OK "Merci, c'est noté."
#define T_ACK_NONE "Aucun rappel à confirmer."

/* ------------------------------------------------------------------ small helpers */

/* Percent-encodes every byte that is not unreserved (so any byte string goes through). */
static char *form_escape(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * n + 1);
    H_ASSERT(out, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

/* A printable label of a text for the failure messages (cut, non-ASCII bytes as \xNN). */
static void label_of(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40) {
            o += (size_t)snprintf(out + o, cap - o, "… (%zu bytes)", n);
            break;
        }
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else if (c >= 0x80 && c < 0xf5)
            out[o++] = (char)c; /* bytes that may be UTF-8 print as themselves */
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

/* tpl with $PHONE, $MSG and $CENTRE replaced; malloc'ed. */
static char *expand(const char *tpl, const char *phone, long long msg)
{
    size_t cap = strlen(tpl) + 64, n = 0;
    char *out = malloc(cap);
    H_ASSERT(out, "out of memory");
    for (const char *p = tpl; *p;) {
        char val[64] = "";
        size_t skip = 0;
        if (!strncmp(p, "$PHONE", 6)) {
            snprintf(val, sizeof val, "%s", phone ? phone : "");
            skip = 6;
        } else if (!strncmp(p, "$MSG", 4)) {
            snprintf(val, sizeof val, "%lld", msg);
            skip = 4;
        } else if (!strncmp(p, "$CENTRE", 7)) {
            snprintf(val, sizeof val, "%lld", G.centre);
            skip = 7;
        }
        size_t add = skip ? strlen(val) : 1;
        if (n + add + 1 > cap) {
            cap = 2 * cap + add;
            char *b = realloc(out, cap);
            H_ASSERT(b, "out of memory");
            out = b;
        }
        if (skip) {
            memcpy(out + n, val, add);
            n += add;
            p += skip;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static int str_eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* Polls (every 100 ms, up to timeout_s) until the first column of the query equals want, or is
 * not NULL when want is NULL; returns the last value seen (malloc'ed, may be NULL). */
#define poll_sql(timeout_s, want, ...) h_poll_sql(G.conninfo, (timeout_s), (want), __VA_ARGS__)

/* Septets of a GSM 03.38 text (extension characters count 2); -1 if a character is not
 * GSM-7. */
static int gsm7_septets(const char *s)
{
    static const char basic[] = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                                "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    static const char ext[] = "^{}\\[~]|€\f";
    int septets = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t k = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : 4;
        char ch[5] = {0};
        for (size_t i = 0; i < k; i++) {
            if (!p[i])
                return -1;
            ch[i] = (char)p[i];
        }
        if (strstr(basic, ch))
            septets += 1;
        else if (strstr(ext, ch))
            septets += 2;
        else
            return -1;
        p += k;
    }
    return septets;
}

/* ------------------------------------------------------------------ inbound and replies */

/* POST /providers/sim/inbound from=phone&text=bytes; asserts 200 {"id"}; returns the id. */
static long long inbound_n(const char *phone, const char *text, size_t len)
{
    char *p = form_escape(phone, strlen(phone));
    char *t = form_escape(text, len);
    char *form = h_printf("from=%s&text=%s", p, t);
    struct h_resp *r = h_post_form(G.d, "/providers/sim/inbound", form);
    char label[128];
    label_of(text, len, label, sizeof label);
    H_ASSERT(r->status == 200 && r->json, "inbound '%s' from %s: expected 200 {\"id\"}, got %ld %s%s",
             label, phone, r->status, r->body ? r->body : "", r->err);
    long long id = h_jint(r->json, "id");
    H_ASSERT(id > 0, "inbound '%s': id %lld", label, id);
    h_resp_free(r);
    free(form);
    free(p);
    free(t);
    return id;
}

static long long inbound(const char *phone, const char *text)
{
    return inbound_n(phone, text, strlen(text));
}

static char *run_outcome(long long msg)
{
    return h_sql_str(G.conninfo, "SELECT outcome FROM flow_runs WHERE message_id = %lld", msg);
}

static void expect_outcome(long long msg, const char *want, const char *what)
{
    char *oc = run_outcome(msg);
    if (!str_eq(oc, want)) {
        char *run = h_sql_rows(G.conninfo,
                               "SELECT flow, outcome, replies FROM flow_runs WHERE message_id = "
                               "%lld",
                               msg);
        h_fail("%s (message %lld): expected outcome %s, got %s; flow_runs: %s", what, msg, want,
               oc ? oc : "(no flow run)", run);
    }
    free(oc);
}

/* Asserts that the flow run of msg decided no reply (flow_runs.replies = []). */
static void expect_no_reply(long long msg, const char *what)
{
    char *rep = h_sql_str(G.conninfo, "SELECT replies FROM flow_runs WHERE message_id = %lld", msg);
    H_ASSERT(str_eq(rep, "[]"), "%s (message %lld): expected no reply, flow_runs.replies = %s",
             what, msg, rep ? rep : "(no flow run)");
    free(rep);
}

/* Waits for the outgoing message with idempotency key `idem`, asserts its text, kind, phone
 * and GSM-7 encoding, and (when wait_delivered) that it reaches 'delivered'. Returns its id. */
static long long expect_sms(const char *idem, const char *phone, const char *want_text,
                            const char *want_kind, int wait_delivered, const char *what)
{
    char *idv = poll_sql(REPLY_TIMEOUT_S, NULL,
                         "SELECT id FROM messages WHERE centre_id = %lld AND idempotency_key = "
                         "'%s'",
                         G.centre, idem);
    H_ASSERT(idv, "%s: no SMS with idempotency key '%s' was queued within %d s", what, idem,
             REPLY_TIMEOUT_S);
    long long id = strtoll(idv, NULL, 10);
    free(idv);
    char *body = h_sql_str(G.conninfo, "SELECT body FROM messages WHERE id = %lld", id);
    H_ASSERT(str_eq(body, want_text), "%s: SMS '%s' text:\n  expected '%s'\n  got      '%s'", what,
             idem, want_text, body ? body : "(null)");
    free(body);
    char *meta = h_sql_rows(G.conninfo,
                            "SELECT direction, phone, coalesce(kind, '-'), encoding FROM messages "
                            "WHERE id = %lld",
                            id);
    char *want_meta = h_printf("out|%s|%s|gsm7", phone, want_kind);
    H_ASSERT(str_eq(meta, want_meta), "%s: SMS '%s' (direction|phone|kind|encoding): expected %s, "
                                      "got %s",
             what, idem, want_meta, meta);
    free(meta);
    free(want_meta);
    if (wait_delivered) {
        char *st = poll_sql(REPLY_TIMEOUT_S, "delivered",
                            "SELECT status FROM messages WHERE id = %lld", id);
        if (!str_eq(st, "delivered")) {
            char *rep = h_undelivered_report(G.conninfo);
            h_fail("%s: SMS '%s' (message %lld) is '%s', not delivered after %d s; %s", what, idem,
                   id, st ? st : "?", REPLY_TIMEOUT_S, rep);
        }
        free(st);
        G.replies_delivered++;
    }
    return id;
}

/* Asserts that inbound msg decided exactly one reply and that it is want_text, delivered. */
static long long expect_reply(long long msg, const char *phone, const char *want_text,
                              const char *want_kind, const char *what)
{
    long long n = h_sql_int(G.conninfo,
                            "SELECT coalesce(jsonb_array_length(replies), -1) FROM flow_runs "
                            "WHERE message_id = %lld",
                            msg);
    H_ASSERT(n == 1, "%s (message %lld): expected one reply in flow_runs.replies, got %lld", what,
             msg, n);
    char idem[64];
    snprintf(idem, sizeof idem, "flow:%lld:0", msg);
    return expect_sms(idem, phone, want_text, want_kind, 1, what);
}

/* gatewayctl --config CFG --url URL ARGS…; returns the exit status, stdout in *out. */
#define CTL(out, ...) h_ctl(G.config, out, "--url", G.d->url, __VA_ARGS__, NULL)

/* ------------------------------------------------------------------ group set-up */

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "flows", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port,
                         .conninfo = G.conninfo,
                         .gateway = "ops_token = " OPS_TOKEN "\n",
                         .route_sim = "latency_ms = 1\ndlr_delay_ms = 1\n"};
    G.config = h_config_write(&c, "main.ini");
    G.centre = h_centre_create(G.config, CENTRE);
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "centre", "seed", CENTRE, NULL);
    H_ASSERT(rc == 0 && strstr(out, "seeded"), "gatewayctl centre seed: exit %d, '%s' %s", rc, out,
             h_ctl_stderr());
    free(out);
    G.key = h_key_create(G.config, CENTRE);
    G.d = h_daemon_start("main", G.config, port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    h_daemon_free(G.d);
    G.d = NULL;
    return 0;
}

/* ------------------------------------------------------------------ 1. the table */

enum {
    R_REPLY_SQL = 1,    /* .reply is a query giving the expected reply */
    R_CONFIRM_LOAN = 2, /* .pre is a query giving a loan id: gatewayctl loan confirm it first */
    R_LONG_TEXT = 4,    /* .text is NULL: send 1,000 characters */
};

struct row {
    const char *phone;
    const char *text;
    const char *outcome;   /* flow_runs.outcome */
    const char *reply;     /* the one reply as stored; NULL: no reply */
    const char *check;     /* query ($PHONE, $MSG, $CENTRE), its rows as h_sql_rows gives them */
    const char *want;
    const char *pre;       /* statement run before sending */
    int flags;
};

#define PH(n) "+336101" #n
#define CT "(SELECT id FROM contacts WHERE centre_id = $CENTRE AND phone = '$PHONE')"
#define Q_OPTED "SELECT opted_out_at IS NOT NULL FROM contacts WHERE phone = '$PHONE'"
#define Q_INBOX "SELECT reason FROM inbox WHERE message_id = $MSG"
#define Q_ATT(code)                                                                                \
    "SELECT a.people, a.channel FROM attendance a JOIN activity_sessions s ON s.id = "           \
    "a.session_id WHERE s.code = '" code "' AND a.contact_id = " CT
#define Q_NO_ATT "SELECT count(*) FROM attendance WHERE contact_id = " CT
#define Q_CONV "SELECT coalesce((SELECT state FROM conversations WHERE contact_id = " CT "), '-')"
#define Q_SUBS(kind)                                                                               \
    "SELECT coalesce(string_agg(t.name, ',' ORDER BY t.name), '-') FROM subscriptions s JOIN "   \
    "topics t ON t.id = s.topic_id WHERE t.kind = '" kind "' AND s.contact_id = " CT
#define Q_LOAN(code)                                                                               \
    "SELECT l.status, i.state FROM loans l JOIN items i ON i.id = l.item_id WHERE i.code = '"    \
    code "' AND l.contact_id = " CT " ORDER BY l.id DESC LIMIT 1"
#define Q_FLOW "SELECT flow FROM flow_runs WHERE message_id = $MSG"
#define PRE_REMINDER(status, due)                                                                  \
    "INSERT INTO contacts (centre_id, phone) VALUES ($CENTRE, '$PHONE') ON CONFLICT DO NOTHING;" \
    " INSERT INTO reminder_occurrences (centre_id, contact_id, due_at, body, status) SELECT "    \
    "$CENTRE, id, now() + interval '" due "', 'Atelier cuisine', '" status "' FROM contacts "    \
    "WHERE centre_id = $CENTRE AND phone = '$PHONE'"
#define Q_ACK "SELECT acked_at IS NOT NULL, ack_message_id = $MSG FROM reminder_occurrences " \
              "WHERE contact_id = " CT " ORDER BY id DESC LIMIT 1"

/* Rows leave out the trailing fields they do not need (pre, flags). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct row table[] = {
    /* ---- STOP and its spellings: one confirmation (kind 'optout'), contact opted out */
    {PH(00001), "STOP", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00002), "Stop", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00003), "stop sms", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00004), "ARRÊT", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00005), "arret", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00006), "DESINSCRIRE", "stop_ok", T_STOP, Q_OPTED, "t"},
    {PH(00007), "désabonner", "stop_ok", T_STOP, Q_OPTED, "t"},
    /* a second STOP: no second confirmation */
    {PH(00001), "STOP", "stop_again", NULL,
     "SELECT count(*) FROM messages WHERE phone = '$PHONE' AND kind = 'optout'", "1"},
    /* START / REPRENDRE */
    {PH(00001), "START", "start_ok", T_START,
     "SELECT opted_out_at IS NULL, consent_source FROM contacts WHERE phone = '$PHONE'", "t|sms"},
    {PH(00002), "REPRENDRE", "start_ok", T_START, Q_OPTED, "f"},
    {PH(00008), "Reprendre", "start_already", T_START_ALREADY, Q_OPTED, "f"},
    /* an opted-out resident asking for help: to the inbox, no reply */
    {PH(00003), "AIDE", "inbox_opted_out", NULL, Q_INBOX, "opted_out"},

    /* ---- help; a number we did not know becomes an unknown contact without consent */
    {PH(00101), "AIDE", "help", T_HELP,
     "SELECT unknown, consent_at IS NULL FROM contacts WHERE phone = '$PHONE'", "t|t"},
    {PH(00102), "help", "help", T_HELP, Q_FLOW, "aide"},
    {PH(00103), "INFO", "help", T_HELP, Q_FLOW, "aide"},
    {PH(00104), "?", "help", T_HELP, Q_FLOW, "aide"},
    {PH(00105), "Aide svp", "help", T_HELP, Q_FLOW, "aide"},

    /* ---- check-in at the open session 1234 (Atelier cuisine, named) */
    {PH(00201), "Check-in 1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"), Q_ATT("1234"),
     "1|sms"},
    {PH(00202), "check in 1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"), Q_ATT("1234"),
     "1|sms"},
    {PH(00203), "CHECKIN1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"), Q_ATT("1234"),
     "1|sms"},
    {PH(00204), "présent 1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"), Q_ATT("1234"),
     "1|sms"},
    {PH(00205), "CHEK 1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"), Q_ATT("1234"),
     "1|sms"},
    {PH(00206), "ici 1234 3", "check_ok", T_CHECK_OK("Atelier cuisine", "3"), Q_ATT("1234"),
     "3|sms"},
    /* the same phone again with another count: corrected, still one row */
    {PH(00201), "CHECK 1234 2", "check_updated", T_CHECK_UPD("Atelier cuisine", "2"),
     "SELECT count(*), max(people) FROM attendance WHERE contact_id = " CT, "1|2"},
    /* anonymous activity (5678, Accueil café): a count, nobody named */
    {PH(00207), "CHECK 5678 2", "check_ok", T_CHECK_OK("Accueil café", "2"),
     "SELECT count(*) FILTER (WHERE a.contact_id IS NULL AND a.people = 2 AND strpos(a.who, "
     "substr('$PHONE', 4)) = 0), (SELECT count(*) FROM attendance WHERE contact_id = " CT
     ") FROM attendance a JOIN activity_sessions s ON s.id = a.session_id WHERE s.code = '5678'",
     "1|0"},
    {PH(00207), "check 5678 4", "check_updated", T_CHECK_UPD("Accueil café", "4"),
     "SELECT count(*), max(a.people) FROM attendance a JOIN activity_sessions s ON s.id = "
     "a.session_id WHERE s.code = '5678'",
     "1|4"},
    /* closed since yesterday, unknown, bad counts, a code that is too short */
    {PH(00208), "CHECK 4321", "check_closed",
     "Le pointage pour Atelier cuisine n'est pas ouvert en ce moment.", Q_NO_ATT, "0"},
    {PH(00208), "CHECK 9999", "check_unknown", T_CHECK_UNKNOWN("9999"), Q_NO_ATT, "0"},
    {PH(00209), "CHECK 1234 400", "check_bad_count",
     "Nombre de personnes invalide (de 1 à 20). Exemple : CHECK 1234 3", Q_NO_ATT, "0"},
    {PH(00209), "check 1234 0", "check_bad_count",
     "Nombre de personnes invalide (de 1 à 20). Exemple : CHECK 1234 3", Q_NO_ATT, "0"},
    {PH(00211), "CHECK 12", "check_unknown", T_CHECK_UNKNOWN("12"), Q_NO_ATT, "0"},
    /* CHECK alone asks for the code; the next message answers */
    {PH(00210), "CHECK", "check_ask", T_CHECK_ASK, Q_CONV, "check_code"},
    {PH(00210), "1234", "check_ok", T_CHECK_OK("Atelier cuisine", "1"),
     "SELECT (SELECT flow FROM flow_runs WHERE message_id = $MSG), (SELECT count(*) FROM "
     "conversations WHERE contact_id = " CT "), (SELECT people FROM attendance WHERE contact_id "
     "= " CT ")",
     "check|0|1"},

    /* ---- job offers */
    {PH(00301), "JOB", "job_list", T_JOB_LIST, Q_CONV, "job_pick"},
    {PH(00302), "EMPLOI", "job_list", T_JOB_LIST, Q_FLOW, "job"},
    {PH(00303), "JOB 2", "job_detail", T_JOB2, Q_FLOW, "job"},
    {PH(00303), "JOB 99", "job_unknown", "Offre 99 introuvable. Envoyez JOB pour la liste.",
     Q_FLOW, "job"},
    {PH(00306), "TRAVAIL 1", "job_detail", T_JOB1, Q_FLOW, "job"},
    {PH(00304), "job cuisine", "job_sub", "Vous recevrez les offres Cuisine. Pour arreter : JOB STOP.",
     "SELECT (" Q_SUBS("job") "), consent_source, unknown FROM contacts WHERE phone = '$PHONE'",
     "cuisine|sms|f"},
    {PH(00304), "JOB Ménage", "job_sub", "Vous recevrez les offres Ménage. Pour arreter : JOB STOP.",
     Q_SUBS("job"), "cuisine,menage"},
    {PH(00304), "JOB peinture", "job_categories",
     "Métiers : CUISINE, MENAGE. Envoyez JOB + métier pour etre alerté.", Q_SUBS("job"),
     "cuisine,menage"},
    {PH(00304), "JOB STOP", "job_unsub", "Vous ne recevrez plus d'alertes emploi.", Q_SUBS("job"),
     "-"},
    /* JOB, then the number of an offer */
    {PH(00305), "JOB", "job_list", T_JOB_LIST, Q_CONV, "job_pick"},
    {PH(00305), "3", "job_detail", T_JOB3, Q_CONV, "-"},

    /* ---- lending: 12 Perceuse and 15 Poussette available, 20 Vélo lent (seed) */
    {PH(00401), "PRET", "loan_list", T_LOAN_LIST2, Q_CONV, "loan_pick"},
    {PH(00402), "Prêt", "loan_list", T_LOAN_LIST2, Q_FLOW, "pret"},
    {PH(00403), "prêt 12", "loan_pending", T_LOAN_PENDING("Perceuse"), Q_LOAN("12"),
     "requested|reserved"},
    {PH(00403), "PRET12", "loan_already", "Votre demande pour Perceuse est déjà enregistrée.",
     "SELECT count(*) FROM loans WHERE contact_id = " CT, "1"},
    {PH(00404), "PRET 12", "loan_unavailable_nodate", "Perceuse n'est pas disponible en ce moment.",
     "SELECT count(*) FROM loans WHERE contact_id = " CT, "0"},
    {PH(00404), "PRET 20", "loan_unavailable",
     "SELECT 'Vélo est déjà preté, retour prévu le ' || to_char(l.due_at AT TIME ZONE "
     "'Europe/Paris', 'DD/MM') || '.' FROM loans l JOIN items i ON i.id = l.item_id WHERE "
     "i.centre_id = $CENTRE AND i.code = '20' AND l.status = 'confirmed'",
     "SELECT count(*) FROM loans WHERE contact_id = " CT, "0", NULL, R_REPLY_SQL},
    {PH(00404), "PRET 99", "loan_unknown", "Objet 99 inconnu. Envoyez PRET pour la liste.",
     "SELECT count(*) FROM loans WHERE contact_id = " CT, "0"},
    {PH(00405), "EMPRUNT", "loan_list", T_LOAN_LIST1, Q_FLOW, "pret"},
    /* PRET, then the code of an item */
    {PH(00406), "PRET", "loan_list", T_LOAN_LIST1, Q_CONV, "loan_pick"},
    {PH(00406), "15", "loan_pending", T_LOAN_PENDING("Poussette"), Q_LOAN("15"),
     "requested|reserved"},

    /* ---- RENDU: a requested loan is cancelled, a confirmed one is to be checked by staff */
    {PH(00406), "RENDU 15", "loan_cancelled", "Demande de pret de Poussette annulée.",
     Q_LOAN("15"), "cancelled|available"},
    {PH(00403), "rendu 12", "return_ok", "Merci ! Retour de Perceuse noté, l'équipe le vérifie.",
     "SELECT l.status, i.state, l.return_requested_at IS NOT NULL FROM loans l JOIN items i ON "
     "i.id = l.item_id WHERE i.code = '12' AND l.contact_id = " CT,
     "return_requested|lent|t",
     "SELECT id FROM loans WHERE contact_id = " CT " AND status = 'requested'", R_CONFIRM_LOAN},
    {PH(00406), "RENDU 77", "return_unknown", "Aucun pret en cours pour 77.", Q_FLOW, "rendu"},
    {PH(00406), "RENDU", "return_ask", "Envoyez RENDU + code de l'objet (ex. RENDU 12).", Q_FLOW,
     "rendu"},
    {PH(00406), "RENDU 15", "return_unknown", "Aucun pret en cours pour 15.", Q_LOAN("15"),
     "cancelled|available"},

    /* ---- OK / OUI / REÇU: acknowledge the latest reminder sent */
    {PH(00501), "OK", "ack_ok", T_ACK_OK, Q_ACK, "t|t", PRE_REMINDER("queued", "-1 hour")},
    {PH(00501), "OK", "ack_none", T_ACK_NONE,
     "SELECT count(*) FROM reminder_occurrences WHERE acked_at IS NOT NULL AND contact_id = " CT,
     "1"},
    {PH(00502), "OUI", "ack_ok", T_ACK_OK, Q_ACK, "t|t", PRE_REMINDER("queued", "-1 hour")},
    {PH(00503), "reçu", "ack_ok", T_ACK_OK, Q_ACK, "t|t", PRE_REMINDER("queued", "-2 hours")},
    /* a reminder still to come is not acknowledged */
    {PH(00504), "Reçu", "ack_none", T_ACK_NONE, Q_ACK, "f|NULL", PRE_REMINDER("pending", "1 hour")},

    /* ---- ALERTE */
    {PH(00601), "ALERTE", "alert_topics", T_ALERT_TOPICS, Q_SUBS("alert"), "-"},
    {PH(00601), "alerte sortie", "alert_sub", T_ALERT_SUB("SORTIE"), Q_SUBS("alert"), "sortie"},
    {PH(00601), "ALERTE Atelier", "alert_sub", T_ALERT_SUB("ATELIER"), Q_SUBS("alert"),
     "atelier,sortie"},
    {PH(00601), "ALERTE STOP sortie", "alert_unsub", "Vous ne recevrez plus les alertes SORTIE.",
     Q_SUBS("alert"), "atelier"},
    {PH(00601), "ALERTE STOP", "alert_unsub_all", "Vous ne recevrez plus d'alertes.",
     Q_SUBS("alert"), "-"},
    {PH(00602), "alerte foot", "alert_unknown", "Thème FOOT inconnu. Thèmes : ATELIER, SORTIE.",
     Q_SUBS("alert"), "-"},
    {PH(00602), "Alerte sortie famille", "alert_sub", T_ALERT_SUB("SORTIE"), Q_SUBS("alert"),
     "sortie"},

    /* ---- anything else: the inbox, one automatic help reply per resident per day */
    {PH(00701), "bonjour", "inbox_replied", T_UNKNOWN,
     "SELECT i.reason, c.help_replied_on IS NOT NULL FROM inbox i JOIN contacts c ON c.id = "
     "i.contact_id WHERE i.message_id = $MSG",
     "not_understood|t"},
    {PH(00701), "Tu es là ?", "inbox", NULL, Q_INBOX, "not_understood"},
    {PH(00702), "", "inbox_replied", T_UNKNOWN,
     "SELECT i.reason, length(m.body) FROM inbox i JOIN messages m ON m.id = i.message_id WHERE "
     "i.message_id = $MSG",
     "not_understood|0"},
    {PH(00702), "   ", "inbox", NULL, Q_INBOX, "not_understood"},
    {PH(00703), "\xf0\x9f\x91\x8d", "inbox_replied", T_UNKNOWN,
     "SELECT i.reason, m.body = U&'\\+01F44D', m.encoding FROM inbox i JOIN messages m ON m.id = "
     "i.message_id WHERE i.message_id = $MSG",
     "not_understood|t|ucs2"},
    {PH(00704), NULL, "inbox_replied", T_UNKNOWN,
     "SELECT i.reason, length(m.body), m.segments FROM inbox i JOIN messages m ON m.id = "
     "i.message_id WHERE i.message_id = $MSG",
     "not_understood|1000|7", NULL, R_LONG_TEXT},
    {PH(00704), "\t\n ", "inbox", NULL, Q_INBOX, "not_understood"},
    {PH(00705), "Merci beaucoup", "inbox_replied", T_UNKNOWN, Q_INBOX, "not_understood"},
};
#pragma GCC diagnostic pop

#define NROWS (sizeof table / sizeof table[0])

static void run_row(size_t i, const struct row *rw)
{
    char label[160], what[256];
    char longtext[1001];
    const char *text = rw->text;
    if (rw->flags & R_LONG_TEXT) {
        for (int k = 0; k < 1000; k++)
            longtext[k] = "Bonjour, je voudrais savoir "[k % 28];
        longtext[1000] = '\0';
        text = longtext;
    }
    label_of(text, strlen(text), label, sizeof label);
    snprintf(what, sizeof what, "row %zu ('%s' from %s)", i + 1, label, rw->phone);

    if (rw->pre && (rw->flags & R_CONFIRM_LOAN)) {
        char *q = expand(rw->pre, rw->phone, 0);
        char *loan = h_sql_str(G.conninfo, "%s", q);
        H_ASSERT(loan, "%s: no loan to confirm (%s)", what, q);
        char *out = NULL;
        int rc = CTL(&out, "loan", "confirm", loan);
        H_ASSERT(rc == 0, "%s: gatewayctl loan confirm %s: exit %d, %s %s", what, loan, rc, out,
                 h_ctl_stderr());
        free(out);
        free(loan);
        free(q);
    } else if (rw->pre) {
        char *q = expand(rw->pre, rw->phone, 0);
        h_sql_exec(G.conninfo, "%s", q);
        free(q);
    }
    char *want_reply = NULL;
    if (rw->reply && (rw->flags & R_REPLY_SQL)) {
        char *q = expand(rw->reply, rw->phone, 0);
        want_reply = h_sql_str(G.conninfo, "%s", q);
        H_ASSERT(want_reply, "%s: the query of the expected reply gave nothing: %s", what, q);
        free(q);
    } else if (rw->reply) {
        want_reply = h_printf("%s", rw->reply);
    }

    long long msg = inbound(rw->phone, text);
    expect_outcome(msg, rw->outcome, what);
    if (want_reply)
        expect_reply(msg, rw->phone, want_reply,
                     str_eq(rw->outcome, "stop_ok") ? "optout" : "replies", what);
    else
        expect_no_reply(msg, what);
    if (rw->check) {
        char *q = expand(rw->check, rw->phone, msg);
        char *got = h_sql_rows(G.conninfo, "%s", q);
        H_ASSERT(str_eq(got, rw->want), "%s: database effect\n  query    %s\n  expected %s\n  got "
                                        "     %s",
                 what, q, rw->want, got);
        free(got);
        free(q);
    }
    free(want_reply);
    G.rows_run++;
}

static void test_table(void **state)
{
    (void)state;
    H_ASSERT(NROWS >= 60, "the table has %zu rows", NROWS);
    for (size_t i = 0; i < NROWS; i++)
        run_row(i, &table[i]);
    h_log("table: %d inbound texts, %d replies delivered", G.rows_run, G.replies_delivered);
}

/* ------------------------------------------------------------------ 2. staff and loans */

/* A resident asks for item `code` by SMS; returns the loan id. */
static long long request_item(const char *phone, const char *code, const char *item)
{
    char *text = h_printf("PRET %s", code);
    long long msg = inbound(phone, text);
    expect_outcome(msg, "loan_pending", text);
    char *want = h_printf("Demande enregistrée : %s. L'équipe vous confirmera par SMS.", item);
    expect_reply(msg, phone, want, "replies", text);
    long long loan = h_sql_int(G.conninfo,
                               "SELECT l.id FROM loans l JOIN items i ON i.id = l.item_id WHERE "
                               "i.code = '%s' AND l.status = 'requested'",
                               code);
    free(want);
    free(text);
    return loan;
}

static void test_loan_staff_actions(void **state)
{
    (void)state;
    h_sql_exec(G.conninfo,
               "INSERT INTO items (centre_id, code, name) VALUES (%lld, '40', 'Tente'), (%lld, "
               "'41', 'Raclette'), (%lld, '42', 'Scie')",
               G.centre, G.centre, G.centre);
    long long l40 = request_item(PH(00801), "40", "Tente");
    long long l41 = request_item(PH(00802), "41", "Raclette");
    long long l42 = request_item(PH(00803), "42", "Scie");
    char id40[24], id41[24], id42[24];
    snprintf(id40, sizeof id40, "%lld", l40);
    snprintf(id41, sizeof id41, "%lld", l41);
    snprintf(id42, sizeof id42, "%lld", l42);

    /* loan list shows the three requests */
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "loan", "list", CENTRE, NULL);
    H_ASSERT(rc == 0 && strstr(out, "Tente") && strstr(out, "Raclette") && strstr(out, "Scie"),
             "gatewayctl loan list: exit %d, expected the three requests, got:\n%s", rc, out);
    free(out);

    /* confirm for 10 days: the date is computed in the centre's time zone */
    char *date_before = h_sql_str(G.conninfo, "SELECT to_char((now() + interval '10 days') AT "
                                              "TIME ZONE 'Europe/Paris', 'DD/MM/YYYY')");
    rc = CTL(&out, "loan", "confirm", id40, "--days", "10");
    char *date_after = h_sql_str(G.conninfo, "SELECT to_char((now() + interval '10 days') AT "
                                             "TIME ZONE 'Europe/Paris', 'DD/MM/YYYY')");
    H_ASSERT(rc == 0, "gatewayctl loan confirm %s --days 10: exit %d, %s %s", id40, rc, out,
             h_ctl_stderr());
    H_ASSERT(strstr(out, "confirm done"), "gatewayctl loan confirm printed '%s'", out);
    free(out);
    char *st = h_sql_rows(G.conninfo,
                          "SELECT l.status, i.state, to_char(l.due_at AT TIME ZONE "
                          "'Europe/Paris', 'DD/MM/YYYY') FROM loans l JOIN items i ON i.id = "
                          "l.item_id WHERE l.id = %lld",
                          l40);
    char *w1 = h_printf("confirmed|lent|%s", date_before);
    char *w2 = h_printf("confirmed|lent|%s", date_after);
    H_ASSERT(str_eq(st, w1) || str_eq(st, w2), "loan %lld after confirm: expected %s, got %s", l40,
             w1, st);
    char *idem = h_printf("loan:%lld:confirm:0", l40);
    char *sms = h_printf("Pret confirmé : Tente, à rendre le %s.", st + strlen("confirmed|lent|"));
    expect_sms(idem, PH(00801), sms, "replies", 1, "loan confirm SMS");
    free(idem);
    free(sms);
    free(st);
    free(w1);
    free(w2);
    free(date_before);
    free(date_after);

    /* confirming again: 409, exit 1, nothing changes, no second SMS */
    rc = CTL(&out, "loan", "confirm", id40, "--days", "10");
    H_ASSERT(rc == 1 && strstr(h_ctl_stderr(), "409"),
             "gatewayctl loan confirm on a confirmed loan: expected exit 1 (HTTP 409), got %d, "
             "%s %s",
             rc, out, h_ctl_stderr());
    free(out);
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM messages WHERE idempotency_key LIKE 'loan:%lld:%%'",
                       l40) == 1,
             "a refused second confirmation sent an SMS");

    /* refuse */
    rc = CTL(&out, "loan", "refuse", id41);
    H_ASSERT(rc == 0, "gatewayctl loan refuse %s: exit %d, %s %s", id41, rc, out, h_ctl_stderr());
    free(out);
    st = h_sql_rows(G.conninfo,
                    "SELECT l.status, i.state FROM loans l JOIN items i ON i.id = l.item_id "
                    "WHERE l.id = %lld",
                    l41);
    H_ASSERT(str_eq(st, "refused|available"), "loan %lld after refuse: expected refused|available, "
                                              "got %s",
             l41, st);
    free(st);
    idem = h_printf("loan:%lld:refuse:0", l41);
    expect_sms(idem, PH(00802),
               "Désolé, le pret de Raclette n'a pas pu etre accepté. Contactez l'équipe.",
               "replies", 1, "loan refuse SMS");
    free(idem);

    /* returned */
    rc = CTL(&out, "loan", "returned", id40);
    H_ASSERT(rc == 0, "gatewayctl loan returned %s: exit %d, %s %s", id40, rc, out,
             h_ctl_stderr());
    free(out);
    st = h_sql_rows(G.conninfo,
                    "SELECT l.status, i.state, l.returned_at IS NOT NULL FROM loans l JOIN items "
                    "i ON i.id = l.item_id WHERE l.id = %lld",
                    l40);
    H_ASSERT(str_eq(st, "returned|available|t"),
             "loan %lld after returned: expected returned|available|t, got %s", l40, st);
    free(st);
    idem = h_printf("loan:%lld:returned:0", l40);
    expect_sms(idem, PH(00801), "Retour de Tente confirmé. Merci !", "replies", 1,
               "loan returned SMS");
    free(idem);

    /* a requested loan cannot be marked returned; an unknown loan is exit 3 (404) */
    rc = CTL(&out, "loan", "returned", id42);
    H_ASSERT(rc == 1 && strstr(h_ctl_stderr(), "409"),
             "gatewayctl loan returned on a requested loan: expected exit 1 (409), got %d %s", rc,
             h_ctl_stderr());
    free(out);
    rc = CTL(&out, "loan", "confirm", "99999999");
    H_ASSERT(rc == 3, "gatewayctl loan confirm 99999999: expected exit 3 (404), got %d %s", rc,
             h_ctl_stderr());
    free(out);
    st = h_sql_str(G.conninfo, "SELECT status FROM loans WHERE id = %lld", l42);
    H_ASSERT(str_eq(st, "requested"), "loan %lld should still be requested, it is %s", l42, st);
    free(st);
}

/* ------------------------------------------------------------------ 3. STOP vs 100 queued */

static long long sim_accepted(void)
{
    struct h_resp *r = h_get(G.d, "/healthz", NULL);
    H_ASSERT(r->status == 200 && r->json, "GET /healthz: %ld %s", r->status, r->body);
    long long n = h_jint(r->json, "routes.sim.accepted");
    h_resp_free(r);
    return n;
}

static struct h_resp *api_send(const char *to, const char *text, const char *send_at)
{
    json_t *o = json_pack("{s:s,s:s}", "to", to, "text", text);
    if (send_at)
        json_object_set_new(o, "send_at", json_string(send_at));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key, body);
    free(body);
    return r;
}

#define STOP_PHONE "+33630000001"
/* the 100 scheduled messages (in an h_sql_* format string: %% is one %) */
#define Q100 "phone = '" STOP_PHONE "' AND direction = 'out' AND kind IS NULL AND body LIKE 'Rappel %%'"

static void test_stop_cancels_queued(void **state)
{
    (void)state;
    time_t at = (time_t)h_wall() + 30;
    struct tm tm;
    gmtime_r(&at, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (int i = 0; i < 100; i++) {
        char text[64];
        snprintf(text, sizeof text, "Rappel %d : atelier cuisine demain 14h", i + 1);
        struct h_resp *r = api_send(STOP_PHONE, text, ts);
        H_ASSERT(r->status == 202, "API send %d with send_at %s: expected 202, got %ld %s", i + 1,
                 ts, r->status, r->body);
        h_resp_free(r);
    }
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE " Q100
                                   " AND status = 'queued'") == 100,
             "the 100 scheduled messages should be queued");

    long long msg = inbound(STOP_PHONE, "STOP");
    expect_outcome(msg, "stop_ok", "STOP with 100 queued");
    /* right after the 200: every one cancelled, out of the queue, never tried */
    char *st = h_sql_rows(G.conninfo,
                          "SELECT status, error_code, count(*) FROM messages WHERE " Q100
                          " GROUP BY 1, 2");
    H_ASSERT(str_eq(st, "cancelled|opted_out|100"),
             "after STOP: expected the 100 messages cancelled|opted_out, got %s", st);
    free(st);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM outbox_queue q JOIN messages m ON m.id = "
                                   "q.message_id WHERE " Q100) == 0,
             "after STOP: cancelled messages are still in outbox_queue");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM attempts a JOIN messages m ON m.id = "
                                   "a.message_id WHERE " Q100) == 0,
             "after STOP: a cancelled message has an attempt");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM message_events e JOIN messages m ON m.id "
                                   "= e.message_id WHERE e.status = 'cancelled' AND " Q100) == 100,
             "after STOP: expected one 'cancelled' event per message");
    /* the one confirmation goes out anyway */
    expect_reply(msg, STOP_PHONE, T_STOP, "optout", "STOP confirmation");
    long long accepted = sim_accepted();

    /* past send_at: still nothing sent */
    int checks = 0;
    while (h_wall() < (double)at + 4) {
        long long n = h_sql_int(G.conninfo,
                                "SELECT count(*) FROM messages WHERE " Q100
                                " AND (status <> 'cancelled' OR attempts > 0)");
        H_ASSERT(n == 0, "%lld of the cancelled messages moved (%.0f s before send_at)", n,
                 (double)at - h_wall());
        checks++;
        h_sleep_ms(500);
    }
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM attempts a JOIN messages m ON m.id = "
                                   "a.message_id WHERE " Q100) == 0,
             "after send_at: a cancelled message has an attempt");
    long long accepted_after = sim_accepted();
    H_ASSERT(accepted_after == accepted, "after send_at: the simulator accepted %lld more sends",
             accepted_after - accepted);
    h_log("STOP: 100 scheduled messages cancelled, none sent %d checks later (past %s)", checks,
          ts);

    /* the API refuses a new message to that number */
    struct h_resp *r = api_send(STOP_PHONE, "Nouvelle activité samedi", NULL);
    h_expect_error(r, 422, "opted_out", "API send to a number that texted STOP");
    h_resp_free(r);

    /* START: sends are accepted and delivered again */
    msg = inbound(STOP_PHONE, "START");
    expect_outcome(msg, "start_ok", "START after STOP");
    expect_reply(msg, STOP_PHONE, T_START, "replies", "START after STOP");
    r = api_send(STOP_PHONE, "Nouvelle activité samedi", NULL);
    H_ASSERT(r->status == 202, "API send after START: expected 202, got %ld %s", r->status, r->body);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    char *s = poll_sql(REPLY_TIMEOUT_S, "delivered", "SELECT status FROM messages WHERE id = %lld",
                       id);
    H_ASSERT(str_eq(s, "delivered"), "API send after START: message %lld is %s, not delivered", id,
             s ? s : "?");
    free(s);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE " Q100
                                   " AND status <> 'cancelled'") == 0,
             "START must not bring the cancelled messages back");
}

/* ------------------------------------------------------------------ 4. loop protection */

#define LOOP_PHONE "+33640000001"

static void test_loop_protection(void **state)
{
    (void)state;
    long long ids[26];
    for (int i = 0; i < 25; i++) {
        ids[i] = inbound(LOOP_PHONE, "AIDE");
        char what[64];
        snprintf(what, sizeof what, "AIDE number %d from one phone", i + 1);
        if (i < 20) {
            expect_outcome(ids[i], "help", what);
            long long n = h_sql_int(G.conninfo,
                                    "SELECT jsonb_array_length(replies) FROM flow_runs WHERE "
                                    "message_id = %lld",
                                    ids[i]);
            H_ASSERT(n == 1, "%s: expected one reply, flow_runs has %lld", what, n);
        } else {
            expect_outcome(ids[i], "loop", what);
            expect_no_reply(ids[i], what);
            char *reason = h_sql_str(G.conninfo, "SELECT reason FROM inbox WHERE message_id = %lld",
                                     ids[i]);
            H_ASSERT(str_eq(reason, "loop"), "%s: expected inbox reason loop, got %s", what,
                     reason ? reason : "(not in the inbox)");
            free(reason);
        }
    }
    /* the 20 replies are delivered */
    char *n = poll_sql(REPLY_TIMEOUT_S, "20",
                       "SELECT count(*) FROM messages WHERE phone = '" LOOP_PHONE
                       "' AND direction = 'out' AND status = 'delivered'");
    H_ASSERT(str_eq(n, "20"), "loop: expected the 20 help replies delivered, got %s", n);
    free(n);
    /* STOP still takes effect, silently */
    ids[25] = inbound(LOOP_PHONE, "STOP");
    expect_outcome(ids[25], "loop", "STOP in loop mode");
    expect_no_reply(ids[25], "STOP in loop mode");
    char *o = h_sql_str(G.conninfo, "SELECT opted_out_at IS NOT NULL FROM contacts WHERE phone = "
                                    "'" LOOP_PHONE "'");
    H_ASSERT(str_eq(o, "t"), "STOP in loop mode: the contact should be opted out (%s)", o);
    free(o);
    /* nothing more was sent to that phone */
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE phone = '" LOOP_PHONE
                                   "' AND direction = 'out'") == 20,
             "loop: more than 20 messages were sent to the looping phone");
}

/* ------------------------------------------------------------------ 5. unknown numbers */

static void test_unknown_numbers_inbox(void **state)
{
    (void)state;
    h_sql_exec(G.conninfo,
               "UPDATE centres SET settings = settings || '{\"unknown_numbers\":\"inbox\"}' WHERE "
               "id = %lld",
               G.centre);
    const char *fresh = "+33650000001";
    long long msg = inbound(fresh, "AIDE");
    expect_outcome(msg, "inbox_unknown_number", "AIDE from an unknown number (inbox setting)");
    expect_no_reply(msg, "AIDE from an unknown number (inbox setting)");
    char *r = h_sql_rows(G.conninfo,
                         "SELECT reason, contact_id IS NULL FROM inbox WHERE message_id = %lld",
                         msg);
    H_ASSERT(str_eq(r, "unknown_number|t"), "unknown number: expected inbox unknown_number without "
                                            "contact, got %s",
             r);
    free(r);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM contacts WHERE phone = '%s'", fresh) == 0,
             "unknown number (inbox setting): a contact was created");

    /* a known resident still gets answers */
    msg = inbound(PH(00101), "AIDE");
    expect_outcome(msg, "help", "AIDE from a known resident (inbox setting)");
    expect_reply(msg, PH(00101), T_HELP, "replies", "AIDE from a known resident (inbox setting)");

    /* STOP from an unknown number still opts it out */
    const char *fresh2 = "+33650000002";
    msg = inbound(fresh2, "STOP");
    expect_outcome(msg, "stop_ok", "STOP from an unknown number (inbox setting)");
    expect_reply(msg, fresh2, T_STOP, "optout", "STOP from an unknown number (inbox setting)");
    r = h_sql_rows(G.conninfo, "SELECT opted_out_at IS NOT NULL FROM contacts WHERE phone = '%s'",
                   fresh2);
    H_ASSERT(str_eq(r, "t"), "STOP from an unknown number: expected an opted-out contact, got %s",
             r);
    free(r);
    h_sql_exec(G.conninfo, "UPDATE centres SET settings = settings - 'unknown_numbers' WHERE id = "
                           "%lld",
               G.centre);
}

/* ------------------------------------------------------------------ 6. USSD */

#define USSD_PHONE "+33660000001"
#define MENU_STOP                                                                                  \
    "Les Oliviers\n1 Pointer une activité\n2 Offres d'emploi\n3 Pret de matériel\n4 Mon "        \
    "prochain rappel\n5 Ne plus recevoir de SMS"
#define MENU_START                                                                                 \
    "Les Oliviers\n1 Pointer une activité\n2 Offres d'emploi\n3 Pret de matériel\n4 Mon "        \
    "prochain rappel\n5 Recevoir à nouveau les SMS"

static struct h_resp *ussd_raw(const char *centre_path, const char *body)
{
    char *url = h_printf("%s/ussd/%s", G.d->url, centre_path);
    struct h_resp *r =
        h_http("POST", url, NULL, "application/x-www-form-urlencoded", body, strlen(body));
    free(url);
    return r;
}

/* Checks a USSD answer: status, text/plain, "CON "/"END " + at most 182 GSM-7 characters. */
static void ussd_check(struct h_resp *r, long status, const char *want, const char *what)
{
    H_ASSERT(r->status == status, "USSD %s: expected HTTP %ld, got %ld '%s'%s", what, status,
             r->status, r->body ? r->body : "", r->err);
    H_ASSERT(!strncmp(r->content_type, "text/plain", 10),
             "USSD %s: expected a text/plain answer, got '%s'", what, r->content_type);
    H_ASSERT(r->body && (!strncmp(r->body, "CON ", 4) || !strncmp(r->body, "END ", 4)),
             "USSD %s: the answer must start with CON or END: '%s'", what, r->body);
    int septets = gsm7_septets(r->body + 4);
    H_ASSERT(septets >= 0 && septets <= 182,
             "USSD %s: the screen must be at most 182 GSM-7 characters (%d): '%s'", what, septets,
             r->body);
    H_ASSERT(str_eq(r->body, want), "USSD %s:\n  expected '%s'\n  got      '%s'", what, want,
             r->body);
}

static char G_session_prefix[32];

/* One request of session `sid` (prefixed with the pid) from phone with text; asserts 200 and
 * the screen. */
static void ussd_step(const char *sid, const char *phone, const char *text, const char *want)
{
    char *s = h_printf("%s%s", G_session_prefix, sid);
    char *p = form_escape(phone, strlen(phone));
    char *svc = form_escape(SERVICE, strlen(SERVICE));
    char *t = form_escape(text, strlen(text));
    char *body = h_printf("sessionId=%s&serviceCode=%s&phoneNumber=%s&text=%s&networkCode=20801",
                          s, svc, p, t);
    struct h_resp *r = ussd_raw("Les%20Oliviers", body);
    char *what = h_printf("session %s text '%s'", sid, text);
    ussd_check(r, 200, want, what);
    h_resp_free(r);
    free(what);
    free(body);
    free(t);
    free(svc);
    free(p);
    free(s);
}

static void test_ussd_sessions(void **state)
{
    (void)state;
    snprintf(G_session_prefix, sizeof G_session_prefix, "ATs%d-", (int)getpid());

    /* 1: check in */
    ussd_step("chk", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("chk", USSD_PHONE, "1", "CON Code de l'activité (sur l'affiche) :");
    ussd_step("chk", USSD_PHONE, "1*1234", "CON Nombre de personnes (1 à 20) :");
    ussd_step("chk", USSD_PHONE, "1*1234*2", "END " T_CHECK_OK("Atelier cuisine", "2"));
    char *r = h_sql_rows(G.conninfo,
                         "SELECT a.people, a.channel FROM attendance a JOIN activity_sessions s "
                         "ON s.id = a.session_id JOIN contacts c ON c.id = a.contact_id WHERE "
                         "s.code = '1234' AND c.phone = '" USSD_PHONE "'");
    H_ASSERT(str_eq(r, "2|ussd"), "USSD check-in: expected attendance 2|ussd, got %s", r);
    free(r);
    /* the session ended: a further request is refused */
    ussd_step("chk", USSD_PHONE, "1*1234*2*1", "END Session inconnue. Composez à nouveau *384*12#.");

    /* 2: job offers, the detail by SMS */
    ussd_step("job", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("job", USSD_PHONE, "2",
              "CON Offres d'emploi :\n1 Vendeur en boulangerie\n2 Aide cuisinier\n3 Agent "
              "d'entretien\n4 Plongeur\nChoisissez un numéro :");
    ussd_step("job", USSD_PHONE, "2*1",
              "END Le détail de l'offre Vendeur en boulangerie vous est envoyé par SMS.");
    char idem[96];
    snprintf(idem, sizeof idem, "ussd:%sjob:2:0", G_session_prefix);
    expect_sms(idem, USSD_PHONE, T_JOB4, "replies", 1, "USSD job detail SMS");

    /* 3: lending (available now: 15 Poussette, 40 Tente, 41 Raclette) */
    ussd_step("itm", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("itm", USSD_PHONE, "3",
              "CON Objets disponibles :\n1 Poussette\n2 Tente\n3 Raclette\nChoisissez un numéro :");
    ussd_step("itm", USSD_PHONE, "3*1",
              "END Demande enregistrée : Poussette. L'équipe vous confirmera par SMS.");
    r = h_sql_rows(G.conninfo,
                   "SELECT l.status, l.channel, i.state FROM loans l JOIN items i ON i.id = "
                   "l.item_id JOIN contacts c ON c.id = l.contact_id WHERE i.code = '15' AND "
                   "c.phone = '" USSD_PHONE "'");
    H_ASSERT(str_eq(r, "requested|ussd|reserved"),
             "USSD loan request: expected requested|ussd|reserved, got %s", r);
    free(r);

    /* 4: the next reminder, none then one */
    ussd_step("rm1", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("rm1", USSD_PHONE, "4", "END Aucun rappel prévu.");
    h_sql_exec(G.conninfo,
               "INSERT INTO reminder_occurrences (centre_id, contact_id, due_at, body, status) "
               "SELECT %lld, id, date_trunc('minute', now() + interval '1 day'), 'Atelier "
               "cuisine, apportez un tablier', 'pending' FROM contacts WHERE phone = "
               "'" USSD_PHONE "'",
               G.centre);
    char *when = h_sql_str(G.conninfo,
                           "SELECT to_char(due_at AT TIME ZONE 'Europe/Paris', 'DD/MM à HH24:MI') "
                           "FROM reminder_occurrences o JOIN contacts c ON c.id = o.contact_id "
                           "WHERE c.phone = '" USSD_PHONE "'");
    char *want = h_printf("END Prochain rappel le %s :\nAtelier cuisine, apportez un tablier",
                          when);
    ussd_step("rm2", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("rm2", USSD_PHONE, "4", want);
    free(want);
    free(when);

    /* 5: stop, cancelled; stop, confirmed (SMS 'optout'); start */
    ussd_step("st1", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("st1", USSD_PHONE, "5",
              "CON Ne plus recevoir de SMS de Les Oliviers ?\n1 Oui\n2 Non");
    ussd_step("st1", USSD_PHONE, "5*2", "END Rien n'a été changé.");
    r = h_sql_str(G.conninfo, "SELECT opted_out_at IS NULL FROM contacts WHERE phone = "
                              "'" USSD_PHONE "'");
    H_ASSERT(str_eq(r, "t"), "USSD stop cancelled: the contact must not be opted out (%s)", r);
    free(r);
    ussd_step("st2", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("st2", USSD_PHONE, "5",
              "CON Ne plus recevoir de SMS de Les Oliviers ?\n1 Oui\n2 Non");
    ussd_step("st2", USSD_PHONE, "5*1", "END " T_STOP);
    r = h_sql_rows(G.conninfo,
                   "SELECT c.opted_out_at IS NOT NULL, (SELECT count(*) FROM "
                   "reminder_occurrences o WHERE o.contact_id = c.id AND o.status = 'pending') "
                   "FROM contacts c WHERE c.phone = '" USSD_PHONE "'");
    H_ASSERT(str_eq(r, "t|0"), "USSD stop: expected opted out and no pending reminder, got %s", r);
    free(r);
    snprintf(idem, sizeof idem, "ussd:%sst2:2:0", G_session_prefix);
    expect_sms(idem, USSD_PHONE, T_STOP, "optout", 1, "USSD STOP confirmation SMS");
    /* opted out: only 5 works */
    ussd_step("st3", USSD_PHONE, "", "CON " MENU_START);
    ussd_step("st3", USSD_PHONE, "1",
              "END Vous etes désinscrit. Choisissez 5 dans le menu pour recevoir à nouveau les "
              "SMS.");
    ussd_step("st4", USSD_PHONE, "", "CON " MENU_START);
    ussd_step("st4", USSD_PHONE, "5",
              "CON Recevoir à nouveau les SMS de Les Oliviers ?\n1 Oui\n2 Non");
    ussd_step("st4", USSD_PHONE, "5*1", "END " T_START);
    r = h_sql_rows(G.conninfo, "SELECT opted_out_at IS NULL, consent_source FROM contacts WHERE "
                               "phone = '" USSD_PHONE "'");
    H_ASSERT(str_eq(r, "t|ussd"), "USSD start: expected opted in with consent ussd, got %s", r);
    free(r);

    /* bad input */
    ussd_step("bd1", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("bd1", USSD_PHONE, "9", "END Choix invalide. Composez à nouveau *384*12#.");
    ussd_step("bd2", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("bd2", USSD_PHONE, "1*abc", "END " T_USSD_CHECK_UNKNOWN("abc"));
    ussd_step("bd3", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("bd3", USSD_PHONE, "2*9", "END Choix invalide. Composez à nouveau *384*12#.");
    ussd_step("bd4", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("bd4", USSD_PHONE, "1*1234*99",
              "END Nombre de personnes invalide (de 1 à 20). Exemple : CHECK 1234 3");

    /* a session we never saw; one that went quiet */
    ussd_step("never", USSD_PHONE, "1", "END Session inconnue. Composez à nouveau *384*12#.");
    ussd_step("old", USSD_PHONE, "", "CON " MENU_STOP);
    h_sql_exec(G.conninfo,
               "UPDATE ussd_sessions SET last_at = now() - interval '10 minutes' WHERE "
               "session_id = '%sold'",
               G_session_prefix);
    ussd_step("old", USSD_PHONE, "1", "END Session expirée. Composez à nouveau *384*12#.");
    ussd_step("old", USSD_PHONE, "1*1234", "END Session inconnue. Composez à nouveau *384*12#.");
    /* another phone continuing someone's session */
    ussd_step("own", USSD_PHONE, "", "CON " MENU_STOP);
    ussd_step("own", "+33660000002", "1", "END Session inconnue. Composez à nouveau *384*12#.");

    /* the centre by id; a raw '+' in the phone number */
    char *body = h_printf("sessionId=%sbyid&serviceCode=%%2A384%%2A12%%23&phoneNumber=+33660000003"
                          "&text=",
                          G_session_prefix);
    char *path = h_printf("%lld", G.centre);
    struct h_resp *hr = ussd_raw(path, body);
    ussd_check(hr, 200, "CON " MENU_STOP, "centre by id, raw '+' in phoneNumber");
    h_resp_free(hr);
    free(path);
    free(body);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM contacts WHERE phone = '+33660000003'") ==
                 1,
             "USSD with a raw '+': the contact should be +33660000003");

    /* an unknown centre; malformed requests */
    hr = ussd_raw("Nulle%20Part", "sessionId=x1&serviceCode=%2A384%23&phoneNumber=%2B33660000001"
                                  "&text=");
    ussd_check(hr, 404, "END Service inconnu.", "unknown centre");
    h_resp_free(hr);
    hr = ussd_raw("Les%20Oliviers", "serviceCode=%2A384%23&phoneNumber=%2B33660000001&text=1");
    ussd_check(hr, 400, "END Requete invalide.", "without sessionId");
    h_resp_free(hr);
    hr = ussd_raw("Les%20Oliviers", "sessionId=x2&serviceCode=%2A384%23&text=1");
    ussd_check(hr, 400, "END Requete invalide.", "without phoneNumber");
    h_resp_free(hr);
    hr = ussd_raw("Les%20Oliviers", "sessionId=x3&phoneNumber=hello&text=");
    ussd_check(hr, 400, "END Requete invalide.", "phoneNumber=hello");
    h_resp_free(hr);
    hr = ussd_raw("Les%20Oliviers", "sessionId=x4&phoneNumber=%2B33660000001&text=1%2");
    ussd_check(hr, 400, "END Requete invalide.", "a broken %-escape");
    h_resp_free(hr);
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM ussd_sessions WHERE session_id IN ('x1', 'x2', "
                       "'x3', 'x4')") == 0,
             "refused USSD requests created sessions");
}

/* ------------------------------------------------------------------ 7. invalid UTF-8 */

static void test_inbound_invalid_utf8(void **state)
{
    (void)state;
    /* what a broken modem or aggregator may hand over: bytes that are not UTF-8 */
    static const char garbage[] = "\xff\xfe\x80" "abc\xc3" "(\x01\x7f";
    const char *phone = PH(00901);
    char *p = form_escape(phone, strlen(phone));
    char *t = form_escape(garbage, sizeof garbage - 1);
    char *form = h_printf("from=%s&text=%s", p, t);
    struct h_resp *r = h_post_form(G.d, "/providers/sim/inbound", form);
    long status = r->status;
    char *answer = h_printf("%ld %s", r->status, r->body ? r->body : r->err);
    long long id = status == 200 && r->json ? h_jint(r->json, "id") : 0;
    h_resp_free(r);
    free(form);
    free(p);
    free(t);
    H_ASSERT(h_daemon_alive(G.d), "the daemon died on an inbound SMS that is not UTF-8");
    long long rows = h_sql_int(G.conninfo,
                               "SELECT count(*) FROM messages WHERE direction = 'in' AND phone = "
                               "'%s'",
                               phone);
    H_ASSERT(status == 200 && id > 0 && rows == 1,
             "an inbound SMS that is not valid UTF-8 must be stored, not lost: the simulator "
             "answered %s and %lld message(s) from %s are stored (a provider told 503 \"send it "
             "again\" would send the same bytes again forever)",
             answer, rows, phone);
    free(answer);
    /* each byte that is not UTF-8 is kept as U+FFFD, the rest as sent */
    char *body = h_sql_rows(G.conninfo,
                            "SELECT body = U&'\\FFFD\\FFFD\\FFFDabc\\FFFD(' || chr(1) || chr(127), "
                            "encoding FROM messages WHERE id = %lld",
                            id);
    H_ASSERT(str_eq(body, "t|ucs2"), "an inbound SMS that is not UTF-8: expected the text with "
                                     "U+FFFD for each bad byte, in UCS-2; got %s (stored: %s)",
             body, h_sql_rows(G.conninfo, "SELECT quote_literal(body) FROM messages WHERE id = %lld", id));
    free(body);
    expect_outcome(id, "inbox_replied", "an inbound SMS that is not UTF-8");
    expect_reply(id, phone, T_UNKNOWN, "replies", "an inbound SMS that is not UTF-8");
}

/* ------------------------------------------------------------------ 8. clean stop */

static void test_clean_shutdown(void **state)
{
    (void)state;
    h_daemon_stop(G.d);
}

int main(int argc, char **argv)
{
    h_init("flows", argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_loan_staff_actions),
        cmocka_unit_test(test_stop_cancels_queued),
        cmocka_unit_test(test_loop_protection),
        cmocka_unit_test(test_unknown_numbers_inbox),
        cmocka_unit_test(test_ussd_sessions),
        cmocka_unit_test(test_inbound_invalid_utf8),
        cmocka_unit_test(test_clean_shutdown),
    };
    int failures = cmocka_run_group_tests_name("flows (one daemon)", tests, group_setup,
                                               group_teardown);
    h_exit(failures);
}
