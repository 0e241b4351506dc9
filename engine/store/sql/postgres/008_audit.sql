-- The audit trail: every event that carries an actor (who caused it), newest first by time,
-- and by actor.
CREATE TABLE audit (
    event_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    occurred  TEXT COLLATE "C" NOT NULL,
    actor     TEXT COLLATE "C" NOT NULL,
    action    TEXT COLLATE "C" NOT NULL,
    subject   TEXT NOT NULL,
    stream_id TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_by_time ON audit (occurred);
CREATE INDEX audit_by_actor ON audit (actor, occurred);
CREATE INDEX audit_by_subject ON audit (subject, occurred);
