-- The PostgreSQL schema: the same tables and meanings as SQLite's migrations 0001-0003 (read
-- those for each column), in PostgreSQL's types. Applied in one transaction under an advisory
-- lock; the table eventlog_schema (created by the migrator) records the version.

-- One sequence for every event id of the log, so ids stay unique per log (imports, dumps and
-- cursors rely on that). CACHE 1 (the default) is required: with a larger cache each session
-- would hand out ids from a range of its own, and ids taken later could be smaller. An id is
-- taken only while the appending transaction holds its run's row lock (see
-- eventlog/storage/postgres/transactions.py): that is what makes ids commit-ordered per run.
CREATE SEQUENCE event_ids AS bigint CACHE 1;

CREATE TABLE events (
    id         bigint           PRIMARY KEY,
    run_id     text             NOT NULL,
    event      text             NOT NULL,
    data       text             NOT NULL,  -- compact JSON, as committed
    created_at double precision NOT NULL   -- unix seconds
);
-- Resume and tail reads: WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT n.
CREATE INDEX events_by_run ON events (run_id, id);

CREATE TABLE runs (
    run_id          text             PRIMARY KEY,
    created_at      double precision NOT NULL,
    metadata        text             NOT NULL DEFAULT '{}',
    event_count     bigint           NOT NULL DEFAULT 0,
    total_bytes     bigint           NOT NULL DEFAULT 0,
    last_id         bigint           NOT NULL DEFAULT 0,
    trimmed_through bigint           NOT NULL DEFAULT 0,
    end_id          bigint,
    end_reason      text,
    ended_at        double precision
);
CREATE INDEX runs_by_ended_at ON runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX runs_by_created_at ON runs (created_at DESC, run_id);

CREATE TABLE idempotency_keys (
    run_id      text             NOT NULL,
    key         text             NOT NULL,
    fingerprint text             NOT NULL,
    ids         text             NOT NULL,  -- JSON list of the ids the request produced
    created_at  double precision NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
