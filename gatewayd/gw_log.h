/*
 * gw_log — the one logging module. Text ("2026-11-29T21:37:13Z info [route sim] …") or JSON
 * lines ({"ts":…,"level":…,"obj":…,"msg":…}) on stderr, journald-friendly. Callers pass an
 * object prefix ("route sim", "db", "http") and a printf-checked message. Never pass secrets or
 * unmasked phone numbers: mask with prov_phone_mask() first.
 * Not thread-safe for configuration; gw_log itself may be called from worker threads (one
 * fprintf per line, stdio locks the stream).
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum gw_log_level { GW_LOG_ERROR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

void gw_log_setup(int json, enum gw_log_level level);
int gw_log_enabled(enum gw_log_level level);
/* "error" "warn" "info" "debug" → 0 and *out; else -1. */
int gw_log_level_parse(const char *s, enum gw_log_level *out);

void gw_log(enum gw_log_level level, const char *obj, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gw_vlog(enum gw_log_level level, const char *obj, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* One line per message state change, with structured fields in JSON mode.
 * phone_masked must already be masked. error may be NULL. */
void gw_log_msg(int64_t id, int64_t centre_id, const char *route, const char *phone_masked,
                const char *state, int segments, const char *error);

/* Routes libevent's and libpq's own messages into gw_log. */
void gw_log_capture_libraries(void);

#define gw_error(obj, ...) gw_log(GW_LOG_ERROR, obj, __VA_ARGS__)
#define gw_warn(obj, ...) gw_log(GW_LOG_WARN, obj, __VA_ARGS__)
#define gw_info(obj, ...) gw_log(GW_LOG_INFO, obj, __VA_ARGS__)
#define gw_debug(obj, ...)                                                                         \
    do {                                                                                           \
        if (gw_log_enabled(GW_LOG_DEBUG))                                                          \
            gw_log(GW_LOG_DEBUG, obj, __VA_ARGS__);                                                \
    } while (0)

#endif
