-- The change feed replicas poll: one row per write of a token (token_id NULL: every token of a
-- delete_tokens), appended after the write commits. Each broker drops its cached copies of the
-- tokens named here, so a write on one replica shows on the others within the poll interval.
-- Rows older than an hour are deleted.
CREATE TABLE token_changes (
    seq      BIGSERIAL PRIMARY KEY,
    token_id VARCHAR(64) NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX token_changes_at ON token_changes (at);
