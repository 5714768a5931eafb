-- 009 (issue 16): one round trip for the commonest batch, a single one-to-one message (no receipt,
-- no group): the owner transfer's writer CALLs this with the message as parameters (a prepared
-- CALL: no SQL is built from data) instead of 5 statements, then COMMITs. Same rows, same locks
-- in the same order as the batch path (message_writer.cpp write()): the shard fence first, the sync
-- version counters in user id order. Answers the shard's gen, or NULL when the epoch no longer
-- holds the shard (nothing written: the writer bounces the request). writer.single_call=false
-- turns it off.
DROP PROCEDURE IF EXISTS im_store_one;
DELIMITER //
CREATE PROCEDURE im_store_one(
  IN p_epoch BIGINT UNSIGNED, IN p_shard INT UNSIGNED, IN p_conv BIGINT UNSIGNED, IN p_seq BIGINT UNSIGNED,
  IN p_msg_id BIGINT UNSIGNED, IN p_sender BIGINT UNSIGNED, IN p_device VARCHAR(64), IN p_cmid BINARY(16),
  IN p_type TINYINT UNSIGNED, IN p_body MEDIUMBLOB, IN p_created BIGINT, IN p_peer BIGINT UNSIGNED,
  IN p_file_id BIGINT UNSIGNED, IN p_push TINYINT, IN p_now BIGINT)
BEGIN
  DECLARE v_gen BIGINT UNSIGNED DEFAULT NULL;
  DECLARE v_sender_version BIGINT UNSIGNED DEFAULT 0;
  DECLARE v_peer_version BIGINT UNSIGNED DEFAULT 0;
  SELECT gen INTO v_gen FROM shard_owner WHERE epoch = p_epoch AND shard = p_shard LOCK IN SHARE MODE;
  IF v_gen IS NOT NULL THEN
    INSERT INTO messages (conversation_id, seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms)
      VALUES (p_conv, p_seq, p_msg_id, p_sender, p_device, p_cmid, p_type, p_body, p_created);
    IF p_file_id <> 0 THEN
      INSERT INTO file_refs (file_id, conversation_id, created_ms) VALUES (p_file_id, p_conv, p_now)
        ON DUPLICATE KEY UPDATE file_id = file_id;
    END IF;
    INSERT INTO user_sync_versions (user_id, version) VALUES (LEAST(p_sender, p_peer), 1), (GREATEST(p_sender, p_peer), 1)
      ON DUPLICATE KEY UPDATE version = version + 1;
    SELECT version INTO v_sender_version FROM user_sync_versions WHERE user_id = p_sender;
    SELECT version INTO v_peer_version FROM user_sync_versions WHERE user_id = p_peer;
    INSERT INTO user_conversations (user_id, conversation_id, peer_id, last_seq, my_delivered_seq, my_read_seq,
        peer_delivered_seq, peer_read_seq, unread, version, updated_ms)
      VALUES (p_sender, p_conv, p_peer, p_seq, 0, 0, 0, 0, 0, v_sender_version, p_now),
             (p_peer, p_conv, p_sender, p_seq, 0, 0, 0, 0, 1, v_peer_version, p_now)
      ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq)), unread = unread + VALUES(unread),
        version = VALUES(version), updated_ms = VALUES(updated_ms);
    IF p_push <> 0 THEN
      INSERT INTO push_pending (user_id, conversation_id, from_user_id, up_to_seq, updated_ms, first_ms)
        VALUES (p_peer, p_conv, p_sender, p_seq, p_now, p_now)
        ON DUPLICATE KEY UPDATE from_user_id = IF(VALUES(up_to_seq) > up_to_seq, VALUES(from_user_id), from_user_id),
          up_to_seq = GREATEST(up_to_seq, VALUES(up_to_seq)), updated_ms = VALUES(updated_ms),
          first_ms = IF(first_ms = 0, VALUES(first_ms), first_ms);
    END IF;
  END IF;
  SELECT v_gen AS gen;
END //
DELIMITER ;
