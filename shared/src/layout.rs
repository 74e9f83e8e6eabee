//! Where each object lives in the bucket. Every key is built here, so the
//! layout is one page to read:
//!
//! ```text
//! sources/{video_id}                 the uploaded file, byte for byte (one multipart upload)
//! hls/{video_id}/{attempt_id}/                one transcode attempt's outputs; the committed
//!                                             attempt's folder is in the row's master_key
//!   {rung}/init_N.mp4, {rung}/seg_00000.m4s   CMAF init and 6 s media segments (video rungs,
//!   audio/init_N.mp4, audio/seg_00000.m4s       and the one audio rendition)
//!   {rung}/index.m3u8, audio/index.m3u8       VOD media playlists
//!   {rung}/iframes.m3u8                       I-frame playlist (byte ranges into the segments)
//!   manifest.mpd                              DASH manifest over the same segments
//!   poster.jpg, sprite_000.jpg…, thumbnails.vtt   poster; scrubbing thumbnails
//!   master.m3u8                               written last: its presence means "complete"
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

/// The folder one transcode attempt writes to. Attempts never share one, so
/// an attempt that is cut off cannot mix its objects into another's.
pub fn attempt_prefix(video_id: Uuid, attempt_id: Uuid) -> String {
    format!("hls/{video_id}/{attempt_id}/")
}

pub const MASTER_PLAYLIST: &str = "master.m3u8";

/// The folder a committed video is served from, given its row's master_key.
pub fn served_prefix(master_key: &str) -> Option<&str> {
    master_key.strip_suffix(MASTER_PLAYLIST).filter(|p| p.starts_with("hls/") && p.ends_with('/'))
}

/// The media type of an HLS object by its extension: what the worker stores
/// and the origin answers with. None for names outside the layout.
pub fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit('.').next()? {
        "m3u8" => PLAYLIST_TYPE,
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "ts" => "video/mp2t",
        "jpg" => "image/jpeg",
        "vtt" => TEXT_MANIFEST_TYPES[2],
        "mpd" => TEXT_MANIFEST_TYPES[1],
        _ => return None,
    })
}

/// The HLS playlist media type.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Text manifests (HLS, DASH, WebVTT): gzipped, with the playlist cache
/// policy; everything else is media, already compressed and immutable.
pub const TEXT_MANIFEST_TYPES: [&str; 3] = [PLAYLIST_TYPE, "application/dash+xml", "text/vtt"];

/// Public URL path of an HLS object, as the origin and edges serve it.
pub fn public_hls_path(video_id: Uuid, relative: &str) -> String {
    format!("/hls/{video_id}/{relative}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_folder_is_the_committed_attempts() {
        let (v, a) = (Uuid::now_v7(), Uuid::now_v7());
        let master = format!("{}{MASTER_PLAYLIST}", attempt_prefix(v, a));
        assert_eq!(served_prefix(&master), Some(attempt_prefix(v, a).as_str()));
        assert!(attempt_prefix(v, a).starts_with(&hls_prefix(v)));
        assert_eq!(served_prefix("sources/x"), None);
    }
}
