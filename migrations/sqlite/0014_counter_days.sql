-- record_talk's talk-time buckets nest in base 4 (levels 0 to 6: 1 s to 4,096 s wide; level
-- 7: every call), and its days, like those of extension_days below, start at midnight in
-- the configured timezone: a local day or week is then whole days of the counters. Level 0
-- by hour keeps its meaning; at its first start on this schema the server respreads every
-- other row of record_talk from those, with the zone's days, counts extension_days, and
-- writes the offset it chose here (a node of another zone later keeps it).
CREATE TABLE counter_days (
    offset_ms BIGINT NOT NULL   -- the counters' days start at midnight at this UTC offset
);

-- The days of every call now come from record_talk's level 7: record_days is no longer read.
DROP TABLE record_days;

-- Calls per call type, extension and day: an extension's total sums its days and counts
-- only the calls of the partial days at the edges of a range; its deep pages skip whole
-- days by them.
CREATE TABLE extension_days (
    call_type TEXT   NOT NULL,
    extnum    TEXT   NOT NULL,
    day_ms    BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (call_type, extnum, day_ms)
) WITHOUT ROWID;
