-- Runs per creation hour and current state type (what the dashboard draws), kept with the
-- flow runs so counting costs the same however many runs there are.
CREATE TABLE run_counts (
    hour       TEXT    NOT NULL,
    state_type TEXT    NOT NULL,
    runs       INTEGER NOT NULL,
    PRIMARY KEY (hour, state_type)
);
INSERT INTO run_counts (hour, state_type, runs)
SELECT substr(created, 1, 13), state_type, count(*) FROM flow_runs
GROUP BY substr(created, 1, 13), state_type;
-- Runs in a state named like Late or AwaitingRetry, newest first, without a scan.
CREATE INDEX flow_runs_by_state_name ON flow_runs (state_name, created);
