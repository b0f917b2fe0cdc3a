-- 011 — the scheduler at a million reminders (issue 5 follow-up, measured with
-- bench/bench_sched.sh):
-- * Follow-ups: each release pass looked for sent occurrences whose OK is overdue by walking
--   every queued, unacknowledged occurrence of the last 7 days (the partial index of 004) and
--   joining its reminder to learn whether it asked for an OK at all: with a million reminders
--   sent that day, a million index entries a pass to find none. Now an occurrence carries
--   followup_due_at (its time plus the reminder's followup_min) only while a follow-up may be
--   due: set by a trigger when it is queued and its reminder asked for an OK, cleared when it
--   is acknowledged, followed up or leaves 'queued'. The scan reads a partial index of exactly
--   those rows. The reminder's settings are taken when its SMS goes out (the SMS asked, or did
--   not ask, for an OK at that time).
-- * gw_sched_claim takes new reminders (next_at NULL) and due ones in two index walks (below).
-- * gw_sched_commit joined its CTEs to one another (no index, estimates from nothing): a nested
--   loop, quadratic in the batch. The occurrences now come with the reminder's update (RETURNING
--   carries them) and the deliveries reach reminders by key.

ALTER TABLE reminder_occurrences ADD COLUMN followup_due_at timestamptz;

CREATE FUNCTION gw_occurrence_followup_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' AND NEW.acked_at IS NULL AND NEW.followup_at IS NULL
       AND NEW.parent_id IS NULL THEN
        IF TG_OP = 'INSERT' OR NEW.followup_due_at IS NULL OR OLD.due_at IS DISTINCT FROM NEW.due_at THEN
            -- no follow-up is sent for an occurrence older than 7 days (gw_release_claim)
            NEW.followup_due_at := (SELECT NEW.due_at + make_interval(mins => r.followup_min)
                                      FROM reminders r
                                     WHERE r.id = NEW.reminder_id AND r.ack_requested
                                       AND r.followup_min < 7 * 24 * 60);
        END IF;
    ELSE
        NEW.followup_due_at := NULL;
    END IF;
    RETURN NEW;
END;
$$;

UPDATE reminder_occurrences o
   SET followup_due_at = o.due_at + make_interval(mins => r.followup_min)
  FROM reminders r
 WHERE r.id = o.reminder_id AND r.ack_requested AND o.status = 'queued'
   AND o.acked_at IS NULL AND o.followup_at IS NULL AND o.parent_id IS NULL
   AND o.due_at > now() - interval '7 days' AND r.followup_min < 7 * 24 * 60;

CREATE TRIGGER reminder_occurrences_followup_due
    BEFORE INSERT OR UPDATE OF status, acked_at, followup_at, due_at, parent_id
    ON reminder_occurrences FOR EACH ROW EXECUTE FUNCTION gw_occurrence_followup_due();

DROP INDEX reminder_occurrences_followup;
CREATE INDEX reminder_occurrences_followup_due ON reminder_occurrences (followup_due_at)
    WHERE followup_due_at IS NOT NULL;

CREATE OR REPLACE FUNCTION gw_sched_claim(p_node text, p_limit int, p_lease_s int)
RETURNS TABLE (id bigint, timezone text, schedule text, start_local text, rrule text,
               appointment_local text, offsets text, next_at double precision, next_key text,
               catchup_min int, updated_at double precision, lease_token bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    tok bigint;
    ids bigint[];
    more bigint[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('passerelle:scheduler')) THEN
        RETURN;
    END IF;
    tok := nextval('sched_lease_seq');
    -- New reminders (next_at not computed yet) first, then the due ones by time: two walks of
    -- reminders_due in index order that stop at the limit. (One query with "next_at IS NULL
    -- OR next_at <= now()" was planned as a bitmap scan of every due row and a sort: with a
    -- million reminders due at once, a million rows sorted for each batch.)
    SELECT array_agg(s.id) INTO ids FROM (
        SELECT r.id FROM reminders r
         WHERE r.status = 'active' AND r.next_at IS NULL
           AND (r.lease_until IS NULL OR r.lease_until < now())
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED) s;
    IF coalesce(cardinality(ids), 0) < p_limit THEN
        SELECT array_agg(s.id) INTO more FROM (
            SELECT r.id FROM reminders r
             WHERE r.status = 'active' AND r.next_at <= now()
               AND (r.lease_until IS NULL OR r.lease_until < now())
             ORDER BY r.next_at
             LIMIT p_limit - coalesce(cardinality(ids), 0)
             FOR UPDATE SKIP LOCKED) s;
        ids := coalesce(ids, '{}') || coalesce(more, '{}');
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE reminders r SET lease_until = now() + make_interval(secs => p_lease_s),
               lease_token = tok
         WHERE r.id = ANY (ids)
        RETURNING r.*
    )
    SELECT u.id, ce.timezone, u.schedule,
           to_char(u.start_local, 'YYYY-MM-DD HH24:MI'), u.rrule,
           to_char(u.appointment_local, 'YYYY-MM-DD HH24:MI'), u.offsets::text,
           extract(epoch FROM u.next_at)::double precision, u.next_key,
           gw_setting(ce.settings, 'catchup_min', '360')::int,
           extract(epoch FROM u.updated_at)::double precision, tok
      FROM u JOIN centres ce ON ce.id = u.centre_id;
END;
$$;

-- As in 004, except for the follow-ups' scan: by followup_due_at (see the top of this file).
CREATE OR REPLACE FUNCTION gw_release_claim(p_node text, p_limit int, p_lease_s int)
RETURNS TABLE (id bigint, centre_id bigint, contact_id bigint, phone text, kind text,
               body text, urgent boolean, timezone text, quiet_start int, quiet_end int,
               quiet_sundays boolean, quiet_holidays boolean, daily_cap int, sent_today int,
               jobs_today int, due_at double precision, lease_token bigint)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    tok bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('passerelle:release')) THEN
        RETURN;
    END IF;
    tok := nextval('sched_lease_seq');

    -- an occurrence 7 days old gets no follow-up any more: out of the index
    UPDATE reminder_occurrences o SET followup_due_at = NULL
     WHERE o.followup_due_at <= now() AND o.due_at <= now() - interval '7 days';

    -- follow-ups: one per occurrence whose reminder asked for an OK
    WITH due AS (
        SELECT o.id, o.centre_id, o.contact_id, o.reminder_id, o.body, r.urgent
          FROM reminder_occurrences o JOIN reminders r ON r.id = o.reminder_id
         WHERE o.followup_due_at <= now()
           AND o.status = 'queued' AND o.acked_at IS NULL AND o.followup_at IS NULL
           AND o.parent_id IS NULL
           AND o.due_at > now() - interval '7 days'
         ORDER BY o.followup_due_at
         LIMIT 1000
         FOR UPDATE OF o SKIP LOCKED
    ), marked AS (
        UPDATE reminder_occurrences o SET followup_at = now() FROM due WHERE o.id = due.id
        RETURNING o.id
    ), fo AS (
        INSERT INTO reminder_occurrences (centre_id, reminder_id, contact_id, due_at,
                                          scheduled_at, body, status, parent_id, occ_key)
        SELECT due.centre_id, due.reminder_id, due.contact_id, now(), now(),
               gw_tpl(due.centre_id, 'fr', 'reminder_followup', jsonb_build_object('text', due.body)),
               'pending', due.id, 'followup:' || due.id
          FROM due JOIN marked ON marked.id = due.id
        ON CONFLICT (reminder_id, occ_key) WHERE occ_key IS NOT NULL DO NOTHING
        RETURNING reminder_occurrences.*
    )
    INSERT INTO deliveries (centre_id, contact_id, kind, occurrence_id, body, urgent, due_at)
    SELECT fo.centre_id, fo.contact_id, 'reminders', fo.id, fo.body, due.urgent, now()
      FROM fo JOIN due ON due.id = fo.parent_id;

    -- what can no longer be sent ends here (an expiry also ends a delivery that waits for a
    -- later time; an opt-out ends those at once: gw_delivery_optout below)
    WITH gone AS (
        UPDATE deliveries d
           SET status = CASE WHEN c.opted_out_at IS NOT NULL THEN 'cancelled' ELSE 'expired' END,
               reason = CASE WHEN c.opted_out_at IS NOT NULL THEN 'opted_out'
                             WHEN d.kind = 'jobs' THEN 'offers_gone' ELSE 'expired' END
          FROM contacts c
         WHERE d.status = 'pending' AND (d.due_at <= now() OR d.expires_at <= now())
           AND c.id = d.contact_id
           AND (c.opted_out_at IS NOT NULL
                OR (d.expires_at IS NOT NULL AND d.expires_at <= now())
                OR (d.kind = 'jobs' AND NOT EXISTS (
                        SELECT 1 FROM jobs j WHERE j.id = ANY (d.job_ids)
                           AND j.withdrawn_at IS NULL
                           AND (j.expires_at IS NULL OR j.expires_at > now()))))
           AND (d.lease_until IS NULL OR d.lease_until < now())
        RETURNING d.occurrence_id, d.reason
    )
    UPDATE reminder_occurrences o
       SET status = CASE WHEN g.reason = 'opted_out' THEN 'cancelled' ELSE 'skipped' END,
           reason = CASE WHEN g.reason = 'expired' THEN 'after_appointment' ELSE g.reason END
      FROM gone g WHERE o.id = g.occurrence_id;

    RETURN QUERY
    WITH c AS (
        SELECT d.id FROM deliveries d
         WHERE d.status = 'pending' AND d.due_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
         ORDER BY d.due_at, d.id
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE deliveries d SET lease_until = now() + make_interval(secs => p_lease_s),
               lease_token = tok
          FROM c WHERE d.id = c.id
        RETURNING d.*
    )
    SELECT u.id, u.centre_id, u.contact_id, ct.phone, u.kind,
           CASE WHEN u.kind <> 'jobs' THEN u.body
                ELSE (SELECT CASE WHEN count(*) = 1
                                  THEN gw_tpl(u.centre_id, ct.language, 'job_alert_one',
                                              jsonb_build_object('list', min(j.number || ' ' || j.title),
                                                                 'number', min(j.number)))
                                  ELSE gw_tpl(u.centre_id, ct.language, 'job_alert',
                                              jsonb_build_object('list',
                                                  string_agg(j.number || ' ' || gw_short(j.title, 30),
                                                             ' ; ' ORDER BY j.number)))
                             END
                        FROM jobs j WHERE j.id = ANY (u.job_ids) AND j.withdrawn_at IS NULL
                         AND (j.expires_at IS NULL OR j.expires_at > now())) END,
           u.urgent, ce.timezone,
           gw_minutes(gw_setting(ce.settings, 'quiet_start', '08:00')),
           gw_minutes(gw_setting(ce.settings, 'quiet_end', '20:00')),
           gw_setting(ce.settings, 'quiet_sundays', 'yes') = 'yes',
           gw_setting(ce.settings, 'quiet_holidays', 'yes') = 'yes',
           gw_setting(ce.settings, 'daily_cap', '3')::int,
           (SELECT count(*)::int FROM deliveries x
             WHERE x.contact_id = u.contact_id AND x.status = 'queued' AND NOT x.urgent
               AND x.released_at >= (date_trunc('day', now() AT TIME ZONE ce.timezone)
                                     AT TIME ZONE ce.timezone)),
           (SELECT count(*)::int FROM deliveries x
             WHERE x.contact_id = u.contact_id AND x.status = 'queued' AND x.kind = 'jobs'
               AND x.released_at >= (date_trunc('day', now() AT TIME ZONE ce.timezone)
                                     AT TIME ZONE ce.timezone)),
           extract(epoch FROM u.due_at)::double precision, tok
      FROM u JOIN contacts ct ON ct.id = u.contact_id JOIN centres ce ON ce.id = u.centre_id
     ORDER BY u.due_at, u.id;
END;
$$;

-- As in 004, except for its joins (see the top of this file). The reminder's columns read by
-- key (urgent, schedule, appointment_local, body, place) are not changed by the update.
CREATE OR REPLACE FUNCTION gw_sched_commit(batch json) RETURNS int
LANGUAGE plpgsql
SET enable_seqscan = off -- a batch reaches reminders by key, never by a scan
AS $$
#variable_conflict use_column
DECLARE
    n int;
BEGIN
    WITH input AS MATERIALIZED (
        SELECT x.* FROM json_to_recordset(batch)
            AS x(id bigint, token bigint, occ json, next_at double precision, next_key text,
                 finished boolean)
    ), own AS (
        UPDATE reminders r
           SET next_at = to_timestamp(i.next_at), next_key = i.next_key,
               status = CASE WHEN i.finished THEN 'finished' ELSE r.status END,
               lease_until = NULL, lease_token = NULL, updated_at = now()
          FROM input i
         WHERE r.id = i.id AND r.lease_token = i.token AND r.status = 'active'
        RETURNING r.*, i.occ
    ), occ AS (
        INSERT INTO reminder_occurrences (centre_id, reminder_id, contact_id, due_at,
                                          scheduled_at, body, status, reason, occ_key)
        SELECT own.centre_id, own.id, own.contact_id, to_timestamp(o.at), to_timestamp(o.at),
               gw_reminder_text(r, to_timestamp(o.at)), o.status, o.reason, o.key
          FROM own JOIN reminders r ON r.id = own.id
         CROSS JOIN LATERAL json_to_recordset(own.occ) AS o(key text, at double precision,
                                                            status text, reason text)
        ON CONFLICT (reminder_id, occ_key) WHERE occ_key IS NOT NULL DO NOTHING
        RETURNING reminder_occurrences.*
    ), dl AS (
        INSERT INTO deliveries (centre_id, contact_id, kind, occurrence_id, body, urgent, due_at,
                                expires_at)
        SELECT occ.centre_id, occ.contact_id, 'reminders', occ.id, occ.body, r.urgent,
               occ.due_at,
               CASE WHEN r.schedule = 'appointment'
                    THEN r.appointment_local AT TIME ZONE ce.timezone END
          FROM occ JOIN reminders r ON r.id = occ.reminder_id
          JOIN centres ce ON ce.id = occ.centre_id
         WHERE occ.status = 'pending'
        RETURNING 1
    )
    SELECT count(*) INTO n FROM own;
    RETURN n;
END;
$$;
