-- An AI call's median voice-to-voice latency, in milliseconds: from the callee's last
-- word to the first audio of the agent's answer. NULL when no answer was measured (no
-- turn answered, a carrier that does not measure, an imported call).
ALTER TABLE call_records ADD COLUMN turn_latency_ms INTEGER;
