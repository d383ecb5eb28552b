-- One notification per received event about a user (the event's `data.user_id`).
-- Times are Unix epoch milliseconds (INTEGER), as in the kit's tables.
-- `data` is the event's JSON payload as text (the same column type on both backends).
CREATE TABLE notifications (
    id         BLOB    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    subject    TEXT,
    title      TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    -- An event (CloudEvents: `id` unique within `source`) notifies once.
    CONSTRAINT notifications_event_key UNIQUE (source, event_id)
);

-- A user's list, newest first.
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at);
