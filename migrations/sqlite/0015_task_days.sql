-- calltask/list over a week or a month reads days, not hours: task_days sums task_hours
-- by the counters' days (counter_days), with the same bounds of batchIds. A window's total
-- and bounds read its whole days here and only the hours at its edges in task_hours; a
-- deep page skips whole days, then whole hours of the day it lands in.
--
-- createTasks and the seed add the tasks they create to both; the trigger below moves a
-- task between statuses in its hour and its day, in the same transaction. A row left at
-- 0 tasks keeps its bounds, like the hours'.
CREATE TABLE task_days (
    batch_name     TEXT    NOT NULL,   -- '' for every task, else one campaign's tasks
    day_ms         INTEGER NOT NULL,   -- start of the counters' day of creation, epoch ms
    status         TEXT    NOT NULL,
    tasks          INTEGER NOT NULL,
    first_batch_id INTEGER NOT NULL,   -- bounds of the batchIds that had this status
    last_batch_id  INTEGER NOT NULL,
    PRIMARY KEY (batch_name, day_ms, status)
) WITHOUT ROWID;

-- A database without its days yet (counter_days empty: schema 0014 not started once)
-- gets them counted when the server settles its days.
INSERT INTO task_days (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
SELECT batch_name, (hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms, status,
       SUM(tasks), MIN(first_batch_id), MAX(last_batch_id)
FROM task_hours CROSS JOIN counter_days GROUP BY 1, 2, 3;

-- The trigger of 0013, now also moving the task in its day's rows (of every task and of
-- its campaign).
DROP TRIGGER task_hours_update;
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
    UPDATE task_days SET tasks = tasks - 1
    WHERE batch_name IN ('', OLD.batch_name) AND status = OLD.status
      AND day_ms = (SELECT (OLD.created_ms + offset_ms) / 86400000 * 86400000 - offset_ms FROM counter_days);
    INSERT INTO task_days (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
    SELECT scope.batch_name, (NEW.created_ms + offset_ms) / 86400000 * 86400000 - offset_ms, NEW.status, 1,
           NEW.batch_id, NEW.batch_id
    FROM counter_days, (SELECT '' AS batch_name UNION ALL SELECT NEW.batch_name) AS scope WHERE true
    ON CONFLICT (batch_name, day_ms, status) DO UPDATE SET
        tasks = tasks + 1,
        first_batch_id = MIN(first_batch_id, excluded.first_batch_id),
        last_batch_id = MAX(last_batch_id, excluded.last_batch_id);
END;
