-- Calls per call type, hour (of calloutTime, epoch hours) and outcome, kept exact by
-- every write of call_records in the same transaction. records/list takes its totals
-- from here instead of counting millions of rows; the dashboard's statistics too.
CREATE TABLE record_stats (
    call_type TEXT    NOT NULL,
    hour_ms   BIGINT NOT NULL,   -- start of the hour, epoch ms
    outcome   TEXT    NOT NULL,   -- answered, busy, no_answer, unallocated, rejected, stopped, interrupted, failed
    calls     BIGINT NOT NULL,
    talk_secs BIGINT NOT NULL,   -- sum of timeLen
    PRIMARY KEY (call_type, hour_ms, outcome)
);

-- Counts of the calls already stored. The outcome mapping is domain::outcome_class.
INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
SELECT call_type, (callout_ms / 3600000) * 3600000,
       CASE
           WHEN answered_ms IS NOT NULL THEN 'answered'
           WHEN hangup_cause LIKE 'USER_BUSY:%' THEN 'busy'
           WHEN hangup_cause LIKE 'NO_ANSWER:%' OR hangup_cause LIKE 'NO_USER_RESPONSE:%'
                OR hangup_cause LIKE 'ORIGINATOR_CANCEL:%' THEN 'no_answer'
           WHEN hangup_cause LIKE 'UNALLOCATED_NUMBER:%' OR hangup_cause LIKE 'NUMBER_CHANGED:%'
                OR hangup_cause LIKE 'INVALID_NUMBER_FORMAT:%' THEN 'unallocated'
           WHEN hangup_cause LIKE 'CALL_REJECTED:%' THEN 'rejected'
           WHEN hangup_cause LIKE 'MANAGER_REQUEST:%' THEN 'stopped'
           WHEN hangup_cause LIKE 'SYSTEM_SHUTDOWN:%' OR hangup_cause LIKE 'CRASH:%' THEN 'interrupted'
           ELSE 'failed'
       END,
       COUNT(*), SUM(time_len)
FROM call_records
GROUP BY 1, 2, 3;
