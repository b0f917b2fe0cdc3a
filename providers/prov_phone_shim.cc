/*
 * prov_phone_shim.cc — the C API of prov_phone.h on top of libphonenumber (C++).
 *
 * Policy, on top of what libphonenumber does:
 *  - inputs longer than PROV_PHONE_MAX_INPUT bytes are rejected (EPARSE) before parsing;
 *  - inputs containing any ASCII letter are rejected (EPARSE). libphonenumber would otherwise
 *    silently convert "vanity" letters to digits ("06 12 34 ABCD" -> +33612342223), skip
 *    leading junk ("abc0612345678" -> +33612345678) and drop extensions ("… ext 12"), none of
 *    which makes sense for an SMS recipient;
 *  - every Parse() error is EPARSE; a parsed but invalid number is EINVALID; a valid number
 *    whose type is not MOBILE or FIXED_LINE_OR_MOBILE is ENOTMOBILE.
 * No C++ exception crosses the C boundary.
 */
#include "prov_phone.h"

#include <cstring>
#include <new>
#include <string>

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

namespace
{

using i18n::phonenumbers::NullLogger;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

constexpr size_t PROV_PHONE_MAX_INPUT = 64;

/* The singleton, with libphonenumber's default (stdout/stderr) logger replaced by a silent one.
 * Function-local static: initialised once, thread-safely (C++11 magic statics). */
PhoneNumberUtil *phone_util()
{
    static PhoneNumberUtil *const util = [] {
        PhoneNumberUtil *u = PhoneNumberUtil::GetInstance();
        u->SetLogger(new NullLogger()); /* takes ownership */
        return u;
    }();
    return util;
}

bool is_ascii_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Copy s[0..len) into out (size outlen), truncating; NUL-terminates when outlen > 0. */
void copy_truncated(const char *s, size_t len, char *out, size_t outlen) noexcept
{
    if (out == nullptr || outlen == 0)
        return;
    size_t n = len < outlen - 1 ? len : outlen - 1;
    std::memcpy(out, s, n);
    out[n] = '\0';
}

int normalize(const char *in, const char *default_region, char *out, size_t outlen)
{
    if (in == nullptr)
        return PROV_PHONE_EPARSE;
    size_t len = strnlen(in, PROV_PHONE_MAX_INPUT + 1);
    if (len > PROV_PHONE_MAX_INPUT)
        return PROV_PHONE_EPARSE;
    for (size_t i = 0; i < len; i++) {
        if (is_ascii_letter(in[i]))
            return PROV_PHONE_EPARSE;
    }

    /* Region codes are upper-case in libphonenumber; accept "fr" as well. Bounded read. */
    std::string region;
    if (default_region == nullptr) {
        region = "FR";
    } else {
        size_t rlen = strnlen(default_region, 8);
        for (size_t i = 0; i < rlen; i++) {
            char c = default_region[i];
            region.push_back((c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c);
        }
    }

    PhoneNumberUtil *util = phone_util();
    PhoneNumber number;
    if (util->Parse(std::string(in, len), region, &number) != PhoneNumberUtil::NO_PARSING_ERROR)
        return PROV_PHONE_EPARSE;
    if (!util->IsValidNumber(number))
        return PROV_PHONE_EINVALID;
    PhoneNumberUtil::PhoneNumberType type = util->GetNumberType(number);
    if (type != PhoneNumberUtil::MOBILE && type != PhoneNumberUtil::FIXED_LINE_OR_MOBILE)
        return PROV_PHONE_ENOTMOBILE;

    std::string e164;
    util->Format(number, PhoneNumberUtil::E164, &e164);
    if (out == nullptr || e164.size() + 1 > outlen)
        return PROV_PHONE_ESPACE;
    std::memcpy(out, e164.c_str(), e164.size() + 1);
    return PROV_PHONE_OK;
}

/* Length (1-3) of the country calling code that prefixes `digits`, or 0 if none is assigned.
 * Calling codes are prefix-free, so at most one length matches. */
size_t country_code_length(const std::string &digits)
{
    if (digits.empty() || digits[0] == '0') /* no calling code starts with 0 */
        return 0;
    PhoneNumberUtil *util = phone_util();
    for (size_t n = 1; n <= 3 && n < digits.size(); n++) {
        int cc = 0;
        for (size_t i = 0; i < n; i++)
            cc = cc * 10 + (digits[i] - '0');
        std::string region;
        util->GetRegionCodeForCountryCode(cc, &region);
        if (region != "ZZ") /* "ZZ" = unknown; non-geographic codes give "001" */
            return n;
    }
    return 0;
}

std::string mask(const char *e164)
{
    const std::string invalid = "***";
    if (e164 == nullptr || e164[0] != '+')
        return invalid;
    /* "+" then 5..20 digits and nothing else (E.164 allows 15; be lenient, never reveal more). */
    size_t len = strnlen(e164, 22);
    if (len < 6 || len > 21)
        return invalid;
    std::string digits(e164 + 1, len - 1);
    for (char c : digits) {
        if (!is_digit(c))
            return invalid;
    }
    size_t cclen = country_code_length(digits);
    if (cclen == 0)
        return invalid;
    std::string cc = digits.substr(0, cclen);
    std::string nsn = digits.substr(cclen);
    if (nsn.size() < 4) /* at least one digit must stay hidden */
        return invalid;

    /* First digit and last two kept, the rest hidden. */
    std::string hidden = nsn;
    for (size_t i = 1; i + 2 < hidden.size(); i++)
        hidden[i] = '*';

    std::string res = "+" + cc + " ";
    if (cc == "33" && hidden.size() == 9) {
        /* French: "6** ** ** 78". */
        res += hidden[0];
        for (size_t i = 1; i < hidden.size(); i += 2) {
            if (i > 1)
                res += ' ';
            res.append(hidden, i, 2);
        }
    } else {
        /* Others: groups of three counted from the right, "4** *** *78". */
        size_t first = hidden.size() % 3 == 0 ? 3 : hidden.size() % 3;
        res.append(hidden, 0, first);
        for (size_t i = first; i < hidden.size(); i += 3) {
            res += ' ';
            res.append(hidden, i, 3);
        }
    }
    return res;
}

} // namespace

extern "C" int prov_phone_normalize(const char *in, const char *default_region, char *out,
                                    size_t outlen)
{
    try {
        return normalize(in, default_region, out, outlen);
    } catch (...) { /* std::bad_alloc from std::string / libphonenumber internals */
        return PROV_PHONE_EPARSE;
    }
}

extern "C" const char *prov_phone_strerror(int status)
{
    switch (status) {
    case PROV_PHONE_OK:
        return "ok";
    case PROV_PHONE_EPARSE:
        return "not a phone number";
    case PROV_PHONE_EINVALID:
        return "not a valid phone number";
    case PROV_PHONE_ENOTMOBILE:
        return "not a mobile phone number";
    case PROV_PHONE_ESPACE:
        return "output buffer too small";
    default:
        return "unknown phone number error";
    }
}

extern "C" char *prov_phone_mask(const char *e164, char *out, size_t outlen)
{
    try {
        std::string m = mask(e164);
        copy_truncated(m.data(), m.size(), out, outlen);
    } catch (...) {
        copy_truncated("***", 3, out, outlen);
    }
    return out;
}
