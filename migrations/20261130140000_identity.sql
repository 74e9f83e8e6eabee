-- Issue 12: who may do what. A principal is a creator or an admin; it holds
-- API keys, stored only as SHA-256 hashes (the keys are 32 random bytes, so
-- a plain hash is as strong as a salted one and lets a lookup be one index
-- probe). Revocation is a timestamp, so listings keep the history.
CREATE TABLE principals (
    id         uuid PRIMARY KEY,
    role       text NOT NULL CHECK (role IN ('creator', 'admin')),
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    principal_id uuid NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    prefix       text NOT NULL,                 -- the first characters, to tell keys apart in a listing
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_principal ON api_keys (principal_id, created_at);

-- Every video and upload has an owner and a visibility. Rows from before
-- this migration have no owner: only admins act on them, and they stay public.
ALTER TABLE videos
    ADD COLUMN owner_id uuid,
    ADD COLUMN visibility text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'unlisted', 'private')),
    -- Whether the renditions were encrypted (decided when they were encoded).
    ADD COLUMN encrypted boolean NOT NULL DEFAULT false;
CREATE INDEX videos_by_owner ON videos (owner_id, id);
CREATE INDEX videos_public ON videos (id) WHERE visibility = 'public';

ALTER TABLE uploads
    ADD COLUMN owner_id uuid,
    ADD COLUMN visibility text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'unlisted', 'private'));

-- A video's content key (AES-128), wrapped (AEAD) under a master key named by
-- master_kid. Rotating the master key re-wraps these rows; the media is not touched.
CREATE TABLE video_keys (
    video_id   uuid PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
    master_kid text NOT NULL,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
