-- Payments (one per charge attempt that reached an answer: captured or declined) and their refunds.
-- Money is integer minor units plus an ISO 4217 code; times are Unix epoch milliseconds (INTEGER).
CREATE TABLE payments (
    id             BLOB    NOT NULL PRIMARY KEY,
    order_id       TEXT    NOT NULL,
    customer_id    TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('captured', 'declined')),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3),
    -- The sum of this payment's refunds, kept in the refund's transaction.
    refunded       INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    decline_reason TEXT    NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- Never more refunded than captured, and nothing refunded of a declined payment: the last line
    -- of defence behind the refund's conditional UPDATE.
    CONSTRAINT payments_refunded_le_amount CHECK (refunded <= amount),
    CONSTRAINT payments_refunded_only_captured CHECK (status = 'captured' OR refunded = 0),
    CONSTRAINT payments_declined_has_reason CHECK ((status = 'declined') = (decline_reason IS NOT NULL))
);

CREATE INDEX payments_order_id_idx ON payments (order_id);

CREATE TABLE refunds (
    id         BLOB    NOT NULL PRIMARY KEY,
    payment_id BLOB    NOT NULL REFERENCES payments (id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT    NOT NULL CHECK (length(currency) = 3),
    created_at INTEGER NOT NULL
);

CREATE INDEX refunds_payment_id_idx ON refunds (payment_id);
