/*
 * gw_metrics — Prometheus text exposition helpers: a fixed-bucket histogram and writers for
 * counters/gauges. Each module keeps its own numbers; /metrics asks each to render itself.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

struct evbuffer;

#define GW_HIST_BUCKETS 12
extern const double gw_hist_bounds[GW_HIST_BUCKETS]; /* seconds */

struct gw_hist {
    uint64_t buckets[GW_HIST_BUCKETS + 1]; /* last one is +Inf */
    uint64_t count;
    double sum;
};

void gw_hist_observe(struct gw_hist *h, double seconds);
/* Writes name_bucket{labels,le=…}, name_sum, name_count. labels: "" or `route="sim"`. */
void gw_hist_render(struct evbuffer *out, const char *name, const char *labels,
                    const struct gw_hist *h);
/* "# HELP name help\n# TYPE name type\n" */
void gw_metric_head(struct evbuffer *out, const char *name, const char *type, const char *help);

#endif
