-- 004: uploaded files (metadata; the bytes live content-addressed under im-rest's files.dir) and
-- the conversations each file was sent in (written by the owner transfer in the batch that commits
-- the FILE message; they decide who may download it).
CREATE TABLE IF NOT EXISTS files (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  owner_id    BIGINT UNSIGNED NOT NULL,
  name        VARCHAR(255) NOT NULL,                     -- display name only, never a path
  size        BIGINT UNSIGNED NOT NULL,
  sha256      CHAR(64) CHARACTER SET ascii NOT NULL,     -- lowercase hex; the blob's name
  mime        VARCHAR(255) CHARACTER SET ascii NOT NULL,
  created_ms  BIGINT NOT NULL,
  PRIMARY KEY (id),
  KEY k_files_sha256 (sha256),
  KEY k_files_created (created_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (file, conversation it was sent in). The foreign key makes the orphan sweep safe:
-- deleting a file that a committed message references fails, and a message referencing a file
-- deleted meanwhile fails its batch (the send is retried and then refused as not found).
CREATE TABLE IF NOT EXISTS file_refs (
  file_id         BIGINT UNSIGNED NOT NULL,
  conversation_id BIGINT UNSIGNED NOT NULL,
  created_ms      BIGINT NOT NULL,
  PRIMARY KEY (file_id, conversation_id),
  CONSTRAINT fk_file_refs_file FOREIGN KEY (file_id) REFERENCES files (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
