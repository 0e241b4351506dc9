-- The event log: the truth. position is the global order; (stream_id, seq) the order within a
-- stream (a flow run, or another recorded thing) and the event's identity: appending an event
-- again finds its id at that key (no index on id: a third B-tree per event would cost a quarter
-- of the insert).
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    id       TEXT    NOT NULL,
    stream_id TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    occurred TEXT    NOT NULL,
    body     TEXT    NOT NULL,
    UNIQUE (stream_id, seq)
);

-- How far each projection has applied the log; updated in the same transaction as the projection.
CREATE TABLE projection_tracking (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
INSERT INTO projection_tracking (name, position) VALUES ('runs', 0);

CREATE TABLE flow_runs (
    id                 TEXT PRIMARY KEY,
    flow_name          TEXT NOT NULL,
    name               TEXT NOT NULL,
    flow_version       TEXT,
    deployment         TEXT,
    parent_run_id      TEXT,
    parent_task_run_id TEXT,
    parameters         TEXT NOT NULL,
    tags               TEXT NOT NULL,
    state_type         TEXT NOT NULL,
    state_name         TEXT NOT NULL,
    state_message      TEXT,
    state_timestamp    TEXT NOT NULL,
    created            TEXT NOT NULL,
    started            TEXT,
    ended              TEXT,
    run_count          INTEGER NOT NULL,
    result             TEXT
);
CREATE INDEX flow_runs_by_created ON flow_runs (created);
CREATE INDEX flow_runs_by_state ON flow_runs (state_type, created);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow_name, created);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_run_id);

CREATE TABLE task_runs (
    id              TEXT PRIMARY KEY,
    flow_run_id     TEXT NOT NULL,
    task_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    tags            TEXT NOT NULL,
    map_index       INTEGER,
    cache_key       TEXT,
    upstream        TEXT NOT NULL,
    state_type      TEXT NOT NULL,
    state_name      TEXT NOT NULL,
    state_message   TEXT,
    state_timestamp TEXT NOT NULL,
    created         TEXT NOT NULL,
    started         TEXT,
    ended           TEXT,
    run_count       INTEGER NOT NULL,
    result          TEXT
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id, created);

CREATE TABLE logs (
    run_id      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    task_run_id TEXT,
    timestamp   TEXT    NOT NULL,
    level       INTEGER NOT NULL,
    logger      TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
