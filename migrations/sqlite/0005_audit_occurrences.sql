-- Successful access-token reads are recorded once per caller and token per few seconds, with how
-- many there were and when the last one was (the hot path would otherwise write a row per call).
ALTER TABLE audit_events ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_events ADD COLUMN last_at BIGINT NULL;
