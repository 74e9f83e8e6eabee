//! Request body → one S3 object, for raw and multipart/form-data bodies.
//!
//! The body is never held whole: chunks go straight into a
//! [`MultipartWriter`], whose bounded buffer is the backpressure. The size
//! limit is enforced on the bytes as they arrive (Content-Length may be
//! absent, as with chunked HTTP/1.1 or HTTP/2 without the header), the whole
//! body — form fields included — is read under the pace rules (minimum
//! rate, deadline, idle limit), and every error path aborts the S3 upload
//! before answering.

use shared::videos::Visibility;
use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use shared::pace::{paced, Breach, BodyError, Pace};
use shared::storage::{part_size_for, MultipartWriter, Storage, Stored};

use crate::configuration::UploadSettings;
use crate::error::ApiError;

/// How the body carries the video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Raw { content_type: String },
    Multipart { boundary: String },
}

/// The stored object plus the form fields that came with it.
#[derive(Debug)]
pub struct Received {
    pub stored: Stored,
    pub content_type: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
}

const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 5000;

pub fn is_video_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.starts_with("video/") || essence == "application/octet-stream"
}

pub fn classify(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::UnsupportedMediaType("(none)".into()))?;
    if is_video_type(ct) {
        return Ok(BodyKind::Raw { content_type: ct.split(';').next().unwrap_or(ct).trim().to_owned() });
    }
    if ct.trim().to_ascii_lowercase().starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(ct).map_err(|e| ApiError::BadMultipart(format!("Content-Type has no usable boundary: {e}")))?;
        return Ok(BodyKind::Multipart { boundary });
    }
    Err(ApiError::UnsupportedMediaType(ct.to_owned()))
}

/// `public`, `unlisted` or `private`; None means "not given".
pub fn parse_visibility(raw: Option<&str>) -> Result<Option<Visibility>, ApiError> {
    raw.map(|v| v.trim().parse().map_err(ApiError::InvalidField)).transpose()
}

/// Trims and checks a title; None means "not given".
pub fn clean_title(raw: Option<String>) -> Result<Option<String>, ApiError> {
    clean_text(raw, "title", MAX_TITLE_CHARS)
}

fn clean_text(raw: Option<String>, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > max {
        return Err(ApiError::InvalidField(format!("{name} is longer than {max} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::InvalidField(format!("{name} contains control characters")));
    }
    Ok(Some(t.to_owned()))
}

pub struct Intake<'a> {
    pub storage: &'a Storage,
    pub settings: &'a UploadSettings,
    pub key: String,
}

impl Intake<'_> {
    pub async fn receive(&self, kind: BodyKind, body: Body) -> Result<Received, ApiError> {
        let pace = Pace::start(&self.settings.pace, Some(self.settings.idle_timeout.0));
        let body = paced(body.into_data_stream(), pace);
        match kind {
            BodyKind::Raw { content_type } => {
                let chunks = body.map(|r| r.map_err(body_error));
                let stored = self.store(&content_type, Box::pin(chunks)).await?;
                Ok(Received { stored, content_type, title: None, description: None, visibility: None })
            }
            BodyKind::Multipart { boundary } => self.receive_form(boundary, body).await,
        }
    }

    async fn receive_form<S>(&self, boundary: String, body: S) -> Result<Received, ApiError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
    {
        let limits = multer::SizeLimit::new().for_field("title", 4096).for_field("description", 32 << 10).for_field("visibility", 64);
        let mut form = multer::Multipart::with_constraints(body, boundary, multer::Constraints::new().size_limit(limits));
        let (mut stored, mut content_type, mut title, mut description, mut visibility) = (None, None, None, None, None);
        while let Some(field) = form.next_field().await.map_err(form_error)? {
            match field.name().unwrap_or("") {
                "file" => {
                    if stored.is_some() {
                        return Err(ApiError::BadMultipart("more than one `file` part".into()));
                    }
                    let ct = field.content_type().map(|m| m.essence_str().to_owned()).unwrap_or_else(|| "application/octet-stream".into());
                    if !is_video_type(&ct) {
                        return Err(ApiError::UnsupportedMediaType(ct));
                    }
                    let chunks = field.map(|r| r.map_err(form_error));
                    stored = Some(self.store(&ct, chunks).await?);
                    content_type = Some(ct);
                }
                "title" => title = Some(field.text().await.map_err(form_error)?),
                "description" => description = Some(field.text().await.map_err(form_error)?),
                "visibility" => visibility = Some(field.text().await.map_err(form_error)?),
                other => return Err(ApiError::InvalidField(format!("unknown form field {other:?}; expected file, title, description, visibility"))),
            }
        }
        let stored = stored.ok_or_else(|| ApiError::BadMultipart("no `file` part".into()))?;
        // Fields are validated after the file only because forms may send them
        // in any order; a bad field still leaves nothing behind.
        let cleaned = clean_title(title).and_then(|t| Ok((t, clean_text(description, "description", MAX_DESCRIPTION_CHARS)?, parse_visibility(visibility.as_deref())?)));
        match cleaned {
            Ok((title, description, visibility)) => Ok(Received { stored, content_type: content_type.unwrap_or_default(), title, description, visibility }),
            Err(e) => {
                if let Err(del) = self.storage.delete(&stored.key).await {
                    tracing::error!(key = stored.key, error = format!("{del:#}"), "could not delete refused upload");
                }
                Err(e)
            }
        }
    }

    /// Copies a byte stream into a new object, enforcing the size limit;
    /// aborts the S3 upload on any failure.
    async fn store<S>(&self, content_type: &str, stream: S) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
    {
        let part = part_size_for(self.settings.max_bytes.0, self.settings.part_bytes);
        let mut writer = MultipartWriter::begin(self.storage, &self.key, content_type, part, self.settings.parts_in_flight)
            .await
            .map_err(ApiError::Storage)?;
        match copy(&mut writer, stream, self.settings.max_bytes.0).await {
            Ok(()) if writer.size() == 0 => {
                abort(writer).await;
                Err(ApiError::EmptyBody)
            }
            Ok(()) => writer.finish().await.map_err(ApiError::Storage),
            Err(e) => {
                abort(writer).await;
                Err(e)
            }
        }
    }
}

async fn copy<S>(writer: &mut MultipartWriter, mut stream: S, max: u64) -> Result<(), ApiError>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    loop {
        match stream.next().await {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(chunk)) => {
                if writer.size() + chunk.len() as u64 > max {
                    return Err(ApiError::TooLarge { max });
                }
                writer.write(chunk).await.map_err(ApiError::Storage)?;
            }
        }
    }
}

async fn abort(writer: MultipartWriter) {
    if let Err(e) = writer.abort().await {
        tracing::error!(error = format!("{e:#}"), "could not abort multipart upload");
    }
}

fn body_error(e: BodyError) -> ApiError {
    match e {
        BodyError::Breach(b) => b.into(),
        BodyError::Body(e) => ApiError::Interrupted(e.to_string()),
    }
}

fn form_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamReadFailed(inner) => match Breach::find(&*inner) {
            Some(b) => b.into(),
            None => ApiError::Interrupted(inner.to_string()),
        },
        multer::Error::FieldSizeExceeded { field_name, limit } => {
            ApiError::InvalidField(format!("form field {:?} is longer than {limit} bytes", field_name.unwrap_or_default()))
        }
        other => ApiError::BadMultipart(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn content_types_are_classified() {
        assert_eq!(classify(&ct("video/mp4")).unwrap(), BodyKind::Raw { content_type: "video/mp4".into() });
        assert_eq!(classify(&ct("Application/Octet-Stream")).unwrap(), BodyKind::Raw { content_type: "Application/Octet-Stream".into() });
        assert_eq!(classify(&ct("multipart/form-data; boundary=xyz")).unwrap(), BodyKind::Multipart { boundary: "xyz".into() });
        assert!(matches!(classify(&ct("text/plain")), Err(ApiError::UnsupportedMediaType(_))));
        assert!(matches!(classify(&HeaderMap::new()), Err(ApiError::UnsupportedMediaType(_))));
        assert!(matches!(classify(&ct("multipart/form-data")), Err(ApiError::BadMultipart(_))));
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(clean_title(Some("  Cats  ".into())).unwrap().as_deref(), Some("Cats"));
        assert_eq!(clean_title(Some("   ".into())).unwrap(), None);
        assert!(clean_title(Some("x".repeat(201))).is_err());
        assert!(clean_title(Some("a\u{7}b".into())).is_err());
    }
}
