-- What the Durable Streams protocol (eventlog/http/durable_streams.py) needs of the log, kept
-- general: a stream is a run, its messages are the run's events.

-- The bytes of an event of a non-JSON stream, stored exactly as they were sent (its `data` is
-- then 'null'). NULL for every JSON event.
ALTER TABLE events ADD COLUMN body BLOB;

-- A fork: the run whose events up to its fork point this run's readers see before its own. A
-- run deleted while forks still read it is kept, marked deleted, until its last fork is gone.
ALTER TABLE runs ADD COLUMN parent_id TEXT;
ALTER TABLE runs ADD COLUMN deleted_at REAL;
CREATE INDEX runs_by_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;

-- When the run expires (unix seconds): the retention janitor deletes it then. A stream's TTL
-- moves it on as the stream is read and written, so every process sees the same window.
ALTER TABLE runs ADD COLUMN expires_at REAL;
CREATE INDEX runs_by_expiry ON runs (expires_at) WHERE expires_at IS NOT NULL;

-- Idempotent producers: the newest (epoch, seq) accepted from each producer of a run, written in
-- the transaction of the events it accepted, so a retry after a crash is recognised.
CREATE TABLE producers (
    run_id      TEXT    NOT NULL,
    producer_id TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    closed      INTEGER NOT NULL DEFAULT 0,  -- 1: the request (epoch, seq) also ended the run
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (run_id, producer_id)
) WITHOUT ROWID;

-- The newest writer sequence (the protocol's Stream-Seq) of a run: a later one must be greater.
CREATE TABLE writer_seqs (
    run_id TEXT NOT NULL PRIMARY KEY,
    seq    TEXT NOT NULL
) WITHOUT ROWID;
