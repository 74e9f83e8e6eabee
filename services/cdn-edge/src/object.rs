//! A cached response and its freshness: RFC 9111 lifetimes (s-maxage over
//! max-age, `immutable`) and RFC 5861's stale-while-revalidate and
//! stale-if-error windows, which let an edge answer while the origin is
//! slow or down.

use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How long a response may be served, from its Cache-Control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    pub fresh_secs: u64,
    pub swr_secs: u64,
    pub sie_secs: u64,
}

impl Freshness {
    /// None means "do not store": no-store, private, no-cache (we would
    /// have to revalidate every time), or no lifetime at all (never guessed).
    /// `private` on a signed answer is stored: it is how an edge in front of
    /// this one's parent receives it, and the edge checks every viewer's
    /// token itself (see `crate::access`).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let cc = headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok())?;
        let signed = crate::access::is_signed(headers);
        let (mut max_age, mut s_maxage, mut swr, mut sie) = (None, None, 0, 0);
        for d in cc.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            let num = |p: &str| d.strip_prefix(p).and_then(|v| v.trim_matches('"').parse::<u64>().ok());
            match d.as_str() {
                "private" if signed => {}
                "no-store" | "private" | "no-cache" => return None,
                _ if d.starts_with("s-maxage=") => s_maxage = num("s-maxage="),
                _ if d.starts_with("max-age=") => max_age = num("max-age="),
                _ if d.starts_with("stale-while-revalidate=") => swr = num("stale-while-revalidate=").unwrap_or(0),
                _ if d.starts_with("stale-if-error=") => sie = num("stale-if-error=").unwrap_or(0),
                _ => {}
            }
        }
        // A shared cache prefers s-maxage (RFC 9111 §5.2.2.10).
        let fresh = s_maxage.or(max_age).filter(|s| *s > 0)?;
        Some(Self { fresh_secs: fresh, swr_secs: swr, sie_secs: sie })
    }

    /// How long an entry is worth keeping: fresh, then whichever stale window is longer.
    pub fn keep(&self) -> Duration {
        Duration::from_secs(self.fresh_secs.saturating_add(self.swr_secs.max(self.sie_secs)))
    }
}

/// What an entry of a given age may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    Fresh,
    /// Serve it, and refresh it in the background.
    StaleRevalidate,
    /// Serve it only if the origin fails.
    StaleIfError,
    Expired,
}

/// A cached 200 response.
#[derive(Debug)]
pub struct CachedObject {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stored_at: SystemTime,
    pub freshness: Freshness,
}

impl CachedObject {
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed().unwrap_or_default()
    }

    pub fn usable(&self) -> Usable {
        let age = self.age().as_secs();
        let f = &self.freshness;
        if age < f.fresh_secs {
            Usable::Fresh
        } else if age < f.fresh_secs + f.swr_secs {
            Usable::StaleRevalidate
        } else if age < f.fresh_secs + f.sie_secs {
            Usable::StaleIfError
        } else {
            Usable::Expired
        }
    }

    /// Weight for the byte-bounded tiers.
    pub fn weight(&self) -> u32 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        (self.body.len() + headers + 128).min(u32::MAX as usize) as u32
    }

    /// The same bytes after a 304: fresh again, with the 304's headers
    /// replacing the stored ones they name (RFC 9111 §4.3.4).
    pub fn refreshed(&self, from_304: &HeaderMap) -> Option<Self> {
        let mut headers = self.headers.clone();
        for name in [header::CACHE_CONTROL, header::ETAG, header::LAST_MODIFIED, header::EXPIRES] {
            if let Some(v) = from_304.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        let freshness = Freshness::from_headers(&headers)?;
        Some(Self { headers, body: self.body.clone(), stored_at: SystemTime::now(), freshness })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cc(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn freshness_follows_cache_control() {
        let f = Freshness::from_headers(&cc("public, max-age=31536000, immutable, stale-if-error=86400")).unwrap();
        assert_eq!((f.fresh_secs, f.swr_secs, f.sie_secs), (31536000, 0, 86400));
        assert_eq!(Freshness::from_headers(&cc("max-age=60, s-maxage=5, stale-while-revalidate=30")).unwrap().fresh_secs, 5);
        assert_eq!(Freshness::from_headers(&cc("no-store")), None);
        assert_eq!(Freshness::from_headers(&cc("private, max-age=60")), None);
        assert_eq!(Freshness::from_headers(&cc("max-age=0")), None);
        assert_eq!(Freshness::from_headers(&HeaderMap::new()), None);
        let mut signed = cc("private, max-age=60");
        signed.insert(shared::playback::ACCESS_HEADER, HeaderValue::from_static(shared::playback::ACCESS_SIGNED));
        assert_eq!(Freshness::from_headers(&signed).unwrap().fresh_secs, 60, "a parent edge's signed answer is stored");
        signed.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        assert_eq!(Freshness::from_headers(&signed), None);
    }

    #[test]
    fn an_entry_ages_through_fresh_stale_and_expired() {
        let object = |age: u64| CachedObject {
            headers: HeaderMap::new(),
            body: Bytes::new(),
            stored_at: SystemTime::now() - Duration::from_secs(age),
            freshness: Freshness { fresh_secs: 10, swr_secs: 5, sie_secs: 100 },
        };
        assert_eq!(object(0).usable(), Usable::Fresh);
        assert_eq!(object(12).usable(), Usable::StaleRevalidate);
        assert_eq!(object(50).usable(), Usable::StaleIfError);
        assert_eq!(object(200).usable(), Usable::Expired);
        assert_eq!(object(0).freshness.keep(), Duration::from_secs(110));
    }
}
