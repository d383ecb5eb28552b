-- Accounts. Emails are stored normalised (lowercase) and unique; the password is an argon2id PHC string.
-- Lists are ordered by the implicit rowid: insertion order, stable across pages.
CREATE TABLE users (
    id            BLOB NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL CHECK (email = lower(email)),
    password_hash TEXT NOT NULL,
    display_name  TEXT,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE INDEX users_role_idx ON users (role);
