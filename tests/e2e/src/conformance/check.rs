//! [`check`]: what a row must answer, derived from the row, against what
//! the server sent. Split from the rows (`mod.rs`) because the rules are
//! most of the matrix: one section per header, then the body.

use std::io::Read;

use bytes::Bytes;
use reqwest::header;
use reqwest::Version;
use shared::sessions::SessionId;

use super::{uri_attr, Object, Policy, Row, Seen, State, Validator};

/// Everything wrong with `seen` as the answer to `row`, each line naming the row.
/// `sid` is the session the request carried (if its shape adds one).
pub fn check(row: &Row, object: &Object, policy: &Policy, sid: &SessionId, seen: &Result<Seen, String>) -> Vec<String> {
    let seen = match seen {
        Ok(s) => s,
        Err(e) => return vec![format!("{row}: no answer: {e}")],
    };
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("{row}: {what}"));
        }
    };
    let (kind, shape) = (row.kind, row.shape);
    let len = object.body.len() as u64;
    let get = |name: header::HeaderName| seen.headers.get(&name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let tagged = kind.taggable() && shape.sid;
    // Per-viewer answers are private rewrites: the stored object's validators, ranges and policy do not apply.
    let private = kind.per_viewer() || tagged;
    let range = shape.range.map(|r| r.resolve(len));

    let status = if kind.per_viewer() && row.state == State::StaleIfError {
        502 // nothing of a per-viewer answer is stored to fall back on
    } else if private {
        200
    } else if matches!(shape.validator, Some(Validator::SameEtag | Validator::SinceModified)) {
        304
    } else {
        match range {
            Some(None) => 416,
            Some(Some(_)) => 206,
            None => 200,
        }
    };
    expect(seen.status == status, format!("status {} (expected {status})", seen.status));
    if seen.status != status {
        return bad;
    }
    let problem = status >= 400;
    let representation = matches!(status, 200 | 206 | 304) && !private;

    // Content-Type, and Content-Encoding: gzip only for text, whole (200) answers.
    let ct = get(header::CONTENT_TYPE);
    if problem {
        expect(ct.as_deref() == Some("application/problem+json"), format!("Content-Type {ct:?} (expected application/problem+json)"));
    } else if status != 304 {
        expect(ct.as_deref().is_some_and(|c| c.starts_with(kind.content_type())), format!("Content-Type {ct:?} (expected {})", kind.content_type()));
    }
    let gzip = status == 200 && kind.text() && shape.gzip();
    let ce = get(header::CONTENT_ENCODING);
    expect(ce.as_deref() == gzip.then_some("gzip"), format!("Content-Encoding {ce:?} (expected {:?})", gzip.then_some("gzip")));

    // Content-Range.
    let cr = get(header::CONTENT_RANGE);
    let want_cr = match (status, range) {
        (206, Some(Some((a, b)))) => Some(format!("bytes {a}-{b}/{len}")),
        (416, _) => Some(format!("bytes */{len}")),
        _ => None,
    };
    expect(cr == want_cr, format!("Content-Range {cr:?} (expected {want_cr:?})"));

    // Validators: the stored object's on a shared answer (a gzipped one may
    // weaken the ETag, as it is another encoding of the same bytes); none on a private rewrite.
    let etag = get(header::ETAG);
    if representation {
        let ok = etag.as_deref() == Some(object.etag.as_str()) || (ce.is_some() && etag.as_deref() == Some(format!("W/{}", object.etag).as_str()));
        expect(ok, format!("ETag {etag:?} (expected {:?})", object.etag));
        let lm = get(header::LAST_MODIFIED);
        expect(lm.as_deref() == Some(object.last_modified.as_str()), format!("Last-Modified {lm:?} (expected {:?})", object.last_modified));
    } else if private {
        expect(etag.is_none(), format!("ETag {etag:?} on a per-viewer rewrite"));
    }

    // Cache-Control: the origin's policy, or private on a rewrite.
    let cc = get(header::CACHE_CONTROL);
    if representation {
        let want = if kind.text() { &policy.text } else { &policy.media };
        expect(cc.as_deref() == Some(want.as_str()), format!("Cache-Control {cc:?} (expected {want:?})"));
    } else if private && status == 200 {
        expect(cc.as_deref() == Some("private, no-store"), format!("Cache-Control {cc:?} (expected \"private, no-store\")"));
    }

    // Vary: a shared text answer may be gzipped for the next asker, so
    // every copy must say it varies, or a cache in front could hand gzip to
    // a client that cannot read it. A private, no-store answer is never kept.
    let vary: Vec<String> = seen.headers.get_all(header::VARY).iter().flat_map(|v| String::from_utf8_lossy(v.as_bytes()).split(',').map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>()).collect();
    if (representation && status == 200 && kind.text()) || (gzip && !private) {
        expect(vary.iter().any(|v| v == "accept-encoding" || v == "*"), format!("Vary {vary:?} lacks Accept-Encoding"));
    }

    // Age: present on what a cache answers from its copy; at least the freshness lifetime once stale.
    let age = get(header::AGE);
    let parsed = age.as_deref().map(|a| a.parse::<u64>());
    expect(!matches!(parsed, Some(Err(_))), format!("Age {age:?} is not a number"));
    if row.state == State::Direct {
        expect(age.is_none(), format!("Age {age:?} straight from the origin"));
    } else if row.state.stored() && representation {
        let min = if matches!(row.state, State::StaleRevalidate | State::StaleIfError) { 1 } else { 0 };
        expect(matches!(parsed, Some(Ok(a)) if a >= min), format!("Age {age:?} (expected ≥ {min})"));
    }

    // X-Cache: what the edge did; a per-viewer answer always passes.
    let x_cache = get(header::HeaderName::from_static("x-cache"));
    let want_x = if kind.per_viewer() && row.state != State::Direct { Some("PASS") } else { row.state.x_cache() };
    if row.state != State::Direct {
        expect(x_cache.as_deref() == want_x, format!("X-Cache {x_cache:?} (expected {want_x:?})"));
    }

    // Framing: an identity answer says its length; HTTP/1.1 without a length is chunked.
    let cl = get(header::CONTENT_LENGTH).map(|v| v.parse::<u64>());
    let te = get(header::TRANSFER_ENCODING);
    let wire = seen.body.len() as u64;
    if shape.head || status == 304 {
        expect(seen.body.is_empty(), format!("{wire} body bytes on a HEAD or 304"));
    }
    if !shape.head && status != 304 {
        match &cl {
            Some(Ok(n)) => expect(*n == wire, format!("Content-Length {n} but {wire} bytes came")),
            Some(Err(_)) => expect(false, format!("Content-Length {:?} is not a number", get(header::CONTENT_LENGTH))),
            None => {
                expect(ce.is_some() || problem, "no Content-Length on an identity answer".into());
                if seen.version == Version::HTTP_11 {
                    expect(te.as_deref().is_some_and(|t| t.contains("chunked")), format!("HTTP/1.1 with neither Content-Length nor chunked (Transfer-Encoding {te:?})"));
                }
            }
        }
    }
    if shape.head && ce.is_none() && status == 200 {
        let want = if tagged { Some(tagged_len(&String::from_utf8_lossy(&object.body), sid)) } else if kind.per_viewer() { None } else { Some(len) };
        match want {
            // A rewrite's length is the stored one plus the session on every URI; checked by the GET rows.
            None => expect(matches!(cl, Some(Ok(n)) if n > 0), format!("HEAD Content-Length {:?}", get(header::CONTENT_LENGTH))),
            Some(w) => expect(matches!(cl, Some(Ok(n)) if n == w), format!("HEAD Content-Length {:?} (expected {w})", get(header::CONTENT_LENGTH))),
        }
    }
    if shape.head || status == 304 {
        return bad;
    }

    // Body: decoded as declared, then byte for byte.
    let body = match ce.as_deref() {
        Some("gzip") => {
            let mut out = Vec::new();
            match flate2::read::GzDecoder::new(&seen.body[..]).read_to_end(&mut out) {
                Ok(_) => Bytes::from(out),
                Err(e) => {
                    expect(false, format!("gzip body does not decode: {e}"));
                    return bad;
                }
            }
        }
        Some(other) => {
            expect(false, format!("undecodable Content-Encoding {other}"));
            return bad;
        }
        None => seen.body.clone(),
    };
    let text = || String::from_utf8_lossy(&body).into_owned();
    match status {
        416 | 502 => {
            let p: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            expect(p.as_ref().and_then(|p| p["status"].as_u64()) == Some(u64::from(status)), format!("problem body {:?}", text()));
        }
        _ if kind.per_viewer() => {
            let session = get(header::HeaderName::from_static("x-session-id"));
            match session.as_deref().and_then(SessionId::parse) {
                None => expect(false, format!("X-Session-Id {session:?} on a master")),
                Some(s) => {
                    for e in tagged_errors(&text(), &s) {
                        expect(false, e);
                    }
                    let got = variant_uris(&strip_query(&text(), &s));
                    let stored = variant_uris(&String::from_utf8_lossy(&object.body));
                    expect(got == stored, format!("master URIs {got:?}, stored {stored:?}"));
                }
            }
        }
        _ if tagged => {
            for e in tagged_errors(&text(), sid) {
                expect(false, e);
            }
            let stored = String::from_utf8_lossy(&object.body).lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
            let got = strip_query(&text(), sid);
            let got = got.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
            expect(got == stored, "the session's playlist, its sid taken out, is not the stored one".into());
        }
        206 => {
            let (a, b) = range.flatten().expect("a 206 row has a satisfiable range");
            expect(body == object.body.slice(a as usize..=b as usize), format!("206 body ({} bytes) is not bytes {a}-{b} of the object", body.len()));
        }
        _ => expect(body == object.body, format!("body ({} bytes) is not the stored object ({len} bytes)", body.len())),
    }
    bad
}

/// Every URI of a playlist: URI lines and `URI="…"` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            out.extend(uri_attr(line));
        } else {
            out.push(line.to_owned());
        }
    }
    out
}

/// A master's URIs as a set, relative to the video's folder: steering
/// repeats each variant per pathway with absolute URLs
/// (`http://edge/hls/{id}/720p/index.m3u8`), and adds the steering server's.
fn variant_uris(master: &str) -> std::collections::BTreeSet<String> {
    uris(master)
        .into_iter()
        .filter(|u| !u.contains("/steering/"))
        .map(|u| match u.find("/hls/").and_then(|i| u[i + 5..].split_once('/')) {
            Some((_, relative)) if u.contains("://") => relative.to_owned(),
            _ => u,
        })
        .collect()
}

/// What is wrong with a session's playlist: a URI without its `sid`.
fn tagged_errors(playlist: &str, sid: &SessionId) -> Vec<String> {
    let want = format!("sid={}", sid.as_str());
    let all = uris(playlist);
    let mut bad: Vec<String> = all.iter().filter(|u| !u.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv == want))).map(|u| format!("URI {u:?} lacks {want}")).collect();
    if all.is_empty() {
        bad.push("a playlist without URIs".into());
    }
    bad
}

/// The length of a session's copy of `stored`: one line per stored line,
/// each URI one `?sid=…` (or `&sid=…`) longer.
fn tagged_len(stored: &str, sid: &SessionId) -> u64 {
    let extra = format!("?sid={}", sid.as_str()).len();
    let line = |t: &str| if t.is_empty() { 1 } else { t.len() + 1 + extra * if t.starts_with('#') { t.matches("URI=\"").count() } else { 1 } };
    stored.lines().map(|l| line(l.trim()) as u64).sum()
}

/// The playlist with the session's query taken off every URI.
fn strip_query(playlist: &str, sid: &SessionId) -> String {
    let q = format!("sid={}", sid.as_str());
    playlist.replace(&format!("?{q}&"), "?").replace(&format!("?{q}"), "").replace(&format!("&{q}"), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_playlist_is_checked_uri_by_uri() {
        let sid = SessionId::new();
        let q = format!("sid={}", sid.as_str());
        let good = format!("#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4?{q}\"\n#EXTINF:6,\nseg_00000.m4s?{q}\n");
        assert!(tagged_errors(&good, &sid).is_empty());
        assert_eq!(strip_query(&good, &sid), "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6,\nseg_00000.m4s\n");
        let missed = format!("#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6,\nseg_00000.m4s?{q}\n");
        assert_eq!(tagged_errors(&missed, &sid).len(), 1);
        let other = "#EXTM3U\n#EXTINF:6,\nseg_00000.m4s?sid=0123\n";
        assert_eq!(tagged_errors(other, &sid).len(), 1);
    }
}
