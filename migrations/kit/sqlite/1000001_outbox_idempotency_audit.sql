-- The kit's tables, in every service's database (versions from 1000001 on, apart from the
-- service's own). Times are Unix epoch milliseconds, as in the services' tables.

-- Transactional outbox: written in the transaction of the change it announces, delivered by the
-- relay (kit::outbox) at least once to every subscriber of its type.
CREATE TABLE kit_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    type            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    traceparent     TEXT,
    created_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claimed_until   BIGINT  NOT NULL DEFAULT 0,
    delivered_at    BIGINT,
    dead_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX kit_outbox_due_idx ON kit_outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Which subscribers already have an event, so a retry sends it only to those that do not.
CREATE TABLE kit_outbox_deliveries (
    event_id     TEXT   NOT NULL,
    subscriber   TEXT   NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, subscriber)
);

-- Events a consumer has handled, by id: a redelivery takes effect once.
CREATE TABLE kit_inbox (
    consumer    TEXT   NOT NULL,
    event_id    TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    type        TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Idempotency-Key records: in flight (status NULL, locked_until) or completed (the response).
CREATE TABLE kit_idempotency (
    scope        TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    fingerprint  TEXT   NOT NULL,
    status       BIGINT,
    headers      TEXT,
    body         BLOB,
    created_at   BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX kit_idempotency_expiry_idx ON kit_idempotency (expires_at);

-- Append-only audit trail of state changes.
CREATE TABLE kit_audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    entity    TEXT   NOT NULL,
    entity_id TEXT   NOT NULL,
    before    TEXT,
    after     TEXT,
    trace_id  TEXT,
    at        BIGINT NOT NULL
);
CREATE INDEX kit_audit_entity_idx ON kit_audit (entity, entity_id);
CREATE TRIGGER kit_audit_no_update BEFORE UPDATE ON kit_audit
BEGIN
    SELECT RAISE(ABORT, 'kit_audit is append-only');
END;
CREATE TRIGGER kit_audit_no_delete BEFORE DELETE ON kit_audit
BEGIN
    SELECT RAISE(ABORT, 'kit_audit is append-only');
END;
