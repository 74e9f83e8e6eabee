//! HTTP byte ranges (RFC 9110 §14): one parser for the origin and the edges.
//!
//! Only single ranges are honoured; a multi-range request is answered with
//! the whole object (200), which RFC 9110 permits and every player accepts.

/// A satisfiable range, inclusive on both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header: send everything.
    Full,
    Partial(ByteRange),
    /// Syntactically valid but outside the object: 416.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Full };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) if total > 0 => ByteRange { start: total.saturating_sub(n), end: total - 1 },
            Ok(_) => return RangeRequest::Unsatisfiable,
            Err(_) => return RangeRequest::Full,
        },
        // bytes=N-: from N to the end
        (false, true) => match a.parse::<u64>() {
            Ok(s) if s < total => ByteRange { start: s, end: total - 1 },
            Ok(_) => return RangeRequest::Unsatisfiable,
            Err(_) => return RangeRequest::Full,
        },
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => {
                if s >= total {
                    return RangeRequest::Unsatisfiable;
                }
                ByteRange { start: s, end: e.min(total - 1) }
            }
            _ => return RangeRequest::Full,
        },
        (true, true) => return RangeRequest::Full,
    };
    RangeRequest::Partial(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_suffix_and_open_ended_ranges() {
        assert_eq!(parse(Some("bytes=0-99"), 1000), Partial(ByteRange { start: 0, end: 99 }));
        assert_eq!(parse(Some("bytes=-100"), 1000), Partial(ByteRange { start: 900, end: 999 }));
        assert_eq!(parse(Some("bytes=990-"), 1000), Partial(ByteRange { start: 990, end: 999 }));
        assert_eq!(parse(Some("bytes=990-5000"), 1000), Partial(ByteRange { start: 990, end: 999 }));
        assert_eq!(parse(Some("bytes=-5000"), 1000), Partial(ByteRange { start: 0, end: 999 }));
    }

    #[test]
    fn unsatisfiable_and_ignorable_ranges() {
        assert_eq!(parse(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-1"), 1000), Full);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 1000), Full);
        assert_eq!(parse(Some("items=0-1"), 1000), Full);
        assert_eq!(parse(None, 1000), Full);
    }
}
