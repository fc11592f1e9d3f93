-- calltask/list over a week or a month reads days, not hours: task_days sums task_hours
-- by the counters' days (counter_days), with the same bounds of batchIds. A window's total
-- and bounds read its whole days here and only the hours at its edges in task_hours; a
-- deep page skips whole days, then whole hours of the day it lands in.
--
-- Writers still append only to task_hour_changes: the fold moves each change into both
-- task_hours_folded and task_days_folded in one statement, and the view task_days adds
-- the changes not folded yet, by their day.
CREATE TABLE task_days_folded (
    batch_name     TEXT   NOT NULL,   -- '' for every task, else one campaign's tasks
    day_ms         BIGINT NOT NULL,   -- start of the counters' day of creation, epoch ms
    status         TEXT   NOT NULL,
    tasks          BIGINT NOT NULL,
    first_batch_id BIGINT NOT NULL,   -- bounds of the batchIds that had this status
    last_batch_id  BIGINT NOT NULL,
    PRIMARY KEY (batch_name, day_ms, status)
);

-- A database without its days yet (counter_days empty: schema 0014 not started once)
-- gets them counted when the server settles its days.
INSERT INTO task_days_folded (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
SELECT batch_name, (hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms, status,
       SUM(tasks), MIN(first_batch_id), MAX(last_batch_id)
FROM task_hours_folded CROSS JOIN counter_days GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

CREATE VIEW task_days AS
    SELECT batch_name, day_ms, status, tasks, first_batch_id, last_batch_id FROM task_days_folded
    UNION ALL
    SELECT batch_name, (hour_ms + offset_ms) / 86400000 * 86400000 - offset_ms, status, tasks,
           first_batch_id, last_batch_id
    FROM task_hour_changes CROSS JOIN counter_days;
