-- Campaigns (the spec's batchName): named groups of tasks with settings of their own,
-- which can be paused, resumed and stopped one by one. Every task belongs to one; tasks
-- created without a batchName, and every task from before this migration, belong to the
-- campaign named 'default'. A campaign is known by its name, which never changes, so the
-- tasks and records carry the name itself and need no join to show or filter by it.
CREATE TABLE campaigns (
    name       TEXT    PRIMARY KEY,
    settings   TEXT    NOT NULL DEFAULT '{}',   -- JSON: overrides of the [dialer] and [agent] settings
    paused     INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO campaigns (name, created_ms, updated_ms)
VALUES ('default', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- A constant default: SQLite adds the column without rewriting a row, and every existing
-- task is then in the default campaign with its batchId unchanged.
ALTER TABLE tasks ADD COLUMN batch_name TEXT NOT NULL DEFAULT 'default';
-- calltask/list by campaign, newest batchId first.
CREATE INDEX tasks_campaign ON tasks (batch_name, batch_id);
-- calltask/list by campaign and createTime window: its total counts index entries.
CREATE INDEX tasks_campaign_created ON tasks (batch_name, created_ms, status);
-- What the dialer claims next, campaign by campaign.
CREATE INDEX tasks_campaign_due ON tasks (batch_name, next_attempt_ms, batch_id)
    WHERE status IN ('pending', 'retry_wait');

-- The campaign of an AI call's record (NULL for imported calls).
ALTER TABLE call_records ADD COLUMN batch_name TEXT;
UPDATE call_records SET batch_name = 'default' WHERE call_type = '02' AND batch_id IS NOT NULL;
CREATE INDEX records_by_campaign ON call_records (batch_name, callout_ms DESC, uuid DESC, time_len)
    WHERE batch_name IS NOT NULL;

-- Calls per campaign, hour (of calloutTime) and outcome, kept exact with record_stats by
-- every write of AI call records: the campaign list's calls of today and the day's
-- statistics by campaign sum a day's rows instead of reading a day's calls. Counts of the
-- calls already stored; the outcome mapping is domain::outcome_class.
CREATE TABLE campaign_hours (
    batch_name TEXT    NOT NULL,
    hour_ms    INTEGER  NOT NULL,   -- start of the hour, epoch ms
    outcome    TEXT    NOT NULL,   -- answered, busy, no_answer, unallocated, rejected, stopped, interrupted, failed
    calls      INTEGER  NOT NULL,
    PRIMARY KEY (batch_name, hour_ms, outcome)
) WITHOUT ROWID;

INSERT INTO campaign_hours (batch_name, hour_ms, outcome, calls)
SELECT batch_name, (callout_ms / 3600000) * 3600000,
       CASE
           WHEN answered_ms IS NOT NULL THEN 'answered'
           WHEN hangup_cause LIKE 'USER_BUSY:%' THEN 'busy'
           WHEN hangup_cause LIKE 'NO_ANSWER:%' OR hangup_cause LIKE 'NO_USER_RESPONSE:%'
                OR hangup_cause LIKE 'ORIGINATOR_CANCEL:%' THEN 'no_answer'
           WHEN hangup_cause LIKE 'UNALLOCATED_NUMBER:%' OR hangup_cause LIKE 'NUMBER_CHANGED:%'
                OR hangup_cause LIKE 'INVALID_NUMBER_FORMAT:%' THEN 'unallocated'
           WHEN hangup_cause LIKE 'CALL_REJECTED:%' THEN 'rejected'
           WHEN hangup_cause LIKE 'MANAGER_REQUEST:%' THEN 'stopped'
           WHEN hangup_cause LIKE 'SYSTEM_SHUTDOWN:%' OR hangup_cause LIKE 'CRASH:%' THEN 'interrupted'
           ELSE 'failed'
       END,
       COUNT(*)
FROM call_records
WHERE batch_name IS NOT NULL
GROUP BY 1, 2, 3;

-- Task counts per campaign and status: the campaign list's counts and calltask/list's
-- total by batchName sum a few rows, as the totals over every campaign did.
DROP TRIGGER task_counts_insert;
DROP TRIGGER task_counts_update;
DROP TRIGGER task_counts_delete;
DROP TABLE task_counts;
CREATE TABLE task_counts (
    batch_name TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    tasks      INTEGER NOT NULL,
    PRIMARY KEY (batch_name, status)
) WITHOUT ROWID;

-- A row for every campaign and status: the triggers only update (the store adds a
-- campaign's rows with the campaign).
INSERT INTO task_counts (batch_name, status, tasks)
SELECT 'default', status, 0
FROM (SELECT 'pending' AS status UNION ALL SELECT 'calling' UNION ALL SELECT 'retry_wait'
      UNION ALL SELECT 'completed' UNION ALL SELECT 'stopped' UNION ALL SELECT 'blocked');
UPDATE task_counts SET tasks = (SELECT COUNT(*) FROM tasks WHERE tasks.status = task_counts.status);

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks + 1 WHERE batch_name = NEW.batch_name AND status = NEW.status;
END;

CREATE TRIGGER task_counts_update AFTER UPDATE OF status ON tasks
WHEN OLD.status <> NEW.status BEGIN
    UPDATE task_counts SET tasks = tasks - 1 WHERE batch_name = OLD.batch_name AND status = OLD.status;
    UPDATE task_counts SET tasks = tasks + 1 WHERE batch_name = NEW.batch_name AND status = NEW.status;
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1 WHERE batch_name = OLD.batch_name AND status = OLD.status;
END;
