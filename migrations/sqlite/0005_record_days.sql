-- Calls per call type and UTC day (of calloutTime), kept exact with record_stats by the
-- same writes. A records/list total over weeks sums a few day rows instead of thousands
-- of hour rows; the hours and rows at the range's edges still come from those.
CREATE TABLE record_days (
    call_type TEXT    NOT NULL,
    day_ms    INTEGER NOT NULL,   -- start of the UTC day, epoch ms
    calls     INTEGER NOT NULL,
    PRIMARY KEY (call_type, day_ms)
) WITHOUT ROWID;

INSERT INTO record_days (call_type, day_ms, calls)
SELECT call_type, (hour_ms / 86400000) * 86400000, SUM(calls) FROM record_stats GROUP BY 1, 2;
