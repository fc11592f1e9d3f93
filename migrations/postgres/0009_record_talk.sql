-- Calls per call type, hour or UTC day (of calloutTime) and talk-time bucket, kept exact
-- with record_stats by every write of call_records in the same transaction. A records/list
-- total filtered by timeLen sums a few of these rows per day instead of counting the
-- matching calls: the buckets nest in base 16 (level L: time_len / 16^L), so any
-- [timeLenStart, timeLenEnd] is at most 15 buckets on each side per level, and the top
-- level (4,096 s wide) takes the rest as one range. The partial hours at the range's
-- edges are counted from records_by_type_time, which now carries time_len.
CREATE TABLE record_talk (
    call_type TEXT    NOT NULL,
    span_ms   BIGINT  NOT NULL,   -- 3600000 (an hour) or 86400000 (a UTC day)
    level     INTEGER NOT NULL,   -- 0..3: buckets of 1, 16, 256 and 4096 seconds
    bucket    BIGINT  NOT NULL,   -- time_len / 16^level
    start_ms  BIGINT  NOT NULL,   -- start of the hour or day, epoch ms
    calls     BIGINT  NOT NULL,
    PRIMARY KEY (call_type, span_ms, level, bucket, start_ms)
);

WITH levels (level, width) AS (VALUES (0, 1), (1, 16), (2, 256), (3, 4096)),
     spans (span_ms) AS (VALUES (3600000), (86400000)),
     base AS (SELECT call_type, (callout_ms / 3600000) * 3600000 AS hour_ms, time_len, COUNT(*) AS calls
              FROM call_records GROUP BY 1, 2, 3)
INSERT INTO record_talk (call_type, span_ms, level, bucket, start_ms, calls)
SELECT call_type, span_ms, level, time_len / width, (hour_ms / span_ms) * span_ms, SUM(calls)
FROM base, levels, spans
GROUP BY 1, 2, 3, 4, 5;

-- The page's index, now with time_len: a timeLen filter is checked in the index (no
-- fetch of each record it passes over), and the partial hours of a total are counted
-- from it alone.
DROP INDEX records_by_type_time;
CREATE INDEX records_by_type_time ON call_records (call_type, callout_ms DESC, uuid DESC, time_len);
-- An extension's calls of one call type, with time_len: its total counts index entries
-- only.
DROP INDEX records_by_extnum;
CREATE INDEX records_by_extnum ON call_records (extnum, call_type, callout_ms DESC, uuid DESC, time_len)
    WHERE extnum IS NOT NULL;

-- Tasks per hour of their creation (createTime), kept exact by createTasks and the seed in
-- their transaction (a task's createTime never changes and tasks are never deleted):
-- calltask/list's total over a createTime window sums these rows and counts only the
-- tasks of the partial hours at its edges.
CREATE TABLE task_hours (
    hour_ms BIGINT PRIMARY KEY,   -- start of the hour, epoch ms
    tasks   BIGINT NOT NULL
);

INSERT INTO task_hours (hour_ms, tasks)
SELECT (created_ms / 3600000) * 3600000, COUNT(*) FROM tasks GROUP BY 1;

-- A createTime window's tasks with their status, from the index alone: the total of a
-- window and a status counts index entries, not rows.
DROP INDEX tasks_created;
CREATE INDEX tasks_created ON tasks (created_ms, status);
