-- record_talk also counts every call ever: span_ms 0, start_ms 0, by level and bucket, of
-- every call and of each campaign. A records/list total with no time range sums these
-- rows, one a bucket, instead of one a day of the table's history. Summed here from the
-- days; a database whose days are not settled yet (counter_days empty) has every span
-- respread from its hours when the server settles them.
INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
SELECT call_type, batch_name, 0, level, bucket, 0, SUM(calls)
FROM record_talk WHERE span_ms = 86400000
GROUP BY call_type, batch_name, level, bucket;
