-- Runs and their events. Applied in one transaction; PRAGMA user_version tracks the schema.

-- AUTOINCREMENT: an id is never handed out twice, even after the newest rows were trimmed, so a
-- client cursor can never point at a different event than the one it saw.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    data       TEXT    NOT NULL,  -- compact JSON
    created_at REAL    NOT NULL   -- unix seconds
);

-- Resume and tail queries are `WHERE run_id = ? AND id > ? ORDER BY id LIMIT n`: a range scan
-- of this index whose cost does not depend on the size of the log.
CREATE INDEX events_by_run ON events (run_id, id);

-- One row per run, kept up to date in the same transaction as the events it counts.
CREATE TABLE runs (
    run_id          TEXT    PRIMARY KEY,
    created_at      REAL    NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}',
    event_count     INTEGER NOT NULL DEFAULT 0,  -- retained events, the end marker not counted
    total_bytes     INTEGER NOT NULL DEFAULT 0,  -- UTF-8 bytes of those events' data
    last_id         INTEGER NOT NULL DEFAULT 0,  -- newest event id, end marker included
    trimmed_through INTEGER NOT NULL DEFAULT 0,  -- retention removed every id at or below this
    end_id          INTEGER,                     -- id of the end marker row
    end_reason      TEXT,
    ended_at        REAL
) WITHOUT ROWID;

-- Cross-process change detection asks "which runs have events newer than id N?".
CREATE INDEX runs_by_last_id ON runs (last_id);
-- The retention janitor expires ended runs by age.
CREATE INDEX runs_by_ended_at ON runs (ended_at) WHERE ended_at IS NOT NULL;
