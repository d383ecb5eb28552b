-- Archived products (DELETE /v1/products/{id}) keep their row, id and SKU; lists hide them unless
-- asked (`include_archived=true`). 0/1: SQLite has no boolean type.
ALTER TABLE products ADD COLUMN archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1));
