-- Products and their prices (integer minor units + ISO 4217 code).
CREATE TABLE products (
    id             UUID        NOT NULL PRIMARY KEY,
    -- Insertion order: what lists are sorted by (stable across pages).
    seq            BIGINT      GENERATED ALWAYS AS IDENTITY,
    sku            TEXT        NOT NULL,
    name           TEXT        NOT NULL,
    description    TEXT        NOT NULL DEFAULT '',
    category       TEXT        NOT NULL,
    price_amount   BIGINT      NOT NULL CHECK (price_amount >= 0),
    price_currency CHAR(3)     NOT NULL,
    version        BIGINT      NOT NULL DEFAULT 1,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT products_sku_key UNIQUE (sku)
);

CREATE INDEX products_category_idx ON products (category);
CREATE UNIQUE INDEX products_seq_idx ON products (seq);
