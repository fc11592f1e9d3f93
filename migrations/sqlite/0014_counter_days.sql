-- record_talk's talk-time buckets nest in base 4 (levels 0 to 6: 1 s to 4,096 s wide; level
-- 7: every call), and its days start at midnight in the configured timezone (see
-- counter_days). Level 0 by hour keeps its meaning; the server respreads every other row
-- from those at its first start on this schema, with the zone's days, and then writes the
-- chosen offset here: a local day or week is then whole days of the counters.
CREATE TABLE counter_days (
    offset_ms BIGINT NOT NULL   -- record_talk's days start at midnight at this UTC offset
);

-- The days of every call now come from record_talk's level 7: record_days is no longer read.
DROP TABLE record_days;

-- Calls per call type, extension and day (counter_days' days): an extension's total sums
-- its days and counts only the calls of the partial days at the edges of a range. Filled
-- by the server at the same first start.
CREATE TABLE extension_days (
    call_type TEXT   NOT NULL,
    extnum    TEXT   NOT NULL,
    day_ms    BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (call_type, extnum, day_ms)
) WITHOUT ROWID;
