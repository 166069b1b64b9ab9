-- The retention janitor forgets idempotency keys older than their TTL, oldest first, a bounded
-- number per transaction: without this index each pass would scan every key.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
