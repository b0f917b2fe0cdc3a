/* gw_curl — see gw_curl.h. */
#include "gw_curl.h"
#include "gw_log.h"
#include "gw_util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct xfer;
LIST_HEAD(xfer_list, xfer);

struct gw_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int running;
    struct xfer_list xfers; /* in flight (curl 7.88 has no curl_multi_get_handles) */
};

/* One transfer. */
struct xfer {
    LIST_ENTRY(xfer) link;
    struct gw_curl *c;
    CURL *easy;
    gw_curl_done cb;
    void *arg;
    char *body;
    size_t len, max;
    int too_big;
    char errbuf[CURL_ERROR_SIZE];
};

/* One socket curl asked us to watch. */
struct sock {
    struct event *ev;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    if (x->len + n > x->max) {
        x->too_big = 1;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    char *b = realloc(x->body, x->len + n + 1);
    if (!b)
        abort();
    memcpy(b + x->len, ptr, n);
    x->body = b;
    x->len += n;
    x->body[x->len] = '\0';
    return n;
}

/* Hand finished transfers to their callbacks. */
static void check_done(struct gw_curl *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        long status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (x->too_big) {
            rc = CURLE_WRITE_ERROR;
            snprintf(x->errbuf, sizeof x->errbuf, "response larger than %zu bytes", x->max);
        }
        curl_multi_remove_handle(c->multi, easy);
        LIST_REMOVE(x, link);
        c->running--;
        x->cb(x->arg, rc, status, x->body ? x->body : "", x->len, x->errbuf);
        curl_easy_cleanup(easy);
        free(x->body);
        free(x);
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_curl *c = arg;
    int still;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    check_done(c);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct gw_curl *c = arg;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int still;
    curl_multi_socket_action(c->multi, fd, flags, &still);
    check_done(c);
    if (still <= 0 && evtimer_pending(c->timer, NULL))
        evtimer_del(c->timer);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct gw_curl *c = userp;
    struct sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk) {
            event_free(sk->ev);
            free(sk);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    if (!sk) {
        sk = calloc(1, sizeof *sk);
        if (!sk)
            abort();
        curl_multi_assign(c->multi, s, sk);
    } else {
        event_free(sk->ev);
    }
    sk->ev = event_new(c->base, s, kind, on_socket, c);
    event_add(sk->ev, NULL);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct gw_curl *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    /* 0 means "now": run it from the loop, never from inside a curl call */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

struct gw_curl *gw_curl_new(struct event_base *base)
{
    struct gw_curl *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->base = base;
    c->multi = curl_multi_init();
    if (!c->multi)
        abort();
    c->timer = evtimer_new(base, on_timeout, c);
    LIST_INIT(&c->xfers);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    return c;
}

int gw_curl_running(const struct gw_curl *c)
{
    return c->running;
}

int gw_curl_perform(struct gw_curl *c, CURL *easy, size_t max_body, gw_curl_done cb, void *arg)
{
    struct xfer *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    x->c = c;
    x->easy = easy;
    x->cb = cb;
    x->arg = arg;
    x->max = max_body;
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        free(x);
        return GW_EINVAL;
    }
    LIST_INSERT_HEAD(&c->xfers, x, link);
    c->running++;
    return GW_OK;
}

void gw_curl_free(struct gw_curl *c)
{
    if (!c)
        return;
    /* Abort whatever is in flight; its callbacks are not called. */
    while (!LIST_EMPTY(&c->xfers)) {
        struct xfer *x = LIST_FIRST(&c->xfers);
        LIST_REMOVE(x, link);
        curl_multi_remove_handle(c->multi, x->easy);
        curl_easy_cleanup(x->easy);
        free(x->body);
        free(x);
    }
    curl_multi_cleanup(c->multi);
    event_free(c->timer);
    free(c);
}
