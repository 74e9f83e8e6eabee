-- The reconciler (shared::reconcile) asks which object keys a row still
-- names; without an index each batch would scan every video.
CREATE INDEX IF NOT EXISTS videos_source_key ON videos (source_key);
CREATE INDEX IF NOT EXISTS uploads_object_key ON uploads (object_key);
CREATE INDEX IF NOT EXISTS uploads_s3_upload_id ON uploads (s3_upload_id) WHERE s3_upload_id IS NOT NULL;
