-- Pending browser logins: single-use state (stored as an HMAC lookup hash, never in the clear) with
-- the PKCE verifier encrypted like every other secret. Rows are deleted when used or expired.
CREATE TABLE oauth_states (
    state_hash    CHAR(64) CHARACTER SET ascii COLLATE ascii_bin      NOT NULL PRIMARY KEY,
    provider      VARCHAR(64)   NOT NULL,
    tenant        VARCHAR(128)  NOT NULL DEFAULT '',
    caller        VARCHAR(255)  NOT NULL,
    user_name     VARCHAR(255)  NULL,
    return_to     VARCHAR(2048) NULL,
    redirect_uri  VARCHAR(2048) NOT NULL,
    code_verifier BLOB          NULL,
    key_id        VARCHAR(64)   NOT NULL,
    created_at    BIGINT        NOT NULL,
    expires_at    BIGINT        NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);
CREATE INDEX oauth_tokens_refresh_due ON oauth_tokens (status, expiry_time);
