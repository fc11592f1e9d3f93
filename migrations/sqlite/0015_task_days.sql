-- calltask/list over a week or a month reads days, not hours: task_days sums task_hours
-- by the counters' days (counter_days), with the same bounds of batchIds. A window's total
-- and bounds read its whole days here and only the hours at its edges in task_hours; a
-- deep page skips whole days, then whole hours of the day it lands in.
--
-- The triggers below keep each day the sum of its hours, whatever writes task_hours
-- (createTasks, the seed, the status trigger): in the same transaction, always exact. A
-- row left at 0 tasks keeps its bounds, like the hours'.
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

CREATE TRIGGER task_days_insert AFTER INSERT ON task_hours BEGIN
    INSERT INTO task_days (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
    SELECT NEW.batch_name, (NEW.hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms, NEW.status,
           NEW.tasks, NEW.first_batch_id, NEW.last_batch_id
    FROM (SELECT COALESCE((SELECT offset_ms FROM counter_days), 0) AS offset_ms) WHERE true
    ON CONFLICT (batch_name, day_ms, status) DO UPDATE SET
        tasks = tasks + excluded.tasks,
        first_batch_id = MIN(first_batch_id, excluded.first_batch_id),
        last_batch_id = MAX(last_batch_id, excluded.last_batch_id);
END;

-- An upsert's update of an hour lands here too.
CREATE TRIGGER task_days_update AFTER UPDATE ON task_hours BEGIN
    UPDATE task_days SET
        tasks = tasks + NEW.tasks - OLD.tasks,
        first_batch_id = MIN(first_batch_id, NEW.first_batch_id),
        last_batch_id = MAX(last_batch_id, NEW.last_batch_id)
    WHERE batch_name = NEW.batch_name AND status = NEW.status
      AND day_ms = (SELECT (NEW.hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms
                    FROM (SELECT COALESCE((SELECT offset_ms FROM counter_days), 0) AS offset_ms));
END;

CREATE TRIGGER task_days_delete AFTER DELETE ON task_hours BEGIN
    UPDATE task_days SET tasks = tasks - OLD.tasks
    WHERE batch_name = OLD.batch_name AND status = OLD.status
      AND day_ms = (SELECT (OLD.hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms
                    FROM (SELECT COALESCE((SELECT offset_ms FROM counter_days), 0) AS offset_ms));
END;
