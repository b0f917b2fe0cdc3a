-- 007 — operators: re-queueing failed messages (gatewayctl retry). The live event stream
-- (GET /ops/events, gatewayd/gw_events.c) needs nothing new: it reads message_events by id.

-- Re-queue the outgoing messages that ended failed or undelivered at p_since or later (their
-- last change, updated_at), of one centre or of all (p_centre NULL): each goes back to
-- 'queued' with an outbox_queue row due now on its route, and a message_events row 'queued'
-- "retried by operator". Numbers that opted out since (or before) are left alone and counted.
-- The attempt count is kept: a message that used up its attempts gets one more try. One
-- statement, one transaction; a message another run re-queued meanwhile is not taken twice
-- (the UPDATE re-checks the status). p_dry_run only counts.
-- Scans the messages table (no index on status): an occasional operator command.
CREATE FUNCTION gw_retry_failed(p_since timestamptz, p_centre bigint, p_dry_run boolean)
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
        RETURNING msg.id, msg.centre_id, msg.route
    ), q AS (
        INSERT INTO outbox_queue (message_id, centre_id, route, due_at)
        SELECT m.id, m.centre_id, m.route, now() FROM m
        ON CONFLICT (message_id) DO NOTHING
    ), ev AS (
        INSERT INTO message_events (message_id, centre_id, status, route, detail)
        SELECT m.id, m.centre_id, 'queued', m.route, 'retried by operator' FROM m
    )
    SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM cand WHERE cand.opted);
END;
$$;
