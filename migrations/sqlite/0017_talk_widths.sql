-- record_talk's talk-time buckets of levels 1 to 6 are now 5, 15, 60, 300, 900 and 3,600 s
-- wide (they were 4, 16, … 4,096 s): round numbers of seconds and minutes, so that a range
-- such as 60–120 s is two buckets a span rather than seven. Level 0 (a bucket a second)
-- and level 7 (every call) keep their meaning; every other level is summed again from each
-- span's level 0, one level a statement, in the table's order.
DELETE FROM record_talk WHERE level BETWEEN 1 AND 6;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 1, bucket / 5, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 5, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 5, start_ms;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 2, bucket / 15, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 15, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 15, start_ms;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 3, bucket / 60, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 60, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 60, start_ms;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 4, bucket / 300, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 300, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 300, start_ms;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 5, bucket / 900, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 900, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 900, start_ms;
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, span_ms, 6, bucket / 3600, start_ms, SUM(calls)
FROM record_talk WHERE level = 0
GROUP BY call_type, batch_name, span_ms, bucket / 3600, start_ms
ORDER BY call_type, batch_name, span_ms, bucket / 3600, start_ms;
