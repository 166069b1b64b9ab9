-- What the Durable Streams protocol needs of the log: the same tables and meanings as SQLite's
-- migration 0004_streams.sql (read it for each column), in PostgreSQL's types.

-- The exact bytes of an event of a byte stream (its `data` is then 'null'); NULL for JSON events.
ALTER TABLE events ADD COLUMN body bytea;

-- A fork's parent, and the mark of a run deleted while forks still read it.
ALTER TABLE runs ADD COLUMN parent_id text;
ALTER TABLE runs ADD COLUMN deleted_at double precision;
CREATE INDEX runs_by_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;

-- Idempotent producers: the newest (epoch, seq) accepted from each producer of a run.
CREATE TABLE producers (
    run_id      text             NOT NULL,
    producer_id text             NOT NULL,
    epoch       bigint           NOT NULL,
    seq         bigint           NOT NULL,
    closed      boolean          NOT NULL DEFAULT false,  -- the request (epoch, seq) also ended the run
    updated_at  double precision NOT NULL,
    PRIMARY KEY (run_id, producer_id)
);

-- The newest writer sequence (Stream-Seq) of a run (compared by the planner, not in SQL).
CREATE TABLE writer_seqs (
    run_id text NOT NULL PRIMARY KEY,
    seq    text NOT NULL
);
