-- Issue 4: each transcode attempt writes under its own S3 prefix and the one
-- that commits wins; deletions are two-phase so a failed object delete can be
-- retried.
ALTER TABLE videos DROP CONSTRAINT videos_status_check;
ALTER TABLE videos ADD CONSTRAINT videos_status_check
    CHECK (status IN ('uploaded', 'queued', 'processing', 'ready', 'failed', 'deleting'));

-- abandoned:  its worker died; another attempt committed.
-- cancelled:  its video was deleted while it ran.
-- superseded: it finished, but another attempt had already committed.
ALTER TABLE transcode_attempts DROP CONSTRAINT transcode_attempts_outcome_check;
ALTER TABLE transcode_attempts ADD CONSTRAINT transcode_attempts_outcome_check
    CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned', 'cancelled', 'superseded'));

-- The S3 prefix an attempt writes under (hls/{video}/{attempt}/).
ALTER TABLE transcode_attempts ADD COLUMN prefix text;
