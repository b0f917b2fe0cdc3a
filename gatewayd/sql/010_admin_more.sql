-- 010 — the admin UI's second increment (issue 6): job offers, alerts, centre settings,
-- templates, staff accounts, partners and API keys, resident CSV import, reminder edits.
--
-- gw_admin_more is the SQL side of the new /admin/api/ endpoints (admin/API.md), called by
-- gw_admin.c like gw_admin_call (006): same arguments plus the session's role, same answer
-- ({"status": n, "body": {...}}). Every query is scoped to the session's centre (p_centre): an
-- object of another centre is "not found", exactly like a missing one. Every change is written
-- to audit_log. The daemon did the parts that need C first (SMS text analysis, argon2id
-- hashes, random secrets, phone numbers, CSV parsing); a body key "text_preview" in an answer
-- is replaced by the daemon with the SMS as sent, its segments and encoding.

-- {"status": st, "body": {"error": {"code", "message"}}}
CREATE FUNCTION gw_admin_err(st int, code text, msg text, extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', st, 'body',
        jsonb_build_object('error', jsonb_build_object('code', code, 'message', msg)) || extra)
$$;

-- Topic and category names as the matcher writes them: lowercase ASCII words ("Sortie
-- famille" → "sortie famille").
CREATE FUNCTION gw_topic_name(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT btrim(regexp_replace(regexp_replace(gw_fold(t), '[^a-z0-9]+', ' ', 'g'), ' +', ' ', 'g'))
$$;

-- The people an alert to topic t reaches now: subscribed, consented, not opted out (the
-- same rule as gw_alert_create).
CREATE FUNCTION gw_topic_reach(p_topic bigint) RETURNS int LANGUAGE sql STABLE AS $$
    SELECT count(*)::int FROM subscriptions s JOIN contacts c ON c.id = s.contact_id
     WHERE s.topic_id = p_topic AND c.opted_out_at IS NULL AND c.consent_at IS NOT NULL
$$;

-- Centre settings the admin UI may change, with the values they accept (the same patterns as
-- `gatewayctl centre set`, plus the poster's number and USSD code and the staff alert limit).
CREATE FUNCTION gw_admin_setting_pattern(k text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE k
        WHEN 'display_name' THEN '^.{1,40}$'
        WHEN 'quiet_start' THEN '^([01][0-9]|2[0-3]):[0-5][0-9]$'
        WHEN 'quiet_end' THEN '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
        WHEN 'quiet_sundays' THEN '^(yes|no)$'
        WHEN 'quiet_holidays' THEN '^(yes|no)$'
        WHEN 'daily_cap' THEN '^([1-9]|[1-4][0-9]|50)$'
        WHEN 'retention_days' THEN '^[1-9][0-9]{0,3}$'
        WHEN 'fanout_max' THEN '^([1-9][0-9]{0,5}|1000000)$'
        WHEN 'staff_alert_max' THEN '^[1-9][0-9]{0,5}$'
        WHEN 'loan_days' THEN '^[1-9][0-9]{0,2}$'
        WHEN 'sms_number' THEN '^\+?[0-9][0-9 .]{2,19}$'
        WHEN 'ussd_code' THEN '^\*[0-9*]{1,18}#$'
    END
$$;

CREATE FUNCTION gw_admin_settings_json(cen centres) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', cen.id, 'name', cen.name, 'timezone', cen.timezone,
        'settings', jsonb_build_object(
            'display_name', coalesce(cen.settings ->> 'display_name', ''),
            -- the window in which non-urgent SMS may go out (the scheduler's meaning)
            'quiet_start', gw_setting(cen.settings, 'quiet_start', '08:00'),
            'quiet_end', gw_setting(cen.settings, 'quiet_end', '20:00'),
            'quiet_sundays', gw_setting(cen.settings, 'quiet_sundays', 'yes'),
            'quiet_holidays', gw_setting(cen.settings, 'quiet_holidays', 'yes'),
            'daily_cap', gw_setting(cen.settings, 'daily_cap', '3'),
            'retention_days', gw_setting(cen.settings, 'retention_days', '90'),
            'fanout_max', gw_setting(cen.settings, 'fanout_max', '500'),
            'staff_alert_max', gw_setting(cen.settings, 'staff_alert_max', '50'),
            'loan_days', gw_setting(cen.settings, 'loan_days', '14'),
            'sms_number', coalesce(cen.settings ->> 'sms_number', ''),
            'ussd_code', coalesce(cen.settings ->> 'ussd_code', '')))
$$;

-- A reminder for the edit form.
CREATE FUNCTION gw_admin_reminder_json(rm reminders) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', rm.id, 'resident_id', rm.contact_id, 'schedule', rm.schedule,
        'text', rm.body, 'status', rm.status, 'next_at', rm.next_at, 'rrule', rm.rrule,
        'start_local', to_char(rm.start_local, 'YYYY-MM-DD HH24:MI'),
        'appointment_local', to_char(rm.appointment_local, 'YYYY-MM-DD HH24:MI'),
        'place', rm.place, 'offsets', rm.offsets, 'urgent', rm.urgent, 'ack', rm.ack_requested,
        'loan', rm.loan_id IS NOT NULL, 'updated_at', rm.updated_at)
$$;

CREATE FUNCTION gw_admin_more(p_centre bigint, p_staff bigint, p_login text, p_role text,
                              p_method text, p_path text, p_body jsonb, p_query jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cen centres;
    v_id bigint;
    t topics;
    r jsonb;
    n int;
    lim int;
    v_name text;
    v_label text;
    k text;
    v text;
    patch jsonb := '{}'::jsonb;
    st staff;
    rm reminders;
    dflt text;
    bad text;
BEGIN
    SELECT * INTO cen FROM centres WHERE centres.id = p_centre;
    v_id := (regexp_match(p_path, '/([0-9]{1,18})(/|$)'))[1]::bigint;

    -- ------------------------------------------------------------ job offers
    IF p_method = 'GET' AND p_path = 'jobs' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'jobs', coalesce((SELECT jsonb_agg(jsonb_build_object('id', j.id, 'number', j.number,
                    'title', j.title, 'text', j.body, 'contact', j.contact, 'category', j.category,
                    'category_label', (SELECT tp.label FROM topics tp WHERE tp.centre_id = p_centre
                                         AND tp.kind = 'job' AND tp.name = j.category),
                    'source', j.source, 'expires_at', j.expires_at, 'withdrawn_at', j.withdrawn_at,
                    'created_at', j.created_at,
                    'active', j.withdrawn_at IS NULL AND (j.expires_at IS NULL OR j.expires_at > now()))
                    ORDER BY (j.withdrawn_at IS NULL AND (j.expires_at IS NULL OR j.expires_at > now())) DESC,
                             j.number DESC)
                FROM (SELECT * FROM jobs x WHERE x.centre_id = p_centre ORDER BY x.number DESC LIMIT 200) j),
                '[]'::jsonb),
            'categories', coalesce((SELECT jsonb_agg(jsonb_build_object('id', tp.id, 'name', tp.name,
                    'label', tp.label, 'subscribers', gw_topic_reach(tp.id),
                    'active_jobs', (SELECT count(*) FROM jobs j WHERE j.centre_id = p_centre
                                      AND j.category = tp.name AND j.withdrawn_at IS NULL
                                      AND (j.expires_at IS NULL OR j.expires_at > now())))
                    ORDER BY tp.label)
                FROM topics tp WHERE tp.centre_id = p_centre AND tp.kind = 'job'), '[]'::jsonb)));
    END IF;

    IF p_method = 'POST' AND p_path = 'jobs' THEN
        IF coalesce(btrim(p_body ->> 'title'), '') = '' OR length(p_body ->> 'title') > 60 THEN
            RETURN gw_admin_err(422, 'invalid_title', 'Donnez un intitulé (60 caractères au plus).');
        END IF;
        IF length(coalesce(p_body ->> 'text', '')) > 300 OR length(coalesce(p_body ->> 'contact', '')) > 80 THEN
            RETURN gw_admin_err(422, 'invalid_text', 'Description : 300 caractères au plus ; contact : 80 au plus.');
        END IF;
        IF coalesce(p_body ->> 'category', '') <> '' AND NOT EXISTS (SELECT 1 FROM topics tp
                WHERE tp.centre_id = p_centre AND tp.kind = 'job' AND tp.name = p_body ->> 'category') THEN
            RETURN gw_admin_err(422, 'unknown_category', 'Choisissez un métier de la liste.');
        END IF;
        IF coalesce(p_body ->> 'expires', '') !~ '^\d{4}-\d{2}-\d{2}$' THEN
            RETURN gw_admin_err(422, 'invalid_expiry', 'Indiquez jusqu''à quand l''offre est valable (AAAA-MM-JJ).');
        END IF;
        BEGIN
            IF ((p_body ->> 'expires')::date + 1)::timestamp AT TIME ZONE cen.timezone <= now() THEN
                RETURN gw_admin_err(422, 'invalid_expiry', 'La date de fin de l''offre est déjà passée.');
            END IF;
        EXCEPTION WHEN others THEN
            RETURN gw_admin_err(422, 'invalid_expiry', 'Date de fin invalide (AAAA-MM-JJ).');
        END;
        r := gw_job_publish(p_centre, 'staff', 'admin:' || gen_random_uuid(), btrim(p_body ->> 'title'),
                            coalesce(btrim(p_body ->> 'text'), ''), nullif(p_body ->> 'category', ''),
                            coalesce(btrim(p_body ->> 'contact'), ''),
                            ((p_body ->> 'expires')::date + 1)::timestamp AT TIME ZONE cen.timezone);
        PERFORM gw_audit(p_centre, p_staff, p_login, 'job.create', 'job:' || (r ->> 'id'),
                         jsonb_build_object('title', p_body ->> 'title', 'category', p_body ->> 'category'));
        RETURN jsonb_build_object('status', 201, 'body', r - 'created');
    END IF;

    IF p_method = 'POST' AND p_path ~ '^jobs/[0-9]+/expire$' THEN
        UPDATE jobs SET withdrawn_at = coalesce(withdrawn_at, now())
         WHERE jobs.id = v_id AND jobs.centre_id = p_centre RETURNING jobs.number INTO n;
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Offre introuvable.');
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'job.expire', 'job:' || v_id);
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', v_id, 'number', n,
                                  'withdrawn', true));
    END IF;

    IF p_method = 'POST' AND p_path IN ('job-categories', 'alert-topics') THEN
        v_label := btrim(coalesce(p_body ->> 'label', ''));
        v_name := gw_topic_name(coalesce(nullif(p_body ->> 'name', ''), v_label));
        IF v_label = '' OR length(v_label) > 40 OR v_name = '' OR length(v_name) > 30 THEN
            RETURN gw_admin_err(422, 'invalid_name',
                'Donnez un nom (40 caractères au plus) avec au moins une lettre ou un chiffre.');
        END IF;
        INSERT INTO topics (centre_id, kind, name, label)
        VALUES (p_centre, CASE WHEN p_path = 'job-categories' THEN 'job' ELSE 'alert' END, v_name, v_label)
        ON CONFLICT (centre_id, kind, name) DO NOTHING RETURNING topics.id INTO v_id;
        IF v_id IS NULL THEN
            RETURN gw_admin_err(409, 'exists', 'Ce nom existe déjà.');
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login,
                         CASE WHEN p_path = 'job-categories' THEN 'job_category.create' ELSE 'alert_topic.create' END,
                         'topic:' || v_id, jsonb_build_object('name', v_name, 'label', v_label));
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', v_id, 'name', v_name,
                                  'label', v_label));
    END IF;

    -- ------------------------------------------------------------ alerts
    IF p_method = 'GET' AND p_path = 'alerts' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'topics', coalesce((SELECT jsonb_agg(jsonb_build_object('id', tp.id, 'name', tp.name,
                    'label', tp.label, 'recipients', gw_topic_reach(tp.id),
                    'subscribed', (SELECT count(*) FROM subscriptions s WHERE s.topic_id = tp.id))
                    ORDER BY tp.label)
                FROM topics tp WHERE tp.centre_id = p_centre AND tp.kind = 'alert'), '[]'::jsonb),
            'alerts', coalesce((SELECT jsonb_agg(jsonb_build_object('id', al.id, 'topic', tp.name,
                    'label', tp.label, 'text', al.body, 'urgent', al.urgent, 'created_by', al.created_by,
                    'recipients', al.recipients, 'created_at', al.created_at, 'expires_at', al.expires_at,
                    'sent', (SELECT count(*) FROM deliveries d WHERE d.alert_id = al.id AND d.status = 'queued'),
                    'waiting', (SELECT count(*) FROM deliveries d WHERE d.alert_id = al.id AND d.status = 'pending'))
                    ORDER BY al.id DESC)
                FROM (SELECT * FROM alerts x WHERE x.centre_id = p_centre ORDER BY x.id DESC LIMIT 30) al
                JOIN topics tp ON tp.id = al.topic_id), '[]'::jsonb),
            'limits', jsonb_build_object(
                'staff_max', gw_setting(cen.settings, 'staff_alert_max', '50')::int,
                'fanout_max', gw_setting(cen.settings, 'fanout_max', '500')::int,
                'unlimited', p_role = 'admin')));
    END IF;

    IF p_method = 'POST' AND p_path IN ('alerts', 'alerts/preview') THEN
        SELECT * INTO t FROM topics tp WHERE tp.centre_id = p_centre AND tp.kind = 'alert'
           AND tp.name = p_body ->> 'topic';
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Thème d''alerte introuvable.');
        END IF;
        n := gw_topic_reach(t.id);
        -- staff may send to staff_alert_max recipients (default 50), an admin to anyone (the
        -- centre's fanout_max guard of gw_alert_create is lifted for admins too)
        lim := gw_setting(cen.settings, 'staff_alert_max', '50')::int;
        IF p_path = 'alerts/preview' THEN
            RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('topic', t.name,
                'label', t.label, 'recipients', n, 'limit', CASE WHEN p_role = 'admin' THEN NULL ELSE lim END,
                'allowed', p_role = 'admin' OR n <= lim, 'text_preview', p_body ->> 'text'));
        END IF;
        IF p_role <> 'admin' AND n > lim THEN
            RETURN gw_admin_err(403, 'too_large', format(
                'Cette alerte toucherait %s personnes : au-delà de %s, seul un administrateur peut l''envoyer.', n, lim),
                jsonb_build_object('recipients', n, 'limit', lim));
        END IF;
        IF n = 0 THEN
            RETURN gw_admin_err(422, 'no_recipient', 'Personne n''est inscrit à ce thème (avec son accord) : rien n''est envoyé.');
        END IF;
        IF coalesce(p_body ->> 'expires', '') <> '' AND p_body ->> 'expires' !~ '^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$' THEN
            RETURN gw_admin_err(422, 'invalid_expiry', 'Date limite invalide (AAAA-MM-JJ HH:MM).');
        END IF;
        -- the one alert path: the scheduler releases these deliveries (quiet hours, caps, STOP)
        r := gw_alert_create(p_centre, t.name, p_body ->> 'text',
                             (nullif(p_body ->> 'expires', ''))::timestamp AT TIME ZONE cen.timezone,
                             coalesce((p_body ->> 'urgent')::boolean, false), 'staff:' || p_login,
                             p_role = 'admin');
        IF r ? 'error' THEN
            RETURN CASE r ->> 'error'
                WHEN 'expired' THEN gw_admin_err(422, 'invalid_expiry', 'La date limite est déjà passée.')
                WHEN 'too_large' THEN gw_admin_err(403, 'too_large', format(
                    'Cette alerte toucherait %s personnes : seul un administrateur peut l''envoyer.', r ->> 'recipients'))
                ELSE gw_admin_err(404, 'not_found', 'Thème d''alerte introuvable.') END;
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'alert.send', 'alert:' || (r ->> 'id'),
                         jsonb_build_object('topic', t.name, 'recipients', r -> 'recipients',
                                            'urgent', coalesce((p_body ->> 'urgent')::boolean, false)));
        RETURN jsonb_build_object('status', 202, 'body', r);
    END IF;

    -- ------------------------------------------------------------ settings (admin)
    IF p_method = 'GET' AND p_path = 'settings' THEN
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object(
            'centre', gw_admin_settings_json(cen),
            'timezones', (SELECT jsonb_agg(z.name ORDER BY z.name) FROM pg_timezone_names z
                           WHERE z.name ~ '^(Europe|America|Africa|Indian|Pacific|Atlantic)/[A-Za-z_]+$'),
            'routes', coalesce((SELECT jsonb_agg(cr.route ORDER BY cr.position, cr.route)
                FROM centre_routes cr WHERE cr.centre_id = p_centre AND cr.kind = 'all'), '[]'::jsonb),
            'templates', coalesce((SELECT jsonb_agg(jsonb_build_object('name', d.name, 'default', d.body,
                    'body', coalesce(o.body, d.body), 'custom', o.body IS NOT NULL) ORDER BY d.name)
                FROM templates d LEFT JOIN templates o ON o.centre_id = p_centre AND o.language = 'fr'
                     AND o.name = d.name
               WHERE d.centre_id IS NULL AND d.language = 'fr'), '[]'::jsonb),
            'staff', coalesce((SELECT jsonb_agg(jsonb_build_object('id', s.id, 'login', s.login, 'name', s.name,
                    'role', s.role, 'created_at', s.created_at, 'disabled_at', s.disabled_at,
                    'me', s.id = p_staff) ORDER BY s.disabled_at IS NOT NULL, s.login)
                FROM staff s WHERE s.centre_id = p_centre), '[]'::jsonb),
            'partners', coalesce((SELECT jsonb_agg(jsonb_build_object('id', pr.id, 'name', pr.name,
                    'key_id', pr.key_id, 'topics', to_jsonb(pr.topics), 'may_post_jobs', pr.may_post_jobs,
                    'rate_per_min', pr.rate_per_min, 'created_at', pr.created_at, 'revoked_at', pr.revoked_at)
                    ORDER BY pr.revoked_at IS NOT NULL, pr.name)
                FROM partners pr WHERE pr.centre_id = p_centre), '[]'::jsonb),
            'api_keys', coalesce((SELECT jsonb_agg(jsonb_build_object('id', ak.id, 'prefix', ak.prefix,
                    'label', ak.label, 'created_at', ak.created_at, 'revoked_at', ak.revoked_at)
                    ORDER BY ak.revoked_at IS NOT NULL, ak.id DESC)
                FROM api_keys ak WHERE ak.centre_id = p_centre), '[]'::jsonb),
            'alert_topics', coalesce((SELECT jsonb_agg(tp.name ORDER BY tp.name) FROM topics tp
                WHERE tp.centre_id = p_centre AND tp.kind = 'alert'), '[]'::jsonb)));
    END IF;

    IF p_method = 'PATCH' AND p_path = 'settings' THEN
        IF p_body ? 'name' AND (coalesce(btrim(p_body ->> 'name'), '') = '' OR length(p_body ->> 'name') > 100) THEN
            RETURN gw_admin_err(422, 'invalid_setting', 'Nom du centre : de 1 à 100 caractères.', jsonb_build_object('field', 'name'));
        END IF;
        IF p_body ? 'timezone' AND NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = p_body ->> 'timezone') THEN
            RETURN gw_admin_err(422, 'invalid_setting', 'Fuseau horaire inconnu (ex. Europe/Paris).', jsonb_build_object('field', 'timezone'));
        END IF;
        FOR k, v IN SELECT e.key, e.value FROM jsonb_each_text(coalesce(p_body -> 'settings', '{}'::jsonb)) e LOOP
            IF gw_admin_setting_pattern(k) IS NULL THEN
                RETURN gw_admin_err(422, 'invalid_setting', format('Réglage inconnu : %s.', k), jsonb_build_object('field', k));
            END IF;
            IF v IS NOT NULL AND v <> '' AND v !~ gw_admin_setting_pattern(k) THEN
                RETURN gw_admin_err(422, 'invalid_setting', CASE k
                    WHEN 'display_name' THEN 'Nom dans les SMS : 40 caractères au plus.'
                    WHEN 'quiet_start' THEN 'Début des heures d''envoi : HH:MM.'
                    WHEN 'quiet_end' THEN 'Fin des heures d''envoi : HH:MM (24:00 pour minuit).'
                    WHEN 'daily_cap' THEN 'Limite de SMS par jour et par habitant : de 1 à 50.'
                    WHEN 'retention_days' THEN 'Durée de conservation des textes : de 1 à 9999 jours.'
                    WHEN 'fanout_max' THEN 'Taille maximale d''une alerte : de 1 à 1 000 000.'
                    WHEN 'staff_alert_max' THEN 'Limite d''une alerte envoyée par un animateur : un nombre positif.'
                    WHEN 'loan_days' THEN 'Durée d''un prêt : de 1 à 999 jours.'
                    WHEN 'sms_number' THEN 'Numéro SMS du centre : des chiffres (ex. 06 12 34 56 78 ou 38 123).'
                    WHEN 'ussd_code' THEN 'Code USSD : commence par * et finit par # (ex. *123#).'
                    ELSE format('Valeur invalide pour %s.', k) END, jsonb_build_object('field', k));
            END IF;
            patch := patch || jsonb_build_object(k, v);
        END LOOP;
        -- non-urgent SMS go out between quiet_start and quiet_end: a window that ends before it
        -- starts would let them out at any hour
        IF coalesce(nullif(patch ->> 'quiet_start', ''), gw_setting(cen.settings, 'quiet_start', '08:00'))
           >= coalesce(nullif(patch ->> 'quiet_end', ''), gw_setting(cen.settings, 'quiet_end', '20:00')) THEN
            RETURN gw_admin_err(422, 'invalid_setting', 'Heures d''envoi : le début doit précéder la fin (ex. de 08:00 à 20:00).', jsonb_build_object('field', 'quiet_start'));
        END IF;
        IF p_body ? 'name' AND EXISTS (SELECT 1 FROM centres c WHERE c.name = btrim(p_body ->> 'name') AND c.id <> p_centre) THEN
            RETURN gw_admin_err(409, 'exists', 'Un autre centre porte déjà ce nom.', jsonb_build_object('field', 'name'));
        END IF;
        UPDATE centres c SET name = coalesce(btrim(p_body ->> 'name'), c.name),
               timezone = coalesce(p_body ->> 'timezone', c.timezone),
               -- an empty value goes back to the default
               settings = (c.settings || jsonb_strip_nulls(patch))
                          - ARRAY(SELECT e.key FROM jsonb_each_text(patch) e WHERE e.value IS NULL OR e.value = '')
         WHERE c.id = p_centre RETURNING * INTO cen;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'centre.update', 'centre:' || p_centre, p_body);
        RETURN jsonb_build_object('status', 200, 'body', gw_admin_settings_json(cen));
    END IF;

    IF p_method = 'PUT' AND p_path = 'routes' THEN
        -- the daemon checked that every name is a configured route
        IF jsonb_typeof(p_body -> 'routes') <> 'array' OR jsonb_array_length(p_body -> 'routes') > 10 THEN
            RETURN gw_admin_err(422, 'invalid_routes', 'Donnez la liste des voies, dans l''ordre (10 au plus).');
        END IF;
        DELETE FROM centre_routes cr WHERE cr.centre_id = p_centre AND cr.kind = 'all';
        INSERT INTO centre_routes (centre_id, route, kind, position)
        SELECT p_centre, e.value, 'all', (e.ordinality - 1)::int
          FROM jsonb_array_elements_text(p_body -> 'routes') WITH ORDINALITY e
        ON CONFLICT DO NOTHING;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'centre.routes', 'centre:' || p_centre, p_body);
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('routes', coalesce((
            SELECT jsonb_agg(cr.route ORDER BY cr.position) FROM centre_routes cr
             WHERE cr.centre_id = p_centre AND cr.kind = 'all'), '[]'::jsonb)));
    END IF;

    -- ------------------------------------------------------------ templates (admin)
    IF p_method IN ('PUT', 'POST') AND p_path IN ('templates', 'templates/reset', 'templates/preview') THEN
        SELECT d.body INTO dflt FROM templates d WHERE d.centre_id IS NULL AND d.language = 'fr'
           AND d.name = p_body ->> 'name';
        IF dflt IS NULL THEN
            RETURN gw_admin_err(404, 'not_found', 'Modèle introuvable.');
        END IF;
        IF p_path = 'templates/reset' THEN
            DELETE FROM templates tp WHERE tp.centre_id = p_centre AND tp.language = 'fr' AND tp.name = p_body ->> 'name';
            PERFORM gw_audit(p_centre, p_staff, p_login, 'template.reset', 'template:' || (p_body ->> 'name'));
            RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('name', p_body ->> 'name',
                                      'body', dflt, 'custom', false));
        END IF;
        IF coalesce(btrim(p_body ->> 'body'), '') = '' OR length(p_body ->> 'body') > 400 THEN
            RETURN gw_admin_err(422, 'invalid_template', 'Écrivez le texte du modèle (400 caractères au plus).');
        END IF;
        -- only the placeholders the default uses (the flows fill those, and no others)
        SELECT string_agg(DISTINCT m[1], ', ') INTO bad FROM regexp_matches(p_body ->> 'body', '\{([a-z_]+)\}', 'g') m
         WHERE position('{' || m[1] || '}' IN dflt) = 0;
        IF bad IS NOT NULL THEN
            RETURN gw_admin_err(422, 'invalid_template', format(
                'Ce modèle ne connaît pas {%s} : utilisez seulement les mots entre accolades du modèle d''origine.', bad));
        END IF;
        IF p_path = 'templates/preview' THEN
            v := p_body ->> 'body';
            FOR k, bad IN SELECT * FROM (VALUES
                ('centre', coalesce(cen.settings ->> 'display_name', cen.name)), ('item', 'Perceuse'),
                ('date', to_char(now() + interval '7 days', 'DD/MM/YYYY')), ('activity', 'Atelier cuisine'),
                ('n', '2'), ('code', '1234'), ('list', '1 Cariste, 2 Aide à domicile'), ('title', 'Cariste'),
                ('text', 'CDD 6 mois, permis B.'), ('contact', '03 20 00 00 00'), ('number', '12'),
                ('category', 'logistique'), ('topic', 'sortie'), ('service', coalesce(cen.settings ->> 'ussd_code', '*123#')),
                ('stopstart', 'Ne plus recevoir de SMS')) x(a, b) LOOP
                v := replace(v, '{' || k || '}', bad);
            END LOOP;
            RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('name', p_body ->> 'name',
                                      'text_preview', v));
        END IF;
        INSERT INTO templates (centre_id, language, name, body)
        VALUES (p_centre, 'fr', p_body ->> 'name', p_body ->> 'body')
        ON CONFLICT (centre_id, language, name) DO UPDATE SET body = EXCLUDED.body;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'template.update', 'template:' || (p_body ->> 'name'),
                         jsonb_build_object('body', p_body ->> 'body'));
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('name', p_body ->> 'name',
                                  'body', p_body ->> 'body', 'custom', true));
    END IF;

    -- ------------------------------------------------------------ staff (admin)
    IF p_method = 'POST' AND p_path ~ '^staff/[0-9]+/(disable|enable)$' THEN
        SELECT * INTO st FROM staff s WHERE s.id = v_id AND s.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Compte introuvable.');
        END IF;
        IF st.id = p_staff THEN
            RETURN gw_admin_err(422, 'self', 'Vous ne pouvez pas désactiver votre propre compte.');
        END IF;
        IF p_path LIKE '%/disable' THEN
            UPDATE staff s SET disabled_at = coalesce(s.disabled_at, now()) WHERE s.id = st.id;
            UPDATE admin_sessions a SET revoked_at = now() WHERE a.staff_id = st.id AND a.revoked_at IS NULL;
        ELSE
            UPDATE staff s SET disabled_at = NULL WHERE s.id = st.id;
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login,
                         CASE WHEN p_path LIKE '%/disable' THEN 'staff.disable' ELSE 'staff.enable' END,
                         'staff:' || st.id, jsonb_build_object('login', st.login));
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', st.id, 'login', st.login,
                                  'disabled', p_path LIKE '%/disable'));
    END IF;

    -- ------------------------------------------------------------ partners and API keys (admin)
    IF p_method = 'POST' AND p_path = 'partners' THEN
        -- key_id and secret come from the daemon (random)
        IF coalesce(btrim(p_body ->> 'name'), '') = '' OR length(p_body ->> 'name') > 100 THEN
            RETURN gw_admin_err(422, 'invalid_name', 'Donnez le nom du partenaire (100 caractères au plus).');
        END IF;
        IF coalesce(p_body ->> 'rate_per_min', '60') !~ '^[0-9]{1,6}$'
           OR coalesce((p_body ->> 'rate_per_min')::int, 60) NOT BETWEEN 1 AND 100000 THEN
            RETURN gw_admin_err(422, 'invalid_rate', 'Débit : de 1 à 100 000 requêtes par minute.');
        END IF;
        IF p_body ? 'topics' AND jsonb_typeof(p_body -> 'topics') <> 'array' THEN
            RETURN gw_admin_err(422, 'invalid_topics', 'Thèmes : une liste.');
        END IF;
        SELECT string_agg(e, ', ') INTO bad FROM jsonb_array_elements_text(coalesce(p_body -> 'topics', '[]')) e
         WHERE NOT EXISTS (SELECT 1 FROM topics tp WHERE tp.centre_id = p_centre AND tp.kind = 'alert' AND tp.name = e);
        IF bad IS NOT NULL THEN
            RETURN gw_admin_err(422, 'unknown_topic', format('Thème d''alerte inconnu : %s.', bad));
        END IF;
        IF EXISTS (SELECT 1 FROM partners pr WHERE pr.centre_id = p_centre AND pr.name = btrim(p_body ->> 'name')) THEN
            RETURN gw_admin_err(409, 'exists', 'Un partenaire porte déjà ce nom.');
        END IF;
        INSERT INTO partners (centre_id, name, key_id, secret, topics, may_post_jobs, rate_per_min)
        VALUES (p_centre, btrim(p_body ->> 'name'), p_body ->> 'key_id', p_body ->> 'secret',
                ARRAY(SELECT jsonb_array_elements_text(coalesce(p_body -> 'topics', '[]'))),
                coalesce((p_body ->> 'may_post_jobs')::boolean, false),
                coalesce((p_body ->> 'rate_per_min')::int, 60))
        RETURNING partners.id INTO v_id;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'partner.create', 'partner:' || v_id,
                         (p_body - 'secret') - 'key_id');
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', v_id,
                                  'key_id', p_body ->> 'key_id', 'secret', p_body ->> 'secret'));
    END IF;

    IF p_method = 'POST' AND p_path ~ '^partners/[0-9]+/revoke$' THEN
        UPDATE partners pr SET revoked_at = coalesce(pr.revoked_at, now())
         WHERE pr.id = v_id AND pr.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Partenaire introuvable.');
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'partner.revoke', 'partner:' || v_id);
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', v_id, 'revoked', true));
    END IF;

    IF p_method = 'POST' AND p_path = 'api-keys' THEN
        -- prefix and key_hash (hex) come from the daemon; the key itself never reaches SQL
        IF length(coalesce(p_body ->> 'label', '')) > 80 THEN
            RETURN gw_admin_err(422, 'invalid_label', 'Libellé : 80 caractères au plus.');
        END IF;
        INSERT INTO api_keys (centre_id, prefix, key_hash, label)
        VALUES (p_centre, p_body ->> 'prefix', decode(p_body ->> 'key_hash', 'hex'), coalesce(btrim(p_body ->> 'label'), ''))
        RETURNING api_keys.id INTO v_id;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'api_key.create', 'api_key:' || v_id,
                         jsonb_build_object('prefix', p_body ->> 'prefix', 'label', p_body ->> 'label'));
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', v_id, 'prefix', p_body ->> 'prefix'));
    END IF;

    IF p_method = 'POST' AND p_path ~ '^api-keys/[0-9]+/revoke$' THEN
        UPDATE api_keys ak SET revoked_at = coalesce(ak.revoked_at, now())
         WHERE ak.id = v_id AND ak.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Clé introuvable.');
        END IF;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'api_key.revoke', 'api_key:' || v_id);
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', v_id, 'revoked', true));
    END IF;

    -- ------------------------------------------------------------ routes (Accueil)
    IF p_method = 'GET' AND p_path = 'routes' THEN
        -- the daemon adds each route's live state (and credit, when its driver reports one);
        -- the queue depths are this centre's own (the daemon's figures are every centre's)
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('routes', coalesce((
            SELECT jsonb_agg(cr.route ORDER BY cr.position, cr.route) FROM centre_routes cr
             WHERE cr.centre_id = p_centre AND cr.kind = 'all'), '[]'::jsonb),
            'queued_by_route', coalesce((
            SELECT jsonb_object_agg(q.route, q.n) FROM (
                SELECT oq.route, count(*) AS n FROM outbox_queue oq
                 WHERE oq.centre_id = p_centre GROUP BY oq.route) q), '{}'::jsonb)));
    END IF;

    -- ------------------------------------------------------------ reminders
    IF p_method = 'GET' AND p_path ~ '^reminders/[0-9]+$' THEN
        SELECT * INTO rm FROM reminders x WHERE x.id = v_id AND x.centre_id = p_centre;
        IF NOT FOUND THEN
            RETURN gw_admin_err(404, 'not_found', 'Rappel introuvable.');
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', gw_admin_reminder_json(rm));
    END IF;

    RETURN gw_admin_err(404, 'not_found', 'Cette adresse n''existe pas.');
END;
$$;

-- PATCH reminders/{id}: the daemon validated the body (gw_admin_reminder_parse) and computed
-- that the edited reminder still fires; this changes it and lets the scheduler compute it
-- again (gw_reminder_reset: occurrences not yet sent are cancelled, next_at recomputed).
CREATE FUNCTION gw_admin_reminder_update(p_centre bigint, p_staff bigint, p_login text, p_id bigint,
                                         p_body text, p_schedule text, p_start timestamp, p_rrule text,
                                         p_appointment timestamp, p_place text, p_offsets jsonb,
                                         p_urgent boolean, p_ack boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    rm reminders;
BEGIN
    SELECT * INTO rm FROM reminders x WHERE x.id = p_id AND x.centre_id = p_centre FOR UPDATE;
    IF NOT FOUND THEN
        RETURN gw_admin_err(404, 'not_found', 'Rappel introuvable.');
    END IF;
    IF rm.status = 'cancelled' THEN
        RETURN gw_admin_err(409, 'cancelled', 'Ce rappel est annulé : créez-en un nouveau.');
    END IF;
    IF rm.loan_id IS NOT NULL THEN
        RETURN gw_admin_err(409, 'loan_reminder', 'Les rappels de prêt suivent le prêt : ils ne se modifient pas.');
    END IF;
    UPDATE reminders x SET body = p_body, schedule = p_schedule, start_local = p_start, rrule = p_rrule,
           appointment_local = p_appointment, place = p_place, offsets = p_offsets,
           urgent = coalesce(p_urgent, false), ack_requested = coalesce(p_ack, false)
     WHERE x.id = p_id;
    PERFORM gw_reminder_reset(p_id, true);
    SELECT * INTO rm FROM reminders x WHERE x.id = p_id;
    PERFORM gw_audit(p_centre, p_staff, p_login, 'reminder.update', 'reminder:' || p_id,
                     jsonb_build_object('schedule', p_schedule));
    RETURN jsonb_build_object('status', 200, 'body', gw_admin_reminder_json(rm));
END;
$$;

-- Staff accounts that need a password hash (argon2id, computed by the daemon on a thread):
-- p_op 'create' {login, name, role} or 'password' (p_target). A new password ends the
-- account's sessions.
CREATE FUNCTION gw_admin_staff_write(p_centre bigint, p_staff bigint, p_login text, p_op text,
                                     p_target bigint, p_body jsonb, p_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    st staff;
BEGIN
    IF p_op = 'create' THEN
        IF EXISTS (SELECT 1 FROM staff s WHERE s.login = p_body ->> 'login') THEN
            RETURN gw_admin_err(409, 'exists', 'Cet identifiant est déjà pris : choisissez-en un autre.');
        END IF;
        INSERT INTO staff (centre_id, login, name, role, password_hash)
        VALUES (p_centre, p_body ->> 'login', coalesce(btrim(p_body ->> 'name'), ''), p_body ->> 'role', p_hash)
        RETURNING * INTO st;
        PERFORM gw_audit(p_centre, p_staff, p_login, 'staff.create', 'staff:' || st.id,
                         jsonb_build_object('login', st.login, 'role', st.role));
        RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('id', st.id, 'login', st.login,
                                  'name', st.name, 'role', st.role));
    END IF;
    UPDATE staff s SET password_hash = p_hash WHERE s.id = p_target AND s.centre_id = p_centre
    RETURNING * INTO st;
    IF NOT FOUND THEN
        RETURN gw_admin_err(404, 'not_found', 'Compte introuvable.');
    END IF;
    UPDATE admin_sessions a SET revoked_at = now() WHERE a.staff_id = st.id AND a.revoked_at IS NULL;
    PERFORM gw_audit(p_centre, p_staff, p_login, 'staff.password', 'staff:' || st.id,
                     jsonb_build_object('login', st.login));
    RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('id', st.id, 'login', st.login,
                              'sessions_ended', true));
END;
$$;

-- Residents from a CSV file (parsed and checked line by line by the daemon: p_rows is
-- [{"line","phone","first_name","language","consent_source","error"?,"message"?}]). Adds the
-- checks that need the database (a number already known, twice in the file). Without
-- p_confirm, or with any error, nothing is written: the answer is the preview. With
-- p_confirm and no error, every line is imported in this one transaction.
CREATE FUNCTION gw_admin_import(p_centre bigint, p_staff bigint, p_login text, p_rows jsonb,
                                p_confirm boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    lines jsonb;
    nerr int;
    n int;
BEGIN
    WITH x AS (
        SELECT e.value AS j, e.ordinality AS i FROM jsonb_array_elements(p_rows) WITH ORDINALITY e
    ), checked AS (
        SELECT x.i, CASE
            WHEN x.j ? 'error' THEN x.j
            WHEN EXISTS (SELECT 1 FROM x y WHERE y.i < x.i AND NOT y.j ? 'error'
                           AND y.j ->> 'phone' = x.j ->> 'phone') THEN
                x.j || jsonb_build_object('error', 'duplicate', 'message',
                    'Ce numéro est déjà sur une ligne plus haut.')
            WHEN EXISTS (SELECT 1 FROM contacts ct WHERE ct.centre_id = p_centre
                           AND ct.phone = x.j ->> 'phone' AND NOT ct.unknown) THEN
                x.j || jsonb_build_object('error', 'exists', 'message',
                    'Un habitant a déjà ce numéro.')
            ELSE x.j END AS j
          FROM x
    )
    SELECT coalesce(jsonb_agg(checked.j ORDER BY checked.i), '[]'::jsonb),
           count(*) FILTER (WHERE checked.j ? 'error')
      INTO lines, nerr FROM checked;
    n := jsonb_array_length(lines);
    IF NOT p_confirm OR nerr > 0 OR n = 0 THEN
        IF p_confirm THEN
            RETURN gw_admin_err(422, CASE WHEN n = 0 THEN 'empty' ELSE 'invalid_lines' END,
                CASE WHEN n = 0 THEN 'Le fichier ne contient aucun habitant.'
                     ELSE format('%s ligne(s) en erreur : rien n''est importé. Corrigez le fichier puis recommencez.', nerr) END,
                jsonb_build_object('lines', lines, 'valid', n - nerr, 'errors', nerr));
        END IF;
        RETURN jsonb_build_object('status', 200, 'body', jsonb_build_object('lines', lines,
                                  'valid', n - nerr, 'errors', nerr, 'imported', 0));
    END IF;
    -- a number that texted us before becomes a known resident (as in gw_admin_resident_create)
    INSERT INTO contacts (centre_id, phone, first_name, language, consent_source, consent_at, unknown)
    SELECT p_centre, l ->> 'phone', nullif(l ->> 'first_name', ''), coalesce(nullif(l ->> 'language', ''), 'fr'),
           l ->> 'consent_source', now(), false
      FROM jsonb_array_elements(lines) l
    ON CONFLICT (centre_id, phone) DO UPDATE
       SET first_name = EXCLUDED.first_name, language = EXCLUDED.language,
           consent_source = EXCLUDED.consent_source, consent_at = now(), unknown = false,
           updated_at = now();
    PERFORM gw_audit(p_centre, p_staff, p_login, 'resident.import', 'residents',
                     jsonb_build_object('count', n));
    RETURN jsonb_build_object('status', 201, 'body', jsonb_build_object('lines', lines, 'valid', n,
                              'errors', 0, 'imported', n));
END;
$$;
