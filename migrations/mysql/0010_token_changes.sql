-- The change feed replicas poll: one row per write of a token (token_id NULL: every token of a
-- delete_tokens), appended after the write commits. Each broker drops its cached copies of the
-- tokens named here, so a write on one replica shows on the others within the poll interval.
-- Rows older than an hour are deleted.
CREATE TABLE token_changes (
    seq      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    at       BIGINT NOT NULL
) ENGINE=InnoDB;
CREATE INDEX token_changes_at ON token_changes (at);
