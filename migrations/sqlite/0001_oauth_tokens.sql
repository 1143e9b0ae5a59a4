-- The token table. Secrets are AES-256-GCM ciphertexts (key id per row); *_hash columns hold
-- HMAC-SHA256 lookup hashes so tokens can be found by value without storing the value.
-- Times are ms since the Unix epoch. tenant '' means "no tenant" (NULLs never collide in unique indexes).
CREATE TABLE oauth_tokens (
    id                 VARCHAR(64)   NOT NULL PRIMARY KEY,
    tenant             VARCHAR(128)  NOT NULL DEFAULT '',
    provider           VARCHAR(64)   NOT NULL,
    user_name          VARCHAR(255)  NULL,
    client_id          VARCHAR(255)  NULL,
    client_secret      BLOB          NULL,
    refresh_token      BLOB          NULL,
    refresh_token_hash CHAR(64)      NULL,
    access_token       BLOB          NULL,
    access_token_hash  CHAR(64)      NULL,
    grant_token        BLOB          NULL,
    grant_token_hash   CHAR(64)      NULL,
    expiry_time        BIGINT        NULL,
    redirect_url       VARCHAR(2048) NULL,
    api_domain         VARCHAR(255)  NULL,
    status             VARCHAR(16)   NOT NULL,
    key_id             VARCHAR(64)   NOT NULL,
    created_at         BIGINT        NOT NULL,
    updated_at         BIGINT        NOT NULL,
    lease_owner        VARCHAR(64)   NULL,
    lease_until        BIGINT        NOT NULL DEFAULT 0,
    last_used_at       BIGINT        NOT NULL DEFAULT 0,
    refresh_window_start BIGINT      NOT NULL DEFAULT 0,
    refresh_count      BIGINT        NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX oauth_tokens_user ON oauth_tokens (tenant, provider, user_name);
CREATE INDEX oauth_tokens_user_name ON oauth_tokens (tenant, user_name);
CREATE INDEX oauth_tokens_access ON oauth_tokens (tenant, access_token_hash);
CREATE INDEX oauth_tokens_refresh ON oauth_tokens (tenant, refresh_token_hash);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (tenant, grant_token_hash);
