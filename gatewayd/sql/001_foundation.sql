-- 001 — the foundation: centres, API keys, contacts (opt-out), messages, the outbox queue,
-- state history and send attempts. See README.md "Design notes" for why the queue is a
-- separate table.

CREATE TABLE centres (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    timezone    text NOT NULL DEFAULT 'Europe/Paris',
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Routes a centre uses, in order of preference per kind of traffic ('all' for now).
CREATE TABLE centre_routes (
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    route       text NOT NULL,
    kind        text NOT NULL DEFAULT 'all',
    position    int NOT NULL DEFAULT 0,
    PRIMARY KEY (centre_id, kind, route)
);
CREATE INDEX centre_routes_route ON centre_routes (route);

-- API keys: "psk_<prefix>_<secret>"; only a BLAKE2b hash of the whole key is stored.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- People a centre talks to. The flows issue adds columns; opt-out lives here from the start
-- because the outbox checks it at enqueue and at claim.
CREATE TABLE contacts (
    id             bigserial PRIMARY KEY,
    centre_id      bigint NOT NULL REFERENCES centres(id) ON DELETE CASCADE,
    phone          text NOT NULL,
    first_name     text,
    opted_out_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (centre_id, phone)
);

-- The hot tables (messages, outbox_queue, message_events, attempts) carry no foreign keys:
-- every message row would lock its centre's row FOR KEY SHARE, and concurrent enqueue
-- transactions then serialise on MultiXacts for that one row (measured: 4x fewer rows/s with
-- six writers). They are written only by the functions below, which keep them consistent.
CREATE TABLE messages (
    id               bigserial PRIMARY KEY,
    centre_id        bigint NOT NULL,
    direction        text NOT NULL CHECK (direction IN ('in', 'out')),
    phone            text NOT NULL,
    body             text,
    status           text NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered',
                         'undelivered', 'failed', 'expired', 'cancelled', 'received')),
    route            text,
    segments         int NOT NULL DEFAULT 1,
    encoding         text NOT NULL DEFAULT 'gsm7',
    idempotency_key  text,
    send_at          timestamptz,
    attempts         int NOT NULL DEFAULT 0,
    provider_ref     text,             -- outbound: the provider's id (not indexed: keeps updates HOT)
    inbound_ref      text,             -- inbound: the provider's id, for de-duplication
    error_code       text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80); -- room on each page for HOT updates of status (no index touched)
CREATE UNIQUE INDEX messages_idempotency ON messages (centre_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_centre_newest ON messages (centre_id, id DESC);
CREATE INDEX messages_centre_phone ON messages (centre_id, phone, id DESC);
CREATE UNIQUE INDEX messages_inbound_ref ON messages (route, inbound_ref)
    WHERE direction = 'in' AND inbound_ref IS NOT NULL;

-- The outbox queue: one small row per outgoing message that still has to be sent. Finished
-- messages leave it, so claims never step over history. A claim moves due_at to the end of the
-- lease: a row whose node died becomes due again by itself, and leased rows never match the
-- "due now" range scan. lease_token fences late outcomes from a node that lost its lease.
CREATE TABLE outbox_queue (
    message_id   bigint PRIMARY KEY,
    centre_id    bigint NOT NULL,
    route        text NOT NULL,
    due_at       timestamptz NOT NULL,
    lease_node   text,
    lease_token  bigint
) WITH (fillfactor = 70,
        autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0,
        autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX outbox_queue_due ON outbox_queue (route, due_at);
CREATE SEQUENCE outbox_lease_seq;

-- State history: one row per transition; its id orders the live event stream.
CREATE TABLE message_events (
    id          bigserial NOT NULL,
    message_id  bigint NOT NULL,
    centre_id   bigint NOT NULL,
    status      text NOT NULL,
    route       text,
    detail      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_events_message ON message_events (message_id, id);
-- Append-only and ordered by id: a BRIN index serves "events after id N" for a fraction of a
-- B-tree's cost on the hottest insert path (three events per message).
CREATE INDEX message_events_id ON message_events USING brin (id);

-- Every hand-over to a route and its outcome.
CREATE TABLE attempts (
    id            bigserial PRIMARY KEY,
    message_id    bigint NOT NULL,
    route         text NOT NULL,
    node          text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    outcome       text NOT NULL CHECK (outcome IN ('accepted', 'tempfail', 'permfail')),
    provider_ref  text,
    error_code    text,
    error         text
);
CREATE INDEX attempts_message ON attempts (message_id);
-- Delivery reports that only carry the provider's reference (a modem's 0–255 message
-- reference) find the latest message accepted with it on that route.
CREATE INDEX attempts_route_ref ON attempts (route, provider_ref, id)
    WHERE outcome = 'accepted' AND provider_ref IS NOT NULL;

-- Enqueue a batch of outgoing messages in one statement (one transaction). The first
-- "queued" state is not written to message_events: it is the message's created_at, and
-- gw_message_json shows it (one insert less per message on the hottest path).
-- Input: a JSON array of {i, centre_id, phone, body, segments, encoding, route, idem, send_at,
-- kind}; a null route means the centre's first route for that kind of traffic ('replies',
-- 'reminders', 'alerts'…; routes listed for 'all' serve every kind), else p_default_route.
-- Output: one row per input element: the message id, whether it was created now (false: an
-- earlier message had the same idempotency key, or the number opted out) and its status.
-- Ids are drawn before the insert so that every input row, with or without an idempotency
-- key, can be matched to its result.
CREATE FUNCTION gw_enqueue(batch json, p_default_route text)
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
                   EXISTS (SELECT 1 FROM contacts c WHERE c.centre_id = x.centre_id
                            AND c.phone = x.phone AND c.opted_out_at IS NOT NULL) AS opted_out
              FROM json_to_recordset(batch) AS x(i int, centre_id bigint, phone text, body text,
                   segments int, encoding text, route text, idem text, send_at timestamptz,
                   kind text)
        ), ins AS (
            INSERT INTO messages (id, centre_id, direction, phone, body, segments, encoding, route,
                                  idempotency_key, send_at, status)
            SELECT new_id, centre_id, 'out', phone, body, segments, encoding, route, idem, due, 'queued'
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

-- Claim up to p_limit due messages of one route for this node. Opted-out recipients are
-- cancelled here (the second check, after the one at enqueue). The lease moves due_at forward
-- (see outbox_queue above); the token fences the outcome.
-- Failover: p_failover names routes this node sees as down (circuit open). When the route's own
-- queue leaves room, due messages of those routes are taken too, for centres that list p_route
-- after the failed route; they move to p_route for good.
CREATE FUNCTION gw_claim(p_node text, p_route text, p_limit int, p_lease_s int,
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
         WHERE msg.id = ANY (ids)
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

-- Record send outcomes (one statement for a batch). Input: JSON array of {id, token, outcome
-- ('accepted'|'tempfail'|'permfail'), final (no retry left), delay_ms (before the retry),
-- provider_ref, error_code, error, started_ms (epoch ms), route, node, optout (the provider
-- reports the number on its blacklist: the contact is marked opted out)}. Only rows whose queue
-- entry still carries the caller's lease token are touched: a node that lost its lease cannot
-- overwrite the new owner's work. A delivery report that was applied first is never downgraded.
CREATE FUNCTION gw_record(batch json)
RETURNS TABLE (id bigint, centre_id bigint, status text, phone text, segments int, route text,
               error text)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- Outcome bookkeeping commits asynchronously (see README "Design notes"): a PostgreSQL
    -- crash may forget the last fraction of a second of it, which can only cause a resend
    -- (at-least-once), never a lost message. Enqueue and inbound stay synchronous.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
        WITH input AS MATERIALIZED (
            SELECT x.*, (x.outcome = 'tempfail' AND NOT x.final) AS retry
              FROM json_to_recordset(batch) AS x(id bigint, token bigint, outcome text, final boolean,
                   delay_ms bigint, provider_ref text, error_code text, error text, started_ms bigint,
                   route text, node text, optout boolean)
        ), del AS (
            DELETE FROM outbox_queue oq USING input i
             WHERE oq.message_id = i.id AND oq.lease_token = i.token AND NOT i.retry
            RETURNING oq.message_id, i.token
        ), req AS (
            UPDATE outbox_queue oq
               SET due_at = now() + i.delay_ms * interval '1 millisecond',
                   lease_node = NULL, lease_token = NULL
              FROM input i
             WHERE oq.message_id = i.id AND oq.lease_token = i.token AND i.retry
            RETURNING oq.message_id, i.token
        ), owned AS (
            -- (id, token) pairs: an outcome under an expired token in the same batch as the
            -- current one must not ride on the current one's ownership
            SELECT message_id, token FROM del UNION ALL SELECT message_id, token FROM req
        ), m AS (
            UPDATE messages msg
               SET status = CASE WHEN msg.status IN ('delivered', 'undelivered') THEN msg.status
                                 WHEN i.outcome = 'accepted' THEN 'sent'
                                 WHEN i.retry THEN 'queued'
                                 ELSE 'failed' END,
                   provider_ref = coalesce(i.provider_ref, msg.provider_ref),
                   error_code = i.error_code, error = i.error, updated_at = now()
              FROM input i JOIN owned o ON o.message_id = i.id AND o.token = i.token
             WHERE msg.id = i.id
            RETURNING msg.id, msg.centre_id, msg.status, msg.route, msg.phone, msg.segments,
                      msg.error
        ), att AS (
            INSERT INTO attempts (message_id, route, node, started_at, outcome, provider_ref,
                                  error_code, error)
            SELECT i.id, i.route, i.node, to_timestamp(i.started_ms / 1000.0), i.outcome,
                   i.provider_ref, i.error_code, i.error
              FROM input i JOIN owned o ON o.message_id = i.id AND o.token = i.token
        ), ev AS (
            INSERT INTO message_events (message_id, centre_id, status, route, detail)
            SELECT m.id, m.centre_id, m.status, m.route, i.error
              FROM m JOIN input i ON i.id = m.id JOIN owned o ON o.message_id = i.id AND o.token = i.token
        ), stop AS (
            -- the provider says the number is on its blacklist: the resident opted out there
            INSERT INTO contacts (centre_id, phone, opted_out_at)
            SELECT m.centre_id, m.phone, now()
              FROM m JOIN input i ON i.id = m.id JOIN owned o ON o.message_id = i.id AND o.token = i.token
             WHERE i.optout
            ON CONFLICT (centre_id, phone)
            DO UPDATE SET opted_out_at = coalesce(contacts.opted_out_at, now())
        )
        SELECT m.id, m.centre_id, m.status, m.phone, m.segments, m.route, m.error FROM m;
END;
$$;

-- Apply delivery reports. Input: JSON array of {id, delivered, detail}, where a report that
-- only knows the provider's reference gives {route, ref} instead of id.
CREATE FUNCTION gw_dlr(batch json)
RETURNS TABLE (id bigint, centre_id bigint, status text, phone text, segments int, route text,
               error text)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- Outcome bookkeeping commits asynchronously (see README "Design notes"): a PostgreSQL
    -- crash may forget the last fraction of a second of it, which can only cause a resend
    -- (at-least-once), never a lost message. Enqueue and inbound stay synchronous.
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
        WITH raw AS (
            SELECT x.* FROM json_to_recordset(batch)
                AS x(id bigint, route text, ref text, delivered boolean, detail text)
        ), input AS MATERIALIZED (
            SELECT coalesce(r.id, (SELECT a.message_id FROM attempts a
                                    WHERE a.route = r.route AND a.provider_ref = r.ref
                                      AND a.outcome = 'accepted'
                                    ORDER BY a.id DESC LIMIT 1)) AS id,
                   r.route, r.delivered, r.detail
              FROM raw r
        ), m AS (
            UPDATE messages msg
               SET status = CASE WHEN i.delivered THEN 'delivered' ELSE 'undelivered' END,
                   error = CASE WHEN i.delivered THEN NULL ELSE i.detail END,
                   updated_at = now()
              FROM input i
             WHERE msg.id = i.id AND msg.direction = 'out'
               AND msg.route = i.route -- a report counts only from the route that sent it
               AND msg.status IN ('sent', 'delivered', 'undelivered')
            RETURNING msg.id, msg.centre_id, msg.status, msg.route, msg.phone, msg.segments,
                      msg.error
        ), ev AS (
            INSERT INTO message_events (message_id, centre_id, status, route, detail)
            SELECT m.id, m.centre_id, m.status, m.route, i.detail FROM m JOIN input i ON i.id = m.id
        )
        SELECT m.id, m.centre_id, m.status, m.phone, m.segments, m.route, m.error FROM m;
END;
$$;

-- Store one inbound SMS received on a route. The centre is the one that lists the route
-- (lowest id if several do). A repeated provider_ref on the same route is a duplicate: the
-- first message's id comes back with created = false.
CREATE FUNCTION gw_inbound(p_route text, p_phone text, p_body text, p_ref text,
                           p_received timestamptz, p_encoding text, p_segments int)
RETURNS TABLE (id bigint, centre_id bigint, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cid bigint;
    mid bigint;
BEGIN
    SELECT cr.centre_id INTO cid FROM centre_routes cr WHERE cr.route = p_route
     ORDER BY cr.centre_id LIMIT 1;
    IF cid IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO messages (centre_id, direction, phone, body, status, route, inbound_ref,
                          created_at, updated_at, encoding, segments)
    VALUES (cid, 'in', p_phone, p_body, 'received', p_route, p_ref,
            coalesce(p_received, now()), now(), p_encoding, p_segments)
    ON CONFLICT (route, inbound_ref) WHERE direction = 'in' AND inbound_ref IS NOT NULL
    DO NOTHING
    RETURNING messages.id INTO mid;
    IF mid IS NULL THEN
        RETURN QUERY SELECT m.id, m.centre_id, false FROM messages m
         WHERE m.route = p_route AND m.inbound_ref = p_ref AND m.direction = 'in';
        RETURN;
    END IF;
    INSERT INTO message_events (message_id, centre_id, status, route)
    VALUES (mid, cid, 'received', p_route);
    RETURN QUERY SELECT mid, cid, true;
END;
$$;

-- The API's view of one message (GET /api/v1/messages/{id} and the list). Null fields are
-- left out; the history and the attempts only when asked for.
CREATE FUNCTION gw_message_json(m messages, with_history boolean)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_strip_nulls(json_build_object(
               'id', m.id,
               'direction', m.direction,
               CASE WHEN m.direction = 'out' THEN 'to' ELSE 'from' END, m.phone,
               'text', m.body,
               'status', m.status,
               'route', m.route,
               'segments', m.segments,
               'encoding', m.encoding,
               'idempotency_key', m.idempotency_key,
               'send_at', m.send_at,
               'attempt_count', m.attempts,
               'provider_ref', coalesce(m.provider_ref, m.inbound_ref),
               'last_error', CASE WHEN m.error IS NULL AND m.error_code IS NULL THEN NULL
                                  ELSE json_build_object('code', m.error_code,
                                                         'message', m.error) END,
               'created_at', m.created_at,
               'updated_at', m.updated_at,
               'history', CASE WHEN with_history THEN
                   (SELECT json_agg(h.j ORDER BY h.k) FROM (
                        SELECT 0 AS k, json_build_object('status', CASE WHEN m.direction = 'out'
                                   THEN 'queued' ELSE 'received' END, 'at', m.created_at,
                                   'route', m.route) AS j
                        UNION ALL
                        SELECT e.id, json_strip_nulls(json_build_object(
                                   'status', e.status, 'at', e.at, 'route', e.route,
                                   'detail', e.detail))
                          FROM message_events e WHERE e.message_id = m.id
                           AND NOT (m.direction = 'in' AND e.status = 'received')) h) END,
               'attempts', CASE WHEN with_history THEN
                   (SELECT coalesce(json_agg(json_build_object(
                                 'route', a.route, 'node', a.node, 'started_at', a.started_at,
                                 'finished_at', a.finished_at, 'outcome', a.outcome,
                                 'provider_ref', a.provider_ref, 'error_code', a.error_code,
                                 'error', a.error) ORDER BY a.id), '[]'::json)
                      FROM attempts a WHERE a.message_id = m.id) END))
$$;
