-- 009 (issue 16): one round trip for the commonest batch: one conversation's two watermark rows,
-- with at most one new one-to-one message (a lone message, a message with the peer's receipt, or
-- receipts alone; no group). The owner transfer's writer CALLs this with the batch as parameters (a
-- prepared CALL: no SQL is built from data) instead of up to 6 statements and the COMMIT: the
-- procedure commits. It writes the same rows with the same statements' semantics and takes the
-- same locks in the same order as the batch path (transfer/message_writer.cpp write()): the shard
-- fence first, the sync version counters in user id order. Only when the shard_owner row still
-- carries the writer's epoch and the gen its caches belong to (p_gen) does it write and COMMIT;
-- otherwise it writes nothing and rolls back. Answers one row: the shard's gen (NULL when the epoch
-- no longer holds the shard: the writer bounces the requests; another gen: the writer reloads).
-- writer.single_call=false turns it off.
DROP PROCEDURE IF EXISTS im_store_pair;
DELIMITER //
CREATE PROCEDURE im_store_pair(
  IN p_epoch BIGINT UNSIGNED, IN p_shard INT UNSIGNED, IN p_gen BIGINT UNSIGNED, IN p_conv BIGINT UNSIGNED,
  IN p_now BIGINT,
  IN p_msg TINYINT, IN p_seq BIGINT UNSIGNED, IN p_msg_id BIGINT UNSIGNED, IN p_sender BIGINT UNSIGNED,
  IN p_device VARCHAR(64), IN p_cmid BINARY(16), IN p_type TINYINT UNSIGNED, IN p_body MEDIUMBLOB,
  IN p_created BIGINT, IN p_file_id BIGINT UNSIGNED,
  IN a_user BIGINT UNSIGNED, IN a_last BIGINT UNSIGNED, IN a_my_del BIGINT UNSIGNED, IN a_my_read BIGINT UNSIGNED,
  IN a_peer_del BIGINT UNSIGNED, IN a_peer_read BIGINT UNSIGNED, IN a_received BIGINT UNSIGNED,
  IN b_user BIGINT UNSIGNED, IN b_last BIGINT UNSIGNED, IN b_my_del BIGINT UNSIGNED, IN b_my_read BIGINT UNSIGNED,
  IN b_peer_del BIGINT UNSIGNED, IN b_peer_read BIGINT UNSIGNED, IN b_received BIGINT UNSIGNED,
  IN p_push_user BIGINT UNSIGNED, IN p_push_from BIGINT UNSIGNED)
BEGIN
  DECLARE v_gen BIGINT UNSIGNED DEFAULT NULL;
  DECLARE v_a BIGINT UNSIGNED DEFAULT 0;
  DECLARE v_b BIGINT UNSIGNED DEFAULT 0;
  SELECT gen INTO v_gen FROM shard_owner WHERE epoch = p_epoch AND shard = p_shard LOCK IN SHARE MODE;
  IF v_gen IS NOT NULL AND v_gen = p_gen THEN
    IF p_msg <> 0 THEN
      INSERT INTO messages (conversation_id, seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms)
        VALUES (p_conv, p_seq, p_msg_id, p_sender, p_device, p_cmid, p_type, p_body, p_created);
      IF p_file_id <> 0 THEN
        INSERT INTO file_refs (file_id, conversation_id, created_ms) VALUES (p_file_id, p_conv, p_now)
          ON DUPLICATE KEY UPDATE file_id = file_id;
      END IF;
    END IF;
    INSERT INTO user_sync_versions (user_id, version) VALUES (LEAST(a_user, b_user), 1), (GREATEST(a_user, b_user), 1)
      ON DUPLICATE KEY UPDATE version = version + 1;
    SELECT version INTO v_a FROM user_sync_versions WHERE user_id = a_user;
    SELECT version INTO v_b FROM user_sync_versions WHERE user_id = b_user;
    INSERT INTO user_conversations (user_id, conversation_id, peer_id, last_seq, my_delivered_seq, my_read_seq,
        peer_delivered_seq, peer_read_seq, unread, version, updated_ms)
      VALUES (a_user, p_conv, b_user, a_last, a_my_del, a_my_read, a_peer_del, a_peer_read, a_received, v_a, p_now),
             (b_user, p_conv, a_user, b_last, b_my_del, b_my_read, b_peer_del, b_peer_read, b_received, v_b, p_now)
      ON DUPLICATE KEY UPDATE last_seq = GREATEST(last_seq, VALUES(last_seq)),
        my_delivered_seq = GREATEST(my_delivered_seq, VALUES(my_delivered_seq)),
        my_read_seq = GREATEST(my_read_seq, VALUES(my_read_seq)),
        peer_delivered_seq = GREATEST(peer_delivered_seq, VALUES(peer_delivered_seq)),
        peer_read_seq = GREATEST(peer_read_seq, VALUES(peer_read_seq)),
        unread = IF(VALUES(my_read_seq) > 0 AND my_read_seq = VALUES(my_read_seq),
          (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = user_conversations.conversation_id
             AND m.seq > user_conversations.my_read_seq AND m.sender_id = user_conversations.peer_id),
          unread + VALUES(unread)),
        version = VALUES(version), updated_ms = VALUES(updated_ms);
    IF p_push_user <> 0 THEN
      INSERT INTO push_pending (user_id, conversation_id, from_user_id, up_to_seq, updated_ms, first_ms)
        VALUES (p_push_user, p_conv, p_push_from, p_seq, p_now, p_now)
        ON DUPLICATE KEY UPDATE from_user_id = IF(VALUES(up_to_seq) > up_to_seq, VALUES(from_user_id), from_user_id),
          up_to_seq = GREATEST(up_to_seq, VALUES(up_to_seq)), updated_ms = VALUES(updated_ms),
          first_ms = IF(first_ms = 0, VALUES(first_ms), first_ms);
    END IF;
    COMMIT;
  ELSE
    ROLLBACK;
  END IF;
  SELECT v_gen AS gen;
END //
DELIMITER ;
