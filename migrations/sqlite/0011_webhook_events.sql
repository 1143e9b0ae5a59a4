-- The webhook outbox: one row per event and endpoint, written in the same transaction as the
-- change it reports, and delivered at least once by whichever broker claims it first (a lease:
-- lease_until / lease_owner). Per endpoint, a token's events go out in seq order: an event waits
-- while an earlier one of the same token is pending. state: pending, delivered or failed (gave up
-- after webhooks.max_attempts). Finished rows are deleted after webhooks.keep_days.
CREATE TABLE webhook_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        VARCHAR(64) NOT NULL,
    endpoint        VARCHAR(100) NOT NULL,
    event_type      VARCHAR(64) NOT NULL,
    token_id        TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    state           VARCHAR(16) NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL,
    lease_owner     VARCHAR(64) NULL,
    last_status     BIGINT NULL,
    last_error      VARCHAR(255) NULL,
    finished_at     BIGINT NULL
);
CREATE INDEX webhook_events_due ON webhook_events (state, next_attempt_at);
CREATE INDEX webhook_events_order ON webhook_events (endpoint, token_id, state, seq);
CREATE INDEX webhook_events_finished ON webhook_events (finished_at);
