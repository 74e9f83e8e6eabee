//! The query of a live media playlist request: blocking reload
//! (`_HLS_msn`, `_HLS_part`) and delta updates (`_HLS_skip`), parsed once at
//! the boundary into a [`PlaylistQuery`] (RFC 8216bis §6.2.5).
//!
//! The origin waits on it; the edge coalesces on it (viewers blocked on the
//! same part make one upstream request), so both read it from here. Other
//! parameters (session id, playback token) are not this module's and are
//! left alone.

use std::fmt;

/// The point of the timeline a blocking request waits for: media sequence
/// number `msn`, and with `part`, that partial segment of it (0-based).
// No ordering on purpose: (M, no part) is met only when segment M is
// complete, later than (M, part 0); compare through Timeline::availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Want {
    pub msn: u64,
    pub part: Option<u32>,
}

/// What a playlist request asks for beyond the playlist itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PlaylistQuery {
    /// Hold the answer until the playlist holds this (blocking reload).
    pub want: Option<Want>,
    /// A delta update: segments older than the skip boundary left out.
    pub skip: bool,
}

/// A query a client cannot be served for; the message says what to change
/// (it becomes a problem+json `detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

const MSN: &str = "_HLS_msn";
const PART: &str = "_HLS_part";
const SKIP: &str = "_HLS_skip";

impl PlaylistQuery {
    /// Parses a raw query string (`a=b&c=d`, no leading `?`). Values are
    /// not percent-decoded: the three parameters are plain digits or words.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let (mut msn, mut part, mut skip) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                MSN => &mut msn,
                PART => &mut part,
                SKIP => &mut skip,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(QueryError(format!("{key} is given twice; give it once")));
            }
        }
        let msn = msn.map(|v| number::<u64>(MSN, v)).transpose()?;
        let part = part.map(|v| number::<u32>(PART, v)).transpose()?;
        if part.is_some() && msn.is_none() {
            return Err(QueryError(format!("{PART} needs {MSN}: name the media sequence number the part belongs to")));
        }
        let skip = match skip {
            None => false,
            // v2 also skips date ranges; these playlists have none, so it is YES here.
            Some("YES" | "v2") => true,
            Some(other) => return Err(QueryError(format!("{SKIP}={other} is not understood; use YES or v2"))),
        };
        Ok(Self { want: msn.map(|msn| Want { msn, part }), skip })
    }

    /// The request in one canonical form (`_HLS_msn=M&_HLS_part=P&_HLS_skip=YES`,
    /// empty for a plain request): what a cache keys the playlist on, so
    /// viewers blocked on the same part share one upstream request whatever
    /// order or extra parameters their players send.
    pub fn canonical(&self) -> String {
        let mut q = Vec::new();
        if let Some(w) = self.want {
            q.push(format!("{MSN}={}", w.msn));
            if let Some(p) = w.part {
                q.push(format!("{PART}={p}"));
            }
        }
        if self.skip {
            q.push(format!("{SKIP}=YES"));
        }
        q.join("&")
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, QueryError> {
    // FromStr for integers accepts a leading '+'; the spec's decimal-integer does not.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError(format!("{key}={value} is not a decimal integer")));
    }
    value.parse().map_err(|_| QueryError(format!("{key}={value} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<PlaylistQuery, QueryError> {
        PlaylistQuery::parse(q)
    }

    #[test]
    fn no_parameters_is_a_plain_request() {
        assert_eq!(parse("").unwrap(), PlaylistQuery::default());
        assert_eq!(parse("sid=abc&token=x.y").unwrap(), PlaylistQuery::default());
    }

    #[test]
    fn msn_and_part_are_read_whatever_else_is_there() {
        let q = parse("sid=abc&_HLS_msn=273&_HLS_part=2&_HLS_skip=YES").unwrap();
        assert_eq!(q.want, Some(Want { msn: 273, part: Some(2) }));
        assert!(q.skip);
        assert_eq!(parse("_HLS_msn=5").unwrap().want, Some(Want { msn: 5, part: None }));
        assert!(parse("_HLS_skip=v2").unwrap().skip);
    }

    #[test]
    fn the_canonical_form_ignores_order_and_other_parameters() {
        let a = parse("_HLS_part=2&sid=x&_HLS_msn=273").unwrap().canonical();
        assert_eq!(a, "_HLS_msn=273&_HLS_part=2");
        assert_eq!(parse("_HLS_skip=v2&_HLS_msn=1").unwrap().canonical(), "_HLS_msn=1&_HLS_skip=YES");
        assert_eq!(parse("token=t").unwrap().canonical(), "");
    }

    #[test]
    fn part_without_msn_is_refused() {
        assert!(parse("_HLS_part=1").unwrap_err().to_string().contains("needs _HLS_msn"));
    }

    #[test]
    fn values_that_are_not_decimal_integers_are_refused() {
        for q in ["_HLS_msn=", "_HLS_msn=-1", "_HLS_msn=+1", "_HLS_msn=1e3", "_HLS_msn=0x10", "_HLS_msn=1&_HLS_part=a"] {
            assert!(parse(q).is_err(), "{q}");
        }
        assert!(parse("_HLS_msn=99999999999999999999").unwrap_err().to_string().contains("out of range"));
        assert!(parse("_HLS_msn=1&_HLS_part=4294967296").is_err());
    }

    #[test]
    fn an_unknown_skip_value_and_a_repeated_parameter_are_refused() {
        assert!(parse("_HLS_skip=NO").unwrap_err().to_string().contains("YES or v2"));
        assert!(parse("_HLS_msn=1&_HLS_msn=2").unwrap_err().to_string().contains("twice"));
    }
}
