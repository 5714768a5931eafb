-- 010: the conversation-list sync reads a user's rows by the primary key (user_id, ...) and sorts
-- the changed ones (version > cursor) itself; the (user_id, version) index is dropped. Every
-- message and receipt moves a row's version, so that index was rewritten (an entry delete-marked,
-- another inserted, the old one purged later) for each of them: at 50 pairs W=1 it cost MariaDB
-- ~20 us of CPU per message (71 -> 50 us, docs/BENCHMARKS.md). A list sync, once per login or
-- SyncHint, now reads all of the user's conversation rows: ~N log N for N conversations.
ALTER TABLE user_conversations DROP INDEX IF EXISTS k_user_conversations_version;
