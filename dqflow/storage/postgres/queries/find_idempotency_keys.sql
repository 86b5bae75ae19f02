-- Ids of existing jobs by idempotency key (a key inserted by a transaction
-- that committed while add_jobs ran is visible to this later statement).
SELECT idempotency_key, id FROM dqflow_jobs WHERE idempotency_key = ANY(%(keys)s::text[])
