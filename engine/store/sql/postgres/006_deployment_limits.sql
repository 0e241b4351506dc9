-- A deployment's limit on runs at once, and what a run over it does (enqueue or cancel).
ALTER TABLE deployments ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE deployments ADD COLUMN collision TEXT NOT NULL DEFAULT 'enqueue';
