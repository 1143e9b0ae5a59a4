-- A number that changes with every write of a token's contents (new rows start at a random one,
-- so a token deleted and saved again under its id never repeats a number). The access cache
-- re-reads only this column for tokens in steady use, and the whole row only when it changed.
ALTER TABLE oauth_tokens ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
