-- 006 — the admin UI's back end (issue 6, first increment): staff roles, sessions, the audit
-- log, and gw_admin_call, the SQL side of most /admin/api/ endpoints (admin/API.md). Every
-- query is scoped to the session's centre (p_centre); an object of another centre is "not
-- found", exactly like a missing one.

ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('admin', 'referent', 'staff', 'viewer'));

-- Sessions: the cookie carries a random token; only its BLAKE2b hash is stored.
CREATE TABLE admin_sessions (
    token_hash    text PRIMARY KEY,
    staff_id      bigint NOT NULL REFERENCES staff(id) ON DELETE CASCADE,
    csrf          text NOT NULL,
    address       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX admin_sessions_staff ON admin_sessions (staff_id);

-- Who changed what, when (every state-changing staff action).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL,
    staff_id    bigint,
    login       text NOT NULL,
    action      text NOT NULL,
    object      text,
    detail      jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_centre ON audit_log (centre_id, id DESC);

ALTER TABLE inbox ADD COLUMN assigned_to text;

CREATE FUNCTION gw_audit(p_centre bigint, p_staff bigint, p_login text, p_action text,
                         p_object text, p_detail jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO audit_log (centre_id, staff_id, login, action, object, detail)
    VALUES (p_centre, p_staff, p_login, p_action, p_object, p_detail)
$$;

-- Accent- and case-insensitive text for searches.
CREATE FUNCTION gw_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(translate(coalesce(t, ''),
        'ÀÂÄÁÃÅàâäáãåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÖÕòóôöõÙÚÛÜùúûüÝŸýÿŒœÆæ',
        'AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOoooooUUUUuuuuYYyyOoAa'))
$$;

CREATE FUNCTION gw_resident_json(c contacts) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', c.id, 'phone', c.phone, 'first_name', c.first_name,
                              'language', c.language, 'consent_source', c.consent_source,
                              'consent_at', c.consent_at, 'opted_out_at', c.opted_out_at,
                              'unknown', c.unknown)
$$;

-- A new resident (the daemon normalised the phone to E.164).
CREATE FUNCTION gw_admin_resident_create(p_centre bigint, p_staff bigint, p_login text,
                                         p_phone text, p_first_name text, p_language text,
                                         p_consent text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c contacts;
BEGIN
    SELECT * INTO c FROM contacts WHERE centre_id = p_centre AND phone = p_phone;
    IF FOUND AND NOT c.unknown THEN
        RETURN jsonb_build_object('status', 409, 'body', jsonb_build_object('error',
                   jsonb_build_object('code', 'exists', 'message',
                       'Un habitant a déjà ce numéro.'), 'id', c.id));
    END IF;
    -- a number that texted us before becomes a known resident
    INSERT INTO contacts (centre_id, phone, first_name, language, consent_source, consent_at,
                          unknown)
    VALUES (p_centre, p_phone, nullif(p_first_name, ''), coalesce(p_language, 'fr'), p_consent,
            now(), false)
    ON CONFLICT (centre_id, phone) DO UPDATE
       SET first_name = EXCLUDED.first_name, language = EXCLUDED.language,
           consent_source = EXCLUDED.consent_source, consent_at = now(), unknown = false,
           updated_at = now()
    RETURNING * INTO c;
    PERFORM gw_audit(p_centre, p_staff, p_login, 'resident.create', 'resident:' || c.id,
                     jsonb_build_object('consent_source', p_consent));
    RETURN jsonb_build_object('status', 201, 'body', gw_resident_json(c));
END;
$$;

-- Most endpoints: p_path is the part after /admin/api/ (no query string), p_query the query
-- parameters, p_body the JSON body ({} when none). Returns {"status": n, "body": {...}} or
-- {"status": 200, "csv": "..."}.
CREATE FUNCTION gw_admin_call(p_centre bigint, p_staff bigint, p_login text, p_method text,
                              p_path text, p_body jsonb, p_query jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cen centres;
    v_id bigint;
    m text[];
    r jsonb;
    c contacts;
    lim int := least(greatest(coalesce((p_query ->> 'limit')::int, 50), 1), 200);
    v_code text;
    s activity_sessions;
BEGIN
    SELECT * INTO cen FROM centres WHERE centres.id = p_centre;
    m := regexp_match(p_path, '^[a-z]+(?:/[a-z.]+)?/([0-9]{1,18})');
    v_id := m[1]::bigint;

    IF p_method = 'GET' AND p_path = 'dashboard' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'reminders_today', (SELECT jsonb_build_object(
                    'pending', count(*) FILTER (WHERE o.status = 'pending'),
                    'queued', count(*) FILTER (WHERE o.status = 'queued'),
                    'skipped', count(*) FILTER (WHERE o.status = 'skipped'))
                FROM reminder_occurrences o
               WHERE o.centre_id = p_centre
                 AND o.due_at >= date_trunc('day', now() AT TIME ZONE cen.timezone) AT TIME ZONE cen.timezone
                 AND o.due_at < (date_trunc('day', now() AT TIME ZONE cen.timezone) + interval '1 day') AT TIME ZONE cen.timezone),
            'inbox_open', (SELECT count(*) FROM inbox i WHERE i.centre_id = p_centre AND i.handled_at IS NULL),
            'failures_24h', (SELECT count(*) FROM messages ms WHERE ms.centre_id = p_centre
                               AND ms.direction = 'out' AND ms.status IN ('failed', 'undelivered')
                               AND ms.updated_at > now() - interval '24 hours'),
            'messages_24h', (SELECT jsonb_build_object(
                    'delivered', count(*) FILTER (WHERE ms.status = 'delivered'),
                    'sent', count(*) FILTER (WHERE ms.status = 'sent'),
                    'queued', count(*) FILTER (WHERE ms.status IN ('queued', 'sending')),
                    'failed', count(*) FILTER (WHERE ms.status IN ('failed', 'undelivered')),
                    'received', count(*) FILTER (WHERE ms.status = 'received'))
                FROM messages ms WHERE ms.centre_id = p_centre
                 AND ms.created_at > now() - interval '24 hours')));
    END IF;

    IF p_method = 'GET' AND p_path = 'residents' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('residents',
            coalesce((SELECT jsonb_agg(gw_resident_json(x) ORDER BY x.first_name NULLS LAST, x.phone)
              FROM (SELECT * FROM contacts ct WHERE ct.centre_id = p_centre AND ct.phone <> 'erased'
                       AND (coalesce(p_query ->> 'q', '') = ''
                            OR gw_fold(ct.first_name) LIKE '%' || gw_fold(p_query ->> 'q') || '%'
                            OR (regexp_replace(p_query ->> 'q', '[^0-9]', '', 'g') <> ''
                                AND (ct.phone LIKE '%' || regexp_replace(p_query ->> 'q', '[^0-9]', '', 'g') || '%'
                                     OR ('0' || substr(ct.phone, 4)) LIKE '%' || regexp_replace(p_query ->> 'q', '[^0-9]', '', 'g') || '%')))
                     ORDER BY ct.unknown, ct.first_name NULLS LAST, ct.phone LIMIT lim) x), '[]'::jsonb)));
    END IF;

    IF p_path ~ '^residents/[0-9]+/(export|erase)$' THEN
        SELECT * INTO c FROM contacts ct WHERE ct.id = v_id AND ct.centre_id = p_centre;
        IF NOT FOUND OR c.phone = 'erased' THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Habitant introuvable.')));
        END IF;
        IF p_path LIKE '%/export' THEN
            -- gw_resident_export and gw_resident_erase come with 008 (RGPD)
            PERFORM gw_audit(p_centre, p_staff, p_login, 'resident.export', 'resident:' || c.id);
            RETURN jsonb_build_object('status', 200, 'body', gw_resident_export(p_centre, c.phone));
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', gw_resident_erase(p_centre, c.phone, p_login));
    END IF;

    IF p_path ~ '^residents/[0-9]+$' THEN
        SELECT * INTO c FROM contacts ct WHERE ct.id = v_id AND ct.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Habitant introuvable.')));
        END IF;
        IF p_method = 'PATCH' THEN
            UPDATE contacts ct SET
                first_name = CASE WHEN p_body ? 'first_name' THEN nullif(p_body ->> 'first_name', '') ELSE ct.first_name END,
                language = coalesce(p_body ->> 'language', ct.language),
                consent_source = coalesce(p_body ->> 'consent_source', ct.consent_source),
                consent_at = CASE WHEN p_body ? 'consent_source' THEN now() ELSE ct.consent_at END,
                unknown = false, updated_at = now()
             WHERE ct.id = c.id RETURNING * INTO c;
            IF p_body ? 'opted_out' THEN
                PERFORM gw_contact_optout(c.id, (p_body ->> 'opted_out')::boolean, 'staff:' || p_login);
                SELECT * INTO c FROM contacts ct WHERE ct.id = c.id;
            END IF;
            PERFORM gw_audit(p_centre, p_staff, p_login, 'resident.update', 'resident:' || c.id, p_body);
            RETURN jsonb_build_object('status', 200, 'body', gw_resident_json(c));
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'resident', gw_resident_json(c),
            'messages', coalesce((SELECT jsonb_agg(jsonb_build_object('id', ms.id, 'direction', ms.direction,
                    'text', ms.body, 'status', ms.status, 'kind', ms.kind, 'created_at', ms.created_at,
                    'updated_at', ms.updated_at) ORDER BY ms.id DESC)
                FROM (SELECT * FROM messages x WHERE x.centre_id = p_centre AND x.phone = c.phone
                       ORDER BY x.id DESC LIMIT 50) ms), '[]'::jsonb),
            'reminders', coalesce((SELECT jsonb_agg(jsonb_build_object('id', rm.id, 'schedule', rm.schedule,
                    'body', rm.body, 'status', rm.status, 'next_at', rm.next_at, 'rrule', rm.rrule,
                    'start_local', rm.start_local, 'appointment_local', rm.appointment_local,
                    'place', rm.place, 'urgent', rm.urgent, 'ack_requested', rm.ack_requested,
                    'created_by', rm.created_by) ORDER BY rm.id DESC)
                FROM reminders rm WHERE rm.contact_id = c.id), '[]'::jsonb),
            'occurrences', coalesce((SELECT jsonb_agg(jsonb_build_object('id', o.id, 'reminder_id', o.reminder_id,
                    'due_at', o.due_at, 'status', o.status, 'reason', o.reason, 'acked_at', o.acked_at,
                    'message_id', o.message_id, 'body', o.body) ORDER BY o.id DESC)
                FROM (SELECT * FROM reminder_occurrences x WHERE x.contact_id = c.id
                       ORDER BY x.id DESC LIMIT 20) o), '[]'::jsonb),
            'subscriptions', coalesce((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'name', t.name,
                    'label', t.label) ORDER BY t.kind, t.name)
                FROM subscriptions sb JOIN topics t ON t.id = sb.topic_id WHERE sb.contact_id = c.id), '[]'::jsonb),
            'loans', coalesce((SELECT jsonb_agg(jsonb_build_object('id', l.id, 'item', i.name, 'code', i.code,
                    'status', l.status, 'requested_at', l.requested_at, 'due_at', l.due_at,
                    'returned_at', l.returned_at) ORDER BY l.id DESC)
                FROM loans l JOIN items i ON i.id = l.item_id WHERE l.contact_id = c.id), '[]'::jsonb),
            'attendance', coalesce((SELECT jsonb_agg(jsonb_build_object('activity', a.name,
                    'starts_at', se.starts_at, 'people', at.people, 'channel', at.channel, 'at', at.at)
                    ORDER BY at.at DESC)
                FROM attendance at JOIN activity_sessions se ON se.id = at.session_id
                JOIN activities a ON a.id = se.activity_id WHERE at.contact_id = c.id), '[]'::jsonb)));
    END IF;

    IF p_method = 'DELETE' AND p_path ~ '^reminders/[0-9]+$' THEN
        IF NOT EXISTS (SELECT 1 FROM reminders rm WHERE rm.id = v_id AND rm.centre_id = p_centre) THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Rappel introuvable.')));
        END IF;
        PERFORM gw_reminder_reset(v_id, false);
        PERFORM gw_audit(p_centre, p_staff, p_login, 'reminder.cancel', 'reminder:' || v_id);
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', v_id, 'status', 'cancelled'));
    END IF;

    IF p_method = 'GET' AND p_path = 'messages' THEN
        RETURN jsonb_build_object('status', 200, 'body', (
            WITH page AS (
                SELECT ms.* FROM messages ms
                 WHERE ms.centre_id = p_centre
                   AND (p_query ->> 'status' IS NULL OR ms.status = p_query ->> 'status')
                   AND (p_query ->> 'direction' IS NULL OR ms.direction = p_query ->> 'direction')
                   AND (p_query ->> 'before' IS NULL OR ms.id < (p_query ->> 'before')::bigint)
                   AND (p_query ->> 'resident_id' IS NULL OR ms.phone = (SELECT ct.phone FROM contacts ct
                         WHERE ct.id = (p_query ->> 'resident_id')::bigint AND ct.centre_id = p_centre))
                 ORDER BY ms.id DESC LIMIT lim)
            SELECT jsonb_build_object('messages', coalesce(jsonb_agg(jsonb_build_object(
                       'id', page.id, 'direction', page.direction, 'phone', page.phone,
                       'first_name', (SELECT ct.first_name FROM contacts ct WHERE ct.centre_id = p_centre AND ct.phone = page.phone),
                       'text', page.body, 'status', page.status, 'route', page.route, 'kind', page.kind,
                       'created_at', page.created_at, 'updated_at', page.updated_at) ORDER BY page.id DESC), '[]'::jsonb),
                   'next_before', CASE WHEN count(*) = lim THEN min(page.id) END)
              FROM page));
    END IF;

    IF p_method = 'GET' AND p_path ~ '^messages/[0-9]+$' THEN
        SELECT gw_message_json(ms, true)::jsonb INTO r FROM messages ms WHERE ms.id = v_id AND ms.centre_id = p_centre;
        IF r IS NULL THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Message introuvable.')));
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', r);
    END IF;

    IF p_method = 'GET' AND p_path = 'inbox' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('items',
            coalesce((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'message_id', i.message_id,
                    'phone', i.phone, 'first_name', ct.first_name, 'resident_id', ct.id, 'text', ms.body,
                    'reason', i.reason, 'created_at', i.created_at, 'handled_at', i.handled_at,
                    'handled_by', i.handled_by, 'assigned_to', i.assigned_to) ORDER BY i.id DESC)
                FROM (SELECT * FROM inbox x WHERE x.centre_id = p_centre
                        AND ((coalesce(p_query ->> 'state', 'open') = 'open' AND x.handled_at IS NULL)
                             OR (p_query ->> 'state' = 'done' AND x.handled_at IS NOT NULL))
                      ORDER BY x.id DESC LIMIT lim) i
                LEFT JOIN messages ms ON ms.id = i.message_id
                LEFT JOIN contacts ct ON ct.centre_id = p_centre AND ct.phone = i.phone), '[]'::jsonb)));
    END IF;

    IF p_method = 'POST' AND p_path ~ '^inbox/[0-9]+/(done|assign)$' THEN
        IF NOT EXISTS (SELECT 1 FROM inbox i WHERE i.id = v_id AND i.centre_id = p_centre) THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Message introuvable.')));
        END IF;
        IF p_path LIKE '%/done' THEN
            UPDATE inbox SET handled_at = coalesce(handled_at, now()), handled_by = coalesce(handled_by, p_login)
             WHERE inbox.id = v_id;
            PERFORM gw_audit(p_centre, p_staff, p_login, 'inbox.done', 'inbox:' || v_id);
        ELSE
            IF NOT EXISTS (SELECT 1 FROM staff st WHERE st.centre_id = p_centre AND st.login = p_body ->> 'login'
                             AND st.disabled_at IS NULL) THEN
                RETURN jsonb_build_object('status', 422, 'body', jsonb_build_object('error',
                    jsonb_build_object('code', 'unknown_staff', 'message', 'Ce collègue n''existe pas dans ce centre.')));
            END IF;
            UPDATE inbox SET assigned_to = p_body ->> 'login' WHERE inbox.id = v_id;
            PERFORM gw_audit(p_centre, p_staff, p_login, 'inbox.assign', 'inbox:' || v_id, p_body);
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', v_id));
    END IF;

    IF p_method = 'GET' AND p_path = 'activities' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('activities',
            coalesce((SELECT jsonb_agg(jsonb_build_object('id', a.id, 'name', a.name, 'anonymous', a.anonymous,
                    'sessions', coalesce((SELECT jsonb_agg(jsonb_build_object('id', se.id, 'starts_at', se.starts_at,
                            'ends_at', se.ends_at, 'code', se.code, 'attendance', jsonb_build_object(
                                'people', (SELECT coalesce(sum(at.people), 0) FROM attendance at WHERE at.session_id = se.id),
                                'rows', (SELECT count(*) FROM attendance at WHERE at.session_id = se.id)))
                            ORDER BY se.starts_at DESC)
                        FROM (SELECT * FROM activity_sessions x WHERE x.activity_id = a.id
                               ORDER BY x.starts_at DESC LIMIT 20) se), '[]'::jsonb)) ORDER BY a.name)
                FROM activities a WHERE a.centre_id = p_centre), '[]'::jsonb)));
    END IF;

    IF p_method = 'POST' AND p_path = 'activities' THEN
        IF coalesce(trim(p_body ->> 'name'), '') = '' OR length(p_body ->> 'name') > 80 THEN
            RETURN jsonb_build_object('status', 422, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'invalid_name', 'message', 'Donnez un nom d''activité (80 caractères au plus).')));
        END IF;
        INSERT INTO activities (centre_id, name, anonymous)
        VALUES (p_centre, trim(p_body ->> 'name'), coalesce((p_body ->> 'anonymous')::boolean, false))
        ON CONFLICT (centre_id, name) DO NOTHING RETURNING activities.id INTO v_id;
        IF v_id IS NULL THEN
            RETURN jsonb_build_object('status', 409, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'exists', 'message', 'Une activité porte déjà ce nom.')));
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'activity.create', 'activity:' || v_id, p_body);
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', v_id));
    END IF;

    IF p_method = 'POST' AND p_path ~ '^activities/[0-9]+/sessions$' THEN
        IF NOT EXISTS (SELECT 1 FROM activities a WHERE a.id = v_id AND a.centre_id = p_centre) THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Activité introuvable.')));
        END IF;
        IF coalesce(p_body ->> 'start', '') !~ '^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$'
           OR coalesce((p_body ->> 'minutes')::int, 0) NOT BETWEEN 5 AND 1440 THEN
            RETURN jsonb_build_object('status', 422, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'invalid_session', 'message', 'Indiquez la date, l''heure et une durée de 5 minutes à 24 heures.')));
        END IF;
        -- a fresh 4-digit code, not used by the centre's sessions of the last and next weeks
        PERFORM pg_advisory_xact_lock(hashtext('passerelle:codes:' || p_centre));
        LOOP
            v_code := lpad((1000 + floor(random() * 9000))::int::text, 4, '0');
            EXIT WHEN NOT EXISTS (SELECT 1 FROM activity_sessions x WHERE x.centre_id = p_centre
                                     AND x.code = v_code AND x.ends_at > now() - interval '7 days');
        END LOOP;
        INSERT INTO activity_sessions (activity_id, centre_id, starts_at, ends_at, code)
        VALUES (v_id, p_centre, (p_body ->> 'start')::timestamp AT TIME ZONE cen.timezone,
                ((p_body ->> 'start')::timestamp AT TIME ZONE cen.timezone)
                    + make_interval(mins => (p_body ->> 'minutes')::int), v_code)
        RETURNING * INTO s;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'session.create', 'session:' || s.id, p_body);
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', s.id, 'code', s.code,
                                  'starts_at', s.starts_at, 'ends_at', s.ends_at));
    END IF;

    IF p_method = 'GET' AND p_path ~ '^sessions/[0-9]+/attendance$' THEN
        SELECT * INTO s FROM activity_sessions x WHERE x.id = v_id AND x.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'not_found', 'message', 'Séance introuvable.')));
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'session', jsonb_build_object('id', s.id, 'code', s.code, 'starts_at', s.starts_at,
                                          'ends_at', s.ends_at,
                                          'activity', (SELECT a.name FROM activities a WHERE a.id = s.activity_id)),
            'people', (SELECT coalesce(sum(at.people), 0) FROM attendance at WHERE at.session_id = s.id),
            'rows', coalesce((SELECT jsonb_agg(jsonb_build_object('who', coalesce(ct.first_name,
                        CASE WHEN at.contact_id IS NULL THEN 'anonyme' ELSE ct.phone END),
                    'people', at.people, 'channel', at.channel, 'at', at.updated_at) ORDER BY at.at)
                FROM attendance at LEFT JOIN contacts ct ON ct.id = at.contact_id
               WHERE at.session_id = s.id), '[]'::jsonb)));
    END IF;

    IF p_method = 'GET' AND p_path = 'activities/report.csv' THEN
        IF coalesce(p_query ->> 'month', '') !~ '^\d{4}-(0[1-9]|1[0-2])$' THEN
            RETURN jsonb_build_object('status', 422, 'body', jsonb_build_object('error',
                jsonb_build_object('code', 'invalid_month', 'message', 'Mois attendu : AAAA-MM.')));
        END IF;
        RETURN jsonb_build_object('status', 200, 'csv',
            'date;activite;seance;pointages;personnes;dont_anonymes' || E'\n' ||
            coalesce((SELECT string_agg(concat_ws(';',
                    to_char(se.starts_at AT TIME ZONE cen.timezone, 'YYYY-MM-DD'),
                    '"' || replace(a.name, '"', '""') || '"',
                    to_char(se.starts_at AT TIME ZONE cen.timezone, 'HH24:MI'),
                    (SELECT count(*) FROM attendance at WHERE at.session_id = se.id),
                    (SELECT coalesce(sum(at.people), 0) FROM attendance at WHERE at.session_id = se.id),
                    CASE WHEN a.anonymous THEN (SELECT coalesce(sum(at.people), 0) FROM attendance at
                                                 WHERE at.session_id = se.id) ELSE 0 END),
                    E'\n' ORDER BY se.starts_at, a.name) || E'\n'
                FROM activity_sessions se JOIN activities a ON a.id = se.activity_id
               WHERE se.centre_id = p_centre
                 AND to_char(se.starts_at AT TIME ZONE cen.timezone, 'YYYY-MM') = p_query ->> 'month'), ''));
    END IF;

    IF p_method = 'GET' AND p_path = 'loans' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'requests', coalesce((SELECT jsonb_agg(jsonb_build_object('id', l.id, 'item', i.name, 'code', upper(i.code),
                    'resident_id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name,
                    'requested_at', l.requested_at, 'channel', l.channel) ORDER BY l.id)
                FROM loans l JOIN items i ON i.id = l.item_id JOIN contacts ct ON ct.id = l.contact_id
               WHERE l.centre_id = p_centre AND l.status = 'requested'), '[]'::jsonb),
            'out', coalesce((SELECT jsonb_agg(jsonb_build_object('id', l.id, 'item', i.name, 'code', upper(i.code),
                    'resident_id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'status', l.status,
                    'due_at', l.due_at) ORDER BY l.due_at)
                FROM loans l JOIN items i ON i.id = l.item_id JOIN contacts ct ON ct.id = l.contact_id
               WHERE l.centre_id = p_centre AND l.status IN ('confirmed', 'return_requested')), '[]'::jsonb),
            'overdue', coalesce((SELECT jsonb_agg(jsonb_build_object('id', l.id, 'item', i.name, 'code', upper(i.code),
                    'resident_id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'due_at', l.due_at)
                    ORDER BY l.due_at)
                FROM loans l JOIN items i ON i.id = l.item_id JOIN contacts ct ON ct.id = l.contact_id
               WHERE l.centre_id = p_centre AND l.status IN ('confirmed', 'return_requested')
                 AND l.due_at < now()), '[]'::jsonb),
            'items', coalesce((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'code', upper(i.code), 'name', i.name,
                    'state', i.state) ORDER BY length(i.code), i.code)
                FROM items i WHERE i.centre_id = p_centre), '[]'::jsonb)));
    END IF;

    IF p_method = 'GET' AND p_path = 'audit' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('entries',
            coalesce((SELECT jsonb_agg(jsonb_build_object('at', al.at, 'login', al.login, 'action', al.action,
                    'object', al.object, 'detail', al.detail) ORDER BY al.id DESC)
                FROM (SELECT * FROM audit_log x WHERE x.centre_id = p_centre ORDER BY x.id DESC LIMIT lim) al),
                '[]'::jsonb)));
    END IF;

    RETURN jsonb_build_object('status', 404, 'body', jsonb_build_object('error',
        jsonb_build_object('code', 'not_found', 'message', 'Cette adresse n''existe pas.')));
END;
$$;
