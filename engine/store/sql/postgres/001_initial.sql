-- The PostgreSQL layout of the event log and its projections: the same tables, columns and
-- meaning as the SQLite one (engine/store/sql/001_initial.sql). Ids and timestamps are compared
-- byte by byte (COLLATE "C"), as SQLite does, so both backends order runs identically.
CREATE TABLE events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id       TEXT COLLATE "C" NOT NULL,
    stream_id TEXT COLLATE "C" NOT NULL,
    seq      INTEGER NOT NULL,
    type     TEXT NOT NULL,
    occurred TEXT COLLATE "C" NOT NULL,
    body     TEXT NOT NULL,
    UNIQUE (stream_id, seq)
);

CREATE TABLE projection_tracking (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO projection_tracking (name, position) VALUES ('runs', 0);

CREATE TABLE flow_runs (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    flow_name          TEXT NOT NULL,
    name               TEXT NOT NULL,
    flow_version       TEXT,
    deployment         TEXT,
    parent_run_id      TEXT COLLATE "C",
    parent_task_run_id TEXT COLLATE "C",
    parameters         TEXT NOT NULL,
    tags               TEXT NOT NULL,
    state_type         TEXT NOT NULL,
    state_name         TEXT NOT NULL,
    state_message      TEXT,
    state_timestamp    TEXT COLLATE "C" NOT NULL,
    created            TEXT COLLATE "C" NOT NULL,
    started            TEXT COLLATE "C",
    ended              TEXT COLLATE "C",
    run_count          INTEGER NOT NULL,
    result             TEXT
);
CREATE INDEX flow_runs_by_created ON flow_runs (created);
CREATE INDEX flow_runs_by_state ON flow_runs (state_type, created);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow_name, created);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_run_id);

CREATE TABLE task_runs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    flow_run_id     TEXT COLLATE "C" NOT NULL,
    task_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    tags            TEXT NOT NULL,
    map_index       INTEGER,
    cache_key       TEXT,
    upstream        TEXT NOT NULL,
    state_type      TEXT NOT NULL,
    state_name      TEXT NOT NULL,
    state_message   TEXT,
    state_timestamp TEXT COLLATE "C" NOT NULL,
    created         TEXT COLLATE "C" NOT NULL,
    started         TEXT COLLATE "C",
    ended           TEXT COLLATE "C",
    run_count       INTEGER NOT NULL,
    result          TEXT
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id, created);

CREATE TABLE logs (
    run_id      TEXT COLLATE "C" NOT NULL,
    seq         INTEGER NOT NULL,
    task_run_id TEXT COLLATE "C",
    timestamp   TEXT COLLATE "C" NOT NULL,
    level       INTEGER NOT NULL,
    logger      TEXT NOT NULL,
    message     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
