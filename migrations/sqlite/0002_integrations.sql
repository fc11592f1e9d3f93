-- Do-not-call numbers: a task for one of them is never dialed and ends as 已拦截.
CREATE TABLE dnc_numbers (
    phone      TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Webhook events, written in the transaction of the change they tell of (an outbox),
-- deleted once a receiver took them.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,      -- 'call.ended' | 'task.ended'
    task_json       TEXT    NOT NULL,      -- the task as it was at the event
    record_uuid     TEXT,                  -- the attempt's record, for call.ended
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    locked_until_ms INTEGER                -- a node delivering it
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms);

-- Imported calls may point at a recording elsewhere.
ALTER TABLE call_records ADD COLUMN wav_url TEXT NOT NULL DEFAULT '';
