-- Accounts. Emails are stored normalised (lowercase) and unique; the password is an argon2id PHC string.
CREATE TABLE users (
    id            UUID        NOT NULL PRIMARY KEY,
    -- Insertion order: what lists are sorted by (stable across pages).
    seq           BIGINT      GENERATED ALWAYS AS IDENTITY,
    email         TEXT        NOT NULL CHECK (email = lower(email)),
    password_hash TEXT        NOT NULL,
    display_name  TEXT,
    role          TEXT        NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE UNIQUE INDEX users_seq_idx ON users (seq);
CREATE INDEX users_role_idx ON users (role);
