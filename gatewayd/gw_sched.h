/*
 * gw_sched — the scheduler of reminders, alerts and job alerts (issue 5). Two steps run on a
 * timer (every `interval_ms`, again at once while a batch came back full), each as "claim in
 * SQL → decide in C → commit in SQL" (gatewayd/sql/004_scheduler.sql):
 *
 *   expansion  due reminders → occurrences. The time math is sched_time.c (libical RRULEs, the
 *              centre's zone, DST rules). A reminder that was due while the daemon was down:
 *              'once' is sent if it is at most `catchup_min` late, else recorded skipped
 *              ('too_late'); 'rrule' sends only the latest missed occurrence, and only within
 *              `catchup_min`, the others are recorded skipped ('missed'); 'appointment' sends the
 *              latest missed offset if the appointment is still ahead, else records them
 *              skipped ('after_appointment'). Nothing is sent twice (one occurrence per key),
 *              nothing is skipped silently.
 *   release    pending deliveries whose time has come → the outbox, unless quiet hours
 *              (sched_next_allowed; urgent ones ignore them) or the daily cap per resident
 *              (non-urgent; job alerts at most one a day) say "later": then they wait for the
 *              next allowed time, in order.
 *
 * Claims take a transaction-level advisory lock (one node at a time; any node takes over) and
 * lease rows with a token that fences the commit, like the outbox.
 *
 * Ownership: borrows base, db, config.
 */
#ifndef GW_SCHED_H
#define GW_SCHED_H

struct event_base;
struct evbuffer;
struct gw_db;
struct gw_config;
struct gw_sched;

struct gw_sched *gw_sched_new(struct event_base *base, struct gw_db *db,
                              const struct gw_config *cfg);
void gw_sched_start(struct gw_sched *s);
/* Stop starting passes (shutdown); a pass in flight finishes or its lease expires. */
void gw_sched_stop(struct gw_sched *s);
void gw_sched_free(struct gw_sched *s);
void gw_sched_metrics(struct gw_sched *s, struct evbuffer *out);

#endif
