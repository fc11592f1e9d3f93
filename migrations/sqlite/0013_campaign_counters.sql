-- records/list and calltask/list by campaign (batchName) at a cost that does not grow with
-- the campaign: every task and every AI call is in a campaign ('default' unless named), so
-- a campaign can hold every row of the table.
--
-- record_talk and task_hours gain the campaign: batch_name '' rows count every call or
-- task, as before; a campaign's rows count its own. record_talk also gains level 4, every
-- call whatever its talk time (bucket 0): a total of every call of a campaign, or every
-- call less some talk times, seeks one row per day or hour. A write of a campaign's call or task
-- keeps both exact in the same transaction.
CREATE TABLE record_talk_by_campaign (
    call_type  TEXT    NOT NULL,
    batch_name TEXT    NOT NULL,   -- '' for every call of the call type, else one campaign's calls
    span_ms    INTEGER NOT NULL,   -- 3600000 (an hour) or 86400000 (a UTC day)
    level      INTEGER NOT NULL,   -- 0..3: buckets of 1, 16, 256 and 4096 seconds; 4: every call
    bucket     INTEGER NOT NULL,   -- time_len / 16^level
    start_ms   INTEGER NOT NULL,   -- start of the hour or day, epoch ms
    calls      INTEGER NOT NULL,
    PRIMARY KEY (call_type, batch_name, span_ms, level, bucket, start_ms)
) WITHOUT ROWID;

INSERT INTO record_talk_by_campaign (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, '', span_ms, level, bucket, start_ms, calls FROM record_talk;

WITH levels (level, width) AS (VALUES (0, 1), (1, 16), (2, 256), (3, 4096)),
     spans (span_ms) AS (VALUES (3600000), (86400000)),
     base AS (SELECT call_type, batch_name, (callout_ms / 3600000) * 3600000 AS hour_ms, time_len, COUNT(*) AS calls
              FROM call_records WHERE batch_name IS NOT NULL GROUP BY 1, 2, 3, 4)
INSERT INTO record_talk_by_campaign (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, level, time_len / width, (hour_ms / span_ms) * span_ms, SUM(calls)
FROM base, levels, spans
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO record_talk_by_campaign (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 4, 0, start_ms, SUM(calls) FROM record_talk_by_campaign WHERE level = 3
GROUP BY 1, 2, 3, 6;

DROP TABLE record_talk;
ALTER TABLE record_talk_by_campaign RENAME TO record_talk;

-- A campaign's calls of one call type in time order, with time_len: the partial hours of
-- its totals and its pages read the index alone.
DROP INDEX records_by_campaign;
CREATE INDEX records_by_campaign ON call_records (batch_name, call_type, callout_ms DESC, uuid DESC, time_len)
    WHERE batch_name IS NOT NULL;

DROP TRIGGER task_hours_update;
CREATE TABLE task_hours_by_campaign (
    batch_name     TEXT    NOT NULL,   -- '' for every task, else one campaign's tasks
    hour_ms        INTEGER NOT NULL,   -- start of the hour of creation, epoch ms
    status         TEXT    NOT NULL,
    tasks          INTEGER NOT NULL,
    first_batch_id INTEGER NOT NULL,   -- bounds of the batchIds that had this status
    last_batch_id  INTEGER NOT NULL,
    PRIMARY KEY (batch_name, hour_ms, status)
) WITHOUT ROWID;

INSERT INTO task_hours_by_campaign (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
SELECT '', hour_ms, status, tasks, first_batch_id, last_batch_id FROM task_hours;
INSERT INTO task_hours_by_campaign (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
SELECT batch_name, (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
FROM tasks GROUP BY 1, 2, 3;

DROP TABLE task_hours;
ALTER TABLE task_hours_by_campaign RENAME TO task_hours;

-- A task moves between statuses in its hour's row of every task and of its campaign. A
-- row left at 0 tasks keeps its bounds: they only ever widen, and stay true.
CREATE TRIGGER task_hours_update AFTER UPDATE OF status ON tasks
WHEN OLD.status <> NEW.status BEGIN
    UPDATE task_hours SET tasks = tasks - 1
    WHERE batch_name IN ('', OLD.batch_name)
      AND hour_ms = (OLD.created_ms / 3600000) * 3600000 AND status = OLD.status;
    INSERT INTO task_hours (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
    VALUES ('', (NEW.created_ms / 3600000) * 3600000, NEW.status, 1, NEW.batch_id, NEW.batch_id),
           (NEW.batch_name, (NEW.created_ms / 3600000) * 3600000, NEW.status, 1, NEW.batch_id, NEW.batch_id)
    ON CONFLICT (batch_name, hour_ms, status) DO UPDATE SET
        tasks = tasks + 1,
        first_batch_id = MIN(first_batch_id, excluded.first_batch_id),
        last_batch_id = MAX(last_batch_id, excluded.last_batch_id);
END;

-- A campaign's page under a createTime window or a status walks its batchIds with their
-- createTime and status from the index alone.
DROP INDEX tasks_campaign;
CREATE INDEX tasks_campaign ON tasks (batch_name, batch_id, created_ms, status);
