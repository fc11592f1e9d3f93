-- records/list and calltask/list by campaign (batchName) at a cost that does not grow with
-- the campaign: every task and every AI call is in a campaign ('default' unless named), so
-- a campaign can hold every row of the table.
--
-- record_talk and task_hours gain the campaign: batch_name '' rows count every call or
-- task, as before; a campaign's rows count its own. record_talk also gains level 4, every
-- call whatever its talk time (bucket 0): a total of every call of a campaign, or every
-- call less some talk times, seeks one row per day or hour. A write of a campaign's call or task
-- keeps both exact in the same transaction (task_hours through its appended changes).
ALTER TABLE record_talk ADD COLUMN batch_name TEXT NOT NULL DEFAULT '';
ALTER TABLE record_talk DROP CONSTRAINT record_talk_pkey,
    ADD CONSTRAINT record_talk_pkey PRIMARY KEY (call_type, batch_name, span_ms, level, bucket, start_ms);

WITH levels (level, width) AS (VALUES (0, 1), (1, 16), (2, 256), (3, 4096)),
     spans (span_ms) AS (VALUES (3600000), (86400000)),
     base AS (SELECT call_type, batch_name, (callout_ms / 3600000) * 3600000 AS hour_ms, time_len, COUNT(*) AS calls
              FROM call_records WHERE batch_name IS NOT NULL GROUP BY 1, 2, 3, 4)
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, level, time_len / width, (hour_ms / span_ms) * span_ms, SUM(calls)
FROM base, levels, spans
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 4, 0, start_ms, SUM(calls) FROM record_talk WHERE level = 3
GROUP BY 1, 2, 3, 6;

-- A campaign's calls of one call type in time order, with time_len: the partial hours of
-- its totals and its pages read the index alone.
DROP INDEX records_by_campaign;
CREATE INDEX records_by_campaign ON call_records (batch_name, call_type, callout_ms DESC, uuid DESC, time_len)
    WHERE batch_name IS NOT NULL;

DROP VIEW task_hours;
ALTER TABLE task_hours_folded ADD COLUMN batch_name TEXT NOT NULL DEFAULT '';
ALTER TABLE task_hours_folded DROP CONSTRAINT task_hours_folded_pkey,
    ADD CONSTRAINT task_hours_folded_pkey PRIMARY KEY (batch_name, hour_ms, status);
ALTER TABLE task_hour_changes ADD COLUMN batch_name TEXT NOT NULL DEFAULT '';
DROP INDEX task_hour_changes_by_hour;
CREATE INDEX task_hour_changes_by_hour ON task_hour_changes (batch_name, hour_ms);

INSERT INTO task_hours_folded (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
SELECT batch_name, (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
FROM tasks GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

CREATE VIEW task_hours AS
    SELECT batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id FROM task_hours_folded
    UNION ALL
    SELECT batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id FROM task_hour_changes;

-- The function of 0011, now moving tasks between the statuses of their hour in the rows
-- of every task ('') and of their campaign.
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
        INSERT INTO task_hour_changes (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
        SELECT scope.batch_name, (created_ms / 3600000) * 3600000, status, SUM(change), MIN(batch_id), MAX(batch_id)
        FROM (
            SELECT n.batch_name, n.created_ms, n.status, n.batch_id, 1 AS change
            FROM new_tasks n JOIN old_tasks o USING (batch_id) WHERE n.status <> o.status
            UNION ALL
            SELECT o.batch_name, o.created_ms, o.status, o.batch_id, -1
            FROM old_tasks o JOIN new_tasks n USING (batch_id) WHERE n.status <> o.status
        ) moved
        CROSS JOIN LATERAL (VALUES (''), (moved.batch_name)) AS scope (batch_name)
        GROUP BY 1, 2, 3;
    END IF;
    RETURN NULL;
END
$$;

-- A campaign's page under a createTime window or a status walks its batchIds with their
-- createTime and status from the index alone.
DROP INDEX tasks_campaign;
CREATE INDEX tasks_campaign ON tasks (batch_name, batch_id) INCLUDE (created_ms, status);
