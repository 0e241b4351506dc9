-- A pruned run's audit lines are found by its stream, not by a scan of the whole trail.
CREATE INDEX audit_by_stream ON audit (stream_id);
