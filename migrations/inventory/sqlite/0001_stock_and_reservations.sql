-- Stock per SKU and reservations against it.
-- Times are Unix epoch milliseconds (INTEGER): exact, and compared numerically by the expiry sweep.
CREATE TABLE stock (
    sku        TEXT    NOT NULL PRIMARY KEY,
    on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at INTEGER NOT NULL,
    -- Never more reserved than on hand: the last line of defence against overselling.
    CONSTRAINT stock_reserved_le_on_hand CHECK (reserved <= on_hand)
);

CREATE TABLE reservations (
    id         BLOB    NOT NULL PRIMARY KEY,
    order_id   TEXT    NOT NULL,
    status     TEXT    NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'expired')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT reservations_order_id_key UNIQUE (order_id)
);

-- The expiry sweep: pending reservations by deadline.
CREATE INDEX reservations_pending_idx ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    reservation_id BLOB    NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    line_no        INTEGER NOT NULL,
    sku            TEXT    NOT NULL REFERENCES stock (sku),
    quantity       INTEGER NOT NULL CHECK (quantity >= 1),
    PRIMARY KEY (reservation_id, line_no),
    CONSTRAINT reservation_lines_sku_key UNIQUE (reservation_id, sku)
);
