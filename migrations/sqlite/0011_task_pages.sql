-- calltask/list at any page of a createTime window, with a status or not, at a cost that
-- follows the page and not the window.
--
-- task_hours splits by status and keeps the smallest and largest batchId of each hour's
-- tasks. A window's tasks lie between the bounds of its hours, so its page walks the
-- primary key (or tasks_status) down from the largest; a window and a status are summed
-- from these rows like a window alone. createTasks and the seed add the tasks they create
-- (one row per request); the triggers below move a task between statuses.
DROP TABLE task_hours;
CREATE TABLE task_hours (
    hour_ms        INTEGER NOT NULL,   -- start of the hour of creation, epoch ms
    status         TEXT    NOT NULL,
    tasks          INTEGER NOT NULL,
    first_batch_id INTEGER NOT NULL,   -- bounds of the batchIds that had this status
    last_batch_id  INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, status)
) WITHOUT ROWID;

INSERT INTO task_hours (hour_ms, status, tasks, first_batch_id, last_batch_id)
SELECT (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
FROM tasks GROUP BY 1, 2;

-- A row left at 0 tasks keeps its bounds: they only ever widen, and stay true.
CREATE TRIGGER task_hours_update AFTER UPDATE OF status ON tasks
WHEN OLD.status <> NEW.status BEGIN
    UPDATE task_hours SET tasks = tasks - 1
    WHERE hour_ms = (OLD.created_ms / 3600000) * 3600000 AND status = OLD.status;
    INSERT INTO task_hours (hour_ms, status, tasks, first_batch_id, last_batch_id)
    VALUES ((NEW.created_ms / 3600000) * 3600000, NEW.status, 1, NEW.batch_id, NEW.batch_id)
    ON CONFLICT (hour_ms, status) DO UPDATE SET
        tasks = tasks + 1,
        first_batch_id = MIN(first_batch_id, excluded.first_batch_id),
        last_batch_id = MAX(last_batch_id, excluded.last_batch_id);
END;

-- A status's page under a window walks this index between the window's bounds, reading
-- each task's createTime from the index alone.
DROP INDEX tasks_status;
CREATE INDEX tasks_status ON tasks (status, batch_id, created_ms);
