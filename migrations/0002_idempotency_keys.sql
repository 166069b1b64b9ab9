-- Idempotency keys, scoped to a run and written in the same transaction as the events they
-- produced, so a producer retrying after a crash gets the original ids back.
CREATE TABLE idempotency_keys (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,  -- hash of the request's events: the same key with other events is a conflict
    ids         TEXT NOT NULL,  -- JSON list of the ids the request produced
    created_at  REAL NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
