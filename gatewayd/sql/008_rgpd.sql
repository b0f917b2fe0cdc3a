-- 008 — data protection (issue 7, RGPD): retention of message texts, per-resident export and
-- erasure. Statistics (how many messages, their states, attendance counts, loans) survive an
-- erasure or a purge; what identifies a person does not. One thing is kept on purpose: a
-- number that said STOP stays opted out (the contact row keeps only the phone and the date),
-- because forgetting it would mean texting someone who asked us not to.

-- Where the retention purge of each centre has reached (messages are purged in id order).
ALTER TABLE centres ADD COLUMN retention_done_id bigint NOT NULL DEFAULT 0;

-- Purge the texts of messages older than the centre's `retention_days` (default 90), at most
-- p_limit messages per centre per call, walking each centre's messages in id order from where
-- the last call stopped (no extra index on the hot table). Also purges the texts kept next to
-- them (flow runs' replies, reminder occurrences, deliveries) and old USSD sessions. Returns
-- the number of messages purged.
CREATE FUNCTION gw_retention_run(p_limit int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    n int := 0;
    k int;
    last_id bigint;
    cutoff timestamptz;
BEGIN
    FOR c IN SELECT id, retention_done_id,
                    now() - make_interval(days => gw_setting(settings, 'retention_days', '90')::int) AS cutoff
               FROM centres LOOP
        cutoff := c.cutoff;
        -- the centre's next messages after the watermark, up to the first one that is too young
        WITH batch AS (
            SELECT m.id, m.created_at FROM messages m
             WHERE m.centre_id = c.id AND m.id > c.retention_done_id
             ORDER BY m.id LIMIT p_limit
        ), old AS (
            SELECT b.id FROM batch b
             WHERE b.id < coalesce((SELECT min(b2.id) FROM batch b2 WHERE b2.created_at >= cutoff),
                                   9223372036854775807)
        ), purged AS (
            UPDATE messages m SET body = NULL
              FROM old WHERE m.id = old.id AND m.body IS NOT NULL
            RETURNING m.id
        ), fr AS (
            UPDATE flow_runs f SET replies = '[]'::jsonb
              FROM old WHERE f.message_id = old.id AND f.replies <> '[]'::jsonb
        )
        SELECT (SELECT count(*) FROM purged), (SELECT max(id) FROM old) INTO k, last_id;
        IF last_id IS NOT NULL THEN
            UPDATE centres SET retention_done_id = last_id WHERE id = c.id;
        END IF;
        n := n + k;
        UPDATE reminder_occurrences SET body = '' WHERE centre_id = c.id AND due_at < cutoff
           AND body <> '' AND status IN ('queued', 'skipped', 'cancelled');
        UPDATE deliveries SET body = NULL WHERE centre_id = c.id AND created_at < cutoff
           AND body IS NOT NULL AND status <> 'pending';
    END LOOP;
    DELETE FROM ussd_sessions WHERE last_at < now() - interval '30 days';
    DELETE FROM admin_sessions WHERE expires_at < now() - interval '30 days';
    DELETE FROM partner_requests WHERE created_at < now() - interval '7 days';
    RETURN n;
END;
$$;

-- Everything stored about one phone number at one centre, as one JSON document.
CREATE FUNCTION gw_resident_export(p_centre bigint, p_phone text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'exported_at', now(),
        'centre', (SELECT jsonb_build_object('id', ce.id, 'name', ce.name) FROM centres ce WHERE ce.id = p_centre),
        'phone', p_phone,
        'contact', (SELECT to_jsonb(c) - 'help_replied_on' FROM contacts c
                     WHERE c.centre_id = p_centre AND c.phone = p_phone),
        'messages', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'id', m.id, 'direction', m.direction, 'text', m.body, 'status', m.status,
                'kind', m.kind, 'route', m.route, 'created_at', m.created_at,
                'updated_at', m.updated_at,
                'history', (SELECT jsonb_agg(jsonb_build_object('status', e.status, 'at', e.at,
                                                                'detail', e.detail) ORDER BY e.id)
                              FROM message_events e WHERE e.message_id = m.id)) ORDER BY m.id)
            FROM messages m WHERE m.centre_id = p_centre AND m.phone = p_phone), '[]'::jsonb),
        'reminders', coalesce((SELECT jsonb_agg(to_jsonb(r) - 'lease_token' - 'lease_until' ORDER BY r.id)
            FROM reminders r JOIN contacts c ON c.id = r.contact_id
           WHERE c.centre_id = p_centre AND c.phone = p_phone), '[]'::jsonb),
        'reminder_occurrences', coalesce((SELECT jsonb_agg(to_jsonb(o) ORDER BY o.id)
            FROM reminder_occurrences o JOIN contacts c ON c.id = o.contact_id
           WHERE c.centre_id = p_centre AND c.phone = p_phone), '[]'::jsonb),
        'subscriptions', coalesce((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'topic', t.name,
                                                                       'since', s.created_at))
            FROM subscriptions s JOIN topics t ON t.id = s.topic_id JOIN contacts c ON c.id = s.contact_id
           WHERE c.centre_id = p_centre AND c.phone = p_phone), '[]'::jsonb),
        'attendance', coalesce((SELECT jsonb_agg(jsonb_build_object('activity', a.name,
                'session_start', se.starts_at, 'people', at.people, 'channel', at.channel, 'at', at.at))
            FROM attendance at JOIN activity_sessions se ON se.id = at.session_id
            JOIN activities a ON a.id = se.activity_id JOIN contacts c ON c.id = at.contact_id
           WHERE c.centre_id = p_centre AND c.phone = p_phone), '[]'::jsonb),
        'loans', coalesce((SELECT jsonb_agg(jsonb_build_object('item', i.name, 'status', l.status,
                'requested_at', l.requested_at, 'due_at', l.due_at, 'returned_at', l.returned_at))
            FROM loans l JOIN items i ON i.id = l.item_id JOIN contacts c ON c.id = l.contact_id
           WHERE c.centre_id = p_centre AND c.phone = p_phone), '[]'::jsonb),
        'inbox', coalesce((SELECT jsonb_agg(jsonb_build_object('message_id', i.message_id,
                'reason', i.reason, 'created_at', i.created_at, 'handled_at', i.handled_at))
            FROM inbox i WHERE i.centre_id = p_centre AND i.phone = p_phone), '[]'::jsonb),
        'ussd_sessions', coalesce((SELECT jsonb_agg(jsonb_build_object('started_at', u.started_at,
                'requests', u.requests))
            FROM ussd_sessions u WHERE u.centre_id = p_centre AND u.phone = p_phone), '[]'::jsonb))
$$;

-- Erase a resident of a centre: texts and the number disappear from messages, inbox, flow
-- runs and USSD sessions; reminders, subscriptions, conversation and pending deliveries are
-- deleted; attendance and loans stay as anonymous statistics (attached to no one, or to the
-- centre's "erased" placeholder for loans); audit details naming the number lose it. A number
-- that opted out keeps exactly that (phone + date). Returns counts of what was changed.
CREATE FUNCTION gw_resident_erase(p_centre bigint, p_phone text, p_by text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ct contacts;
    anon bigint;
    nm int;
    stays_opted_out boolean;
BEGIN
    SELECT * INTO ct FROM contacts WHERE centre_id = p_centre AND phone = p_phone FOR UPDATE;
    WITH m AS (
        UPDATE messages SET body = NULL, phone = 'erased', provider_ref = NULL, inbound_ref = NULL
         WHERE centre_id = p_centre AND phone = p_phone RETURNING id
    ) SELECT count(*) INTO nm FROM m;
    DELETE FROM outbox_queue oq USING messages m
     WHERE m.id = oq.message_id AND m.centre_id = p_centre AND m.phone = 'erased'
       AND oq.lease_token IS NULL;
    UPDATE messages SET status = 'cancelled', error_code = 'erased', error = 'resident erased'
     WHERE centre_id = p_centre AND phone = 'erased' AND status = 'queued';
    UPDATE inbox SET phone = 'erased', contact_id = NULL WHERE centre_id = p_centre AND phone = p_phone;
    UPDATE flow_runs SET phone = 'erased', replies = '[]'::jsonb, contact_id = NULL
     WHERE centre_id = p_centre AND phone = p_phone;
    DELETE FROM ussd_sessions WHERE centre_id = p_centre AND phone = p_phone;
    UPDATE audit_log SET detail = detail - 'phone'
     WHERE centre_id = p_centre AND detail ->> 'phone' = p_phone;
    IF ct.id IS NOT NULL THEN
        INSERT INTO contacts (centre_id, phone, first_name, unknown)
        VALUES (p_centre, 'erased', 'anonyme', true)
        ON CONFLICT (centre_id, phone) DO UPDATE SET updated_at = now()
        RETURNING id INTO anon;
        -- a request nobody confirmed yet goes away; an item actually out stays on the books
        UPDATE items SET state = 'available' WHERE state = 'reserved' AND id IN (
            SELECT item_id FROM loans WHERE contact_id = ct.id AND status = 'requested');
        UPDATE loans SET status = 'cancelled' WHERE contact_id = ct.id AND status = 'requested';
        UPDATE loans SET contact_id = anon WHERE contact_id = ct.id;
        UPDATE attendance SET contact_id = NULL, who = 'erased:' || id WHERE contact_id = ct.id;
        UPDATE deliveries SET contact_id = anon, body = NULL,
               status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
               reason = CASE WHEN status = 'pending' THEN 'erased' ELSE reason END
         WHERE contact_id = ct.id;
        DELETE FROM reminders WHERE contact_id = ct.id;          -- and their occurrences' link
        DELETE FROM reminder_occurrences WHERE contact_id = ct.id;
        DELETE FROM subscriptions WHERE contact_id = ct.id;
        DELETE FROM conversations WHERE contact_id = ct.id;
        stays_opted_out := ct.opted_out_at IS NOT NULL;
        IF stays_opted_out THEN
            UPDATE contacts SET first_name = NULL, consent_source = NULL, consent_at = NULL,
                   language = 'fr', unknown = true, help_replied_on = NULL, updated_at = now()
             WHERE id = ct.id;
        ELSE
            DELETE FROM contacts WHERE id = ct.id;
        END IF;
    END IF;
    PERFORM gw_audit(p_centre, NULL, p_by, 'resident.erase', 'contact:' || coalesce(ct.id::text, '-'),
                     jsonb_build_object('messages', nm));
    RETURN jsonb_build_object('messages', nm, 'contact', ct.id IS NOT NULL,
                              'kept_opt_out', coalesce(stays_opted_out, false));
END;
$$;
