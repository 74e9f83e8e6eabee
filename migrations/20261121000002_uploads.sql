-- Resumable (tus) uploads. One row per tus upload; the bytes live in S3.
--
-- An upload's bytes are split at a fixed part_size: every complete part is
-- an S3 multipart part (listed in upload_parts), and the remainder — less
-- than one part — is the "tail" object, so any replica can take the next
-- PATCH. The committed offset is therefore parts_bytes + tail_bytes, and
-- sha256_state is the SHA-256 midstate over exactly those bytes, which is
-- how the whole-file hash survives across PATCHes, replicas and restarts.
CREATE TABLE uploads (
    id            uuid PRIMARY KEY,
    concat        text NOT NULL DEFAULT 'none' CHECK (concat IN ('none', 'partial', 'final')),
    length        bigint CHECK (length > 0),            -- NULL: deferred (or a final whose partials are unknown)
    metadata      text NOT NULL DEFAULT '',             -- Upload-Metadata exactly as validated
    object_key    text NOT NULL,
    part_size     bigint NOT NULL CHECK (part_size >= 5242880),
    s3_upload_id  text,                                 -- the open S3 multipart upload, once one exists
    parts_bytes   bigint NOT NULL DEFAULT 0 CHECK (parts_bytes >= 0),
    tail_bytes    bigint NOT NULL DEFAULT 0 CHECK (tail_bytes >= 0),
    upload_offset bigint GENERATED ALWAYS AS (parts_bytes + tail_bytes) STORED,
    sha256_state  bytea NOT NULL,
    expires_at    timestamptz NOT NULL,
    completed_at  timestamptz,                          -- object complete in S3
    video_id      uuid,                                 -- the video it became
    consumed_by   uuid,                                 -- partial: the final upload that took its bytes
    failure       text,                                 -- why a complete upload was refused
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (length IS NULL OR parts_bytes + tail_bytes <= length)
);

CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE upload_parts (
    upload_id   uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    size        bigint NOT NULL,
    etag        text NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

-- A final upload's partials, in order.
CREATE TABLE upload_concat (
    final_id   uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    partial_id uuid NOT NULL,
    PRIMARY KEY (final_id, position)
);

CREATE INDEX upload_concat_by_partial ON upload_concat (partial_id);
