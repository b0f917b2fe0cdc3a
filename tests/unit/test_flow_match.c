/*
 * Unit tests of the keyword matcher (flows/flow_match.c).
 *
 * Every expectation below is derived from the rules documented at the top of flow_match.c
 * (normalise, '?' only -> HELP, multi-word aliases first, letters glued to digits split,
 * exact before typo, one Damerau–Levenshtein edit only for aliases of >= 4 letters, table
 * order breaks ties), not from running the code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow_match.h"

struct match_case {
    const char *input;
    int flow;
    const char *args;
    int typo;
};

static const struct match_case match_cases[] = {
    /* STOP */
    {"STOP", FLOW_STOP, "", 0},
    {"Stop", FLOW_STOP, "", 0},
    {"stop sms", FLOW_STOP, "", 0},
    {"STOP SMS", FLOW_STOP, "", 0},
    {"Stop-SMS", FLOW_STOP, "", 0},
    {"stop sms merci", FLOW_STOP, "merci", 0},     /* "stop sms" tried before "stop" */
    {"stop\xc2\xa0sms", FLOW_STOP, "", 0},          /* NBSP -> space (NFKD) */
    {"ARR\xc3\x8aT", FLOW_STOP, "", 0},             /* ARRÊT */
    {"arr\xc3\xaat", FLOW_STOP, "", 0},             /* arrêt */
    {"arret", FLOW_STOP, "", 0},
    {"D\xc3\xa9sinscrire", FLOW_STOP, "", 0},       /* Désinscrire */
    {"D\xc3\xa9sinscrire moi", FLOW_STOP, "moi", 0},
    {"d\xc3\xa9sabonner", FLOW_STOP, "", 0},
    {"DESABONER", FLOW_STOP, "", 1},                /* deletion */
    {"  stop   ", FLOW_STOP, "", 0},
    {"stop.", FLOW_STOP, "", 0},
    {"Stop!!!", FLOW_STOP, "", 0},
    {"st\xc2\xadop", FLOW_STOP, "", 0},             /* soft hyphen (Cf) dropped */
    {"stip", FLOW_STOP, "", 1},                     /* substitution */
    {"stpo", FLOW_STOP, "", 1},                     /* transposition */
    {"\xef\xbc\xb3\xef\xbc\xb4\xef\xbc\xaf\xef\xbc\xb0", FLOW_STOP, "", 0}, /* ＳＴＯＰ */
    {"\xf0\x9f\x98\x80 stop", FLOW_STOP, "", 0},    /* 😀 stop */
    {"stop \xf0\x9f\x98\x80", FLOW_STOP, "", 0},    /* stop 😀 */
    {"? stop", FLOW_STOP, "", 0},                   /* not only '?': normalised "stop" */
    /* START */
    {"START", FLOW_START, "", 0},
    {"reprendre", FLOW_START, "", 0},
    /* AIDE */
    {"AIDE", FLOW_HELP, "", 0},
    {"AIDE\n", FLOW_HELP, "", 0},
    {"help", FLOW_HELP, "", 0},
    {"info", FLOW_HELP, "", 0},
    {"?", FLOW_HELP, "", 0},
    {" ? ", FLOW_HELP, "", 0},
    {"???", FLOW_HELP, "", 0},
    {"\xef\xbc\x9f", FLOW_HELP, "", 0},             /* fullwidth ？ */
    {"aidee", FLOW_HELP, "", 1},                    /* insertion */
    {"aid", FLOW_HELP, "", 1},                      /* deletion */
    {"l'aide", FLOW_NONE, "", 0},                   /* "l aide": keyword must come first */
    /* CHECK */
    {"Check-in 1234", FLOW_CHECK, "1234", 0},
    {"check in 1234", FLOW_CHECK, "1234", 0},
    {"CHECKIN1234", FLOW_CHECK, "1234", 0},
    {"check1234", FLOW_CHECK, "1234", 0},
    {"CHECK 1234 3", FLOW_CHECK, "1234 3", 0},
    {"pr\xc3\xa9sent 1234", FLOW_CHECK, "1234", 0}, /* présent */
    {"ici 1234 2", FLOW_CHECK, "1234 2", 0},
    {"ici", FLOW_CHECK, "", 0},
    {"ic", FLOW_NONE, "", 0},                       /* ici has 3 letters: exact only */
    {"CHEK 1234", FLOW_CHECK, "1234", 1},
    {"chekc 1234", FLOW_CHECK, "1234", 1},          /* transposition */
    {"chek in 1234", FLOW_CHECK, "1234", 1},        /* typo in a multi-word alias */
    {"checkinn 5", FLOW_CHECK, "5", 1},
    {"\xef\xbc\xa3\xef\xbc\xa8\xef\xbc\xa5\xef\xbc\xa3\xef\xbc\xab\xef\xbc\x91\xef\xbc\x92",
     FLOW_CHECK, "12", 0},                          /* ＣＨＥＣＫ１２ */
    {"1234 check", FLOW_NONE, "", 0},
    /* JOB */
    {"JOB", FLOW_JOB, "", 0},
    {"JOB 2", FLOW_JOB, "2", 0},
    {"job stop", FLOW_JOB, "stop", 0},
    {"jobs", FLOW_NONE, "", 0},                     /* job has 3 letters: exact only */
    {"EMPLOIE", FLOW_JOB, "", 1},
    {"emploi cuisine", FLOW_JOB, "cuisine", 0},
    {"travail", FLOW_JOB, "", 0},
    /* PRET */
    {"Pr\xc3\xaat", FLOW_LOAN, "", 0},              /* Prêt */
    {"pr\xc3\xaat 12", FLOW_LOAN, "12", 0},
    {"PRET12", FLOW_LOAN, "12", 0},
    {"PR\xc3\x8aT-12", FLOW_LOAN, "12", 0},
    {"emprunt 7", FLOW_LOAN, "7", 0},
    /* RENDU */
    {"RENDU 12", FLOW_RETURN, "12", 0},
    {"rendu12", FLOW_RETURN, "12", 0},
    /* OK */
    {"OK", FLOW_ACK, "", 0},
    {"ok2", FLOW_ACK, "2", 0},
    {"oui", FLOW_ACK, "", 0},
    {"oui.", FLOW_ACK, "", 0},
    {"ouii", FLOW_NONE, "", 0},                     /* oui has 3 letters: exact only */
    {"re\xc3\xa7u", FLOW_ACK, "", 0},               /* reçu */
    {"Re\xc3\xa7u !", FLOW_ACK, "", 0},
    {"okay", FLOW_NONE, "", 0},                     /* ok: exact only */
    {"oki", FLOW_NONE, "", 0},
    /* ALERTE */
    {"ALERTE jardin", FLOW_ALERT, "jardin", 0},
    {"alerte stop jardin", FLOW_ALERT, "stop jardin", 0},
    {"alrte", FLOW_ALERT, "", 1},
    /* nothing */
    {"hello", FLOW_NONE, "", 0},                    /* help is 2 edits away */
    {"bonjour je voudrais un rdv", FLOW_NONE, "", 0},
    {"", FLOW_NONE, "", 0},
    {"   ", FLOW_NONE, "", 0},
    {"\xf0\x9f\x98\x80", FLOW_NONE, "", 0},         /* 😀 */
    {"arett", FLOW_NONE, "", 0},                    /* 2 edits from arret */
    {"arette", FLOW_NONE, "", 0},                   /* no single deletion gives arret */
    {"\xef\xac\x81n", FLOW_NONE, "", 0},            /* ﬁn -> "fin": 2 edits from info */
    {"\xff\xfe stop", FLOW_NONE, "", 0},            /* invalid UTF-8 */
    {"stop \xc3", FLOW_NONE, "", 0},                /* truncated sequence */
};

static const char *flow_canon(int flow)
{
    static const char *names[FLOW_COUNT] = {"",    "stop", "start", "aide",  "check",
                                            "job", "pret", "rendu", "ok",    "alerte"};
    return names[flow];
}

static void test_match_table(void **state)
{
    (void)state;
    size_t n = sizeof match_cases / sizeof match_cases[0];
    int failures = 0;

    for (size_t i = 0; i < n; i++) {
        const struct match_case *c = &match_cases[i];
        struct flow_match m;
        int r;

        memset(&m, 0x5a, sizeof m);
        r = flow_match(c->input, strlen(c->input), &m);
        if (r != m.flow || m.flow != c->flow || strcmp(m.args, c->args) != 0 ||
            m.typo != c->typo || strcmp(m.keyword, flow_canon(c->flow)) != 0) {
            print_error("case %zu [%s]: got flow=%d kw=[%s] args=[%s] typo=%d, want flow=%d "
                        "kw=[%s] args=[%s] typo=%d\n",
                        i, c->input, m.flow, m.keyword, m.args, m.typo, c->flow,
                        flow_canon(c->flow), c->args, c->typo);
            failures++;
        }
    }
    assert_true(n >= 60);
    assert_int_equal(failures, 0);
}

struct norm_case {
    const char *input;
    const char *output; /* NULL: -1 expected */
    size_t len;         /* 0: strlen(input) */
};

static const struct norm_case norm_cases[] = {
    {"ARR\xc3\x8aT", "arret", 0},
    {"D\xc3\xa9sinscrire", "desinscrire", 0},
    {"  Hello,   World!! ", "hello world", 0},
    {"l'\xc5\x93uvre", "l oeuvre", 0},                   /* l'œuvre */
    {"C\xc3\xa6sar \xc3\x86", "caesar ae", 0},           /* Cæsar Æ */
    {"Stra\xc3\x9f" "e", "strasse", 0},                  /* Straße */
    {"\xe1\xba\x9e", "ss", 0},                           /* ẞ */
    {"\xef\xac\x81n", "fin", 0},                         /* ﬁn */
    {"\xef\xbc\xb3\xef\xbc\xb4\xef\xbc\xaf\xef\xbc\xb0", "stop", 0},
    {"check-in_1234.5", "check in 1234 5", 0},
    {"stop...sms", "stop sms", 0},
    {"\t\nstop\r\n", "stop", 0},
    {"\xf0\x9f\x98\x80", "", 0},
    {"a\xf0\x9f\x98\x80" "b", "a b", 0},
    {"", "", 0},
    {"   ", "", 0},
    {"?", "", 0},
    {"x\xc2\xb2", "x2", 0},                              /* x² */
    {"\xd9\xa1\xd9\xa2\xd9\xa3", "123", 0},              /* Arabic-Indic digits */
    {"na\xc3\xafve \xc3\x89" "COLE", "naive ecole", 0},  /* naïve ÉCOLE */
    {"\xc5\x93\xc3\xa6\xc3\x9f", "oeaess", 0},           /* œæß */
    {"\xc3\xb8l \xc5\x82\xc3\xb3" "d\xc5\xba", "ol lodz", 0}, /* øl łódź */
    {"\xce\xa9mega", "mega", 0},                         /* Ωmega: Greek is a separator */
    {"st\xc2\xadop", "stop", 0},                         /* soft hyphen dropped */
    {"\xef\xbb\xbfstop", "stop", 0},                     /* BOM dropped */
    {"\xc2\xbd", "1 2", 0},                              /* ½ -> 1⁄2 */
    {"a\0b", "a b", 3},                                  /* NUL is a separator (len 3) */
    {"\xff\xfe stop", NULL, 0},
    {"stop \xc3", NULL, 0},
    {"\xed\xa0\x80", NULL, 0},                           /* surrogate */
    {"\xc0\xaf", NULL, 0},                               /* overlong */
    {"\xf4\x90\x80\x80", NULL, 0},                       /* > U+10FFFF */
};

static void test_normalize_table(void **state)
{
    (void)state;
    size_t n = sizeof norm_cases / sizeof norm_cases[0];
    int failures = 0;

    for (size_t i = 0; i < n; i++) {
        const struct norm_case *c = &norm_cases[i];
        size_t len = c->len ? c->len : strlen(c->input);
        char out[256];
        int r = flow_normalize(c->input, len, out, sizeof out);
        int ok = c->output == NULL ? (r == -1 && out[0] == '\0')
                                   : (r == (int)strlen(c->output) && strcmp(out, c->output) == 0);
        if (!ok) {
            print_error("norm case %zu: got %d [%s], want [%s]\n", i, r, r >= 0 ? out : "",
                        c->output ? c->output : "(-1)");
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_normalize_buffer_size(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'x', sizeof out);
    assert_int_equal(flow_normalize("STOP", 4, out, 4), -1);
    assert_int_equal(out[0], '\0');
    assert_int_equal(flow_normalize("STOP", 4, out, 5), 4);
    assert_string_equal(out, "stop");
    assert_int_equal(flow_normalize("STOP", 4, NULL, 5), -1);
    assert_int_equal(flow_normalize("STOP", 4, out, 0), -1);
    assert_int_equal(flow_normalize(NULL, 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* Ligature expands: "ﬃ" (3 bytes) -> "ffi" (3 bytes + NUL) */
    assert_int_equal(flow_normalize("\xef\xac\x83", 3, out, 3), -1);
    assert_int_equal(flow_normalize("\xef\xac\x83", 3, out, 4), 3);
    assert_string_equal(out, "ffi");
}

static void test_normalize_2000_bytes(void **state)
{
    (void)state;
    char in[2001], out[4096];
    /* 1000 × "é" = 2000 bytes -> 1000 × "e" */
    for (int i = 0; i < 1000; i++) {
        in[2 * i] = '\xc3';
        in[2 * i + 1] = '\xa9';
    }
    assert_int_equal(flow_normalize(in, 2000, out, sizeof out), 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(out[i], 'e');
    assert_int_equal(out[1000], '\0');
    /* 500 × emoji (4 bytes) = 2000 bytes -> "" */
    for (int i = 0; i < 500; i++)
        memcpy(in + 4 * i, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(flow_normalize(in, 2000, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* 400 × "ab-c " = 2000 bytes -> "ab c ab c ..." (1599 bytes) */
    for (int i = 0; i < 400; i++)
        memcpy(in + 5 * i, "ab-c ", 5);
    assert_int_equal(flow_normalize(in, 2000, out, sizeof out), 400 * 5 - 1);
    assert_int_equal(flow_normalize(in, 2000, out, 1599), -1); /* needs 1600 */
}

static void test_normalize_idempotent(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        char a[256], b[256];
        const struct norm_case *c = &norm_cases[i];
        int r = flow_normalize(c->input, c->len ? c->len : strlen(c->input), a, sizeof a);
        if (r < 0)
            continue;
        assert_int_equal(flow_normalize(a, (size_t)r, b, sizeof b), r);
        assert_string_equal(a, b);
    }
}

static void test_long_aide_truncates_args(void **state)
{
    (void)state;
    char in[1001];
    struct flow_match m;
    size_t pos = 0;

    memcpy(in, "aide", 4);
    pos = 4;
    while (pos + 5 <= 999) {
        memcpy(in + pos, " abcd", 5);
        pos += 5;
    }
    while (pos < 1000)
        in[pos++] = '!';
    in[1000] = '\0';
    assert_int_equal(flow_match(in, 1000, &m), FLOW_HELP);
    assert_string_equal(m.keyword, "aide");
    assert_int_equal(m.typo, 0);
    /* "abcd abcd ..." cut to 255 bytes = 51 × "abcd " -> trailing space removed: 254 */
    assert_int_equal(strlen(m.args), 254);
    assert_true(m.args[253] == 'd');
    for (size_t i = 0; i < 254; i++)
        assert_int_equal(m.args[i], "abcd "[i % 5]);
}

static void test_long_garbage_is_none(void **state)
{
    (void)state;
    static const char pat[] = "#$% qzx 0987 ~";
    char in[1001];
    struct flow_match m;
    for (size_t i = 0; i < 1000; i++)
        in[i] = pat[i % (sizeof pat - 1)];
    in[1000] = '\0';
    assert_int_equal(flow_match(in, 1000, &m), FLOW_NONE);
    assert_string_equal(m.keyword, "");
    assert_string_equal(m.args, "");
    assert_int_equal(m.typo, 0);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    char out[64];
    struct flow_match m;
    const char *bad = "\xff\xfe stop";
    assert_int_equal(flow_normalize(bad, strlen(bad), out, sizeof out), -1);
    assert_int_equal(flow_match(bad, strlen(bad), &m), FLOW_NONE);
    assert_string_equal(m.keyword, "");
    assert_string_equal(m.args, "");
}

static void test_null_and_embedded_nul(void **state)
{
    (void)state;
    struct flow_match m;
    assert_int_equal(flow_match("stop", 4, NULL), FLOW_STOP);
    assert_int_equal(flow_match(NULL, 0, &m), FLOW_NONE);
    /* length is honoured: only "sto" is seen -> one deletion from "stop" */
    assert_int_equal(flow_match("stop", 3, &m), FLOW_STOP);
    assert_int_equal(m.typo, 1);
    assert_int_equal(flow_match("stop\0sms", 8, &m), FLOW_STOP);
    assert_string_equal(m.args, "");
}

static void test_custom_table_ties(void **state)
{
    (void)state;
    static const struct flow_keyword t[] = {{"abcd", 1}, {"abce", 2}, {"xy", 3}};
    struct flow_match m;
    /* both at distance 1: first in table order */
    assert_int_equal(flow_match_table(t, 3, "abcf", 4, &m), 1);
    assert_int_equal(m.typo, 1);
    /* exact beats an earlier typo candidate */
    assert_int_equal(flow_match_table(t, 3, "abce", 4, &m), 2);
    assert_int_equal(m.typo, 0);
    assert_string_equal(m.keyword, "abce");
    /* short alias: exact only; table without "?" gives NONE for "?" */
    assert_int_equal(flow_match_table(t, 3, "xyz", 3, &m), 0);
    assert_int_equal(flow_match_table(t, 3, "?", 1, &m), 0);
    assert_int_equal(flow_match_table(NULL, 0, "abcd", 4, &m), 0);
}

static void test_builtin_table_is_normalised(void **state)
{
    (void)state;
    for (size_t i = 0; i < flow_keywords_count; i++) {
        const char *w = flow_keywords[i].word;
        char out[64];
        assert_true(flow_keywords[i].flow > FLOW_NONE && flow_keywords[i].flow < FLOW_COUNT);
        if (strcmp(w, "?") == 0)
            continue;
        assert_int_equal(flow_normalize(w, strlen(w), out, sizeof out), (int)strlen(w));
        assert_string_equal(out, w);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_normalize_buffer_size),
        cmocka_unit_test(test_normalize_2000_bytes),
        cmocka_unit_test(test_normalize_idempotent),
        cmocka_unit_test(test_long_aide_truncates_args),
        cmocka_unit_test(test_long_garbage_is_none),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_null_and_embedded_nul),
        cmocka_unit_test(test_custom_table_ties),
        cmocka_unit_test(test_builtin_table_is_normalised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
