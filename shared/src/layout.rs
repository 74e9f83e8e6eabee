//! Where each object lives in the bucket. Every key is built here, so the
//! layout is one page to read:
//!
//! ```text
//! sources/{video_id}                 the uploaded file, byte for byte (one multipart upload)
//! hls/{video_id}/{rendition}/init.mp4         CMAF init segment of one rung
//! hls/{video_id}/{rendition}/seg_00000.m4s    CMAF media segments (6 s)
//! hls/{video_id}/{rendition}/index.m3u8       the rung's VOD playlist
//! hls/{video_id}/poster.jpg          poster image
//! hls/{video_id}/master.m3u8         written last: its presence means "playable"
//! tus/partials/{upload_id}           a tus partial upload (concatenation), until assembled
//! tus/tails/{upload_id}              a tus upload's bytes past its last whole S3 part
//! ```

use uuid::Uuid;

pub fn source(video_id: Uuid) -> String {
    format!("sources/{video_id}")
}

pub fn tus_partial(upload_id: Uuid) -> String {
    format!("tus/partials/{upload_id}")
}

pub fn tus_tail(upload_id: Uuid) -> String {
    format!("tus/tails/{upload_id}")
}

pub fn hls_prefix(video_id: Uuid) -> String {
    format!("hls/{video_id}/")
}

pub fn master_playlist(video_id: Uuid) -> String {
    format!("hls/{video_id}/master.m3u8")
}

/// Public URL path of an HLS object, as the origin and edges serve it.
pub fn public_hls_path(video_id: Uuid, relative: &str) -> String {
    format!("/hls/{video_id}/{relative}")
}
