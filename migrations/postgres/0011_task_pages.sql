-- calltask/list at any page of a createTime window, with a status or not, at a cost that
-- follows the page and not the window.
--
-- Tasks per hour of creation split by status, with the smallest and largest batchId of
-- each: a window's tasks lie between the bounds of its hours, so its page walks the
-- primary key (or tasks_status) down from the largest, reading createTime and status from
-- the index alone; a window and a status are summed from these rows like a window alone.
--
-- As with task_counts (0006), writers only append: createTasks and the seed add the
-- tasks they create to task_hour_changes (one row per status of a request), the
-- statement triggers add each statement's moves between statuses, and nodes fold the
-- changes into task_hours_folded from time to time. Readers see the view task_hours.
DROP TABLE task_hours;
CREATE TABLE task_hours_folded (
    hour_ms        BIGINT NOT NULL,   -- start of the hour of creation, epoch ms
    status         TEXT   NOT NULL,
    tasks          BIGINT NOT NULL,
    first_batch_id BIGINT NOT NULL,   -- bounds of the batchIds that had this status
    last_batch_id  BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, status)
);

CREATE TABLE task_hour_changes (
    hour_ms        BIGINT NOT NULL,
    status         TEXT   NOT NULL,
    tasks          BIGINT NOT NULL,
    first_batch_id BIGINT NOT NULL,
    last_batch_id  BIGINT NOT NULL
);
CREATE INDEX task_hour_changes_by_hour ON task_hour_changes (hour_ms);

INSERT INTO task_hours_folded (hour_ms, status, tasks, first_batch_id, last_batch_id)
SELECT (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
FROM tasks GROUP BY 1, 2 ORDER BY 1, 2;

CREATE VIEW task_hours AS
    SELECT hour_ms, status, tasks, first_batch_id, last_batch_id FROM task_hours_folded
    UNION ALL
    SELECT hour_ms, status, tasks, first_batch_id, last_batch_id FROM task_hour_changes;

-- The function of 0010, now also moving tasks between the statuses of their hour (a
-- row's bounds only ever widen, and stay true).
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
        INSERT INTO task_hour_changes (hour_ms, status, tasks, first_batch_id, last_batch_id)
        SELECT (created_ms / 3600000) * 3600000, status, SUM(change), MIN(batch_id), MAX(batch_id) FROM (
            SELECT n.created_ms, n.status, n.batch_id, 1 AS change
            FROM new_tasks n JOIN old_tasks o USING (batch_id) WHERE n.status <> o.status
            UNION ALL
            SELECT o.created_ms, o.status, o.batch_id, -1
            FROM old_tasks o JOIN new_tasks n USING (batch_id) WHERE n.status <> o.status
        ) moved
        GROUP BY 1, 2;
    END IF;
    RETURN NULL;
END
$$;

-- The primary key and tasks_status carry what a window's page tests, so that the walk
-- reads no table rows but the page's own.
ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ADD CONSTRAINT tasks_pkey PRIMARY KEY (batch_id) INCLUDE (created_ms, status);
DROP INDEX tasks_status;
CREATE INDEX tasks_status ON tasks (status, batch_id) INCLUDE (created_ms);
