/* gw_metrics — see gw_metrics.h. */
#include "gw_metrics.h"

#include <event2/buffer.h>

const double gw_hist_bounds[GW_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                0.25,  0.5,   1,    2.5,   5,    10};

void gw_hist_observe(struct gw_hist *h, double seconds)
{
    int b = 0;
    while (b < GW_HIST_BUCKETS && seconds > gw_hist_bounds[b])
        b++;
    h->buckets[b]++;
    h->count++;
    h->sum += seconds;
}

void gw_hist_render(struct evbuffer *out, const char *name, const char *labels,
                    const struct gw_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int b = 0; b < GW_HIST_BUCKETS; b++) {
        cum += h->buckets[b];
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                            gw_hist_bounds[b], (unsigned long long)cum);
    }
    cum += h->buckets[GW_HIST_BUCKETS];
    evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                        (unsigned long long)cum);
    evbuffer_add_printf(out, "%s_sum{%s} %.6f\n", name, labels, h->sum);
    evbuffer_add_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}

void gw_metric_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}
