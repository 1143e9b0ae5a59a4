-- The audit trail: who did what to which token, when, and how it ended. Never holds a secret.
CREATE TABLE audit_events (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    at          BIGINT       NOT NULL,
    caller      VARCHAR(255) NOT NULL,
    tenant      VARCHAR(128) NOT NULL DEFAULT '',
    token_id    VARCHAR(64)  NULL,
    action      VARCHAR(32)  NOT NULL,
    outcome     VARCHAR(32)  NOT NULL,
    status      BIGINT       NOT NULL,
    detail      VARCHAR(255) NULL,
    request_id  VARCHAR(64)  NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX audit_events_token ON audit_events (token_id, id);
CREATE INDEX audit_events_tenant ON audit_events (tenant, id);
