/*
 * flow_match.h — forgiving keyword matcher for inbound SMS (two-way keyword flows).
 *
 * Residents text keywords from feature phones ("ARRÊT", "Check-in 1234", "CHEKC1234",
 * "Reçu !"). This module turns such a text into a flow id, the canonical keyword, the
 * normalised arguments and a typo flag. See flow_match.c for the full rule list.
 *
 * Normalisation (flow_normalize)
 *   - input must be valid UTF-8 (else -1);
 *   - Unicode NFKD, full case folding (then NFKD again): the output is LOWERCASE;
 *   - combining marks (Mn) and invisible format characters (Cf, e.g. soft hyphen) are dropped,
 *     so "é" -> "e" and "dé\u00ADsinscrire" -> "desinscrire";
 *   - œ -> oe, æ -> ae, ß -> ss (plus ø -> o, đ/ð -> d, ł -> l, ħ -> h, ı -> i, ŧ -> t,
 *     þ -> th); decimal digits of any script -> ASCII digits;
 *   - every other character (spaces, punctuation, symbols, emoji, letters of other scripts)
 *     is a separator; each run of separators becomes one space; leading/trailing removed.
 *   The result contains only [a-z0-9] words separated by single spaces, and normalising it
 *   again gives the same string (idempotent).
 *
 * Matching (flow_match / flow_match_table)
 *   - a message made only of '?' (and spaces) is HELP (it would otherwise normalise to "");
 *   - only the start of the message is matched; aliases with more words are tried first
 *     ("stop sms" before "stop", "check in" before "check");
 *   - letters glued to digits split: "CHECKIN1234" -> check + "1234", "PRET12" -> pret + "12";
 *   - exact matches (in table order) win over typo matches; a typo match allows one
 *     Damerau–Levenshtein edit (substitution, insertion, deletion, adjacent transposition)
 *     and only for aliases of 4 letters or more ("ok", "oui", "ici", "job" are exact only);
 *   - between typo candidates, the first alias in table order wins;
 *   - the canonical keyword of a flow is the first alias listed for that flow in the table.
 */
#ifndef FLOW_MATCH_H
#define FLOW_MATCH_H

#include <stddef.h>

enum flow_id {
    FLOW_NONE = 0,
    FLOW_STOP,   /* stop, arret, stop sms, desinscrire, desabonner */
    FLOW_START,  /* start, reprendre */
    FLOW_HELP,   /* aide, help, info, ? */
    FLOW_CHECK,  /* check, checkin, check in, present, ici */
    FLOW_JOB,    /* job, emploi, travail */
    FLOW_LOAN,   /* pret, emprunt */
    FLOW_RETURN, /* rendu */
    FLOW_ACK,    /* ok, oui, recu */
    FLOW_ALERT,  /* alerte */
    FLOW_COUNT   /* number of ids, not a flow */
};

/* One alias. `word` is already normalised (lowercase ASCII words, single spaces). */
struct flow_keyword {
    const char *word;
    int flow;
};

#define FLOW_KEYWORD_MAX 32
#define FLOW_ARGS_MAX 256

struct flow_match {
    int flow;                        /* enum flow_id; FLOW_NONE when nothing matched */
    char keyword[FLOW_KEYWORD_MAX];  /* canonical keyword ("check" for "check in"), "" if none */
    char args[FLOW_ARGS_MAX];        /* normalised text after the keyword; cut at 255 bytes */
    int typo;                        /* 1 when matched with one edit, else 0 */
};

/* The built-in French table (see enum flow_id comments), in priority order. */
extern const struct flow_keyword flow_keywords[];
extern const size_t flow_keywords_count;

/*
 * Normalise `len` bytes of `in` (see top of file) into `out` (NUL-terminated).
 * Returns the output length, or -1 when `in` is not valid UTF-8, `out` is too small
 * (needs length + 1 bytes), or memory runs out. On -1, out[0] = '\0' when outlen > 0.
 */
int flow_normalize(const char *in, size_t len, char *out, size_t outlen);

/*
 * Match `len` bytes of `text` against the built-in table. Fills *m (always, when m is not
 * NULL) and returns m->flow. Invalid UTF-8, empty text, or no keyword -> FLOW_NONE.
 */
int flow_match(const char *text, size_t len, struct flow_match *m);

/* Same as flow_match with a caller-supplied table of `n` aliases (normalised words). */
int flow_match_table(const struct flow_keyword *table, size_t n, const char *text, size_t len,
                     struct flow_match *m);

#endif /* FLOW_MATCH_H */
