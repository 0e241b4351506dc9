-- A deployment's schedules (JSON list) and its catch-up and overlap policies.
ALTER TABLE deployments ADD COLUMN schedules TEXT NOT NULL DEFAULT '[]';
ALTER TABLE deployments ADD COLUMN catchup TEXT NOT NULL DEFAULT 'latest';
ALTER TABLE deployments ADD COLUMN overlap TEXT NOT NULL DEFAULT 'allow';
