-- 002: conversations, messages, watermarks, the push outbox, shard ownership, worker-id leases.
-- Only the transfer that owns a conversation's shard writes that conversation's rows.

-- One row per conversation (one-to-one: id = (low_user << 32) | high_user).
CREATE TABLE IF NOT EXISTS conversations (
  id          BIGINT UNSIGNED NOT NULL,
  user_lo     BIGINT UNSIGNED NOT NULL,
  user_hi     BIGINT UNSIGNED NOT NULL,
  last_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every message, ordered by (conversation_id, seq): seq is dense per conversation.
-- (sender_id, client_msg_id) is unique forever: the dedupe key of resends.
CREATE TABLE IF NOT EXISTS messages (
  conversation_id BIGINT UNSIGNED NOT NULL,
  seq             BIGINT UNSIGNED NOT NULL,
  msg_id          BIGINT UNSIGNED NOT NULL,
  sender_id       BIGINT UNSIGNED NOT NULL,
  sender_device   VARCHAR(64) NOT NULL,
  client_msg_id   BINARY(16) NOT NULL,
  type            TINYINT UNSIGNED NOT NULL,          -- 1 TEXT, 2 FILE (client.proto MessageType)
  body            MEDIUMBLOB NOT NULL,                -- TEXT: UTF-8; FILE: serialized FileRef
  created_ms      BIGINT NOT NULL,
  PRIMARY KEY (conversation_id, seq),
  UNIQUE KEY uk_messages_msg_id (msg_id),
  UNIQUE KEY uk_messages_dedupe (sender_id, client_msg_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per user and conversation: the watermarks both ways and a sync version. unread is derived:
-- last_seq - my_read_seq (a user's own send moves their read watermark to it).
CREATE TABLE IF NOT EXISTS user_conversations (
  user_id            BIGINT UNSIGNED NOT NULL,
  conversation_id    BIGINT UNSIGNED NOT NULL,
  peer_id            BIGINT UNSIGNED NOT NULL,
  last_seq           BIGINT UNSIGNED NOT NULL DEFAULT 0,
  my_delivered_seq   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  my_read_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
  peer_delivered_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
  peer_read_seq      BIGINT UNSIGNED NOT NULL DEFAULT 0,
  version            BIGINT UNSIGNED NOT NULL,          -- increases on every change (sync cursor)
  updated_ms         BIGINT NOT NULL,
  PRIMARY KEY (user_id, conversation_id),
  KEY k_user_conversations_version (user_id, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The push outbox: written in the same transaction as the messages for a recipient with no live
-- session, coalesced per (user, conversation); deleted by the relay after RabbitMQ confirmed it.
CREATE TABLE IF NOT EXISTS push_pending (
  user_id         BIGINT UNSIGNED NOT NULL,
  conversation_id BIGINT UNSIGNED NOT NULL,
  from_user_id    BIGINT UNSIGNED NOT NULL,
  up_to_seq       BIGINT UNSIGNED NOT NULL,
  updated_ms      BIGINT NOT NULL,
  PRIMARY KEY (user_id, conversation_id),
  KEY k_push_pending_updated (updated_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Which transfer owns which shard. epoch is the owner's incarnation id (unique per process start):
-- every batch checks it inside its own transaction (LOCK IN SHARE MODE), so a takeover (UPDATE of
-- the row) waits for the old owner's in-flight batch and fences every later one.
CREATE TABLE IF NOT EXISTS shard_owner (
  shard       INT UNSIGNED NOT NULL,
  transfer_id VARCHAR(128) NOT NULL,
  epoch       BIGINT UNSIGNED NOT NULL,
  updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Snowflake worker ids are leased, never configured: a process takes a free or expired id at
-- start-up and renews it; replicas cannot collide.
CREATE TABLE IF NOT EXISTS worker_leases (
  worker_id  INT UNSIGNED NOT NULL,
  owner      VARCHAR(128) NOT NULL,
  expires_ms BIGINT NOT NULL,
  PRIMARY KEY (worker_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
