-- 009 — throughput (issue 2): fewer writes per delivered message.
--
-- * A claim no longer updates messages. The lease in outbox_queue already says that the message
--   is in flight; the queue row now also counts the claims (attempts) and remembers when the
--   last one happened (claimed_at). messages.status and messages.attempts are written once, at
--   the outcome. The API shows a queued message whose queue row holds a lease as 'sending' and
--   counts the claim in progress in attempt_count. The 'sending' event is still written (the
--   history and the live stream of GET /ops/events show it).
-- * gw_record can carry a delivery report that arrived while the outcome was still waiting in
--   the serial writer's batch: one update of messages and both events ('sent', then the
--   report's state), instead of a second statement (gatewayd/gw_outbox.c, host_dlr).
-- * gw_dlr is planned again at each call (see there).
-- * gw_retry_failed (007) carries the attempt count over to the new queue row.
-- See README.md "Design notes".

ALTER TABLE outbox_queue ADD COLUMN attempts int NOT NULL DEFAULT 0,
                         ADD COLUMN claimed_at timestamptz;
UPDATE outbox_queue q SET attempts = m.attempts FROM messages m WHERE m.id = q.message_id;

-- gw_claim as in 002 (the kind, the 'optout' exemption, failover, the opt-out cancellation),
-- except: the claim counts itself on the queue row and leaves messages alone.
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
       SET lease_node = p_node, lease_token = tok, attempts = oq.attempts + 1,
           claimed_at = now(), due_at = now() + make_interval(secs => p_lease_s)
     WHERE oq.message_id = ANY (ids);

    -- messages is only read: the queue row holds the lease and the claim count, and the
    -- 'sending' event says when the hand-over happened. Reached by id = ANY (ids) with the
    -- claim count as a probe per row (a join of the two tables could be planned from a status
    -- estimate; see gw_dlr).
    RETURN QUERY
    WITH m AS (
        SELECT msg.id, msg.centre_id, msg.phone, msg.body, msg.segments, msg.encoding,
               (SELECT oq.attempts FROM outbox_queue oq WHERE oq.message_id = msg.id) AS attempts,
               msg.route
          FROM messages msg
         WHERE msg.id = ANY (ids) AND msg.status IN ('queued', 'sending')
    ), ev AS (
        INSERT INTO message_events (message_id, centre_id, status, route)
        SELECT m.id, m.centre_id, 'sending', m.route FROM m
    )
    SELECT m.id, m.centre_id, m.phone, m.body, m.segments, m.encoding, m.attempts, tok FROM m;
END;
$$;

-- gw_record as in 001, except:
-- * messages.attempts takes the queue row's claim count (the claims are counted there);
-- * an input row may carry a delivery report for the same message (dlr: delivered or not,
--   dlr_detail), received while the outcome waited in the writer's batch. When the outcome is
--   the lease owner's and accepted, the message goes straight to the report's state, with two
--   events ('sent', then 'delivered' or 'undelivered') and two result rows. A report riding on
--   an outcome that lost its lease is applied as gw_dlr would apply it, unless the batch also
--   holds the owner's outcome for that message (then the owner's outcome is what counts; its
--   own report follows).
CREATE OR REPLACE FUNCTION gw_record(batch json)
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
                   route text, node text, optout boolean, dlr boolean, dlr_detail text)
        ), del AS (
            DELETE FROM outbox_queue oq USING input i
             WHERE oq.message_id = i.id AND oq.lease_token = i.token AND NOT i.retry
            RETURNING oq.message_id, i.token, oq.attempts
        ), req AS (
            UPDATE outbox_queue oq
               SET due_at = now() + i.delay_ms * interval '1 millisecond',
                   lease_node = NULL, lease_token = NULL
              FROM input i
             WHERE oq.message_id = i.id AND oq.lease_token = i.token AND i.retry
            RETURNING oq.message_id, i.token, oq.attempts
        ), owned AS (
            -- (id, token) pairs: an outcome under an expired token in the same batch as the
            -- current one must not ride on the current one's ownership
            SELECT message_id, token, attempts FROM del
            UNION ALL SELECT message_id, token, attempts FROM req
        ), m AS (
            UPDATE messages msg
               SET status = CASE WHEN i.outcome = 'accepted' AND i.dlr IS NOT NULL
                                      AND msg.route = i.route
                                 THEN CASE WHEN i.dlr THEN 'delivered' ELSE 'undelivered' END
                                 WHEN msg.status IN ('delivered', 'undelivered') THEN msg.status
                                 WHEN i.outcome = 'accepted' THEN 'sent'
                                 WHEN i.retry THEN 'queued'
                                 ELSE 'failed' END,
                   attempts = greatest(msg.attempts, o.attempts),
                   provider_ref = coalesce(i.provider_ref, msg.provider_ref),
                   error_code = i.error_code,
                   error = CASE WHEN i.outcome = 'accepted' AND i.dlr IS NOT NULL
                                     AND msg.route = i.route
                                THEN CASE WHEN i.dlr THEN NULL ELSE i.dlr_detail END
                                ELSE i.error END,
                   updated_at = now()
              FROM input i JOIN owned o ON o.message_id = i.id AND o.token = i.token
             WHERE msg.id = i.id
            RETURNING msg.id, msg.centre_id, msg.status, msg.route, msg.phone, msg.segments,
                      msg.error, i.error AS outcome_error, i.dlr_detail,
                      (i.outcome = 'accepted' AND i.dlr IS NOT NULL AND msg.route = i.route)
                          AS with_dlr
        ), late AS (
            -- a report riding on an outcome that lost its lease: as gw_dlr
            UPDATE messages msg
               SET status = CASE WHEN i.dlr THEN 'delivered' ELSE 'undelivered' END,
                   error = CASE WHEN i.dlr THEN NULL ELSE i.dlr_detail END,
                   updated_at = now()
              FROM input i
             WHERE i.dlr IS NOT NULL AND msg.id = i.id AND msg.direction = 'out'
               AND msg.route = i.route
               AND msg.status IN ('sent', 'delivered', 'undelivered')
               -- an index condition on messages that is nearly always empty: this part must
               -- not cost a walk over messages (see gw_dlr below)
               AND msg.id = ANY (ARRAY(SELECT x.id FROM input x WHERE x.dlr IS NOT NULL
                                          AND NOT EXISTS (SELECT 1 FROM owned o
                                                           WHERE o.message_id = x.id)))
               AND NOT EXISTS (SELECT 1 FROM owned o WHERE o.message_id = i.id)
            RETURNING msg.id, msg.centre_id, msg.status, msg.route, msg.phone, msg.segments,
                      msg.error, i.dlr_detail
        ), att AS (
            INSERT INTO attempts (message_id, route, node, started_at, outcome, provider_ref,
                                  error_code, error)
            SELECT i.id, i.route, i.node, to_timestamp(i.started_ms / 1000.0), i.outcome,
                   i.provider_ref, i.error_code, i.error
              FROM input i JOIN owned o ON o.message_id = i.id AND o.token = i.token
        ), ev AS (
            INSERT INTO message_events (message_id, centre_id, status, route, detail)
            SELECT e.id, e.centre_id, e.status, e.route, e.detail FROM (
                SELECT m.id, m.centre_id, CASE WHEN m.with_dlr THEN 'sent' ELSE m.status END
                           AS status, m.route, m.outcome_error AS detail, 0 AS k
                  FROM m
                UNION ALL
                SELECT m.id, m.centre_id, m.status, m.route, m.dlr_detail, 1 FROM m
                 WHERE m.with_dlr
                UNION ALL
                SELECT l.id, l.centre_id, l.status, l.route, l.dlr_detail, 1 FROM late l) e
             ORDER BY e.id, e.k
        ), stop AS (
            -- the provider says the number is on its blacklist: the resident opted out there
            INSERT INTO contacts (centre_id, phone, opted_out_at)
            SELECT m.centre_id, m.phone, now()
              FROM m JOIN input i ON i.id = m.id JOIN owned o ON o.message_id = i.id AND o.token = i.token
             WHERE i.optout
            ON CONFLICT (centre_id, phone)
            DO UPDATE SET opted_out_at = coalesce(contacts.opted_out_at, now())
        )
        SELECT m.id, m.centre_id, 'sent'::text, m.phone, m.segments, m.route, m.outcome_error
          FROM m WHERE m.with_dlr
        UNION ALL
        SELECT m.id, m.centre_id, m.status, m.phone, m.segments, m.route, m.error FROM m
        UNION ALL
        SELECT l.id, l.centre_id, l.status, l.phone, l.segments, l.route, l.error FROM late l;
END;
$$;

-- gw_dlr as in 001, except for its plan. Its join of the batch to messages, filtered on status,
-- could be planned as a walk over the whole primary key of messages under a nested loop over
-- the batch: when the plan was made while messages was small, or from status statistics taken
-- while most messages were still queued (few 'sent' rows promised). plpgsql keeps a plan until
-- the next ANALYZE, so whole runs suffered (seen: 1.4 s for a batch of 1,251 reports at 40,000
-- messages; delivery rate halved). Now: the plan is made again at each call, from the table's
-- current size (one planning per batch, a few microseconds per report), and coalesce(status,
-- '') has no statistics, so the filter gets the planner's default selectivity: the lookup by id
-- from each batch row wins once the table has a few thousand rows.
CREATE OR REPLACE FUNCTION gw_dlr(batch json)
RETURNS TABLE (id bigint, centre_id bigint, status text, phone text, segments int, route text,
               error text)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
SET plan_cache_mode = force_custom_plan
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
               AND coalesce(msg.status, '') IN ('sent', 'delivered', 'undelivered')
            RETURNING msg.id, msg.centre_id, msg.status, msg.route, msg.phone, msg.segments,
                      msg.error
        ), ev AS (
            INSERT INTO message_events (message_id, centre_id, status, route, detail)
            SELECT m.id, m.centre_id, m.status, m.route, i.detail FROM m JOIN input i ON i.id = m.id
        )
        SELECT m.id, m.centre_id, m.status, m.phone, m.segments, m.route, m.error FROM m;
END;
$$;

-- The API's view of one message, as in 001, except for a message in flight: 'sending' and its
-- claim counted (see the top of this file).
CREATE OR REPLACE FUNCTION gw_message_json(m messages, with_history boolean)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_strip_nulls(json_build_object(
               'id', m.id,
               'direction', m.direction,
               CASE WHEN m.direction = 'out' THEN 'to' ELSE 'from' END, m.phone,
               'text', m.body,
               'status', CASE WHEN m.status = 'queued' AND q.lease_token IS NOT NULL
                              THEN 'sending' ELSE m.status END,
               'route', m.route,
               'segments', m.segments,
               'encoding', m.encoding,
               'idempotency_key', m.idempotency_key,
               'send_at', m.send_at,
               'attempt_count', greatest(m.attempts, q.attempts),
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
      FROM (SELECT 1) one
      LEFT JOIN outbox_queue q ON q.message_id = m.id
$$;

-- As in 007, except that the new queue row starts from the message's attempt count.
CREATE OR REPLACE FUNCTION gw_retry_failed(p_since timestamptz, p_centre bigint, p_dry_run boolean)
RETURNS TABLE (retried bigint, opted_out bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF p_dry_run THEN
        RETURN QUERY
        SELECT count(*) FILTER (WHERE NOT c.opted), count(*) FILTER (WHERE c.opted)
          FROM (SELECT EXISTS (SELECT 1 FROM contacts ct
                                WHERE ct.centre_id = m.centre_id AND ct.phone = m.phone
                                  AND ct.opted_out_at IS NOT NULL) AS opted
                  FROM messages m
                 WHERE m.direction = 'out' AND m.status IN ('failed', 'undelivered')
                   AND m.updated_at >= p_since AND m.route IS NOT NULL
                   AND (p_centre IS NULL OR m.centre_id = p_centre)) c;
        RETURN;
    END IF;
    RETURN QUERY
    WITH cand AS MATERIALIZED (
        SELECT m.id,
               EXISTS (SELECT 1 FROM contacts ct
                        WHERE ct.centre_id = m.centre_id AND ct.phone = m.phone
                          AND ct.opted_out_at IS NOT NULL) AS opted
          FROM messages m
         WHERE m.direction = 'out' AND m.status IN ('failed', 'undelivered')
           AND m.updated_at >= p_since AND m.route IS NOT NULL
           AND (p_centre IS NULL OR m.centre_id = p_centre)
    ), m AS (
        UPDATE messages msg SET status = 'queued', updated_at = now()
          FROM cand
         WHERE msg.id = cand.id AND NOT cand.opted AND msg.status IN ('failed', 'undelivered')
        RETURNING msg.id, msg.centre_id, msg.route, msg.attempts
    ), q AS (
        INSERT INTO outbox_queue (message_id, centre_id, route, due_at, attempts)
        SELECT m.id, m.centre_id, m.route, now(), m.attempts FROM m
        ON CONFLICT (message_id) DO NOTHING
    ), ev AS (
        INSERT INTO message_events (message_id, centre_id, status, route, detail)
        SELECT m.id, m.centre_id, 'queued', m.route, 'retried by operator' FROM m
    )
    SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM cand WHERE cand.opted);
END;
$$;
