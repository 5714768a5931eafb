-- 008 (issue 15): groups. A group is a conversation whose id is the group id (below 2^31, so it
-- never collides with a one-to-one id). Its messages live in `messages` like any other; its
-- membership is written only by the owner transfer of its shard, in the batch that commits the
-- change's system message (so a change and the messages around it have one order).
CREATE TABLE IF NOT EXISTS chat_groups (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name        VARCHAR(128) NOT NULL,
  owner_id    BIGINT UNSIGNED NOT NULL,
  last_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,
  member_count INT UNSIGNED NOT NULL DEFAULT 0,
  deleted_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,   -- non-zero: deleted by the event at this seq
  history_visible TINYINT UNSIGNED NOT NULL DEFAULT 0, -- 1: a member sees the history from seq 1 (set at creation)
  created_ms  BIGINT NOT NULL,
  updated_ms  BIGINT NOT NULL,
  PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Members past and present: a member sees seqs joined_seq .. (left_seq or the end); a removed
-- member keeps the row (left_seq) and what they had. Watermarks per member (receipts).
CREATE TABLE IF NOT EXISTS group_members (
  group_id      BIGINT UNSIGNED NOT NULL,
  user_id       BIGINT UNSIGNED NOT NULL,
  role          TINYINT UNSIGNED NOT NULL DEFAULT 1,   -- client.proto GroupRole
  joined_seq    BIGINT UNSIGNED NOT NULL,
  left_seq      BIGINT UNSIGNED NOT NULL DEFAULT 0,    -- 0: a member now
  delivered_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
  read_seq      BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_ms    BIGINT NOT NULL,
  PRIMARY KEY (group_id, user_id),
  KEY k_group_members_user (user_id, group_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
