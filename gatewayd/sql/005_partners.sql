-- 005 — partner webhooks (issue 5; tables `partners` and `partner_requests` are in 004).
--
-- gw_partner_request performs one signed partner request (an alert, a job offer published or
-- withdrawn) and records its answer under the request's Idempotency-Key in the same
-- transaction: a crash cannot leave an alert without the record that makes a retry replay it,
-- nor a record without its alert. Only successful answers are recorded: a refused request
-- (unknown topic, too large a fan-out, …) may be corrected and sent again with the same key.
--
-- p_op: 'alert' {"topic","text","expires_at"?,"urgent"?}, 'job' {"external_id","title","text",
-- "category","contact","expires_at"}, 'withdraw' {"external_id"}. The daemon validated the
-- fields and the partner's permissions.
-- p_idem / p_hash: the Idempotency-Key (NULL: none) and the SHA-256 (hex) of the request
-- (method, path and body).
-- Returns {"status": 2xx, "body": "<the JSON answer, as text>", "replay": bool} or
-- {"error": "revoked"|"idempotency_key_reused"|"unknown_topic"|"too_large"|"expired"|
--  "unknown_category"|"not_found", …details}.
CREATE FUNCTION gw_partner_request(p_partner bigint, p_idem text, p_hash text, p_op text,
                                   p_args jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    pr partners;
    prev partner_requests;
    r jsonb;
    st int;
    resp jsonb;
    src text;
BEGIN
    -- the daemon caches partners for a few seconds: a revoked one never gets through here
    SELECT * INTO pr FROM partners WHERE id = p_partner AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'revoked');
    END IF;
    IF p_idem IS NOT NULL THEN
        -- two requests with one key: the second waits here for the first to commit, then
        -- (a new snapshot per statement) sees its record
        PERFORM pg_advisory_xact_lock(hashtext('passerelle:partner_request'),
                                      hashtext(p_partner::text || ':' || p_idem));
        SELECT * INTO prev FROM partner_requests
         WHERE partner_id = p_partner AND idem_key = p_idem;
        IF FOUND THEN
            IF prev.body_hash <> p_hash THEN
                RETURN jsonb_build_object('error', 'idempotency_key_reused');
            END IF;
            RETURN jsonb_build_object('status', prev.status, 'body', prev.response,
                                      'replay', true);
        END IF;
    END IF;
    src := 'partner:' || pr.id;
    IF p_op = 'alert' THEN
        r := gw_alert_create(pr.centre_id, p_args->>'topic', p_args->>'text',
                             (p_args->>'expires_at')::timestamptz,
                             coalesce((p_args->>'urgent')::boolean, false),
                             'partner:' || pr.name, false);
        IF r ? 'error' THEN
            RETURN r;
        END IF;
        st := 202;
        resp := jsonb_build_object('id', r->'id', 'recipients', r->'recipients');
    ELSIF p_op = 'job' THEN
        PERFORM 1 FROM topics
          WHERE centre_id = pr.centre_id AND kind = 'job' AND name = p_args->>'category';
        IF NOT FOUND THEN
            RETURN jsonb_build_object('error', 'unknown_category');
        END IF;
        r := gw_job_publish(pr.centre_id, src, p_args->>'external_id', p_args->>'title',
                            p_args->>'text', p_args->>'category', p_args->>'contact',
                            (p_args->>'expires_at')::timestamptz);
        st := CASE WHEN (r->>'created')::boolean THEN 201 ELSE 200 END;
        resp := jsonb_build_object('id', r->'id', 'number', r->'number', 'alerted', r->'alerted');
    ELSIF p_op = 'withdraw' THEN
        -- an offer already withdrawn is gone: 404, like one that never existed (FOR UPDATE:
        -- of two concurrent withdrawals, the second sees the first's)
        PERFORM 1 FROM jobs
          WHERE centre_id = pr.centre_id AND source = src AND external_id = p_args->>'external_id'
            AND withdrawn_at IS NULL
          FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('error', 'not_found');
        END IF;
        r := gw_job_withdraw(pr.centre_id, src, p_args->>'external_id');
        IF r ? 'error' THEN
            RETURN r;
        END IF;
        st := 200;
        resp := jsonb_build_object('id', r->'id', 'external_id', p_args->>'external_id',
                                   'withdrawn', true);
    ELSE
        RAISE EXCEPTION 'gw_partner_request: unknown operation %', p_op;
    END IF;
    IF p_idem IS NOT NULL THEN
        INSERT INTO partner_requests (partner_id, idem_key, body_hash, status, response)
        VALUES (p_partner, p_idem, p_hash, st, resp::text);
    END IF;
    RETURN jsonb_build_object('status', st, 'body', resp::text, 'replay', false);
END;
$$;
