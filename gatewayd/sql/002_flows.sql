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
