-- Exact string comparison. utf8mb4_bin is a PAD SPACE collation: it ignores trailing spaces, so
-- `user_name = 'pad@x '` matched the token of 'pad@x' and the unique index took the two for one
-- user (PostgreSQL and SQLite keep them apart). MariaDB's utf8mb4_nopad_bin compares every byte.
-- (The MySQL counterpart is utf8mb4_0900_bin; the /*M! … */ lines run on MariaDB only.)
/*M!100202 ALTER TABLE oauth_tokens
    MODIFY id        VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY tenant    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL DEFAULT '',
    MODIFY provider  VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY user_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
    MODIFY client_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
    MODIFY status    VARCHAR(16)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL */;
/*M!100202 ALTER TABLE connect_sessions
    MODIFY id        VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY tenant    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL DEFAULT '',
    MODIFY caller    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY provider  VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY user_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL */;
/*M!100202 ALTER TABLE audit_events
    MODIFY id        VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY caller    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
    MODIFY tenant    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL DEFAULT '',
    MODIFY token_id  VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
    MODIFY action    VARCHAR(32)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL */;
-- Refused unauthenticated calls are counted per route, reason and source address: the source.
ALTER TABLE audit_events ADD COLUMN source VARCHAR(64) NULL;
-- The retention job deletes by age.
CREATE INDEX audit_events_at ON audit_events (at);
