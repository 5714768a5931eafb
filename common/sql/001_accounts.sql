-- 001: accounts, sessions (tokens), friends and blocks.
-- Times are UTC DATETIME(3). User ids stay below 2^31 so that a one-to-one conversation id can
-- be derived from two of them ((low << 32) | high), see docs/PROTOCOL.md.

CREATE TABLE IF NOT EXISTS users (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  username      VARCHAR(64)  NOT NULL,
  display_name  VARCHAR(128) NOT NULL,
  password_hash VARCHAR(255) NULL,            -- argon2id (origin local); NULL for ldap/external
  origin        ENUM('local', 'ldap', 'external') NOT NULL,
  external_ref  VARCHAR(512) NULL,            -- LDAP DN or the external service's user id
  created_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uk_users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The truth about tokens: only SHA-256(token) is stored. Redis caches it (im:tok:<hex>).
CREATE TABLE IF NOT EXISTS sessions (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  token_hash   BINARY(32)   NOT NULL,
  user_id      BIGINT UNSIGNED NOT NULL,
  device_id    VARCHAR(64)  NOT NULL,
  client_addr  VARCHAR(64)  NOT NULL DEFAULT '',
  user_agent   VARCHAR(256) NOT NULL DEFAULT '',
  created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_seen_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  expires_at   DATETIME(3) NOT NULL,
  revoked_at   DATETIME(3) NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uk_sessions_token (token_hash),
  KEY k_sessions_user (user_id, revoked_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS friend_requests (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  from_user   BIGINT UNSIGNED NOT NULL,
  to_user     BIGINT UNSIGNED NOT NULL,
  message     VARCHAR(512) NOT NULL DEFAULT '',
  status      ENUM('pending', 'accepted', 'declined', 'canceled') NOT NULL DEFAULT 'pending',
  created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  -- At most one pending request per direction: NULL (not pending) never collides in a unique key.
  pending_key VARCHAR(48) AS (IF(status = 'pending', CONCAT(from_user, ':', to_user), NULL)) PERSISTENT,
  PRIMARY KEY (id),
  UNIQUE KEY uk_friend_requests_pending (pending_key),
  KEY k_friend_requests_to (to_user, status),
  KEY k_friend_requests_from (from_user, status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Two rows per friendship (one per direction): listing a user's friends is one range scan.
CREATE TABLE IF NOT EXISTS friendships (
  user_id    BIGINT UNSIGNED NOT NULL,
  friend_id  BIGINT UNSIGNED NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (user_id, friend_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- user_id blocked blocked_id.
CREATE TABLE IF NOT EXISTS blocks (
  user_id    BIGINT UNSIGNED NOT NULL,
  blocked_id BIGINT UNSIGNED NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (user_id, blocked_id),
  KEY k_blocks_blocked (blocked_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
