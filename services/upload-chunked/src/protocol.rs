//! tus 1.0.0 on the wire: header names, what this server advertises, and the
//! parsing of every request header into a checked value. Handlers never see
//! a raw tus header string; whatever fails to parse here is a 400 (or 412)
//! before any stored state is touched.

use axum::http::{HeaderMap, HeaderName};
use base64::Engine;
use uuid::Uuid;

use crate::checksum::Algorithm;
use crate::error::TusError;

pub const TUS_VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,checksum-trailer,\
termination,concatenation,concatenation-unfinished";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Where uploads live; Location and Upload-Concat URLs are under it.
pub const BASE_PATH: &str = "/api/v1/uploads";

pub mod names {
    use axum::http::HeaderName;
    pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
    pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
    pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
    pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
    pub const TUS_CHECKSUM_ALGORITHM: HeaderName =
        HeaderName::from_static("tus-checksum-algorithm");
    pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
    pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
    pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
    pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
    pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
    pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
    pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
    pub const METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");
    pub const LINK: HeaderName = HeaderName::from_static("link");
}

/// Every tus header, for CORS: browsers may send these and must be allowed to read them.
pub const ALL_HEADERS: [HeaderName; 13] = [
    names::TUS_RESUMABLE,
    names::TUS_VERSION,
    names::TUS_EXTENSION,
    names::TUS_MAX_SIZE,
    names::TUS_CHECKSUM_ALGORITHM,
    names::UPLOAD_OFFSET,
    names::UPLOAD_LENGTH,
    names::UPLOAD_DEFER_LENGTH,
    names::UPLOAD_METADATA,
    names::UPLOAD_EXPIRES,
    names::UPLOAD_CHECKSUM,
    names::UPLOAD_CONCAT,
    names::METHOD_OVERRIDE,
];

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, TusError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| TusError::BadHeader(name.to_string(), "is not ASCII text".into())),
    }
}

/// Every request but OPTIONS must speak our version.
pub fn check_resumable(headers: &HeaderMap) -> Result<(), TusError> {
    match text(headers, &names::TUS_RESUMABLE)? {
        Some(TUS_VERSION) => Ok(()),
        other => Err(TusError::UnsupportedVersion(
            other.unwrap_or("(none)").to_owned(),
        )),
    }
}

/// A non-negative byte count: digits only, as the spec's "non-negative integer".
fn byte_count(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, TusError> {
    let Some(raw) = text(headers, name)? else {
        return Ok(None);
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TusError::BadHeader(
            name.to_string(),
            format!("must be a non-negative integer, got {raw:?}"),
        ));
    }
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n <= i64::MAX as u64)
        .map(Some)
        .ok_or_else(|| TusError::BadHeader(name.to_string(), format!("{raw} is out of range")))
}

pub fn upload_offset(headers: &HeaderMap) -> Result<u64, TusError> {
    byte_count(headers, &names::UPLOAD_OFFSET)?.ok_or(TusError::MissingHeader("Upload-Offset"))
}

pub fn upload_length(headers: &HeaderMap) -> Result<Option<u64>, TusError> {
    byte_count(headers, &names::UPLOAD_LENGTH)
}

pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `Upload-Defer-Length: 1` is the only legal value.
pub fn defer_length(headers: &HeaderMap) -> Result<bool, TusError> {
    match text(headers, &names::UPLOAD_DEFER_LENGTH)? {
        None => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(TusError::BadHeader(
            "upload-defer-length".into(),
            format!("must be 1, got {v:?}"),
        )),
    }
}

/// `Content-Type: application/offset+octet-stream` (parameters tolerated).
pub fn is_offset_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// Validated Upload-Metadata: the header text (echoed back verbatim on
/// HEAD) and its decoded pairs. Values are base64; keys are unique, ASCII,
/// with no spaces or commas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub raw: String,
    pub pairs: Vec<(String, Option<Vec<u8>>)>,
}

impl Metadata {
    pub fn parse(raw: &str) -> Result<Self, TusError> {
        let bad = |why: String| TusError::BadHeader("upload-metadata".into(), why);
        let mut pairs: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut it = item.splitn(2, ' ');
            let key = it.next().unwrap_or_default();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(bad(format!(
                    "key {key:?} must be printable ASCII without spaces or commas"
                )));
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(bad(format!("key {key:?} appears twice")));
            }
            let value = match it.next().map(str::trim).filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|_| bad(format!("the value of {key:?} is not base64")))?,
                ),
            };
            pairs.push((key.to_owned(), value));
        }
        Ok(Self {
            raw: raw.trim().to_owned(),
            pairs,
        })
    }

    pub fn from_headers(headers: &HeaderMap) -> Result<Self, TusError> {
        Ok(text(headers, &names::UPLOAD_METADATA)?
            .map(Self::parse)
            .transpose()?
            .unwrap_or_default())
    }

    /// A value as UTF-8 text, or None when absent, empty or not text.
    pub fn text(&self, key: &str) -> Option<String> {
        let bytes = self.pairs.iter().find(|(k, _)| k == key)?.1.as_ref()?;
        String::from_utf8(bytes.clone())
            .ok()
            .filter(|s| !s.trim().is_empty())
    }
}

/// Upload-Concat on creation.
#[derive(Debug, Clone, PartialEq)]
pub enum Concat {
    None,
    Partial,
    Final(Vec<Uuid>),
}

impl Concat {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, TusError> {
        let Some(raw) = text(headers, &names::UPLOAD_CONCAT)? else {
            return Ok(Concat::None);
        };
        let bad = |why: String| TusError::BadHeader("upload-concat".into(), why);
        if raw == "partial" {
            return Ok(Concat::Partial);
        }
        let Some(list) = raw.strip_prefix("final;") else {
            return Err(bad(format!(
                "must be \"partial\" or \"final;<url> <url>…\", got {raw:?}"
            )));
        };
        let ids = list
            .split_whitespace()
            .map(|url| {
                upload_id_in_url(url)
                    .ok_or_else(|| bad(format!("{url:?} is not an upload URL of this server")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(bad(
                "a final upload needs at least one partial upload".into()
            ));
        }
        Ok(Concat::Final(ids))
    }
}

/// The id in `/api/v1/uploads/{id}` or `http(s)://host/api/v1/uploads/{id}`.
fn upload_id_in_url(url: &str) -> Option<Uuid> {
    let path = match url.find("://") {
        Some(i) => &url[i + 3..][url[i + 3..].find('/')?..],
        None => url,
    };
    let id = path.strip_prefix(BASE_PATH)?.strip_prefix('/')?;
    Uuid::try_parse(id.trim_end_matches('/')).ok()
}

pub fn upload_path(id: Uuid) -> String {
    format!("{BASE_PATH}/{id}")
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

impl Checksum {
    pub fn parse(raw: &str) -> Result<Self, TusError> {
        let bad = |why: String| TusError::BadHeader("upload-checksum".into(), why);
        let (name, value) = raw
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("must be \"<algorithm> <base64 digest>\"".into()))?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| TusError::UnsupportedChecksum(name.to_owned()))?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| bad("the digest is not base64".into()))?;
        if digest.len() != algorithm.digest_len() {
            return Err(bad(format!(
                "a {name} digest is {} bytes, got {}",
                algorithm.digest_len(),
                digest.len()
            )));
        }
        Ok(Self { algorithm, digest })
    }
}

/// How a PATCH proves its bytes: a header now, a trailer after the body, or not at all.
#[derive(Debug, Clone, PartialEq)]
pub enum ChecksumPlan {
    None,
    Header(Checksum),
    Trailer,
}

impl ChecksumPlan {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, TusError> {
        if let Some(raw) = text(headers, &names::UPLOAD_CHECKSUM)? {
            return Ok(ChecksumPlan::Header(Checksum::parse(raw)?));
        }
        let announced = headers
            .get_all(axum::http::header::TRAILER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case("upload-checksum"));
        Ok(if announced {
            ChecksumPlan::Trailer
        } else {
            ChecksumPlan::None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn byte_counts_must_be_plain_non_negative_integers() {
        assert_eq!(
            upload_offset(&headers(&[("upload-offset", "42")])).unwrap(),
            42
        );
        for bad in ["-1", "1.5", "abc", "", "+3", "99999999999999999999"] {
            assert!(
                matches!(
                    upload_offset(&headers(&[("upload-offset", bad)])),
                    Err(TusError::BadHeader(..))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            upload_offset(&HeaderMap::new()),
            Err(TusError::MissingHeader(_))
        ));
    }

    #[test]
    fn version_other_than_1_0_0_is_refused() {
        assert!(check_resumable(&headers(&[("tus-resumable", "1.0.0")])).is_ok());
        assert!(matches!(
            check_resumable(&headers(&[("tus-resumable", "0.2.2")])),
            Err(TusError::UnsupportedVersion(_))
        ));
        assert!(matches!(
            check_resumable(&HeaderMap::new()),
            Err(TusError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn metadata_decodes_base64_values_and_rejects_garbage() {
        let m = Metadata::parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(
            m.text("filename").as_deref(),
            Some("world_domination_plan.pdf")
        );
        assert_eq!(m.pairs[1], ("is_confidential".to_owned(), None));
        assert!(Metadata::parse("filename not*base64").is_err());
        assert!(Metadata::parse("a YQ==,a YQ==").is_err());
    }

    #[test]
    fn concat_final_accepts_relative_and_absolute_urls() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let h = headers(&[(
            "upload-concat",
            &format!("final;/api/v1/uploads/{a} https://cdn.example/api/v1/uploads/{b}"),
        )]);
        assert_eq!(Concat::from_headers(&h).unwrap(), Concat::Final(vec![a, b]));
        assert_eq!(
            Concat::from_headers(&headers(&[("upload-concat", "partial")])).unwrap(),
            Concat::Partial
        );
        assert!(
            Concat::from_headers(&headers(&[("upload-concat", "final;/elsewhere/x")])).is_err()
        );
        assert!(Concat::from_headers(&headers(&[("upload-concat", "final;")])).is_err());
        assert!(Concat::from_headers(&headers(&[("upload-concat", "whole")])).is_err());
    }

    #[test]
    fn checksum_header_names_a_known_algorithm_and_a_digest_of_its_size() {
        let c = Checksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        assert!(matches!(
            Checksum::parse("blake3 AAAA"),
            Err(TusError::UnsupportedChecksum(_))
        ));
        assert!(matches!(
            Checksum::parse("sha1 AAAA"),
            Err(TusError::BadHeader(..))
        ));
        assert!(matches!(
            Checksum::parse("sha1"),
            Err(TusError::BadHeader(..))
        ));
        let trailer = headers(&[("trailer", "Upload-Checksum")]);
        assert_eq!(
            ChecksumPlan::from_headers(&trailer).unwrap(),
            ChecksumPlan::Trailer
        );
    }
}
