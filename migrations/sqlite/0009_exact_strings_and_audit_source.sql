-- (MariaDB's columns get an exact-compare collation in this migration; text here already compares
-- every character.) Refused unauthenticated calls are counted per route, reason and source
-- address: the source.
ALTER TABLE audit_events ADD COLUMN source TEXT NULL;
-- The retention job deletes by age.
CREATE INDEX audit_events_at ON audit_events (at);
