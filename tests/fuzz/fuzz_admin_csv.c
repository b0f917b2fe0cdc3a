/* libFuzzer target: the resident CSV import parser (gw_admin_csv_parse in
 * gatewayd/gw_admin_parse.c), with the real phone shim behind it.
 *
 * Input: the CSV file as uploaded. Checks, besides memory safety:
 *   - a refusal (-1) names its reason; an answer's count is the number of rows, at most
 *     GW_ADMIN_CSV_MAX;
 *   - rows come in order of strictly increasing line numbers, all after the header (>= 2);
 *   - a row is either refused (a known error code and a French message) or complete: an E.164
 *     phone, a first name of at most 80 bytes, language "fr" or "en", a known consent source.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_admin_parse.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_admin_csv: invariant failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int one_of(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (!strcmp(s, *list))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const codes[] = {"invalid_phone",   "invalid_first_name", "invalid_language",
                                        "missing_consent", "invalid_consent",    "invalid_text",
                                        NULL};
    static const char *const consents[] = {"paper", "verbal", "sms", NULL};
    static const char *const langs[] = {"fr", "en", NULL};
    json_t *rows = NULL;
    const char *why = NULL;
    int n = gw_admin_csv_parse((const char *)data, size, "FR", &rows, &why);
    if (n < 0) {
        CHECK(why && *why);
        return 0;
    }
    CHECK(json_is_array(rows));
    CHECK((size_t)n == json_array_size(rows));
    CHECK(n <= GW_ADMIN_CSV_MAX);
    json_int_t last = 1;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_int_t line = json_integer_value(json_object_get(row, "line"));
        CHECK(line > last);
        last = line;
        const char *err = json_string_value(json_object_get(row, "error"));
        if (err) {
            CHECK(one_of(err, codes));
            CHECK(json_string_value(json_object_get(row, "message")));
            continue;
        }
        const char *phone = json_string_value(json_object_get(row, "phone"));
        const char *first = json_string_value(json_object_get(row, "first_name"));
        CHECK(phone && phone[0] == '+' && strlen(phone) >= 8);
        CHECK(first && strlen(first) <= 80);
        CHECK(one_of(json_string_value(json_object_get(row, "language")), langs));
        CHECK(one_of(json_string_value(json_object_get(row, "consent_source")), consents));
    }
    json_decref(rows);
    return 0;
}
