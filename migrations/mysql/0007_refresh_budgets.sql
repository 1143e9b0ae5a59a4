-- The refresh budget, counted per refresh credential (an HMAC lookup hash of client id + refresh
-- token) rather than per stored row: the same refresh token stored twice (two tenants, two
-- providers, a re-import) has one allowance at the provider, so it has one here too.
-- blocked_until: the provider itself said "too many requests"; no refresh before then.
CREATE TABLE refresh_budgets (
    credential_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    window_start    BIGINT   NOT NULL,
    used            BIGINT   NOT NULL,
    blocked_until   BIGINT   NOT NULL DEFAULT 0
) ENGINE=InnoDB;
CREATE INDEX refresh_budgets_window ON refresh_budgets (window_start);
