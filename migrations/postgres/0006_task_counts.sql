-- Tasks per status, kept exact by triggers on every write of tasks: calltask/list's total
-- without a filter, or by status alone, sums these few rows instead of counting a table
-- that grows by every ticket (a COUNT over a million tasks: 42 ms a request).
--
-- Each statement that changes tasks appends its net change per status to
-- task_count_changes; nodes fold those rows into task_counts_folded from time to time.
-- Appending takes no lock, where one counter row per status would serialise every claim
-- and finish of every node on it (and rows locked in different orders could deadlock).
-- Readers see the view task_counts: the folded counts plus the changes not yet folded.
CREATE TABLE task_counts_folded (
    status TEXT   PRIMARY KEY,
    tasks  BIGINT NOT NULL
);

CREATE TABLE task_count_changes (
    status TEXT   NOT NULL,
    tasks  BIGINT NOT NULL
);

INSERT INTO task_counts_folded (status, tasks) SELECT status, COUNT(*) FROM tasks GROUP BY status;

CREATE VIEW task_counts AS
    SELECT status, tasks FROM task_counts_folded
    UNION ALL
    SELECT status, tasks FROM task_count_changes;

-- One function for the three statement triggers: each names only the transition tables
-- its event has, and PL/pgSQL plans a statement only when it first runs.
CREATE FUNCTION task_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_count_changes (status, tasks)
        SELECT status, COUNT(*) FROM new_tasks GROUP BY status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_count_changes (status, tasks)
        SELECT status, -COUNT(*) FROM old_tasks GROUP BY status;
    ELSE
        INSERT INTO task_count_changes (status, tasks)
        SELECT status, SUM(change) FROM (
            SELECT status, 1 AS change FROM new_tasks
            UNION ALL
            SELECT status, -1 FROM old_tasks
        ) moved
        GROUP BY status HAVING SUM(change) <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_change();
CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_change();
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_change();
