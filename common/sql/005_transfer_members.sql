-- 005: several im-transfer replicas. Each live transfer holds a short lease in transfer_members
-- (renewed every second on the database's clock); shards are assigned over the active members
-- by rendezvous hashing, handed over cooperatively and taken over after a lease expires.
-- shard_owner.gen is bumped by every change of owner: connectors keep the highest gen per shard,
-- and a writer lane whose cached state belongs to an older gen of a shard reloads it.
CREATE TABLE IF NOT EXISTS transfer_members (
  incarnation    BIGINT UNSIGNED NOT NULL,   -- the process's shard_owner epoch (unique per start)
  transfer_id    VARCHAR(128) NOT NULL,
  address        VARCHAR(255) NOT NULL,
  state          TINYINT UNSIGNED NOT NULL,  -- 1 joining, 2 active, 3 draining
  lease_until_ms BIGINT NOT NULL,            -- database clock (UNIX ms)
  started_ms     BIGINT NOT NULL,
  PRIMARY KEY (incarnation)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE shard_owner ADD COLUMN IF NOT EXISTS gen BIGINT UNSIGNED NOT NULL DEFAULT 0;
