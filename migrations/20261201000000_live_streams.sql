-- Issue 14: live streams. A creator's live stream has a stream key (stored
-- only as its SHA-256, like API keys: 32 random bytes need no salt) that an
-- RTMP publisher presents, and a playback id viewers use under /live/. Its
-- state is the ingest's: idle (never or not now on air), live (a publisher
-- is on, or away within the grace period), ended (the recording is handed to
-- the catalogue as `replay_video_id`). A stream may go live again after it
-- ended; each end makes one replay.
CREATE TABLE live_streams (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL,
    title           text NOT NULL,
    key_hash        bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix      text NOT NULL,
    playback_id     uuid NOT NULL UNIQUE,
    state           text NOT NULL DEFAULT 'idle' CHECK (state IN ('idle', 'live', 'ended')),
    replay_video_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_streams_by_owner ON live_streams (owner_id, created_at);
