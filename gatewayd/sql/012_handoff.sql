-- 012 — hand-off (issue 2): the enqueue that stores a message may also claim it for this node.
--
-- A message accepted by the API was stored by gw_enqueue, then found again by the route's next
-- gw_claim: a second statement that updated its queue row (lease, claim count) and read the
-- message back. When the route has room right now, gatewayd now asks gw_enqueue to do that
-- claim in the same transaction: the queue row is inserted already leased to this node
-- (lease_node, lease_token, attempts = 1, claimed_at, due_at = end of the lease), the 'sending'
-- event is written with it, and the lease token comes back with the id. What a claim
-- guarantees holds: the lease is this node's, a crash leaves a row whose lease expires and is
-- claimed again, an outcome counts only under its token; the opt-out check is the one
-- gw_enqueue makes before inserting.
--
-- p_handoff is {"route": limit, …}: for each route, how many of this batch's due messages
-- this node can send at once (gatewayd offers a route only when its last claim was not full,
-- see gw_outbox.c "hand-off"). A route whose queue holds due rows is not handed off to, so
-- that new messages never overtake them. Other messages are queued as before.
--
-- The two-argument gw_enqueue of 002 stays for a node of the previous release, as a call of
-- this one without an offer (one body to maintain).

CREATE FUNCTION gw_enqueue(batch json, p_default_route text, p_node text, p_lease_s int,
                           p_handoff json)
RETURNS TABLE (i int, id bigint, created boolean, status text, segments int, encoding text,
               route text, lease_token bigint)
LANGUAGE plpgsql
-- These functions touch a batch of rows by key. The planner, estimating json_to_recordset at
-- 100 rows and seeing a young table, otherwise picks sequential scans of messages (under
-- hash joins), which cost a whole-table scan per batch as the table grows.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    tok bigint;
BEGIN
    IF p_handoff IS NOT NULL AND p_handoff::text NOT IN ('{}', 'null') THEN
        tok := nextval('outbox_lease_seq');
    END IF;

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
        ), offer AS MATERIALIZED (
            -- the offered routes with nothing due in their queue: due rows there (retries,
            -- messages whose send_at has come, leases that expired, other nodes' messages) go
            -- first, through claims; this statement's own rows are not visible here
            SELECT o.key AS route, o.value::int AS lim
              FROM json_each_text(CASE WHEN tok IS NULL THEN '{}'::json ELSE p_handoff END) o
             WHERE NOT EXISTS (SELECT 1 FROM outbox_queue oq
                                WHERE oq.route = o.key AND oq.due_at <= now())
        ), hand AS MATERIALIZED (
            -- the due messages of those routes, up to each route's limit, oldest first
            SELECT h.id FROM (
                SELECT ins.id, row_number() OVER (PARTITION BY ins.route ORDER BY ins.id) AS k,
                       offer.lim
                  FROM ins JOIN offer ON offer.route = ins.route
                 WHERE ins.send_at <= now()) h
             WHERE h.k <= h.lim
        ), q AS (
            INSERT INTO outbox_queue (message_id, centre_id, route, due_at, lease_node,
                                      lease_token, attempts, claimed_at)
            SELECT ins.id, ins.centre_id, ins.route,
                   CASE WHEN hand.id IS NULL THEN ins.send_at
                        ELSE now() + make_interval(secs => p_lease_s) END,
                   CASE WHEN hand.id IS NULL THEN NULL ELSE p_node END,
                   CASE WHEN hand.id IS NULL THEN NULL ELSE tok END,
                   CASE WHEN hand.id IS NULL THEN 0 ELSE 1 END,
                   CASE WHEN hand.id IS NULL THEN NULL ELSE now() END
              FROM ins LEFT JOIN hand ON hand.id = ins.id
        ), ev AS (
            INSERT INTO message_events (message_id, centre_id, status, route)
            SELECT ins.id, ins.centre_id, 'sending', ins.route
              FROM ins JOIN hand ON hand.id = ins.id
             ORDER BY ins.id
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
               coalesce(old.route, input.route),
               CASE WHEN hand.id IS NOT NULL THEN tok END
          FROM input
          LEFT JOIN ins ON ins.id = input.new_id
          LEFT JOIN hand ON hand.id = ins.id
          LEFT JOIN messages old ON ins.id IS NULL AND input.idem IS NOT NULL
                AND old.centre_id = input.centre_id AND old.idempotency_key = input.idem
         ORDER BY input.i;
END;
$$;

CREATE OR REPLACE FUNCTION gw_enqueue(batch json, p_default_route text)
RETURNS TABLE (i int, id bigint, created boolean, status text, segments int, encoding text,
               route text)
LANGUAGE sql AS $$
    SELECT e.i, e.id, e.created, e.status, e.segments, e.encoding, e.route
      FROM gw_enqueue(batch, p_default_route, NULL, 0, NULL) e;
$$;
