/* gw_log — see gw_log.h. */
#include "gw_log.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int log_json;
static enum gw_log_level log_level = GW_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void gw_log_setup(int json, enum gw_log_level level)
{
    log_json = json;
    log_level = level;
}

int gw_log_enabled(enum gw_log_level level)
{
    return level <= log_level;
}

int gw_log_level_parse(const char *s, enum gw_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = GW_LOG_WARN;
        return 0;
    }
    return -1;
}

static void timestamp(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* Write one finished line. JSON objects are built with jansson so that every string is
 * escaped properly whatever a message contains. */
static void emit(enum gw_log_level level, const char *obj, const char *msg, json_t *fields)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    if (log_json) {
        json_t *o = fields ? fields : json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_names[level]));
        if (obj)
            json_object_set_new(o, "obj", json_string(obj));
        json_object_set_new(o, "msg", json_string(msg));
        char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line) {
            fprintf(stderr, "%s\n", line);
            free(line);
        }
        json_decref(o);
    } else {
        if (fields)
            json_decref(fields);
        fprintf(stderr, "%s %-5s %s%s%s%s\n", ts, level_names[level], obj ? "[" : "",
                obj ? obj : "", obj ? "] " : "", msg);
    }
}

void gw_vlog(enum gw_log_level level, const char *obj, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    emit(level, obj, msg, NULL);
}

void gw_log(enum gw_log_level level, const char *obj, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_vlog(level, obj, fmt, ap);
    va_end(ap);
}

void gw_log_msg(int64_t id, int64_t centre_id, const char *route, const char *phone_masked,
                const char *state, int segments, const char *error)
{
    enum gw_log_level level = GW_LOG_INFO;
    if (level > log_level)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "message %lld centre %lld to %s %s (%d segment%s)%s%s", (long long)id,
             (long long)centre_id, phone_masked, state, segments, segments > 1 ? "s" : "",
             error ? ": " : "", error ? error : "");
    json_t *fields = NULL;
    if (log_json) {
        fields = json_object();
        json_object_set_new(fields, "message_id", json_integer(id));
        json_object_set_new(fields, "centre_id", json_integer(centre_id));
        if (route)
            json_object_set_new(fields, "route", json_string(route));
        json_object_set_new(fields, "phone", json_string(phone_masked));
        json_object_set_new(fields, "state", json_string(state));
        json_object_set_new(fields, "segments", json_integer(segments));
        if (error)
            json_object_set_new(fields, "error", json_string(error));
    }
    char objbuf[80];
    snprintf(objbuf, sizeof objbuf, "route %s", route ? route : "-");
    emit(level, objbuf, msg, fields);
}

static void libevent_log(int severity, const char *msg)
{
    enum gw_log_level l = severity >= EVENT_LOG_ERR    ? GW_LOG_ERROR
                          : severity >= EVENT_LOG_WARN ? GW_LOG_WARN
                                                       : GW_LOG_DEBUG;
    gw_log(l, "libevent", "%s", msg);
}

void gw_log_capture_libraries(void)
{
    event_set_log_callback(libevent_log);
}
