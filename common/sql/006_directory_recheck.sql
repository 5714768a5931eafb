-- 006: LDAP and external accounts are re-checked against their directory when their tokens are
-- refreshed (docs/ARCHITECTURE.md, "Accounts and tokens").
-- users.verified_at: the last time the directory or service confirmed the account (a login or a
-- re-check); NULL for local accounts. Accounts that exist already count as confirmed now.
ALTER TABLE users ADD COLUMN IF NOT EXISTS verified_at DATETIME(3) NULL;
UPDATE users SET verified_at = CURRENT_TIMESTAMP(3) WHERE origin <> 'local' AND verified_at IS NULL;

-- Re-checks asked for by a token refresh (im-rest or im-transfer), done by im-rest's rechecker.
-- One row per account: a refresh while one is pending adds nothing.
CREATE TABLE IF NOT EXISTS directory_rechecks (
  user_id      BIGINT UNSIGNED NOT NULL,
  requested_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (user_id),
  KEY k_directory_rechecks_requested (requested_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
