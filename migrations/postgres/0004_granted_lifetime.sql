-- How long the provider's last grant of the access token lasted, in ms, when the broker itself got
-- it (refresh, exchange, login). Lets callers' min_validity be capped for short-lived tokens.
ALTER TABLE oauth_tokens ADD COLUMN granted_lifetime_ms BIGINT NULL;
