-- 002 — two-way keyword flows (issue 4): residents, activities and check-in, lending, job
-- offers, alert topics, the inbox, conversation state, reply templates, the USSD sessions, and
-- the SQL side of the flow engine (gw_flow_* functions). See flows/README.md.

-- What an outgoing message is for: NULL (sent through the API), 'replies' (a flow's answer),
-- 'optout' (the one confirmation of a STOP, the only message an opted-out number still gets),
-- 'reminders', 'alerts'. Not indexed: set once at enqueue.
ALTER TABLE messages ADD COLUMN kind text;

-- gw_enqueue and gw_claim as in 001, except: the kind is stored, and an 'optout' message passes
-- the opt-out checks (it is the STOP confirmation itself).
CREATE OR REPLACE FUNCTION gw_enqueue(batch json, p_default_route text)
RETURNS TABLE (i int, id bigint, created boolean, status text, segments int, encoding text,
               route text)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN

    RETURN QUERY
        WITH input AS MATERIALIZED (
            SELECT x.i, x.centre_id, x.phone, x.body, x.segments, x.encoding,
                   coalesce(x.route, (SELECT cr.route FROM centre_routes cr
                                       WHERE cr.centre_id = x.centre_id
                                         AND cr.kind IN (coalesce(x.kind, 'all'), 'all')
                                       ORDER BY cr.kind = coalesce(x.kind, 'all') DESC,
                                                cr.position, cr.route LIMIT 1),
                            p_default_route) AS route,
                   x.idem,
                   coalesce(x.send_at, now()) AS due, nextval('messages_id_seq') AS new_id,
                   x.kind,
                   x.kind IS DISTINCT FROM 'optout'
                   AND EXISTS (SELECT 1 FROM contacts c WHERE c.centre_id = x.centre_id
                            AND c.phone = x.phone AND c.opted_out_at IS NOT NULL) AS opted_out
              FROM json_to_recordset(batch) AS x(i int, centre_id bigint, phone text, body text,
                   segments int, encoding text, route text, idem text, send_at timestamptz,
                   kind text)
        ), ins AS (
            INSERT INTO messages (id, centre_id, direction, phone, body, segments, encoding, route,
                                  idempotency_key, send_at, status, kind)
            SELECT new_id, centre_id, 'out', phone, body, segments, encoding, route, idem, due, 'queued',
                   kind
              FROM input WHERE NOT opted_out ORDER BY i
            ON CONFLICT (centre_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING messages.id, messages.centre_id, messages.route, messages.send_at
        ), q AS (
            INSERT INTO outbox_queue (message_id, centre_id, route, due_at)
            SELECT ins.id, ins.centre_id, ins.route, ins.send_at FROM ins
        )
        SELECT input.i,
               coalesce(ins.id, old.id),
               ins.id IS NOT NULL,
               CASE WHEN ins.id IS NOT NULL THEN 'queued'
                    WHEN old.id IS NOT NULL THEN old.status
                    WHEN input.opted_out THEN 'opted_out'
                    ELSE 'conflict' END,
               coalesce(old.segments, input.segments),
               coalesce(old.encoding, input.encoding),
               coalesce(old.route, input.route)
          FROM input
          LEFT JOIN ins ON ins.id = input.new_id
          LEFT JOIN messages old ON ins.id IS NULL AND input.idem IS NOT NULL
                AND old.centre_id = input.centre_id AND old.idempotency_key = input.idem
         ORDER BY input.i;
END;
$$;

CREATE OR REPLACE FUNCTION gw_claim(p_node text, p_route text, p_limit int, p_lease_s int,
                         p_failover text[] DEFAULT '{}')
RETURNS TABLE (id bigint, centre_id bigint, phone text, body text, segments int,
               encoding text, attempts int, lease_token bigint)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    tok bigint := nextval('outbox_lease_seq');
    ids bigint[];
    fo bigint[];
BEGIN
    -- Outcome bookkeeping commits asynchronously (see README "Design notes"): a PostgreSQL
    -- crash may forget the last fraction of a second of it, which can only cause a resend
    -- (at-least-once), never a lost message. Enqueue and inbound stay synchronous.
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT array_agg(s.message_id) INTO ids FROM (
        SELECT oq.message_id FROM outbox_queue oq
         WHERE oq.route = p_route AND oq.due_at <= now()
         ORDER BY oq.due_at
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED) s;
    IF coalesce(array_length(ids, 1), 0) < p_limit AND cardinality(p_failover) > 0 THEN
        SELECT array_agg(s.message_id) INTO fo FROM (
            SELECT oq.message_id FROM outbox_queue oq
             WHERE oq.route = ANY (p_failover) AND oq.due_at <= now()
               AND EXISTS (SELECT 1 FROM centre_routes a
                             JOIN centre_routes b ON b.centre_id = a.centre_id AND b.kind = a.kind
                            WHERE a.centre_id = oq.centre_id AND a.route = oq.route
                              AND b.route = p_route AND b.position > a.position)
             ORDER BY oq.due_at
             LIMIT p_limit - coalesce(array_length(ids, 1), 0)
             FOR UPDATE SKIP LOCKED) s;
        IF fo IS NOT NULL THEN
            UPDATE outbox_queue oq SET route = p_route WHERE oq.message_id = ANY (fo);
            UPDATE messages msg SET route = p_route WHERE msg.id = ANY (fo);
            ids := coalesce(ids, '{}') || fo;
        END IF;
    END IF;
    IF ids IS NULL THEN
        RETURN;
    END IF;

    WITH cancelled AS (
        UPDATE messages msg
           SET status = 'cancelled', error_code = 'opted_out',
               error = 'recipient opted out (STOP)', updated_at = now()
         WHERE msg.id = ANY (ids) AND msg.kind IS DISTINCT FROM 'optout'
           AND EXISTS (SELECT 1 FROM contacts c WHERE c.centre_id = msg.centre_id
                        AND c.phone = msg.phone AND c.opted_out_at IS NOT NULL)
        RETURNING msg.id, msg.centre_id, msg.route
    ), ev AS (
        INSERT INTO message_events (message_id, centre_id, status, route, detail)
        SELECT c.id, c.centre_id, 'cancelled', c.route, 'recipient opted out' FROM cancelled c
    )
    DELETE FROM outbox_queue oq USING cancelled c WHERE oq.message_id = c.id;

    UPDATE outbox_queue oq
       SET lease_node = p_node, lease_token = tok,
           due_at = now() + make_interval(secs => p_lease_s)
     WHERE oq.message_id = ANY (ids);

    RETURN QUERY
    WITH m AS (
        UPDATE messages msg
           SET status = 'sending', attempts = msg.attempts + 1, updated_at = now()
         WHERE msg.id = ANY (ids) AND msg.status IN ('queued', 'sending')
        RETURNING msg.id, msg.centre_id, msg.phone, msg.body, msg.segments, msg.encoding,
                  msg.attempts, msg.route
    ), ev AS (
        INSERT INTO message_events (message_id, centre_id, status, route)
        SELECT m.id, m.centre_id, 'sending', m.route FROM m
    )
    SELECT m.id, m.centre_id, m.phone, m.body, m.segments, m.encoding, m.attempts, tok FROM m;
END;
$$;

-- ------------------------------------------------------------------ residents (contacts)
-- A contact created because an unknown number texted us has no consent: it gets replies to its
-- own messages only (reminders and alerts need consent, issue 5).
ALTER TABLE contacts
    ADD COLUMN language        text NOT NULL DEFAULT 'fr',
    ADD COLUMN consent_source  text,            -- 'admin', 'sms', 'ussd', 'import', …
    ADD COLUMN consent_at      timestamptz,
    ADD COLUMN unknown         boolean NOT NULL DEFAULT false,
    ADD COLUMN help_replied_on date,             -- the day of the last automatic help reply
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();

-- Multi-step exchanges ("which item?"): one pending question per resident, with a deadline.
CREATE TABLE conversations (
    contact_id  bigint PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
    state       text NOT NULL,        -- 'check_code', 'loan_pick', 'job_pick'
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    expires_at  timestamptz NOT NULL
);

-- ------------------------------------------------------------------ activities and check-in
CREATE TABLE activities (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    name        text NOT NULL,
    anonymous   boolean NOT NULL DEFAULT false,   -- attendance keeps a count only
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (centre_id, name)
);

-- A session's short numeric code is printed on a poster; check-in is open from
-- `checkin_open_before_min` before it starts until `checkin_close_after_min` after it ends
-- (centre settings, 30 and 30 by default).
CREATE TABLE activity_sessions (
    id           bigserial PRIMARY KEY,
    activity_id  bigint NOT NULL REFERENCES activities(id) ON DELETE CASCADE,
    centre_id    bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    code         text NOT NULL CHECK (code ~ '^[0-9]{3,6}$'),
    salt         text NOT NULL DEFAULT gen_random_uuid()::text,
    CHECK (ends_at > starts_at)
);
CREATE INDEX activity_sessions_code ON activity_sessions (centre_id, code, starts_at);

-- One row per (session, person): a repeat from the same phone updates it. `who` is
-- 'c<contact id>' for a named activity, and for an anonymous one a salted SHA-256 of the phone
-- (so repeats are recognised but the row names nobody).
CREATE TABLE attendance (
    id          bigserial PRIMARY KEY,
    session_id  bigint NOT NULL REFERENCES activity_sessions(id) ON DELETE CASCADE,
    contact_id  bigint REFERENCES contacts(id) ON DELETE SET NULL,
    who         text NOT NULL,
    people      int NOT NULL CHECK (people BETWEEN 1 AND 20),
    channel     text NOT NULL,                 -- 'sms', 'ussd', 'staff'
    at          timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, who)
);

-- ------------------------------------------------------------------ lending
CREATE TABLE items (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    code        text NOT NULL CHECK (code ~ '^[a-z0-9]{1,12}$'),  -- as the matcher normalises it
    name        text NOT NULL,
    state       text NOT NULL DEFAULT 'available'
                CHECK (state IN ('available', 'reserved', 'lent', 'unavailable')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (centre_id, code)
);

CREATE TABLE loans (
    id                   bigserial PRIMARY KEY,
    centre_id            bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    item_id              bigint NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    contact_id           bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    status               text NOT NULL DEFAULT 'requested'
                         CHECK (status IN ('requested', 'confirmed', 'return_requested',
                                           'returned', 'refused', 'cancelled')),
    channel              text NOT NULL DEFAULT 'sms',
    requested_at         timestamptz NOT NULL DEFAULT now(),
    confirmed_at         timestamptz,
    due_at               timestamptz,
    return_requested_at  timestamptz,
    returned_at          timestamptz
);
CREATE INDEX loans_item ON loans (item_id, id DESC);
CREATE INDEX loans_contact ON loans (contact_id, id DESC);
-- an item has at most one open loan
CREATE UNIQUE INDEX loans_open_item ON loans (item_id)
    WHERE status IN ('requested', 'confirmed', 'return_requested');

-- ------------------------------------------------------------------ job offers and topics
-- `number` is what residents type (JOB 12): small, stable, per centre.
CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    centre_id    bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    number       int NOT NULL,
    external_id  text,
    source       text NOT NULL DEFAULT 'staff',   -- 'staff' or 'partner:<id>'
    title        text NOT NULL,
    body         text NOT NULL DEFAULT '',
    contact      text NOT NULL DEFAULT '',
    category     text,                             -- a topic name of kind 'job'
    expires_at   timestamptz,
    withdrawn_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (centre_id, number),
    UNIQUE (centre_id, source, external_id)
);

-- Alert topics ('alert') and job categories ('job'); `name` is normalised like the matcher's
-- output (lowercase ASCII words) so "ALERTE Sortie" finds "sortie".
CREATE TABLE topics (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('alert', 'job')),
    name        text NOT NULL CHECK (name ~ '^[a-z0-9]+( [a-z0-9]+)*$'),
    label       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (centre_id, kind, name)
);

CREATE TABLE subscriptions (
    topic_id    bigint NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    contact_id  bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    channel     text NOT NULL DEFAULT 'sms',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, contact_id)
);
CREATE INDEX subscriptions_contact ON subscriptions (contact_id);

-- ------------------------------------------------------------------ reminders (acknowledgement)
-- The scheduler (issue 5) materialises reminder occurrences here; the flows only need the
-- acknowledgement (OK) and "my next reminder" (USSD).
CREATE TABLE reminder_occurrences (
    id              bigserial PRIMARY KEY,
    centre_id       bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    reminder_id     bigint,
    contact_id      bigint NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    due_at          timestamptz NOT NULL,
    body            text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'pending',  -- 'pending', 'queued', 'skipped', 'cancelled'
    message_id      bigint,
    acked_at        timestamptz,
    ack_message_id  bigint
);
CREATE INDEX reminder_occurrences_contact ON reminder_occurrences (contact_id, due_at);

-- ------------------------------------------------------------------ the inbox
-- Messages that need a human: not understood, from an unknown number (when the centre keeps
-- those for a human only), muted by loop protection, from an opted-out resident.
CREATE TABLE inbox (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    message_id  bigint NOT NULL UNIQUE,
    contact_id  bigint REFERENCES contacts(id) ON DELETE SET NULL,
    phone       text NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('not_understood', 'unknown_number', 'loop',
                                                'opted_out')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    handled_at  timestamptz,
    handled_by  text
);
CREATE INDEX inbox_open ON inbox (centre_id, id DESC) WHERE handled_at IS NULL;

-- What the flow engine did with each inbound message, with the replies it decided on. The
-- daemon enqueues the replies (idempotency key 'flow:<message id>:<n>') after this commits; on
-- start it enqueues again the replies of recent runs, which the keys turn into no-ops for the
-- ones already queued: a crash between the two commits loses no reply.
CREATE TABLE flow_runs (
    message_id  bigint PRIMARY KEY,
    centre_id   bigint NOT NULL,
    contact_id  bigint,
    flow        text NOT NULL,         -- the keyword ('stop', 'check', …) or 'none'
    outcome     text NOT NULL,         -- e.g. 'check_ok', 'inbox', 'loop'
    route       text,
    phone       text NOT NULL,
    replies     jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{"text":…, "kind":…}]
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flow_runs_at ON flow_runs (at);

-- USSD sessions (the aggregator sends the whole path each time; we keep who and when, so a
-- continuation of a session we never saw, or one that went quiet, ends cleanly).
CREATE TABLE ussd_sessions (
    session_id  text PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    phone       text NOT NULL,
    service     text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    requests    int NOT NULL DEFAULT 1,
    ended       boolean NOT NULL DEFAULT false
);
CREATE INDEX ussd_sessions_last ON ussd_sessions (last_at);

-- ------------------------------------------------------------------ reply templates
-- Defaults have centre_id NULL; a centre overrides one by inserting the same (language, name).
-- Placeholders {name} are replaced by gw_tpl. Keep each under 160 GSM-7 characters once
-- filled (the daemon transliterates ê→e, «»→" … when that keeps a text GSM-7).
CREATE TABLE templates (
    centre_id  bigint REFERENCES centres(id) ON DELETE CASCADE,
    language   text NOT NULL DEFAULT 'fr',
    name       text NOT NULL,
    body       text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (centre_id, language, name)
);

INSERT INTO templates (centre_id, language, name, body) VALUES
 (NULL, 'fr', 'help', '{centre} : CHECK + code pour pointer, JOB pour les offres, PRET pour emprunter, ALERTE pour les alertes, OK pour un rappel, STOP pour arrêter.'),
 (NULL, 'fr', 'stop_ok', 'Vous ne recevrez plus de SMS de {centre}. Pour vous réinscrire, envoyez START.'),
 (NULL, 'fr', 'start_ok', 'C''est noté : vous recevez à nouveau les SMS de {centre}. Envoyez AIDE pour l''aide.'),
 (NULL, 'fr', 'start_already', 'Vous recevez déjà les SMS de {centre}. Envoyez AIDE pour l''aide.'),
 (NULL, 'fr', 'check_ask', 'Quel est le code de l''activité ? Répondez avec le code affiché (ex. 1234).'),
 (NULL, 'fr', 'check_ok', 'Merci ! Présence enregistrée : {activity}, {n} personne(s).'),
 (NULL, 'fr', 'check_updated', 'C''est corrigé : {activity}, {n} personne(s).'),
 (NULL, 'fr', 'check_closed', 'Le pointage pour {activity} n''est pas ouvert en ce moment.'),
 (NULL, 'fr', 'check_unknown', 'Code {code} inconnu. Vérifiez le code sur l''affiche et renvoyez CHECK + code.'),
 (NULL, 'fr', 'check_bad_count', 'Nombre de personnes invalide (de 1 à 20). Exemple : CHECK {code} 3'),
 (NULL, 'fr', 'job_list', 'Offres : {list}. Envoyez JOB + numéro pour le détail.'),
 (NULL, 'fr', 'job_none', 'Pas d''offre d''emploi en ce moment. Envoyez JOB + métier pour être alerté.'),
 (NULL, 'fr', 'job_detail', '{title} : {text} Contact : {contact}'),
 (NULL, 'fr', 'job_unknown', 'Offre {number} introuvable. Envoyez JOB pour la liste.'),
 (NULL, 'fr', 'job_sub', 'Vous recevrez les offres {category}. Pour arrêter : JOB STOP.'),
 (NULL, 'fr', 'job_categories', 'Métiers : {list}. Envoyez JOB + métier pour être alerté.'),
 (NULL, 'fr', 'job_unsub', 'Vous ne recevrez plus d''alertes emploi.'),
 (NULL, 'fr', 'loan_list', 'Disponible : {list}. Envoyez PRET + code pour emprunter.'),
 (NULL, 'fr', 'loan_none', 'Aucun objet disponible en ce moment.'),
 (NULL, 'fr', 'loan_pending', 'Demande enregistrée : {item}. L''équipe vous confirmera par SMS.'),
 (NULL, 'fr', 'loan_already', 'Votre demande pour {item} est déjà enregistrée.'),
 (NULL, 'fr', 'loan_unavailable', '{item} est déjà prêté, retour prévu le {date}.'),
 (NULL, 'fr', 'loan_unavailable_nodate', '{item} n''est pas disponible en ce moment.'),
 (NULL, 'fr', 'loan_unknown', 'Objet {code} inconnu. Envoyez PRET pour la liste.'),
 (NULL, 'fr', 'loan_confirmed', 'Prêt confirmé : {item}, à rendre le {date}.'),
 (NULL, 'fr', 'loan_refused', 'Désolé, le prêt de {item} n''a pas pu être accepté. Contactez l''équipe.'),
 (NULL, 'fr', 'return_ok', 'Merci ! Retour de {item} noté, l''équipe le vérifie.'),
 (NULL, 'fr', 'return_ask', 'Envoyez RENDU + code de l''objet (ex. RENDU 12).'),
 (NULL, 'fr', 'return_unknown', 'Aucun prêt en cours pour {code}.'),
 (NULL, 'fr', 'returned', 'Retour de {item} confirmé. Merci !'),
 (NULL, 'fr', 'ack_ok', 'Merci, c''est noté.'),
 (NULL, 'fr', 'ack_none', 'Aucun rappel à confirmer.'),
 (NULL, 'fr', 'alert_topics', 'Alertes : {list}. Envoyez ALERTE + thème pour vous inscrire.'),
 (NULL, 'fr', 'alert_none', 'Pas d''alerte disponible en ce moment.'),
 (NULL, 'fr', 'alert_sub', 'Inscription aux alertes {topic} enregistrée. Pour arrêter : ALERTE STOP {topic}.'),
 (NULL, 'fr', 'alert_unsub', 'Vous ne recevrez plus les alertes {topic}.'),
 (NULL, 'fr', 'alert_unsub_all', 'Vous ne recevrez plus d''alertes.'),
 (NULL, 'fr', 'alert_unknown', 'Thème {topic} inconnu. Thèmes : {list}.'),
 (NULL, 'fr', 'unknown', 'Message transmis à l''équipe de {centre}. Envoyez AIDE pour la liste des mots-clés.'),
 -- USSD screens (at most 182 GSM-7 characters each)
 (NULL, 'fr', 'ussd_menu', '{centre}
1 Pointer une activité
2 Offres d''emploi
3 Prêt de matériel
4 Mon prochain rappel
5 {stopstart}'),
 (NULL, 'fr', 'ussd_stop_label', 'Ne plus recevoir de SMS'),
 (NULL, 'fr', 'ussd_start_label', 'Recevoir à nouveau les SMS'),
 (NULL, 'fr', 'ussd_check_code', 'Code de l''activité (sur l''affiche) :'),
 (NULL, 'fr', 'ussd_check_people', 'Nombre de personnes (1 à 20) :'),
 (NULL, 'fr', 'ussd_check_unknown', 'Code {code} inconnu. Vérifiez le code sur l''affiche et composez à nouveau {service}.'),
 (NULL, 'fr', 'ussd_jobs', 'Offres d''emploi :
{list}
Choisissez un numéro :'),
 (NULL, 'fr', 'ussd_job_sent', 'Le détail de l''offre {title} vous est envoyé par SMS.'),
 (NULL, 'fr', 'ussd_items', 'Objets disponibles :
{list}
Choisissez un numéro :'),
 (NULL, 'fr', 'ussd_next_reminder', 'Prochain rappel le {date} :
{text}'),
 (NULL, 'fr', 'ussd_no_reminder', 'Aucun rappel prévu.'),
 (NULL, 'fr', 'ussd_confirm_stop', 'Ne plus recevoir de SMS de {centre} ?
1 Oui
2 Non'),
 (NULL, 'fr', 'ussd_confirm_start', 'Recevoir à nouveau les SMS de {centre} ?
1 Oui
2 Non'),
 (NULL, 'fr', 'ussd_unchanged', 'Rien n''a été changé.'),
 (NULL, 'fr', 'ussd_bad_choice', 'Choix invalide. Composez à nouveau {service}.'),
 (NULL, 'fr', 'ussd_unknown_session', 'Session inconnue. Composez à nouveau {service}.'),
 (NULL, 'fr', 'ussd_expired', 'Session expirée. Composez à nouveau {service}.'),
 (NULL, 'fr', 'ussd_opted_out', 'Vous êtes désinscrit. Choisissez 5 dans le menu pour recevoir à nouveau les SMS.');

-- The template `name` in language `lang` for a centre (its own, else the default, else the
-- French default), with {key} replaced by the values of `vars` (a JSON object).
CREATE FUNCTION gw_tpl(p_centre bigint, p_lang text, p_name text, vars jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    t text;
    kv record;
BEGIN
    SELECT body INTO t FROM templates
     WHERE name = p_name AND (centre_id = p_centre OR centre_id IS NULL)
       AND language IN (coalesce(p_lang, 'fr'), 'fr')
     ORDER BY centre_id IS NULL, language = coalesce(p_lang, 'fr') DESC
     LIMIT 1;
    IF t IS NULL THEN
        RAISE EXCEPTION 'no template %', p_name;
    END IF;
    FOR kv IN SELECT key, value FROM jsonb_each_text(vars) LOOP
        t := replace(t, '{' || kv.key || '}', coalesce(kv.value, ''));
    END LOOP;
    RETURN t;
END;
$$;

-- A centre setting (centres.settings) with its default.
CREATE FUNCTION gw_setting(s jsonb, k text, dflt text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(s ->> k, dflt) $$;

-- A short text for lists: at most n characters, cut with "." when longer.
CREATE FUNCTION gw_short(t text, n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN length(t) <= n THEN t ELSE rtrim(left(t, n - 1)) || '.' END
$$;

INSERT INTO templates (centre_id, language, name, body) VALUES
 (NULL, 'fr', 'loan_cancelled', 'Demande de prêt de {item} annulée.');

ALTER TABLE ussd_sessions ADD COLUMN data jsonb NOT NULL DEFAULT '{}'::jsonb;

-- ------------------------------------------------------------------ flow building blocks
-- Each returns a small JSON result; the SMS flows and the USSD menu turn it into words.

-- The contact for (centre, phone); created (unknown, without consent) when missing.
CREATE FUNCTION gw_contact_get(p_centre bigint, p_phone text) RETURNS contacts
LANGUAGE plpgsql AS $$
DECLARE
    ct contacts;
BEGIN
    SELECT * INTO ct FROM contacts WHERE centre_id = p_centre AND phone = p_phone FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO contacts (centre_id, phone, unknown) VALUES (p_centre, p_phone, true)
        ON CONFLICT (centre_id, phone) DO UPDATE SET updated_at = now()
        RETURNING * INTO ct;
    END IF;
    RETURN ct;
END;
$$;

-- Opt out (p_out) or back in. Opting out cancels at once every message to that number that is
-- queued and not in a provider's hands (gw_claim checks again for the others). Returns true
-- when the state changed.
CREATE FUNCTION gw_contact_optout(p_contact bigint, p_out boolean, p_source text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ct contacts;
BEGIN
    SELECT * INTO ct FROM contacts WHERE id = p_contact FOR UPDATE;
    IF (ct.opted_out_at IS NOT NULL) = p_out THEN
        RETURN false;
    END IF;
    IF p_out THEN
        UPDATE contacts SET opted_out_at = now(), updated_at = now() WHERE id = p_contact;
        DELETE FROM conversations WHERE contact_id = p_contact;
        WITH gone AS (
            DELETE FROM outbox_queue oq
             WHERE oq.message_id IN (SELECT m.id FROM messages m
                                      WHERE m.centre_id = ct.centre_id AND m.phone = ct.phone
                                        AND m.direction = 'out' AND m.status = 'queued'
                                        AND m.kind IS DISTINCT FROM 'optout')
               AND oq.lease_token IS NULL
            RETURNING oq.message_id
        ), m AS (
            UPDATE messages msg
               SET status = 'cancelled', error_code = 'opted_out',
                   error = 'recipient opted out (STOP)', updated_at = now()
              FROM gone g WHERE msg.id = g.message_id
            RETURNING msg.id, msg.centre_id, msg.route
        )
        INSERT INTO message_events (message_id, centre_id, status, route, detail)
        SELECT m.id, m.centre_id, 'cancelled', m.route, 'recipient opted out (' || p_source || ')'
          FROM m;
        UPDATE reminder_occurrences SET status = 'cancelled'
         WHERE contact_id = p_contact AND status = 'pending';
    ELSE
        UPDATE contacts SET opted_out_at = NULL, updated_at = now(),
               consent_at = coalesce(consent_at, now()),
               consent_source = coalesce(consent_source, p_source)
         WHERE id = p_contact;
    END IF;
    RETURN true;
END;
$$;

-- Attendance for `p_people` at the open session whose code is p_code.
-- result: ok | updated | closed | unknown | bad_count, with activity, n, code.
CREATE FUNCTION gw_checkin(p_centre bigint, p_contact bigint, p_phone text, p_code text,
                           p_people int, p_channel text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s jsonb;
    ses record;
    v_who text;
    inserted boolean;
BEGIN
    SELECT settings INTO s FROM centres WHERE id = p_centre;
    SELECT x.id, x.salt, a.name, a.anonymous INTO ses
      FROM activity_sessions x JOIN activities a ON a.id = x.activity_id
     WHERE x.centre_id = p_centre AND x.code = p_code
       AND now() >= x.starts_at - make_interval(mins => gw_setting(s, 'checkin_open_before_min', '30')::int)
       AND now() <= x.ends_at + make_interval(mins => gw_setting(s, 'checkin_close_after_min', '30')::int)
     ORDER BY x.starts_at LIMIT 1;
    IF NOT FOUND THEN
        SELECT x.id, a.name INTO ses
          FROM activity_sessions x JOIN activities a ON a.id = x.activity_id
         WHERE x.centre_id = p_centre AND x.code = p_code
         ORDER BY abs(extract(epoch FROM x.starts_at - now())) LIMIT 1;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('result', 'unknown', 'code', p_code);
        END IF;
        RETURN jsonb_build_object('result', 'closed', 'code', p_code, 'activity', ses.name);
    END IF;
    IF p_people IS NULL OR p_people < 1 OR p_people > 20 THEN
        RETURN jsonb_build_object('result', 'bad_count', 'code', p_code, 'activity', ses.name);
    END IF;
    v_who := CASE WHEN ses.anonymous
                THEN encode(sha256(convert_to(ses.salt || p_phone, 'UTF8')), 'hex')
                ELSE 'c' || p_contact END;
    INSERT INTO attendance (session_id, contact_id, who, people, channel)
    VALUES (ses.id, CASE WHEN ses.anonymous THEN NULL ELSE p_contact END, v_who, p_people, p_channel)
    ON CONFLICT (session_id, who) DO UPDATE
       SET people = EXCLUDED.people, channel = EXCLUDED.channel, updated_at = now()
    RETURNING (xmax = 0) INTO inserted;
    RETURN jsonb_build_object('result', CASE WHEN inserted THEN 'ok' ELSE 'updated' END,
                              'code', p_code, 'activity', ses.name, 'n', p_people);
END;
$$;

-- A loan request for the item with code p_code.
-- result: pending | already | unavailable (with date) | unavailable_nodate | unknown.
CREATE FUNCTION gw_loan_request(p_centre bigint, p_contact bigint, p_code text, p_channel text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    it items;
    ln loans;
    tz text;
BEGIN
    SELECT timezone INTO tz FROM centres WHERE id = p_centre;
    SELECT * INTO it FROM items WHERE centre_id = p_centre AND code = p_code FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('result', 'unknown', 'code', p_code);
    END IF;
    SELECT * INTO ln FROM loans
     WHERE item_id = it.id AND status IN ('requested', 'confirmed', 'return_requested');
    IF FOUND AND ln.contact_id = p_contact THEN
        RETURN jsonb_build_object('result', 'already', 'item', it.name, 'loan', ln.id);
    END IF;
    IF it.state = 'available' AND ln.id IS NULL THEN
        INSERT INTO loans (centre_id, item_id, contact_id, channel)
        VALUES (p_centre, it.id, p_contact, p_channel) RETURNING * INTO ln;
        UPDATE items SET state = 'reserved' WHERE id = it.id;
        RETURN jsonb_build_object('result', 'pending', 'item', it.name, 'loan', ln.id);
    END IF;
    IF ln.due_at IS NOT NULL THEN
        RETURN jsonb_build_object('result', 'unavailable', 'item', it.name,
                                  'date', to_char(ln.due_at AT TIME ZONE tz, 'DD/MM'));
    END IF;
    RETURN jsonb_build_object('result', 'unavailable_nodate', 'item', it.name);
END;
$$;

-- Subscribe to (p_on) or leave a topic; p_name NULL with p_on false leaves every topic of
-- that kind. result: sub | unsub | unsub_all | unknown (with the list of topics).
CREATE FUNCTION gw_subscribe(p_centre bigint, p_contact bigint, p_kind text, p_name text,
                             p_on boolean, p_channel text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    t topics;
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        DELETE FROM subscriptions sb USING topics tp
         WHERE tp.id = sb.topic_id AND sb.contact_id = p_contact AND tp.kind = p_kind;
        RETURN jsonb_build_object('result', 'unsub_all');
    END IF;
    SELECT * INTO t FROM topics WHERE centre_id = p_centre AND kind = p_kind AND name = p_name;
    IF NOT FOUND THEN
        -- "ALERTE sortie famille": try the first word alone
        SELECT * INTO t FROM topics
         WHERE centre_id = p_centre AND kind = p_kind AND name = split_part(p_name, ' ', 1);
    END IF;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('result', 'unknown', 'topic', upper(p_name),
               'list', coalesce((SELECT string_agg(upper(tp.name), ', ' ORDER BY tp.name)
                                   FROM topics tp WHERE tp.centre_id = p_centre
                                    AND tp.kind = p_kind), ''));
    END IF;
    IF p_on THEN
        INSERT INTO subscriptions (topic_id, contact_id, channel) VALUES (t.id, p_contact, p_channel)
        ON CONFLICT DO NOTHING;
        -- subscribing by SMS or USSD is the resident's own consent to those messages
        UPDATE contacts SET consent_at = coalesce(consent_at, now()),
               consent_source = coalesce(consent_source, p_channel), unknown = false,
               updated_at = now()
         WHERE id = p_contact;
        RETURN jsonb_build_object('result', 'sub', 'topic', upper(t.name), 'label', t.label);
    END IF;
    DELETE FROM subscriptions WHERE topic_id = t.id AND contact_id = p_contact;
    RETURN jsonb_build_object('result', 'unsub', 'topic', upper(t.name), 'label', t.label);
END;
$$;

-- The job offers a resident can see, newest first.
CREATE FUNCTION gw_jobs_active(p_centre bigint, p_limit int)
RETURNS SETOF jobs LANGUAGE sql STABLE AS $$
    SELECT * FROM jobs
     WHERE centre_id = p_centre AND withdrawn_at IS NULL
       AND (expires_at IS NULL OR expires_at > now())
     ORDER BY created_at DESC, id DESC LIMIT p_limit
$$;

-- Items a resident can ask for, by code.
CREATE FUNCTION gw_items_available(p_centre bigint, p_limit int)
RETURNS SETOF items LANGUAGE sql STABLE AS $$
    SELECT * FROM items WHERE centre_id = p_centre AND state = 'available'
     ORDER BY length(code), code LIMIT p_limit
$$;

-- ------------------------------------------------------------------ the SMS flow engine
-- Runs the flow for one stored inbound message. p_kw is the matcher's canonical keyword
-- ('stop', 'start', 'aide', 'check', 'job', 'pret', 'rendu', 'ok', 'alerte') or '' when no
-- keyword matched; p_args the normalised words after it; p_norm the whole normalised text
-- (for answers to a pending question). Returns {"flow","outcome","contact_id","optout"
-- (true: tell the providers STOP, false: START, absent: nothing),"replies":[{"text","kind"}]}
-- and records it in flow_runs, in the caller's transaction.
CREATE FUNCTION gw_flow_run(p_msg bigint, p_centre bigint, p_phone text, p_route text,
                            p_kw text, p_args text, p_norm text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cen centres;
    s jsonb;
    ct contacts;
    lang text := 'fr';
    kw text := coalesce(nullif(p_kw, ''), 'none');
    args text := coalesce(p_args, '');
    v jsonb;
    r jsonb;
    replies jsonb := '[]'::jsonb;
    outcome text;
    optout boolean;
    n_hour int;
    conv conversations;
    mt text[];
    word text;
    lst text;
    conv_min int;
    today date;
BEGIN
    SELECT * INTO cen FROM centres WHERE id = p_centre;
    s := cen.settings;
    v := jsonb_build_object('centre', coalesce(s ->> 'display_name', cen.name));
    conv_min := gw_setting(s, 'conversation_timeout_min', '10')::int;
    today := (now() AT TIME ZONE cen.timezone)::date;

    SELECT * INTO ct FROM contacts WHERE centre_id = p_centre AND phone = p_phone FOR UPDATE;
    IF NOT FOUND AND kw <> 'stop' AND gw_setting(s, 'unknown_numbers', 'contact') = 'inbox' THEN
        INSERT INTO inbox (centre_id, message_id, phone, reason)
        VALUES (p_centre, p_msg, p_phone, 'unknown_number');
        outcome := 'inbox_unknown_number';
    ELSE
        IF ct.id IS NULL THEN
            ct := gw_contact_get(p_centre, p_phone);
        END IF;
        lang := ct.language;
        -- loop protection: this message included
        SELECT count(*) INTO n_hour FROM messages m
         WHERE m.centre_id = p_centre AND m.phone = p_phone AND m.direction = 'in'
           AND m.created_at > now() - interval '1 hour';
        IF n_hour > gw_setting(s, 'loop_max_per_hour', '20')::int THEN
            -- STOP and START still take effect (the law asks for it), silently
            IF kw IN ('stop', 'start') AND gw_contact_optout(ct.id, kw = 'stop', 'sms') THEN
                optout := kw = 'stop';
            END IF;
            INSERT INTO inbox (centre_id, message_id, contact_id, phone, reason)
            VALUES (p_centre, p_msg, ct.id, p_phone, 'loop');
            outcome := 'loop';
        ELSIF ct.opted_out_at IS NOT NULL AND kw NOT IN ('stop', 'start') THEN
            INSERT INTO inbox (centre_id, message_id, contact_id, phone, reason)
            VALUES (p_centre, p_msg, ct.id, p_phone, 'opted_out');
            outcome := 'inbox_opted_out';
        ELSE
            -- an answer to the pending question?
            IF kw = 'none' THEN
                SELECT * INTO conv FROM conversations
                 WHERE contact_id = ct.id AND expires_at > now();
                IF FOUND THEN
                    IF conv.state = 'check_code' AND p_norm ~ '^[0-9]{1,8}( [0-9]{1,3})?$' THEN
                        kw := 'check'; args := p_norm;
                    ELSIF conv.state = 'loan_pick' AND p_norm ~ '^[a-z0-9]{1,12}$' THEN
                        kw := 'pret'; args := p_norm;
                    ELSIF conv.state = 'job_pick' AND p_norm ~ '^[0-9]{1,6}$' THEN
                        kw := 'job'; args := p_norm;
                    END IF;
                END IF;
            END IF;
            -- any message answers (or drops) the pending question
            DELETE FROM conversations WHERE contact_id = ct.id;

            CASE kw
            WHEN 'stop' THEN
                IF gw_contact_optout(ct.id, true, 'sms') THEN
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, 'stop_ok', v),
                                                             'kind', 'optout');
                    outcome := 'stop_ok';
                ELSE
                    outcome := 'stop_again'; -- one confirmation only
                END IF;
                optout := true;
            WHEN 'start' THEN
                IF gw_contact_optout(ct.id, false, 'sms') THEN
                    outcome := 'start_ok';
                    optout := false;
                ELSE
                    outcome := 'start_already';
                END IF;
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
            WHEN 'aide' THEN
                outcome := 'help';
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, 'help', v));
            WHEN 'check' THEN
                mt := regexp_match(args, '^([0-9]+)(?: ([0-9]+))?');
                IF mt IS NULL THEN
                    INSERT INTO conversations (contact_id, state, expires_at)
                    VALUES (ct.id, 'check_code', now() + make_interval(mins => conv_min));
                    outcome := 'check_ask';
                    r := '{}';
                ELSIF length(mt[1]) > 6 OR length(mt[1]) < 3 THEN
                    r := jsonb_build_object('result', 'unknown', 'code', mt[1]);
                ELSE
                    -- a count of three digits or more cannot be right: gw_checkin says so
                    r := gw_checkin(p_centre, ct.id, p_phone, mt[1],
                                    CASE WHEN length(coalesce(mt[2], '1')) > 2 THEN 0
                                         ELSE coalesce(mt[2], '1')::int END, 'sms');
                END IF;
                outcome := coalesce(outcome, 'check_' || (r ->> 'result'));
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v || r));
            WHEN 'job' THEN
                word := split_part(args, ' ', 1);
                IF args = '' THEN
                    SELECT string_agg(j.number || ' ' || gw_short(j.title, 30), ' ; '
                                      ORDER BY j.created_at DESC, j.id DESC)
                      INTO lst FROM gw_jobs_active(p_centre, 3) j;
                    IF lst IS NULL THEN
                        outcome := 'job_none';
                    ELSE
                        outcome := 'job_list';
                        v := v || jsonb_build_object('list', lst);
                        INSERT INTO conversations (contact_id, state, expires_at)
                        VALUES (ct.id, 'job_pick', now() + make_interval(mins => conv_min));
                    END IF;
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
                ELSIF word ~ '^[0-9]+$' THEN
                    SELECT jsonb_build_object('title', j.title, 'text', j.body, 'contact', j.contact)
                      INTO r FROM jobs j
                     WHERE j.centre_id = p_centre AND j.number::text = ltrim(word, '0')
                       AND j.withdrawn_at IS NULL AND (j.expires_at IS NULL OR j.expires_at > now());
                    outcome := CASE WHEN r IS NULL THEN 'job_unknown' ELSE 'job_detail' END;
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome,
                                   v || coalesce(r, jsonb_build_object('number', word))));
                ELSIF word = 'stop' THEN
                    PERFORM gw_subscribe(p_centre, ct.id, 'job', NULL, false, 'sms');
                    outcome := 'job_unsub';
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
                ELSE
                    r := gw_subscribe(p_centre, ct.id, 'job', args, true, 'sms');
                    IF r ->> 'result' = 'sub' THEN
                        outcome := 'job_sub';
                        v := v || jsonb_build_object('category', r ->> 'label');
                    ELSE
                        outcome := 'job_categories';
                        v := v || jsonb_build_object('list', r ->> 'list');
                    END IF;
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
                END IF;
            WHEN 'pret' THEN
                word := split_part(args, ' ', 1);
                IF word = '' THEN
                    SELECT string_agg(upper(i.code) || ' ' || gw_short(i.name, 20), ' ; '
                                      ORDER BY length(i.code), i.code)
                      INTO lst FROM gw_items_available(p_centre, 4) i;
                    IF lst IS NULL THEN
                        outcome := 'loan_none';
                    ELSE
                        outcome := 'loan_list';
                        v := v || jsonb_build_object('list', lst);
                        INSERT INTO conversations (contact_id, state, expires_at)
                        VALUES (ct.id, 'loan_pick', now() + make_interval(mins => conv_min));
                    END IF;
                ELSE
                    r := gw_loan_request(p_centre, ct.id, word, 'sms');
                    outcome := 'loan_' || (r ->> 'result');
                    v := v || r || jsonb_build_object('code', upper(word));
                END IF;
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
            WHEN 'rendu' THEN
                word := split_part(args, ' ', 1);
                IF word = '' THEN
                    outcome := 'return_ask';
                ELSE
                    v := v || jsonb_build_object('code', upper(word));
                    SELECT i.name INTO lst FROM loans l JOIN items i ON i.id = l.item_id
                     WHERE l.contact_id = ct.id AND i.code = word
                       AND l.status IN ('requested', 'confirmed', 'return_requested');
                    IF lst IS NULL THEN
                        outcome := 'return_unknown';
                    ELSE
                        v := v || jsonb_build_object('item', lst);
                        WITH l AS (
                            SELECT l.id, l.status, l.item_id FROM loans l JOIN items i ON i.id = l.item_id
                             WHERE l.contact_id = ct.id AND i.code = word
                               AND l.status IN ('requested', 'confirmed', 'return_requested')
                        ), upd AS (
                            UPDATE loans SET status = CASE WHEN l.status = 'requested' THEN 'cancelled'
                                                           ELSE 'return_requested' END,
                                   return_requested_at = CASE WHEN l.status = 'requested' THEN NULL
                                                              ELSE coalesce(return_requested_at, now()) END
                              FROM l WHERE loans.id = l.id
                            RETURNING loans.status, loans.item_id
                        )
                        SELECT CASE WHEN upd.status = 'cancelled' THEN 'loan_cancelled' ELSE 'return_ok' END
                          INTO outcome FROM upd;
                        IF outcome = 'loan_cancelled' THEN
                            UPDATE items SET state = 'available'
                             WHERE centre_id = p_centre AND code = word AND state = 'reserved';
                        END IF;
                    END IF;
                END IF;
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
            WHEN 'ok' THEN
                UPDATE reminder_occurrences o SET acked_at = now(), ack_message_id = p_msg
                 WHERE o.id = (SELECT o2.id FROM reminder_occurrences o2
                                WHERE o2.contact_id = ct.id AND o2.status = 'queued'
                                  AND o2.acked_at IS NULL AND o2.due_at <= now()
                                  AND o2.due_at > now() - interval '7 days'
                                ORDER BY o2.due_at DESC LIMIT 1)
                RETURNING 'ack_ok' INTO outcome;
                outcome := coalesce(outcome, 'ack_none');
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
            WHEN 'alerte' THEN
                word := split_part(args, ' ', 1);
                IF args = '' THEN
                    SELECT string_agg(upper(t.name), ', ' ORDER BY t.name) INTO lst
                      FROM topics t WHERE t.centre_id = p_centre AND t.kind = 'alert';
                    outcome := CASE WHEN lst IS NULL THEN 'alert_none' ELSE 'alert_topics' END;
                    v := v || jsonb_build_object('list', coalesce(lst, ''));
                ELSE
                    IF word = 'stop' THEN
                        r := gw_subscribe(p_centre, ct.id, 'alert',
                                          nullif(substr(args, 6), ''), false, 'sms');
                    ELSE
                        r := gw_subscribe(p_centre, ct.id, 'alert', args, true, 'sms');
                    END IF;
                    outcome := 'alert_' || (r ->> 'result');
                    v := v || r;
                END IF;
                replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, outcome, v));
            ELSE
                INSERT INTO inbox (centre_id, message_id, contact_id, phone, reason)
                VALUES (p_centre, p_msg, ct.id, p_phone, 'not_understood');
                outcome := 'inbox';
                -- at most one automatic help reply per resident per day
                IF ct.help_replied_on IS DISTINCT FROM today THEN
                    UPDATE contacts SET help_replied_on = today WHERE id = ct.id;
                    replies := replies || jsonb_build_object('text', gw_tpl(p_centre, lang, 'unknown', v));
                    outcome := 'inbox_replied';
                END IF;
            END CASE;
        END IF;
    END IF;

    r := jsonb_build_object('flow', kw, 'outcome', outcome, 'contact_id', ct.id,
                            'replies', replies);
    IF optout IS NOT NULL THEN
        -- the routes that may keep their own blacklist (iSendPro) are told too
        r := r || jsonb_build_object('optout', optout, 'routes',
                 (SELECT coalesce(jsonb_agg(DISTINCT cr.route), '[]') FROM centre_routes cr
                   WHERE cr.centre_id = p_centre));
    END IF;
    INSERT INTO flow_runs (message_id, centre_id, contact_id, flow, outcome, route, phone, replies)
    VALUES (p_msg, p_centre, ct.id, kw, outcome, p_route, p_phone, replies);
    RETURN r;
END;
$$;

-- Store one inbound SMS (gw_inbound) and, when it is new, run its flow, in one transaction:
-- the message, what the flow changed and the replies it decided on commit together.
CREATE FUNCTION gw_inbound_flow(p_route text, p_phone text, p_body text, p_ref text,
                                p_received timestamptz, p_encoding text, p_segments int,
                                p_kw text, p_args text, p_norm text)
RETURNS TABLE (id bigint, centre_id bigint, created boolean, run jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    x record;
BEGIN
    SELECT * INTO x FROM gw_inbound(p_route, p_phone, p_body, p_ref, p_received, p_encoding,
                                    p_segments);
    IF x.id IS NULL THEN
        RETURN;
    END IF;
    IF NOT x.created THEN
        RETURN QUERY SELECT x.id, x.centre_id, false, NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY SELECT x.id, x.centre_id, true,
                        gw_flow_run(x.id, x.centre_id, p_phone, p_route, p_kw, p_args, p_norm);
END;
$$;

-- ------------------------------------------------------------------ the USSD menu
-- One request of a USSD session: p_steps are the inputs so far (empty on the first request).
-- Returns {"end": bool, "text": screen, "centre_id", "contact_id", "replies": [SMS to send],
-- "optout"?} or {"error": "unknown_centre"}. The screen texts are templates (ussd_*); the
-- daemon makes them GSM-7 and cuts them at 182 characters.
CREATE FUNCTION gw_ussd(p_centre text, p_session text, p_phone text, p_service text,
                        p_steps text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cen centres;
    ses ussd_sessions;
    ct contacts;
    lang text;
    v jsonb;
    n int := coalesce(cardinality(p_steps), 0);
    c1 text := p_steps[1];
    screen text;
    fin boolean := true;
    replies jsonb := '[]'::jsonb;
    optout boolean;
    r jsonb;
    ids bigint[];
    lst text;
    pick int;
    timeout_s int;
BEGIN
    SELECT * INTO cen FROM centres
     WHERE name = p_centre OR (p_centre ~ '^[0-9]{1,18}$' AND id = p_centre::bigint)
     ORDER BY name = p_centre DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'unknown_centre');
    END IF;
    v := jsonb_build_object('centre', coalesce(cen.settings ->> 'display_name', cen.name),
                            'service', coalesce(nullif(p_service, ''), 'le code du centre'));
    timeout_s := gw_setting(cen.settings, 'ussd_timeout_s', '180')::int;

    IF n = 0 THEN
        INSERT INTO ussd_sessions (session_id, centre_id, phone, service)
        VALUES (p_session, cen.id, p_phone, p_service)
        ON CONFLICT (session_id) DO NOTHING;
    END IF;
    SELECT * INTO ses FROM ussd_sessions WHERE session_id = p_session FOR UPDATE;
    IF NOT FOUND OR ses.centre_id <> cen.id OR ses.phone <> p_phone OR ses.ended THEN
        RETURN jsonb_build_object('end', true, 'centre_id', cen.id,
                                  'text', gw_tpl(cen.id, 'fr', 'ussd_unknown_session', v));
    END IF;
    IF ses.last_at < now() - make_interval(secs => timeout_s) THEN
        UPDATE ussd_sessions SET ended = true WHERE session_id = p_session;
        RETURN jsonb_build_object('end', true, 'centre_id', cen.id,
                                  'text', gw_tpl(cen.id, 'fr', 'ussd_expired', v));
    END IF;
    UPDATE ussd_sessions SET last_at = now(), requests = requests + 1
     WHERE session_id = p_session;

    ct := gw_contact_get(cen.id, p_phone);
    lang := ct.language;

    IF n = 0 THEN
        fin := false;
        screen := gw_tpl(cen.id, lang, 'ussd_menu', v || jsonb_build_object('stopstart',
                     gw_tpl(cen.id, lang, CASE WHEN ct.opted_out_at IS NULL THEN 'ussd_stop_label'
                                               ELSE 'ussd_start_label' END)));
    ELSIF ct.opted_out_at IS NOT NULL AND c1 <> '5' THEN
        screen := gw_tpl(cen.id, lang, 'ussd_opted_out', v);
    ELSIF c1 = '1' THEN                                   -- check in: code, then people
        IF n = 1 THEN
            fin := false; screen := gw_tpl(cen.id, lang, 'ussd_check_code', v);
        ELSIF p_steps[2] !~ '^[0-9]{3,6}$' THEN
            screen := gw_tpl(cen.id, lang, 'ussd_check_unknown', v || jsonb_build_object('code', p_steps[2]));
        ELSIF n = 2 THEN
            fin := false; screen := gw_tpl(cen.id, lang, 'ussd_check_people', v);
        ELSIF n = 3 THEN
            r := gw_checkin(cen.id, ct.id, p_phone, p_steps[2],
                            CASE WHEN p_steps[3] = '' THEN 1
                                 WHEN p_steps[3] ~ '^[0-9]{1,2}$' THEN p_steps[3]::int
                                 ELSE 0 END, 'ussd');
            screen := gw_tpl(cen.id, lang, CASE WHEN r ->> 'result' = 'unknown' THEN 'ussd_check_unknown'
                                                ELSE 'check_' || (r ->> 'result') END, v || r);
        END IF;
    ELSIF c1 = '2' THEN                                   -- job offers: list, pick, SMS
        IF n = 1 THEN
            SELECT array_agg(j.id ORDER BY j.created_at DESC, j.id DESC),
                   string_agg(j.rn || ' ' || gw_short(j.title, 28), E'\n' ORDER BY j.rn)
              INTO ids, lst
              FROM (SELECT x.*, row_number() OVER (ORDER BY x.created_at DESC, x.id DESC) AS rn
                      FROM gw_jobs_active(cen.id, 5) x) j;
            IF ids IS NULL THEN
                screen := gw_tpl(cen.id, lang, 'job_none', v);
            ELSE
                fin := false;
                UPDATE ussd_sessions SET data = data || jsonb_build_object('jobs', to_jsonb(ids))
                 WHERE session_id = p_session;
                screen := gw_tpl(cen.id, lang, 'ussd_jobs', v || jsonb_build_object('list', lst));
            END IF;
        ELSIF n = 2 AND p_steps[2] ~ '^[1-9]$' THEN
            pick := p_steps[2]::int;
            SELECT jsonb_build_object('title', j.title, 'text', j.body, 'contact', j.contact) INTO r
              FROM jobs j WHERE j.id = (ses.data -> 'jobs' ->> (pick - 1))::bigint;
            IF r IS NOT NULL THEN
                replies := replies || jsonb_build_object('text', gw_tpl(cen.id, lang, 'job_detail', v || r));
                screen := gw_tpl(cen.id, lang, 'ussd_job_sent', v || r);
            END IF;
        END IF;
    ELSIF c1 = '3' THEN                                   -- lending: list, pick
        IF n = 1 THEN
            SELECT array_agg(i.id ORDER BY i.rn),
                   string_agg(i.rn || ' ' || gw_short(i.name, 28), E'\n' ORDER BY i.rn)
              INTO ids, lst
              FROM (SELECT x.*, row_number() OVER (ORDER BY length(x.code), x.code) AS rn
                      FROM gw_items_available(cen.id, 5) x) i;
            IF ids IS NULL THEN
                screen := gw_tpl(cen.id, lang, 'loan_none', v);
            ELSE
                fin := false;
                UPDATE ussd_sessions SET data = data || jsonb_build_object('items', to_jsonb(ids))
                 WHERE session_id = p_session;
                screen := gw_tpl(cen.id, lang, 'ussd_items', v || jsonb_build_object('list', lst));
            END IF;
        ELSIF n = 2 AND p_steps[2] ~ '^[1-9]$' THEN
            pick := p_steps[2]::int;
            SELECT i.code INTO lst FROM items i
             WHERE i.id = (ses.data -> 'items' ->> (pick - 1))::bigint;
            IF lst IS NOT NULL THEN
                r := gw_loan_request(cen.id, ct.id, lst, 'ussd');
                screen := gw_tpl(cen.id, lang, 'loan_' || (r ->> 'result'),
                                 v || r || jsonb_build_object('code', upper(lst)));
            END IF;
        END IF;
    ELSIF c1 = '4' AND n = 1 THEN                         -- my next reminder
        -- an occurrence waiting to go out, or the next one of an active reminder (the
        -- reminders table and gw_reminder_text come with the scheduler, 004)
        SELECT jsonb_build_object('date', to_char(x.at AT TIME ZONE cen.timezone, 'DD/MM à HH24:MI'),
                                  'text', gw_short(x.body, 120)) INTO r
          FROM (SELECT o.due_at AS at, o.body FROM reminder_occurrences o
                 WHERE o.contact_id = ct.id AND o.status = 'pending' AND o.due_at > now()
                UNION ALL
                SELECT rm.next_at, gw_reminder_text(rm, rm.next_at) FROM reminders rm
                 WHERE rm.contact_id = ct.id AND rm.status = 'active' AND rm.next_at > now()) x
         ORDER BY x.at LIMIT 1;
        screen := CASE WHEN r IS NULL THEN gw_tpl(cen.id, lang, 'ussd_no_reminder', v)
                       ELSE gw_tpl(cen.id, lang, 'ussd_next_reminder', v || r) END;
    ELSIF c1 = '5' THEN                                   -- stop / start, confirmed
        IF n = 1 THEN
            fin := false;
            screen := gw_tpl(cen.id, lang, CASE WHEN ct.opted_out_at IS NULL THEN 'ussd_confirm_stop'
                                                ELSE 'ussd_confirm_start' END, v);
        ELSIF n = 2 AND p_steps[2] = '2' THEN
            screen := gw_tpl(cen.id, lang, 'ussd_unchanged', v);
        ELSIF n = 2 AND p_steps[2] = '1' THEN
            IF ct.opted_out_at IS NULL THEN
                PERFORM gw_contact_optout(ct.id, true, 'ussd');
                optout := true;
                screen := gw_tpl(cen.id, lang, 'stop_ok', v);
                replies := replies || jsonb_build_object('text', screen, 'kind', 'optout');
            ELSE
                PERFORM gw_contact_optout(ct.id, false, 'ussd');
                optout := false;
                screen := gw_tpl(cen.id, lang, 'start_ok', v);
            END IF;
        END IF;
    END IF;

    IF screen IS NULL THEN
        screen := gw_tpl(cen.id, lang, 'ussd_bad_choice', v);
        fin := true;
    END IF;
    IF fin THEN
        UPDATE ussd_sessions SET ended = true WHERE session_id = p_session;
    END IF;
    r := jsonb_build_object('end', fin, 'text', screen, 'centre_id', cen.id,
                            'contact_id', ct.id, 'replies', replies);
    IF optout IS NOT NULL THEN
        r := r || jsonb_build_object('optout', optout, 'routes',
                 (SELECT coalesce(jsonb_agg(DISTINCT cr.route), '[]') FROM centre_routes cr
                   WHERE cr.centre_id = cen.id));
    END IF;
    RETURN r;
END;
$$;

-- ------------------------------------------------------------------ staff actions on loans
-- Confirm (p_action 'confirm', due in p_days), refuse, or record the return of a loan. Returns
-- {"centre_id","phone","replies":[…]} for the SMS to the resident, or {"error": …}.
CREATE FUNCTION gw_loan_action(p_loan bigint, p_action text, p_days int DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    ln loans;
    it items;
    ct contacts;
    cen centres;
    tpl text;
    v jsonb;
BEGIN
    SELECT * INTO ln FROM loans WHERE id = p_loan FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'not_found');
    END IF;
    SELECT * INTO it FROM items WHERE id = ln.item_id FOR UPDATE;
    SELECT * INTO ct FROM contacts WHERE id = ln.contact_id;
    SELECT * INTO cen FROM centres WHERE id = ln.centre_id;
    IF p_action = 'confirm' AND ln.status = 'requested' THEN
        UPDATE loans SET status = 'confirmed', confirmed_at = now(),
               due_at = now() + make_interval(days => coalesce(p_days,
                            gw_setting(cen.settings, 'loan_days', '14')::int))
         WHERE id = p_loan RETURNING * INTO ln;
        UPDATE items SET state = 'lent' WHERE id = it.id;
        tpl := 'loan_confirmed';
    ELSIF p_action = 'refuse' AND ln.status = 'requested' THEN
        UPDATE loans SET status = 'refused' WHERE id = p_loan;
        UPDATE items SET state = 'available' WHERE id = it.id AND state = 'reserved';
        tpl := 'loan_refused';
    ELSIF p_action = 'returned' AND ln.status IN ('confirmed', 'return_requested') THEN
        UPDATE loans SET status = 'returned', returned_at = now() WHERE id = p_loan;
        UPDATE items SET state = 'available' WHERE id = it.id;
        tpl := 'returned';
    ELSE
        RETURN jsonb_build_object('error', 'bad_state', 'status', ln.status);
    END IF;
    v := jsonb_build_object('centre', coalesce(cen.settings ->> 'display_name', cen.name),
                            'item', it.name,
                            'date', to_char(ln.due_at AT TIME ZONE cen.timezone, 'DD/MM/YYYY'));
    IF ct.opted_out_at IS NOT NULL THEN
        -- done, but the resident said STOP: no SMS
        RETURN jsonb_build_object('centre_id', cen.id, 'phone', ct.phone, 'loan', p_loan,
                                  'replies', '[]'::jsonb, 'resident_opted_out', true);
    END IF;
    RETURN jsonb_build_object('centre_id', cen.id, 'phone', ct.phone, 'loan', p_loan,
                              'replies', jsonb_build_array(jsonb_build_object(
                                  'text', gw_tpl(cen.id, ct.language, tpl, v))));
END;
$$;

-- ------------------------------------------------------------------ demo and test fixtures
-- `gatewayctl centre seed CENTRE`: activities with sessions around now (codes 1234 named,
-- 5678 anonymous, 4321 closed since yesterday), items (12, 15 available; 20 lent until in a
-- week, to a staff test number), four job offers, alert topics and job categories. Idempotent.
CREATE FUNCTION gw_demo_seed(p_centre bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a1 bigint;
    a2 bigint;
    staff bigint;
    it bigint;
BEGIN
    INSERT INTO activities (centre_id, name) VALUES (p_centre, 'Atelier cuisine')
    ON CONFLICT (centre_id, name) DO UPDATE SET anonymous = false RETURNING id INTO a1;
    INSERT INTO activities (centre_id, name, anonymous) VALUES (p_centre, 'Accueil café', true)
    ON CONFLICT (centre_id, name) DO UPDATE SET anonymous = true RETURNING id INTO a2;
    DELETE FROM activity_sessions WHERE activity_id IN (a1, a2);
    INSERT INTO activity_sessions (activity_id, centre_id, starts_at, ends_at, code) VALUES
        (a1, p_centre, now() - interval '30 minutes', now() + interval '90 minutes', '1234'),
        (a2, p_centre, now() - interval '10 minutes', now() + interval '3 hours', '5678'),
        (a1, p_centre, now() - interval '1 day 2 hours', now() - interval '1 day', '4321');

    INSERT INTO items (centre_id, code, name) VALUES
        (p_centre, '12', 'Perceuse'), (p_centre, '15', 'Poussette'), (p_centre, '20', 'Vélo')
    ON CONFLICT (centre_id, code) DO NOTHING;
    SELECT id INTO it FROM items WHERE centre_id = p_centre AND code = '20';
    IF NOT EXISTS (SELECT 1 FROM loans WHERE item_id = it AND status = 'confirmed') THEN
        staff := (gw_contact_get(p_centre, '+33699999999')).id;
        UPDATE contacts SET first_name = 'Équipe', unknown = false WHERE id = staff;
        INSERT INTO loans (centre_id, item_id, contact_id, status, confirmed_at, due_at, channel)
        VALUES (p_centre, it, staff, 'confirmed', now(), now() + interval '7 days', 'staff');
        UPDATE items SET state = 'lent' WHERE id = it;
    END IF;

    INSERT INTO topics (centre_id, kind, name, label) VALUES
        (p_centre, 'alert', 'sortie', 'Sorties'), (p_centre, 'alert', 'atelier', 'Ateliers'),
        (p_centre, 'job', 'cuisine', 'Cuisine'), (p_centre, 'job', 'menage', 'Ménage')
    ON CONFLICT (centre_id, kind, name) DO NOTHING;
    INSERT INTO jobs (centre_id, number, title, body, contact, category, created_at) VALUES
        (p_centre, 1, 'Plongeur', 'Restaurant Le Midi, 20 h/semaine, débutant accepté.', '04 78 00 00 01', 'cuisine', now() - interval '3 days'),
        (p_centre, 2, 'Agent d''entretien', 'Bureaux, 6 h-9 h du lundi au vendredi, CDD 6 mois.', '04 78 00 00 02', 'menage', now() - interval '2 days'),
        (p_centre, 3, 'Aide cuisinier', 'Cantine scolaire, 30 h/semaine, CDI.', '04 78 00 00 03', 'cuisine', now() - interval '1 day'),
        (p_centre, 4, 'Vendeur en boulangerie', 'Samedi et dimanche matin.', '04 78 00 00 04', NULL, now() - interval '1 hour')
    ON CONFLICT (centre_id, number) DO NOTHING;
END;
$$;
