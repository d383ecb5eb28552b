-- Products and their prices (integer minor units + ISO 4217 code).
-- Lists are ordered by the implicit rowid: insertion order, stable across pages.
CREATE TABLE products (
    id             BLOB    NOT NULL PRIMARY KEY,
    sku            TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT    NOT NULL DEFAULT '',
    category       TEXT    NOT NULL,
    price_amount   INTEGER NOT NULL CHECK (price_amount >= 0),
    price_currency TEXT    NOT NULL CHECK (length(price_currency) = 3),
    version        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    CONSTRAINT products_sku_key UNIQUE (sku)
);

CREATE INDEX products_category_idx ON products (category);
