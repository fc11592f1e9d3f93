-- Calls per call type, campaign ('' for every call), ten minutes (of calloutTime) and talk
-- time, kept exact with record_talk by every write of call_records in the same
-- transaction. A records/list total whose range has an edge inside an hour sums the whole
-- ten-minute slots of that edge from here, for any talk-time range (a seek and the slot's
-- talk times in the range), and counts only what lies outside whole slots row by row: at
-- most five minutes an edge instead of half an hour.
CREATE TABLE record_slots (
    call_type  TEXT    NOT NULL,
    batch_name TEXT    NOT NULL,
    slot_ms    BIGINT  NOT NULL,   -- start of the ten minutes, epoch ms
    time_len   BIGINT  NOT NULL,
    calls      BIGINT  NOT NULL,
    PRIMARY KEY (call_type, batch_name, slot_ms, time_len)
);

INSERT INTO record_slots (call_type, batch_name, slot_ms, time_len, calls)
SELECT call_type, '', callout_ms / 600000 * 600000, time_len, COUNT(*)
FROM call_records GROUP BY 1, 3, 4
UNION ALL
SELECT call_type, batch_name, callout_ms / 600000 * 600000, time_len, COUNT(*)
FROM call_records WHERE batch_name IS NOT NULL GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4;
