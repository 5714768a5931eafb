-- 007 (issue 17): a send no longer moves its sender's watermarks (READ means read), so unread is
-- stored: the peer's messages after my_read_seq, kept by the owner transfer in the batch that
-- changes it. Sync versions come from one counter per user, bumped and locked in the batch
-- transaction, so they follow commit order per user across writer lanes and transfers.
ALTER TABLE user_conversations ADD COLUMN IF NOT EXISTS unread BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER peer_read_seq;
UPDATE user_conversations uc SET unread = (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = uc.conversation_id
  AND m.seq > uc.my_read_seq AND m.sender_id = uc.peer_id);

-- The last sync version given to a row of the user (user_conversations.version); seeded above
-- every version already handed out, so clients' cursors stay valid.
CREATE TABLE IF NOT EXISTS user_sync_versions (
  user_id BIGINT UNSIGNED NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO user_sync_versions (user_id, version) SELECT user_id, MAX(version) FROM user_conversations GROUP BY user_id
  ON DUPLICATE KEY UPDATE version = GREATEST(user_sync_versions.version, VALUES(version));
