/*
 * flow_match.c — forgiving keyword matcher for inbound SMS.
 *
 * RULES
 *
 * 1. Normalisation (flow_normalize), in this order:
 *    a. The input must be valid UTF-8 (u8_check); otherwise -1.
 *    b. NFKD (u8_normalize), then full Unicode case folding with NFKD of the result
 *       (u8_casefold(..., UNINORM_NFKD)). Fullwidth "ＳＴＯＰ" -> "stop", "ﬁ" -> "fi",
 *       "²" -> "2", "ẞ"/"ß" -> "ss". We produce LOWERCASE (not uppercase).
 *    c. Per code point: ASCII letters/digits are kept (lowercased); combining marks (Mn) and
 *       invisible format characters (Cf: soft hyphen, zero-width joiner, BOM) are dropped
 *       without splitting the word; œ->oe, æ->ae, ß->ss, ø->o, đ->d, ð->d, ł->l, ħ->h,
 *       ı->i, ŧ->t, þ->th; decimal digits of other scripts (Nd) -> ASCII digit. Everything
 *       else — spaces, hyphens, apostrophes, dots, any punctuation, symbols, emoji, letters
 *       of other scripts (Greek, Cyrillic, CJK…) — is a separator.
 *    d. Each run of separators becomes one space; leading and trailing spaces are removed.
 *    The output is [a-z0-9]+ words joined by single spaces; it is a fixed point of
 *    flow_normalize (normalising it again changes nothing).
 *
 * 2. Matching (flow_match_table; flow_match uses the built-in table flow_keywords):
 *    a. Invalid UTF-8 -> FLOW_NONE.
 *    b. If the message contains at least one '?' and otherwise only spaces (and ignorable
 *       marks), it matches the alias "?" of the table (HELP for the built-in table).
 *       "?" is checked on the NFKD/casefolded text, so fullwidth "？" counts too.
 *    c. Only the start of the normalised text is matched. For an alias of k words the
 *       candidate is the first k-1 words (letters only) plus the leading letters of word k:
 *       letters glued to digits split ("checkin1234" -> "checkin" + args "1234").
 *    d. Exact pass, then typo pass. In each pass aliases with more words are tried first
 *       ("stop sms", "check in"), then table order. The first hit wins.
 *    e. Typo pass: Damerau–Levenshtein (optimal string alignment) distance exactly 1
 *       between candidate and alias, only for aliases with 4 letters or more.
 *       "chek" / "chekc" -> check, "emploie" -> emploi, "arett" (2 edits) -> none,
 *       "oki" -> none (ok is exact only).
 *    f. keyword = canonical name of the flow = first alias of that flow in the table
 *       ("check" for "checkin"); args = normalised rest after the alias (one separating
 *       space skipped), cut to 255 bytes, never ending with a space.
 */
#include "flow_match.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

const struct flow_keyword flow_keywords[] = {
    {"stop", FLOW_STOP},     {"arret", FLOW_STOP},     {"stop sms", FLOW_STOP},
    {"desinscrire", FLOW_STOP},                        {"desabonner", FLOW_STOP},
    {"start", FLOW_START},   {"reprendre", FLOW_START},
    {"aide", FLOW_HELP},     {"help", FLOW_HELP},      {"info", FLOW_HELP},
    {"?", FLOW_HELP},
    {"check", FLOW_CHECK},   {"checkin", FLOW_CHECK},  {"check in", FLOW_CHECK},
    {"present", FLOW_CHECK}, {"ici", FLOW_CHECK},
    {"job", FLOW_JOB},       {"emploi", FLOW_JOB},     {"travail", FLOW_JOB},
    {"pret", FLOW_LOAN},     {"emprunt", FLOW_LOAN},
    {"rendu", FLOW_RETURN},
    {"ok", FLOW_ACK},        {"oui", FLOW_ACK},        {"recu", FLOW_ACK},
    {"alerte", FLOW_ALERT},
};
const size_t flow_keywords_count = sizeof flow_keywords / sizeof flow_keywords[0];

/* Letters outside ASCII that we spell in ASCII (after case folding, so lowercase only). */
static const struct {
    ucs4_t uc;
    const char *ascii;
} fm_letter_map[] = {
    {0x0153, "oe"}, /* œ */
    {0x00E6, "ae"}, /* æ */
    {0x00DF, "ss"}, /* ß (case folding already gives "ss") */
    {0x00F8, "o"},  /* ø */
    {0x0111, "d"},  /* đ */
    {0x00F0, "d"},  /* ð */
    {0x0142, "l"},  /* ł */
    {0x0127, "h"},  /* ħ */
    {0x0131, "i"},  /* ı */
    {0x0167, "t"},  /* ŧ */
    {0x00FE, "th"}, /* þ */
};

struct fm_out {
    char *buf;
    size_t len;
    int pending_space;
};

static void fm_emit(struct fm_out *o, const char *s, size_t n)
{
    if (o->pending_space && o->len > 0)
        o->buf[o->len++] = ' ';
    o->pending_space = 0;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static int fm_is_ascii_space(ucs4_t uc)
{
    return uc == ' ' || uc == '\t' || uc == '\n' || uc == '\r' || uc == '\v' || uc == '\f';
}

/*
 * Normalise into a fresh heap string (caller frees). NULL on invalid UTF-8 or no memory.
 * *only_q is set when the text is one or more '?' with only spaces/ignorables around them.
 */
static char *fm_normalize_alloc(const char *in, size_t len, size_t *outlen, int *only_q)
{
    uint8_t *nfkd, *folded;
    size_t n1 = 0, n2 = 0;
    struct fm_out o = {NULL, 0, 0};
    int saw_q = 0, saw_other = 0;

    *only_q = 0;
    *outlen = 0;
    if (len == 0)
        return calloc(1, 1);
    if (in == NULL || u8_check((const uint8_t *)in, len) != NULL)
        return NULL;
    nfkd = u8_normalize(UNINORM_NFKD, (const uint8_t *)in, len, NULL, &n1);
    if (nfkd == NULL)
        return NULL;
    folded = u8_casefold(nfkd, n1, NULL, UNINORM_NFKD, NULL, &n2);
    free(nfkd);
    if (folded == NULL)
        return NULL;
    /* Each code point (>= 1 byte) yields at most 2 output bytes, or 1 space. */
    if (n2 > (SIZE_MAX - 1) / 2 || (o.buf = malloc(2 * n2 + 1)) == NULL) {
        free(folded);
        return NULL;
    }

    for (size_t i = 0; i < n2;) {
        ucs4_t uc;
        int step = u8_mbtouc(&uc, folded + i, n2 - i);
        if (step <= 0)
            step = 1;
        i += (size_t)step;

        if ((uc >= 'a' && uc <= 'z') || (uc >= '0' && uc <= '9')) {
            char c = (char)uc;
            fm_emit(&o, &c, 1);
            saw_other = 1;
            continue;
        }
        if (uc >= 'A' && uc <= 'Z') {
            char c = (char)(uc - 'A' + 'a');
            fm_emit(&o, &c, 1);
            saw_other = 1;
            continue;
        }
        if (uc < 0x80) {
            if (uc == '?')
                saw_q = 1;
            else if (!fm_is_ascii_space(uc))
                saw_other = 1;
            o.pending_space = 1;
            continue;
        }
        if (uc_is_general_category(uc, UC_CATEGORY_Mn) ||
            uc_is_general_category(uc, UC_CATEGORY_Cf))
            continue; /* ignorable: does not split the word */
        {
            const char *map = NULL;
            for (size_t k = 0; k < sizeof fm_letter_map / sizeof fm_letter_map[0]; k++) {
                if (fm_letter_map[k].uc == uc) {
                    map = fm_letter_map[k].ascii;
                    break;
                }
            }
            if (map != NULL) {
                fm_emit(&o, map, strlen(map));
                saw_other = 1;
                continue;
            }
        }
        if (uc_is_general_category(uc, UC_CATEGORY_Nd)) {
            int v = uc_decimal_value(uc);
            if (v >= 0 && v <= 9) {
                char c = (char)('0' + v);
                fm_emit(&o, &c, 1);
                saw_other = 1;
                continue;
            }
        }
        if (!uc_is_general_category(uc, UC_CATEGORY_Zs))
            saw_other = 1;
        o.pending_space = 1;
    }
    free(folded);
    o.buf[o.len] = '\0';
    *outlen = o.len;
    *only_q = saw_q && !saw_other;
    return o.buf;
}

int flow_normalize(const char *in, size_t len, char *out, size_t outlen)
{
    size_t n;
    int only_q;
    char *s;

    if (out == NULL || outlen == 0)
        return -1;
    out[0] = '\0';
    s = fm_normalize_alloc(in, len, &n, &only_q);
    if (s == NULL)
        return -1;
    if (n >= outlen || n > (size_t)INT_MAX) {
        free(s);
        return -1;
    }
    memcpy(out, s, n + 1);
    free(s);
    return (int)n;
}

/* 1 when a and b are at Damerau–Levenshtein (OSA) distance exactly 1. */
static int fm_one_edit(const char *a, size_t al, const char *b, size_t bl)
{
    size_t i = 0;

    if (al < bl) {
        const char *t = a;
        size_t tl = al;
        a = b;
        al = bl;
        b = t;
        bl = tl;
    }
    while (i < bl && a[i] == b[i])
        i++;
    if (al == bl) {
        if (i == al)
            return 0; /* equal: distance 0, not a typo */
        if (memcmp(a + i + 1, b + i + 1, al - i - 1) == 0)
            return 1; /* substitution */
        return i + 1 < al && a[i] == b[i + 1] && a[i + 1] == b[i] &&
               memcmp(a + i + 2, b + i + 2, al - i - 2) == 0; /* transposition */
    }
    if (al == bl + 1) /* deletion from the longer one at the first mismatch */
        return memcmp(a + i + 1, b + i, bl - i) == 0;
    return 0;
}

static size_t fm_word_count(const char *w)
{
    size_t k = 1;
    for (; *w; w++)
        if (*w == ' ')
            k++;
    return k;
}

static size_t fm_letter_count(const char *w)
{
    size_t n = 0;
    for (; *w; w++)
        if (*w >= 'a' && *w <= 'z')
            n++;
    return n;
}

static int fm_is_letter(char c)
{
    return c >= 'a' && c <= 'z';
}

/*
 * Candidate for a k-word alias: first k-1 words (letters only) and the leading letters of
 * word k. Returns its length (0 when there is none); the candidate is s[0 .. length).
 */
static size_t fm_candidate(const char *s, size_t slen, size_t k)
{
    size_t pos = 0;

    for (size_t w = 1; w <= k; w++) {
        size_t start = pos;
        while (pos < slen && fm_is_letter(s[pos]))
            pos++;
        if (pos == start)
            return 0;
        if (w == k)
            return pos;
        if (pos >= slen || s[pos] != ' ')
            return 0; /* word ends with digits, or text too short */
        pos++;
    }
    return 0;
}

static void fm_copy(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void fm_fill(const struct flow_keyword *table, size_t n, const struct flow_keyword *hit,
                    const char *s, size_t slen, size_t end, int typo, struct flow_match *m)
{
    const char *canon = hit->word;
    size_t alen;

    for (size_t i = 0; i < n; i++) {
        if (table[i].word != NULL && table[i].flow == hit->flow) {
            canon = table[i].word;
            break;
        }
    }
    m->flow = hit->flow;
    m->typo = typo;
    fm_copy(m->keyword, sizeof m->keyword, canon, strlen(canon));
    if (end < slen && s[end] == ' ')
        end++;
    alen = end < slen ? slen - end : 0;
    fm_copy(m->args, sizeof m->args, s + end, alen);
    alen = strlen(m->args);
    if (alen > 0 && m->args[alen - 1] == ' ')
        m->args[alen - 1] = '\0'; /* cut right after a word */
}

int flow_match_table(const struct flow_keyword *table, size_t n, const char *text, size_t len,
                     struct flow_match *m)
{
    struct flow_match local;
    size_t slen, maxk = 1;
    int only_q;
    char *s;

    if (m == NULL)
        m = &local;
    memset(m, 0, sizeof *m);
    if (table == NULL || n == 0)
        return FLOW_NONE;
    s = fm_normalize_alloc(text, len, &slen, &only_q);
    if (s == NULL)
        return FLOW_NONE;

    if (only_q) {
        for (size_t i = 0; i < n; i++) {
            if (table[i].word != NULL && strcmp(table[i].word, "?") == 0) {
                fm_fill(table, n, &table[i], s, slen, slen, 0, m);
                break;
            }
        }
        free(s);
        return m->flow;
    }

    for (size_t i = 0; i < n; i++) {
        if (table[i].word != NULL && fm_word_count(table[i].word) > maxk)
            maxk = fm_word_count(table[i].word);
    }
    for (int typo = 0; typo <= 1; typo++) {
        for (size_t k = maxk; k >= 1; k--) {
            size_t cl = fm_candidate(s, slen, k);
            if (cl == 0)
                continue;
            for (size_t i = 0; i < n; i++) {
                const char *w = table[i].word;
                size_t wl;
                int hit;
                if (w == NULL || *w == '\0' || fm_word_count(w) != k)
                    continue;
                wl = strlen(w);
                if (!typo)
                    hit = wl == cl && memcmp(w, s, cl) == 0;
                else
                    hit = fm_letter_count(w) >= 4 && fm_one_edit(s, cl, w, wl);
                if (hit) {
                    fm_fill(table, n, &table[i], s, slen, cl, typo, m);
                    free(s);
                    return m->flow;
                }
            }
        }
    }
    free(s);
    return FLOW_NONE;
}

int flow_match(const char *text, size_t len, struct flow_match *m)
{
    return flow_match_table(flow_keywords, flow_keywords_count, text, len, m);
}
