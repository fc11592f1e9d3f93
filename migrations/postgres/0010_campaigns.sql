-- Campaigns (the spec's batchName): named groups of tasks with settings of their own,
-- which can be paused, resumed and stopped one by one. Every task belongs to one; tasks
-- created without a batchName, and every task from before this migration, belong to the
-- campaign named 'default'. A campaign is known by its name, which never changes, so the
-- tasks and records carry the name itself and need no join to show or filter by it.
CREATE TABLE campaigns (
    name       TEXT    PRIMARY KEY,
    settings   TEXT    NOT NULL DEFAULT '{}',   -- JSON: overrides of the [dialer] and [agent] settings
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT  NOT NULL,
    updated_ms BIGINT  NOT NULL
);

INSERT INTO campaigns (name, created_ms, updated_ms)
VALUES ('default', (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

-- A constant default: PostgreSQL adds the column without rewriting a row, and every
-- existing task is then in the default campaign with its batchId unchanged.
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
    hour_ms    BIGINT  NOT NULL,   -- start of the hour, epoch ms
    outcome    TEXT    NOT NULL,   -- answered, busy, no_answer, unallocated, rejected, stopped, interrupted, failed
    calls      BIGINT  NOT NULL,
    PRIMARY KEY (batch_name, hour_ms, outcome)
);

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

-- Task counts per campaign and status (see 0006_task_counts.sql for how they are kept):
-- the campaign list's counts and calltask/list's total by batchName sum a few rows.
ALTER TABLE task_count_changes ADD COLUMN batch_name TEXT NOT NULL DEFAULT 'default';
ALTER TABLE task_counts_folded ADD COLUMN batch_name TEXT NOT NULL DEFAULT 'default';
ALTER TABLE task_counts_folded DROP CONSTRAINT task_counts_folded_pkey;
ALTER TABLE task_counts_folded ADD PRIMARY KEY (batch_name, status);

CREATE OR REPLACE VIEW task_counts AS
    SELECT status, tasks, batch_name FROM task_counts_folded
    UNION ALL
    SELECT status, tasks, batch_name FROM task_count_changes;

CREATE OR REPLACE FUNCTION task_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_count_changes (batch_name, status, tasks)
        SELECT batch_name, status, COUNT(*) FROM new_tasks GROUP BY batch_name, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_count_changes (batch_name, status, tasks)
        SELECT batch_name, status, -COUNT(*) FROM old_tasks GROUP BY batch_name, status;
    ELSE
        INSERT INTO task_count_changes (batch_name, status, tasks)
        SELECT batch_name, status, SUM(change) FROM (
            SELECT batch_name, status, 1 AS change FROM new_tasks
            UNION ALL
            SELECT batch_name, status, -1 FROM old_tasks
        ) moved
        GROUP BY batch_name, status HAVING SUM(change) <> 0;
    END IF;
    RETURN NULL;
END
$$;
