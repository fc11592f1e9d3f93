-- What a webhook event tells beyond its task and record: `call.transferred` carries the
-- transfer (where to, when the human answered) as JSON.
ALTER TABLE webhook_outbox ADD COLUMN detail_json TEXT;
