-- 004 — reminders, the scheduler, activity and job alerts, partners (issue 5).
--
-- Two steps, each run by one node at a time (a transaction-level advisory lock taken by the
-- claim function; any node may take over) and fenced by a lease token like the outbox:
--   1. expansion (gw_sched_claim / gw_sched_commit): the daemon computes each due reminder's
--      occurrence(s) with libical (gatewayd/sched_time.c: RRULE, DST rules, catch-up after a
--      downtime) and its next occurrence; the occurrence becomes a pending delivery;
--   2. release (gw_release_claim / gw_release_commit): each pending delivery whose time has come
--      is checked against quiet hours (sched_time.c) and the per-resident daily cap, then
--      queued in the outbox (idempotency key 'dlv:<delivery id>': never two SMS) or moved to
--      the next allowed time. Reminders, alerts and job alerts share this step.

-- Staff of a centre (the admin UI adds passwords and sessions). A referent creates reminders;
-- an admin may also send large alerts.
CREATE TABLE staff (
    id             bigserial PRIMARY KEY,
    centre_id      bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    login          text NOT NULL UNIQUE,
    name           text NOT NULL DEFAULT '',
    role           text NOT NULL DEFAULT 'referent' CHECK (role IN ('referent', 'admin')),
    password_hash  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- A reminder: one schedule among
--   'once'        at start_local (local wall-clock time of the centre);
--   'rrule'       RFC 5545 rule `rrule` anchored at start_local (DTSTART);
--   'appointment' offsets before appointment_local: [{"days":1,"time":"18:00"} (the day before
--                 at 18:00), {"minutes":120} (2 hours before)].
-- body is a template: {prenom}, {date}, {heure}, {lieu} (the appointment's, else the
-- occurrence's date and time).
-- next_at: UTC time of the next occurrence (NULL: not computed yet, the scheduler does it);
-- next_key: that occurrence's key (its local time, 'YYYY-MM-DDTHH:MI'), unique per reminder.
CREATE TABLE reminders (
    id                 bigserial PRIMARY KEY,
    centre_id          bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    contact_id         bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    created_by         text NOT NULL,            -- staff login, 'loan', 'api', …
    body               text NOT NULL,
    schedule           text NOT NULL CHECK (schedule IN ('once', 'rrule', 'appointment')),
    start_local        timestamp,
    rrule              text,
    appointment_local  timestamp,
    place              text,
    offsets            jsonb,
    urgent             boolean NOT NULL DEFAULT false,
    ack_requested      boolean NOT NULL DEFAULT false,
    followup_min       int NOT NULL DEFAULT 180 CHECK (followup_min BETWEEN 5 AND 10080),
    loan_id            bigint,                   -- set for the automatic loan reminders
    status             text NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'finished', 'cancelled')),
    next_at            timestamptz,
    next_key           text,
    lease_until        timestamptz,
    lease_token        bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((schedule = 'once' AND start_local IS NOT NULL)
        OR (schedule = 'rrule' AND start_local IS NOT NULL AND rrule IS NOT NULL)
        OR (schedule = 'appointment' AND appointment_local IS NOT NULL AND offsets IS NOT NULL))
);
-- the expansion's scan: active reminders by next time (NULL first: not computed yet)
CREATE INDEX reminders_due ON reminders (next_at NULLS FIRST) WHERE status = 'active';
CREATE INDEX reminders_contact ON reminders (contact_id);
CREATE INDEX reminders_loan ON reminders (loan_id) WHERE loan_id IS NOT NULL;
CREATE SEQUENCE sched_lease_seq;

-- Occurrences (created in 002 for the flows): one per materialised occurrence, with why it was
-- skipped when it was; a follow-up (no OK came in time) is an occurrence with parent_id.
ALTER TABLE reminder_occurrences
    ADD COLUMN occ_key       text,
    ADD COLUMN parent_id     bigint,
    ADD COLUMN scheduled_at  timestamptz,      -- the occurrence's own time (due_at may move later)
    ADD COLUMN reason        text,             -- skipped: 'missed' (downtime), 'after_appointment', 'too_late', 'opted_out'
    ADD COLUMN followup_at   timestamptz;      -- when the follow-up was created
CREATE UNIQUE INDEX reminder_occurrences_key ON reminder_occurrences (reminder_id, occ_key)
    WHERE occ_key IS NOT NULL;
CREATE INDEX reminder_occurrences_followup ON reminder_occurrences (due_at)
    WHERE status = 'queued' AND acked_at IS NULL AND followup_at IS NULL AND parent_id IS NULL;

-- Alerts posted to a topic by staff or a partner; fanned out to deliveries at once.
CREATE TABLE alerts (
    id           bigserial PRIMARY KEY,
    centre_id    bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    topic_id     bigint NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    body         text NOT NULL,
    urgent       boolean NOT NULL DEFAULT false,
    expires_at   timestamptz,
    created_by   text NOT NULL,
    recipients   int NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The release queue: one SMS to one resident that waits for its time (reminder occurrence,
-- alert, or grouped job alert). No foreign keys (it is hot, like the outbox).
CREATE TABLE deliveries (
    id             bigserial PRIMARY KEY,
    centre_id      bigint NOT NULL,
    contact_id     bigint NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('reminders', 'alerts', 'jobs')),
    occurrence_id  bigint,
    alert_id       bigint,
    job_ids        bigint[],          -- job alerts: the offers grouped in this SMS
    body           text,              -- NULL for job alerts (rendered at release)
    urgent         boolean NOT NULL DEFAULT false,
    due_at         timestamptz NOT NULL,
    expires_at     timestamptz,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'queued', 'cancelled', 'expired')),
    reason         text,              -- last deferral ('quiet_hours', 'daily_cap') or why it ended
    message_id     bigint,
    released_at    timestamptz,
    lease_until    timestamptz,
    lease_token    bigint,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_contact ON deliveries (contact_id, released_at);
CREATE INDEX deliveries_alert ON deliveries (alert_id) WHERE alert_id IS NOT NULL;
CREATE UNIQUE INDEX deliveries_occurrence ON deliveries (occurrence_id)
    WHERE occurrence_id IS NOT NULL;
-- the release claim's expiry scan: a delivery waiting for a later time (quiet hours, cap) ends
-- 'expired' when its expiry passes, not when it comes due
CREATE INDEX deliveries_expiry ON deliveries (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;

-- Partner organisations post alerts and job offers through signed webhooks (gw_partners.c).
-- The secret is kept as given (HMAC needs it); key_id is public.
CREATE TABLE partners (
    id              bigserial PRIMARY KEY,
    centre_id       bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    name            text NOT NULL,
    key_id          text NOT NULL UNIQUE,
    secret          text NOT NULL,
    topics          text[] NOT NULL DEFAULT '{}',      -- alert topics it may post to
    may_post_jobs   boolean NOT NULL DEFAULT false,
    rate_per_min    int NOT NULL DEFAULT 60 CHECK (rate_per_min BETWEEN 1 AND 100000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    UNIQUE (centre_id, name)
);

-- Idempotency-Key of partner requests: the first answer is replayed; a different body → 409.
CREATE TABLE partner_requests (
    partner_id   bigint NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
    idem_key     text NOT NULL,
    body_hash    text NOT NULL,
    status       int NOT NULL,
    response     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, idem_key)
);

INSERT INTO templates (centre_id, language, name, body) VALUES
 (NULL, 'fr', 'reminder_followup', 'Rappel : {text} Répondez OK pour confirmer.'),
 (NULL, 'fr', 'job_alert', 'Nouvelles offres : {list}. Envoyez JOB + numéro pour le détail.'),
 (NULL, 'fr', 'job_alert_one', 'Nouvelle offre : {list}. Envoyez JOB {number} pour le détail.'),
 (NULL, 'fr', 'loan_due_soon', 'Rappel : {item} est à rendre demain ({date}). Merci !'),
 (NULL, 'fr', 'loan_overdue', '{item} devait être rendu le {date}. Merci de le rapporter au centre.');

-- ------------------------------------------------------------------ alerts and job offers
-- Post an alert to a topic: one pending delivery per subscriber who consented and did not opt
-- out. A fan-out larger than the centre's `fanout_max` (default 500) needs p_large_ok (an
-- admin). Returns {"id","recipients"} or {"error": "unknown_topic"|"too_large"|"expired",
-- "limit"?, "recipients"?}.
CREATE FUNCTION gw_alert_create(p_centre bigint, p_topic text, p_body text,
                                p_expires timestamptz, p_urgent boolean, p_created_by text,
                                p_large_ok boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    t topics;
    n int;
    lim int;
    aid bigint;
BEGIN
    SELECT * INTO t FROM topics WHERE centre_id = p_centre AND kind = 'alert' AND name = p_topic;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'unknown_topic');
    END IF;
    IF p_expires IS NOT NULL AND p_expires <= now() THEN
        RETURN jsonb_build_object('error', 'expired');
    END IF;
    SELECT count(*) INTO n FROM subscriptions s JOIN contacts c ON c.id = s.contact_id
     WHERE s.topic_id = t.id AND c.opted_out_at IS NULL AND c.consent_at IS NOT NULL;
    SELECT gw_setting(settings, 'fanout_max', '500')::int INTO lim FROM centres WHERE id = p_centre;
    IF n > lim AND NOT p_large_ok THEN
        RETURN jsonb_build_object('error', 'too_large', 'limit', lim, 'recipients', n);
    END IF;
    INSERT INTO alerts (centre_id, topic_id, body, urgent, expires_at, created_by)
    VALUES (p_centre, t.id, p_body, coalesce(p_urgent, false), p_expires, p_created_by)
    RETURNING id INTO aid;
    -- the recipients are the deliveries made (the count above only guards the size)
    WITH d AS (
        INSERT INTO deliveries (centre_id, contact_id, kind, alert_id, body, urgent, due_at,
                                expires_at)
        SELECT p_centre, c.id, 'alerts', aid, p_body, coalesce(p_urgent, false), now(), p_expires
          FROM subscriptions s JOIN contacts c ON c.id = s.contact_id
         WHERE s.topic_id = t.id AND c.opted_out_at IS NULL AND c.consent_at IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) INTO n FROM d;
    UPDATE alerts SET recipients = n WHERE id = aid;
    RETURN jsonb_build_object('id', aid, 'recipients', n, 'topic', t.name);
END;
$$;

-- Publish (create or update, by (source, external_id)) a job offer. A new offer in a category
-- alerts that category's subscribers: offers not yet sent to a resident are grouped into one
-- pending job alert (at most one job alert per resident per day: see gw_release_claim).
-- Returns {"id","number","created","alerted"}.
CREATE FUNCTION gw_job_publish(p_centre bigint, p_source text, p_external_id text, p_title text,
                               p_body text, p_category text, p_contact text,
                               p_expires timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    j jobs;
    jid bigint;
    created boolean;
    n int := 0;
BEGIN
    -- numbers are per centre: serialise publishers of one centre (then a plain look-up tells
    -- a new offer from an update)
    PERFORM pg_advisory_xact_lock(hashtext('passerelle:jobs:' || p_centre));
    SELECT id INTO jid FROM jobs
     WHERE centre_id = p_centre AND source = p_source AND external_id = p_external_id;
    created := jid IS NULL;
    IF created THEN
        INSERT INTO jobs (centre_id, number, external_id, source, title, body, contact, category,
                          expires_at)
        VALUES (p_centre, (SELECT coalesce(max(number), 0) + 1 FROM jobs WHERE centre_id = p_centre),
                p_external_id, p_source, p_title, coalesce(p_body, ''), coalesce(p_contact, ''),
                p_category, p_expires)
        RETURNING id INTO jid;
    ELSE
        UPDATE jobs SET title = p_title, body = coalesce(p_body, ''),
               contact = coalesce(p_contact, ''), category = p_category, expires_at = p_expires,
               withdrawn_at = NULL
         WHERE id = jid;
    END IF;
    SELECT * INTO j FROM jobs WHERE id = jid;
    IF created AND j.category IS NOT NULL THEN
        -- add the offer to a pending job alert, or start one
        WITH subs AS (
            SELECT c.id FROM topics t JOIN subscriptions s ON s.topic_id = t.id
              JOIN contacts c ON c.id = s.contact_id
             WHERE t.centre_id = p_centre AND t.kind = 'job' AND t.name = j.category
               AND c.opted_out_at IS NULL AND c.consent_at IS NOT NULL
        ), added AS (
            UPDATE deliveries d SET job_ids = d.job_ids || j.id
              FROM subs WHERE d.contact_id = subs.id AND d.kind = 'jobs' AND d.status = 'pending'
               AND d.centre_id = p_centre AND d.lease_token IS NULL
            RETURNING d.contact_id
        ), fresh AS (
            INSERT INTO deliveries (centre_id, contact_id, kind, job_ids, due_at)
            SELECT p_centre, subs.id, 'jobs', ARRAY[j.id], now() FROM subs
             WHERE subs.id NOT IN (SELECT contact_id FROM added)
            RETURNING contact_id
        )
        SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM fresh) INTO n;
    END IF;
    RETURN jsonb_build_object('id', j.id, 'number', j.number, 'created', created, 'alerted', n);
END;
$$;

-- Withdraw a job offer: residents no longer see it (JOB, USSD) and pending job alerts skip it.
CREATE FUNCTION gw_job_withdraw(p_centre bigint, p_source text, p_external_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    jid bigint;
BEGIN
    UPDATE jobs SET withdrawn_at = coalesce(withdrawn_at, now())
     WHERE centre_id = p_centre AND source = p_source AND external_id = p_external_id
    RETURNING id INTO jid;
    IF jid IS NULL THEN
        RETURN jsonb_build_object('error', 'not_found');
    END IF;
    RETURN jsonb_build_object('id', jid, 'withdrawn', true);
END;
$$;

-- ------------------------------------------------------------------ reminders
-- The text of one occurrence: {prenom}, {date}, {heure}, {lieu} filled (dates as dd/mm, times
-- as 10h30: the words of French dates would need a locale the server may not have).
CREATE FUNCTION gw_reminder_text(r reminders, p_at timestamptz) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tz text;
    fn text;
    t timestamp;
BEGIN
    SELECT c.timezone INTO tz FROM centres c WHERE c.id = r.centre_id;
    SELECT ct.first_name INTO fn FROM contacts ct WHERE ct.id = r.contact_id;
    t := coalesce(r.appointment_local, p_at AT TIME ZONE tz);
    -- without a first name, "Bonjour {prenom}," reads "Bonjour,"
    RETURN replace(replace(replace(replace(replace(r.body,
               ' {prenom}', coalesce(' ' || fn, '')), '{prenom}', coalesce(fn, '')),
               '{date}', to_char(t, 'DD/MM')),
               '{heure}', replace(to_char(t, 'FMHH24"h"MI'), 'h00', 'h')),
               '{lieu}', coalesce(r.place, ''));
END;
$$;

-- Create a reminder for the resident with phone p_phone (created if unknown). The scheduler
-- computes its first occurrence within a second or two.
CREATE FUNCTION gw_reminder_create(p_centre bigint, p_phone text, p_created_by text, p_body text,
                                   p_schedule text, p_start timestamp, p_rrule text,
                                   p_appointment timestamp, p_place text, p_offsets jsonb,
                                   p_urgent boolean DEFAULT false,
                                   p_ack boolean DEFAULT false, p_followup_min int DEFAULT 180)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    ct contacts;
    rid bigint;
BEGIN
    ct := gw_contact_get(p_centre, p_phone);
    INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local, rrule,
                           appointment_local, place, offsets, urgent, ack_requested, followup_min)
    VALUES (p_centre, ct.id, p_created_by, p_body, p_schedule, p_start, p_rrule, p_appointment,
            p_place, p_offsets, coalesce(p_urgent, false), coalesce(p_ack, false),
            coalesce(p_followup_min, 180))
    RETURNING id INTO rid;
    RETURN rid;
END;
$$;

-- Cancel a reminder, or (p_recompute) keep it and recompute it after an edit: either way its
-- occurrences not yet sent are cancelled.
CREATE FUNCTION gw_reminder_reset(p_id bigint, p_recompute boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reminders SET status = CASE WHEN p_recompute THEN 'active' ELSE 'cancelled' END,
           next_at = NULL, next_key = NULL, lease_until = NULL, lease_token = NULL,
           updated_at = now()
     WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE reminder_occurrences SET status = 'cancelled',
           reason = CASE WHEN p_recompute THEN 'edited' ELSE 'cancelled' END
     WHERE reminder_id = p_id AND status = 'pending';
    UPDATE deliveries d SET status = 'cancelled',
           reason = CASE WHEN p_recompute THEN 'edited' ELSE 'cancelled' END
      FROM reminder_occurrences o
     WHERE o.reminder_id = p_id AND d.occurrence_id = o.id AND d.status = 'pending';
    RETURN true;
END;
$$;

-- Expansion, step 1: lease up to p_limit reminders that are due or not computed yet. One node
-- at a time (transaction advisory lock; the others get nothing this round).
CREATE FUNCTION gw_sched_claim(p_node text, p_limit int, p_lease_s int)
RETURNS TABLE (id bigint, timezone text, schedule text, start_local text, rrule text,
               appointment_local text, offsets text, next_at double precision, next_key text,
               catchup_min int, updated_at double precision, lease_token bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    tok bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('passerelle:scheduler')) THEN
        RETURN;
    END IF;
    tok := nextval('sched_lease_seq');
    RETURN QUERY
    WITH c AS (
        SELECT r.id FROM reminders r
         WHERE r.status = 'active' AND (r.next_at IS NULL OR r.next_at <= now())
           AND (r.lease_until IS NULL OR r.lease_until < now())
         ORDER BY r.next_at NULLS FIRST
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE reminders r SET lease_until = now() + make_interval(secs => p_lease_s),
               lease_token = tok
          FROM c WHERE r.id = c.id
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

-- Expansion, step 2: for each leased reminder {id, token, occ:[{key, at (epoch s), status
-- ('pending'|'skipped'), reason}], next_at (epoch s or null), next_key, finished}: record the
-- occurrences (once per key), make the pending ones deliveries, move the reminder on.
-- A reminder whose lease was lost is left alone (the new owner does the work).
CREATE FUNCTION gw_sched_commit(batch json) RETURNS int
LANGUAGE plpgsql AS $$
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
        RETURNING r.*
    ), occ AS (
        INSERT INTO reminder_occurrences (centre_id, reminder_id, contact_id, due_at,
                                          scheduled_at, body, status, reason, occ_key)
        SELECT own.centre_id, own.id, own.contact_id, to_timestamp(o.at), to_timestamp(o.at),
               gw_reminder_text(own::reminders, to_timestamp(o.at)), o.status, o.reason, o.key
          FROM own JOIN input i ON i.id = own.id
         CROSS JOIN LATERAL json_to_recordset(i.occ) AS o(key text, at double precision,
                                                          status text, reason text)
        ON CONFLICT (reminder_id, occ_key) WHERE occ_key IS NOT NULL DO NOTHING
        RETURNING reminder_occurrences.*
    ), dl AS (
        INSERT INTO deliveries (centre_id, contact_id, kind, occurrence_id, body, urgent, due_at,
                                expires_at)
        SELECT occ.centre_id, occ.contact_id, 'reminders', occ.id, occ.body, own.urgent,
               occ.due_at,
               CASE WHEN own.schedule = 'appointment'
                    THEN own.appointment_local AT TIME ZONE ce.timezone END
          FROM occ JOIN own ON own.id = occ.reminder_id JOIN centres ce ON ce.id = own.centre_id
         WHERE occ.status = 'pending'
        RETURNING 1
    )
    SELECT count(*) INTO n FROM own;
    RETURN n;
END;
$$;

-- A follow-up occurrence's OK acknowledges the reminder occurrence it follows.
CREATE FUNCTION gw_occurrence_ack_parent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS NOT NULL AND NEW.acked_at IS NOT NULL AND OLD.acked_at IS NULL THEN
        UPDATE reminder_occurrences SET acked_at = NEW.acked_at,
               ack_message_id = NEW.ack_message_id
         WHERE id = NEW.parent_id AND acked_at IS NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER reminder_occurrences_ack AFTER UPDATE OF acked_at ON reminder_occurrences
    FOR EACH ROW EXECUTE FUNCTION gw_occurrence_ack_parent();

-- ------------------------------------------------------------------ release
-- Step 1: lease up to p_limit pending deliveries that are due, with what the daemon needs to
-- decide: the final text, the centre's quiet hours and daily cap, and how many non-urgent SMS
-- (and job alerts) the resident was already sent today (local day). Before that, in SQL:
-- deliveries to residents who opted out are cancelled, expired ones end 'expired' (an alert or
-- an appointment reminder is never sent late), job alerts whose offers all went away end, and
-- follow-ups are created for reminders that asked for an OK that did not come.
CREATE FUNCTION gw_release_claim(p_node text, p_limit int, p_lease_s int)
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

    -- follow-ups: one per occurrence whose reminder asked for an OK
    WITH due AS (
        SELECT o.id, o.centre_id, o.contact_id, o.reminder_id, o.body, r.urgent
          FROM reminder_occurrences o JOIN reminders r ON r.id = o.reminder_id
         WHERE o.status = 'queued' AND o.acked_at IS NULL AND o.followup_at IS NULL
           AND o.parent_id IS NULL AND r.ack_requested
           AND o.due_at <= now() - make_interval(mins => r.followup_min)
           AND o.due_at > now() - interval '7 days'
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

-- 'HH:MM' → minutes of the day.
CREATE FUNCTION gw_minutes(t text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT split_part(t, ':', 1)::int * 60 + split_part(t, ':', 2)::int
$$;

-- Step 2: for each leased delivery {id, token, action 'send'|'defer', at (epoch s, defer),
-- reason (defer), text, segments, encoding (send)}: sends go into the outbox through
-- gw_enqueue (idempotency key 'dlv:<id>': one SMS per delivery whatever happens), deferrals
-- wait for their time. Returns the deliveries sent with their message ids.
CREATE FUNCTION gw_release_commit(batch json, p_default_route text)
RETURNS TABLE (delivery_id bigint, message_id bigint, status text)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    enq json;
BEGIN
    -- only what this caller still leases; deferrals wait for their time
    WITH input AS MATERIALIZED (
        SELECT x.* FROM json_to_recordset(batch) AS x(id bigint, token bigint, action text,
               at double precision, reason text, text text, segments int, encoding text)
    ), owned AS MATERIALIZED (
        SELECT i.*, d.centre_id, d.kind, ct.phone
          FROM input i JOIN deliveries d ON d.id = i.id AND d.lease_token = i.token
                                        AND d.status = 'pending'
          JOIN contacts ct ON ct.id = d.contact_id
    ), deferred AS (
        UPDATE deliveries d SET due_at = to_timestamp(o.at), reason = o.reason,
               lease_until = NULL, lease_token = NULL
          FROM owned o WHERE d.id = o.id AND o.action = 'defer'
    )
    SELECT json_agg(json_build_object('i', s.n, 'dlv', s.id, 'centre_id', s.centre_id,
                                      'phone', s.phone, 'body', s.text, 'segments', s.segments,
                                      'encoding', s.encoding, 'route', NULL,
                                      'idem', 'dlv:' || s.id, 'send_at', NULL, 'kind', s.kind))
      INTO enq
      FROM (SELECT o.*, row_number() OVER (ORDER BY o.id) AS n FROM owned o
             WHERE o.action = 'send') s;
    IF enq IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH e AS (
        SELECT e.*, m.dlv FROM gw_enqueue(enq, p_default_route) e
          JOIN json_to_recordset(enq) AS m(i int, dlv bigint) ON m.i = e.i
    ), d AS (
        UPDATE deliveries d
           SET status = CASE WHEN e.status = 'opted_out' THEN 'cancelled' ELSE 'queued' END,
               reason = CASE WHEN e.status = 'opted_out' THEN 'opted_out' ELSE NULL END,
               message_id = e.id, released_at = now(),
               lease_until = NULL, lease_token = NULL
          FROM e WHERE d.id = e.dlv
        RETURNING d.id, d.occurrence_id, d.message_id, d.status
    ), o AS (
        UPDATE reminder_occurrences o
           SET status = d.status, message_id = d.message_id,
               reason = CASE WHEN d.status = 'cancelled' THEN 'opted_out' ELSE o.reason END
          FROM d WHERE o.id = d.occurrence_id
    )
    SELECT d.id, d.message_id, d.status FROM d;
END;
$$;

-- ------------------------------------------------------------------ loans
-- A confirmed loan gets two reminders: the day before its due date and the day after it
-- (10:00 local); its return (or a refusal) cancels them.
CREATE FUNCTION gw_loan_reminders() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tz text;
    it items;
    due_day timestamp;
    v jsonb;
    r record;
BEGIN
    IF NEW.status = 'confirmed' AND OLD.status IS DISTINCT FROM 'confirmed'
       AND NEW.due_at IS NOT NULL THEN
        SELECT timezone INTO tz FROM centres WHERE id = NEW.centre_id;
        SELECT * INTO it FROM items WHERE id = NEW.item_id;
        due_day := date_trunc('day', NEW.due_at AT TIME ZONE tz);
        v := jsonb_build_object('item', it.name, 'date', to_char(due_day, 'DD/MM'));
        INSERT INTO reminders (centre_id, contact_id, created_by, body, schedule, start_local,
                               loan_id)
        VALUES (NEW.centre_id, NEW.contact_id, 'loan',
                gw_tpl(NEW.centre_id, 'fr', 'loan_due_soon', v), 'once',
                due_day - interval '1 day' + interval '10 hours', NEW.id),
               (NEW.centre_id, NEW.contact_id, 'loan',
                gw_tpl(NEW.centre_id, 'fr', 'loan_overdue', v), 'once',
                due_day + interval '1 day 10 hours', NEW.id);
    ELSIF NEW.status IN ('returned', 'refused', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status THEN
        FOR r IN SELECT id FROM reminders WHERE loan_id = NEW.id AND status = 'active' LOOP
            PERFORM gw_reminder_reset(r.id, false);
        END LOOP;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER loans_reminders AFTER UPDATE OF status ON loans
    FOR EACH ROW EXECUTE FUNCTION gw_loan_reminders();

-- ------------------------------------------------------------------ opt-out
-- A resident who opts out (STOP, a provider's blacklist, staff) is sent nothing more: the
-- deliveries that wait for their time (quiet hours, daily cap, a job alert tomorrow) end at
-- once, with their occurrences. Leased ones are left to the release commit (gw_enqueue refuses
-- an opted-out number).
CREATE FUNCTION gw_delivery_optout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        UPDATE deliveries d SET status = 'cancelled', reason = 'opted_out'
         WHERE d.contact_id = NEW.id AND d.status = 'pending'
           AND (d.lease_until IS NULL OR d.lease_until < now())
        RETURNING d.occurrence_id
    )
    UPDATE reminder_occurrences o SET status = 'cancelled', reason = 'opted_out'
      FROM gone g WHERE o.id = g.occurrence_id AND o.status = 'pending';
    RETURN NEW;
END;
$$;
CREATE TRIGGER contacts_optout_deliveries AFTER UPDATE OF opted_out_at ON contacts
    FOR EACH ROW WHEN (OLD.opted_out_at IS NULL AND NEW.opted_out_at IS NOT NULL)
    EXECUTE FUNCTION gw_delivery_optout();
