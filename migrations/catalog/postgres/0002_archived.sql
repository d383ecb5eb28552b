-- Archived products (DELETE /v1/products/{id}) keep their row, id and SKU; lists hide them unless
-- asked (`include_archived=true`).
ALTER TABLE products ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
