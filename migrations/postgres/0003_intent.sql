-- The outcome of an answered AI call (已确认, 拒绝, 需回访, 无效, 转人工 …); '' otherwise.
ALTER TABLE call_records ADD COLUMN intent TEXT NOT NULL DEFAULT '';
