-- Who connected a token and what it may do: set by the broker from a login (the provider's
-- verified identity and the granted scopes, space-separated), never by callers.
ALTER TABLE oauth_tokens ADD COLUMN subject VARCHAR(255) NULL;
ALTER TABLE oauth_tokens ADD COLUMN email VARCHAR(320) NULL;
ALTER TABLE oauth_tokens ADD COLUMN display_name VARCHAR(255) NULL;
ALTER TABLE oauth_tokens ADD COLUMN scopes VARCHAR(2048) NULL;

-- Browser logins are connect sessions now: a service creates one, a person opens its link (which
-- binds the login to that browser), the provider sends the browser back with the state. Pending
-- logins of the old table are dropped (they lived ten minutes).
DROP TABLE oauth_states;
CREATE TABLE connect_sessions (
    id            VARCHAR(64)   NOT NULL PRIMARY KEY,
    -- HMAC lookup hashes: of the link's secret, of the OAuth state, of the browser's cookie.
    link_hash     CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state_hash    CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    browser_hash  CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- HMAC of the OpenID Connect nonce the id_token must carry.
    nonce_hash    CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    provider      VARCHAR(64)   NOT NULL,
    tenant        VARCHAR(128)  NOT NULL DEFAULT '',
    caller        VARCHAR(255)  NOT NULL,
    user_name     VARCHAR(255)  NULL,
    return_to     VARCHAR(2048) NULL,
    redirect_uri  VARCHAR(2048) NOT NULL,
    scopes        VARCHAR(2048) NULL,
    code_verifier BLOB NULL,
    key_id        VARCHAR(64)   NOT NULL,
    -- pending → opened → exchanging → connected | failed
    status        VARCHAR(16)   NOT NULL,
    token_id      VARCHAR(64)   NULL,
    error         VARCHAR(64)   NULL,
    created_at    BIGINT        NOT NULL,
    updated_at    BIGINT        NOT NULL,
    expires_at    BIGINT        NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX connect_sessions_link ON connect_sessions (link_hash);
CREATE UNIQUE INDEX connect_sessions_state ON connect_sessions (state_hash);
CREATE INDEX connect_sessions_expiry ON connect_sessions (expires_at);
