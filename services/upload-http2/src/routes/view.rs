//! The JSON shape of a video in API responses.

use serde::Serialize;
use shared::cache::Progress;
use shared::layout;
use shared::videos::{Rendition, Video, Visibility};

#[derive(Debug, Serialize)]
pub struct VideoView {
    pub id: uuid::Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub visibility: Visibility,
    /// Encrypted renditions (HLS AES-128; no DASH manifest).
    pub encrypted: bool,
    pub owner_id: Option<uuid::Uuid>,
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    pub duration_seconds: Option<f64>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub error: Option<String>,
    pub master_playlist_url: Option<String>,
    pub renditions: Vec<RenditionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub created_at: String,
    pub updated_at: String,
    pub links: Links,
}

#[derive(Debug, Serialize)]
pub struct RenditionView {
    pub name: String,
    pub width: i32,
    pub height: i32,
    pub bandwidth: i64,
    pub average_bandwidth: i64,
    pub codecs: String,
    pub frame_rate: f64,
    pub playlist_url: String,
}

#[derive(Debug, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    /// A signed playback URL, for videos that are not public.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_playlist: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dash_manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl VideoView {
    pub fn new(v: Video, renditions: Vec<Rendition>, progress: Option<Progress>) -> Self {
        let id = v.id;
        let ready = v.status == "ready";
        let public = |name: &str| ready.then(|| layout::public_hls_path(id, name));
        let master = public(layout::MASTER_PLAYLIST);
        Self {
            renditions: renditions
                .into_iter()
                .map(|r| RenditionView {
                    playlist_url: layout::public_hls_path(id, &format!("{}/index.m3u8", r.name)),
                    name: r.name,
                    width: r.width,
                    height: r.height,
                    bandwidth: r.bandwidth,
                    average_bandwidth: r.average_bandwidth,
                    codecs: r.codecs,
                    frame_rate: r.frame_rate,
                })
                .collect(),
            progress: if v.status == "processing" { progress } else { None },
            links: Links {
                self_: format!("/api/v1/videos/{id}"),
                events: format!("/api/v1/videos/{id}/events"),
                master_playlist: master.clone(),
                play: (ready && v.visibility.is_protected()).then(|| format!("/api/v1/videos/{id}/play")),
                dash_manifest: if v.encrypted { None } else { public("manifest.mpd") },
                poster: public("poster.jpg"),
                thumbnails: public("thumbnails.vtt"),
            },
            master_playlist_url: master,
            id,
            title: v.title,
            description: v.description,
            status: v.status,
            visibility: v.visibility,
            encrypted: v.encrypted,
            owner_id: v.owner_id,
            size: v.source_size,
            sha256: v.source_sha256,
            content_type: v.content_type,
            duration_seconds: v.duration_seconds,
            width: v.width,
            height: v.height,
            error: v.error,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}
