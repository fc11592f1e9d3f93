-- The counters are read by range (a call type's hours), and PostgreSQL keeps rows in the
-- order they were written, so a day's 24 hours x 8 outcomes sat on some 40 pages. With
-- the counts in the key's index, totals and statistics are read from the index alone.
ALTER TABLE record_stats DROP CONSTRAINT record_stats_pkey,
    ADD PRIMARY KEY (call_type, hour_ms, outcome) INCLUDE (calls, talk_secs);
