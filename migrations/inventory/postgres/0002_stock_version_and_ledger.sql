-- Issue 10 (concurrent writers): a version per stock row (its strong ETag; bumped by every change of
-- the row, reservations included) and a ledger of every change of on_hand.
ALTER TABLE stock ADD COLUMN version BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1);

-- One row per change of on_hand, written in the transaction that changes it: a set (delta = new -
-- old), an adjustment, the commit of a reservation (one row per line). The sum of a SKU's deltas is
-- its on_hand (rows written before this migration: a 'baseline' row per SKU below).
CREATE TABLE stock_ledger (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku            TEXT   NOT NULL REFERENCES stock (sku),
    delta          BIGINT NOT NULL,
    on_hand_after  BIGINT NOT NULL CHECK (on_hand_after >= 0),
    reason         TEXT   NOT NULL CHECK (reason IN ('baseline', 'set', 'adjustment', 'commit')),
    actor          TEXT   NOT NULL,
    reservation_id UUID   NULL,
    at             BIGINT NOT NULL
);

CREATE INDEX stock_ledger_sku_idx ON stock_ledger (sku, seq);

INSERT INTO stock_ledger (sku, delta, on_hand_after, reason, actor, at)
SELECT sku, on_hand, on_hand, 'baseline', 'migration', updated_at FROM stock ORDER BY sku;
