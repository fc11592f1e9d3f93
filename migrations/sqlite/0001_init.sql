-- Tasks: one per ticket. batch_id starts at 10001.
CREATE TABLE tasks (
    batch_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_no         TEXT    NOT NULL,
    phone             TEXT    NOT NULL,
    username          TEXT    NOT NULL,
    ticket_type       TEXT    NOT NULL,
    ticket_content    TEXT    NOT NULL,
    task_type         INTEGER NOT NULL DEFAULT 1,
    status            TEXT    NOT NULL DEFAULT 'pending',
    created_ms        INTEGER NOT NULL,
    stopped_ms        INTEGER,             -- stopTime: set when the task ends
    connected         INTEGER NOT NULL DEFAULT 0,
    call_count        INTEGER NOT NULL DEFAULT 0,
    last_hangup_cause TEXT,
    next_attempt_ms   INTEGER NOT NULL,    -- when a waiting task is due
    stop_requested    INTEGER NOT NULL DEFAULT 0,
    -- the lease of the node calling it, and the attempt in progress
    locked_by         TEXT,
    locked_until_ms   INTEGER,
    heartbeat_ms      INTEGER,
    call_uuid         TEXT,
    call_started_ms   INTEGER,
    call_answered_ms  INTEGER
);
INSERT INTO sqlite_sequence (name, seq) VALUES ('tasks', 10000);

-- At most one unfinished task per ticket: createTasks is idempotent by ticketNo.
CREATE UNIQUE INDEX tasks_open_ticket ON tasks (ticket_no)
    WHERE status IN ('pending', 'calling', 'retry_wait');
CREATE INDEX tasks_ticket_no ON tasks (ticket_no, batch_id);
CREATE INDEX tasks_phone ON tasks (phone, batch_id);
CREATE INDEX tasks_created ON tasks (created_ms);
CREATE INDEX tasks_status ON tasks (status, batch_id);
-- What the dialer claims next.
CREATE INDEX tasks_due ON tasks (next_attempt_ms) WHERE status IN ('pending', 'retry_wait');
-- Calls in progress, for leases and stop requests.
CREATE INDEX tasks_calling ON tasks (locked_until_ms) WHERE status = 'calling';
CREATE INDEX tasks_stop_requested ON tasks (locked_by) WHERE status = 'calling' AND stop_requested = 1;

-- Call records: one per ended call attempt (AI calls) or imported call.
CREATE TABLE call_records (
    uuid          TEXT    PRIMARY KEY,
    call_type     TEXT    NOT NULL,        -- '01' inbound, '02' AI outbound, '03' manual outbound
    batch_id      INTEGER,                 -- the task of an AI call
    telephone     TEXT    NOT NULL,
    extnum        TEXT,
    callout_ms    INTEGER NOT NULL,
    answered_ms   INTEGER,
    ended_ms      INTEGER NOT NULL,
    time_len      INTEGER NOT NULL,        -- seconds, callEndTime - calloutTime when answered
    hangup_cause  TEXT    NOT NULL,
    wav_path      TEXT    NOT NULL DEFAULT '',  -- relative to recordings.dir; '' = none
    dialogue      TEXT    NOT NULL DEFAULT '[]' -- JSON [{role, content}]
) WITHOUT ROWID;

-- The dashboard's query: one call type, newest first, often bounded by a day.
CREATE INDEX records_by_type_time ON call_records (call_type, callout_ms DESC, uuid DESC);
CREATE INDEX records_by_phone ON call_records (telephone, callout_ms DESC);
CREATE INDEX records_by_extnum ON call_records (extnum, callout_ms DESC) WHERE extnum IS NOT NULL;
CREATE INDEX records_by_task ON call_records (batch_id) WHERE batch_id IS NOT NULL;
