-- The catalogue: one row per uploaded video, its renditions once transcoded,
-- and one row per transcode attempt (so retries and failures are auditable).
CREATE TABLE videos (
    id               uuid PRIMARY KEY,             -- UUIDv7: time-ordered, so it doubles as the page cursor
    title            text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    status           text        NOT NULL CHECK (status IN ('uploaded', 'queued', 'processing', 'ready', 'failed')),
    source_key       text        NOT NULL,
    source_size      bigint      NOT NULL CHECK (source_size > 0),
    source_sha256    text        NOT NULL CHECK (length(source_sha256) = 64),
    content_type     text        NOT NULL,
    duration_seconds double precision,
    width            integer,
    height           integer,
    master_key       text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Rows a republisher must look at: uploaded but never confirmed on the queue.
CREATE INDEX videos_unfinished_idx ON videos (updated_at) WHERE status IN ('uploaded', 'queued', 'processing');

CREATE TABLE renditions (
    video_id          uuid    NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    name              text    NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    bandwidth         bigint  NOT NULL,
    average_bandwidth bigint  NOT NULL,
    codecs            text    NOT NULL,
    frame_rate        double precision NOT NULL,
    playlist_key      text    NOT NULL,
    PRIMARY KEY (video_id, name)
);

CREATE TABLE transcode_attempts (
    id          uuid PRIMARY KEY,
    video_id    uuid        NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    job_id      uuid        NOT NULL,
    attempt     integer     NOT NULL,
    worker      text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed')),
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX transcode_attempts_video_idx ON transcode_attempts (video_id, started_at);
