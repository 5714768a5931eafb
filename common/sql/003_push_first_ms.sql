-- 003: the push outbox remembers when a row started waiting, so a conversation that never pauses
-- for push.coalesce_delay is still pushed after push.max_delay.
ALTER TABLE push_pending ADD COLUMN IF NOT EXISTS first_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE push_pending ADD KEY IF NOT EXISTS k_push_pending_first (first_ms);
