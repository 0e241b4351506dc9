-- Runs of one deployment, newest first, without scanning the others (a rare deployment's page
-- would otherwise read the whole table).
CREATE INDEX flow_runs_by_deployment ON flow_runs (deployment, created);
-- The creation index also holds the state type, so the dashboard's count of recent runs by
-- state reads the index alone, not the rows.
DROP INDEX flow_runs_by_created;
CREATE INDEX flow_runs_by_created ON flow_runs (created, state_type);
