-- Stock per SKU and reservations against it.
-- Times are Unix epoch milliseconds (BIGINT), as on SQLite: one row mapping for both backends.
CREATE TABLE stock (
    sku        TEXT   NOT NULL PRIMARY KEY,
    on_hand    BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved   BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at BIGINT NOT NULL,
    -- Never more reserved than on hand: the last line of defence against overselling.
    CONSTRAINT stock_reserved_le_on_hand CHECK (reserved <= on_hand)
);

CREATE TABLE reservations (
    id         UUID   NOT NULL PRIMARY KEY,
    order_id   TEXT   NOT NULL,
    status     TEXT   NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'expired')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT reservations_order_id_key UNIQUE (order_id)
);

-- The expiry sweep: pending reservations by deadline.
CREATE INDEX reservations_pending_idx ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    reservation_id UUID   NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    line_no        BIGINT NOT NULL,
    sku            TEXT   NOT NULL REFERENCES stock (sku),
    quantity       BIGINT NOT NULL CHECK (quantity >= 1),
    PRIMARY KEY (reservation_id, line_no),
    CONSTRAINT reservation_lines_sku_key UNIQUE (reservation_id, sku)
);
