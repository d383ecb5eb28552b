-- Orders and their lines: the checkout saga's state. Times are Unix epoch milliseconds (BIGINT).
-- `status`/`step` say how far the saga got; every step is committed before the next begins.
CREATE TABLE orders (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              TEXT   NOT NULL PRIMARY KEY,
    customer_id     TEXT   NOT NULL,
    -- The Idempotency-Key of the placing request while the order answers for it (cleared when the
    -- order failed in a way worth retrying, so a retry with that key places a new order).
    idempotency_key TEXT,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'compensating', 'confirmed', 'failed', 'cancelled')),
    step            TEXT   NOT NULL CHECK (step IN ('account', 'pricing', 'reserving', 'charging', 'committing', 'done')),
    failure_reason  TEXT,
    currency        TEXT,
    total_amount    BIGINT,
    reservation_id  TEXT,
    payment_id      TEXT,
    refund_id       TEXT,
    -- Whoever drives the saga holds it until then; the recovery worker takes orders past it.
    lease_until     BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT orders_idempotency_key UNIQUE (customer_id, idempotency_key)
);

CREATE INDEX orders_customer_idx ON orders (customer_id, seq);
CREATE INDEX orders_open_idx ON orders (lease_until) WHERE status IN ('pending', 'compensating');

CREATE TABLE order_lines (
    order_id    TEXT   NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no     BIGINT NOT NULL,
    product_id  TEXT   NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    -- The price snapshot, set by the pricing step.
    sku         TEXT,
    name        TEXT,
    unit_amount BIGINT,
    line_amount BIGINT,
    PRIMARY KEY (order_id, line_no)
);
