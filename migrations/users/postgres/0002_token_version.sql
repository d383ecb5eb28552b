-- Bumped by every password or role change: tokens carry the version they were issued at (`ver`), and
-- one older than the account's is revoked.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
