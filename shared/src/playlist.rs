//! HLS playlist rewriting for delivery: what the origin changes in a stored
//! master playlist for one viewer (session id, playback token, bitrate cap,
//! steering pathways), and what origin and edges change in a media playlist
//! (the session id and the playback token on every URI, segments, init
//! segment and content key alike, so each fetch keeps the session alive and
//! is allowed).
//!
//! Stored playlists stay the same for everyone and cacheable; only these
//! per-viewer copies differ.

/// The per-viewer query every URI of a viewer's playlists carries:
/// `sid=…&token=…`, either left out when absent; empty when both are.
pub fn viewer_query(sid: Option<&str>, token: Option<&str>) -> String {
    match (sid, token) {
        (Some(s), Some(t)) => format!("sid={s}&{}={t}", crate::playback::TOKEN_PARAM),
        (Some(s), None) => format!("sid={s}"),
        (None, Some(t)) => format!("{}={t}", crate::playback::TOKEN_PARAM),
        (None, None) => String::new(),
    }
}

/// Appends `query` (`k=v&…`) to every URI of a playlist: URI lines and
/// `URI="…"` attributes (init segments, content keys, media groups, I-frame
/// playlists).
pub fn tag_uris(playlist: &str, query: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * query.len());
    for line in playlist.lines() {
        let t = line.trim();
        if t.is_empty() {
            out.push('\n');
            continue;
        }
        if t.starts_with('#') {
            out.push_str(&retarget_uri_attr(t, |u| with_query(u, query)));
        } else {
            out.push_str(&with_query(t, query));
        }
        out.push('\n');
    }
    out
}

fn with_query(uri: &str, query: &str) -> String {
    if query.is_empty() {
        uri.to_owned()
    } else if uri.contains('?') {
        format!("{uri}&{query}")
    } else {
        format!("{uri}?{query}")
    }
}

/// One delivery route for steering: a pathway id and the base URL its
/// objects are fetched from (`http://edge.example` → `…/hls/{id}/…`); an
/// empty base keeps URIs relative to wherever the master was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pathway {
    pub id: String,
    pub base: String,
}

/// How one viewer's master playlist differs from the stored one.
#[derive(Debug, Clone, Default)]
pub struct MasterOptions {
    /// Video rungs to leave out, from the top (the bitrate cap).
    pub drop_top_rungs: usize,
    /// `k=v` query appended to every URI (the session id).
    pub query: String,
    /// Object path prefix the absolute pathway URLs point at: `/hls/{id}/`.
    pub public_prefix: String,
    /// Each pathway's variants, with absolute URLs. Empty: relative URIs, as stored.
    pub pathways: Vec<Pathway>,
    /// EXT-X-CONTENT-STEERING's SERVER-URI; used only with pathways.
    pub steering_uri: Option<String>,
}

/// A variant (EXT-X-STREAM-INF + URI) or I-frame stream of a master playlist.
struct Stream {
    tag: String,
    uri: String,
    height: Option<u32>,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let body = tag.split_once(':')?.1;
    // Attribute values may be quoted and contain commas (CODECS="a,b").
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn height(tag: &str) -> Option<u32> {
    attr(tag, "RESOLUTION")?.split_once('x')?.1.parse().ok()
}

/// The rungs left out for `drop` (their heights, highest first), never all
/// video rungs: at least the lowest stays.
fn dropped_heights(master: &str, drop: usize) -> Vec<u32> {
    let mut heights: Vec<u32> = master.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF:")).filter_map(height).collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights.dedup();
    let drop = drop.min(heights.len().saturating_sub(1));
    heights.truncate(drop);
    heights
}

/// A viewer's master playlist from the stored one, and the heights of the
/// rungs the cap left out (for the response header).
pub fn rewrite_master(stored: &str, opts: &MasterOptions) -> (String, Vec<u32>) {
    let dropped = dropped_heights(stored, opts.drop_top_rungs);
    let mut header = Vec::new();
    let mut media = Vec::new();
    let mut streams: Vec<Stream> = Vec::new();
    let mut lines = stored.lines().map(str::trim).filter(|l| !l.is_empty()).peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            let Some(uri) = lines.next_if(|l| !l.starts_with('#')) else { continue };
            streams.push(Stream { tag: line.to_owned(), uri: uri.to_owned(), height: height(line) });
        } else if line.starts_with("#EXT-X-I-FRAME-STREAM-INF:") {
            let uri = attr(line, "URI").unwrap_or_default().to_owned();
            streams.push(Stream { tag: line.to_owned(), uri, height: height(line) });
        } else if line.starts_with("#EXT-X-MEDIA:") {
            media.push(line.to_owned());
        } else if line.starts_with("#EXT-X-CONTENT-STEERING") {
            // A stored playlist never carries steering; a re-rewritten one must not keep the old tag.
        } else {
            header.push(line.to_owned());
        }
    }
    streams.retain(|s| !s.height.is_some_and(|h| dropped.contains(&h)));

    let mut out = header.join("\n");
    out.push('\n');
    // An empty base means "the host that served this playlist": URIs stay relative.
    let url = |base: Option<&Pathway>, uri: &str| {
        let full = match base.filter(|p| !p.base.is_empty()) {
            Some(p) => format!("{}{}{uri}", p.base.trim_end_matches('/'), opts.public_prefix),
            None => uri.to_owned(),
        };
        with_query(&full, &opts.query)
    };
    // No steering (none configured, no pathway to steer to, or one pathway pinned): a plain master.
    if opts.pathways.is_empty() || (opts.steering_uri.is_none() && opts.pathways.len() == 1) {
        let base = opts.pathways.first();
        for m in &media {
            out.push_str(&retarget_uri_attr(m, |u| url(base, u)));
            out.push('\n');
        }
        for s in &streams {
            push_stream(&mut out, s, None, |u| url(base, u));
        }
        return (out, dropped);
    }
    if let Some(server) = &opts.steering_uri {
        out.push_str(&format!("#EXT-X-CONTENT-STEERING:SERVER-URI=\"{server}\",PATHWAY-ID=\"{}\"\n", opts.pathways[0].id));
    }
    for p in &opts.pathways {
        // Each pathway gets its own copy of every rendition group, so moving a
        // viewer to another pathway moves its audio too, not just its video.
        for m in &media {
            let m = rename_group(m, "GROUP-ID", &p.id);
            out.push_str(&retarget_uri_attr(&m, |u| url(Some(p), u)));
            out.push('\n');
        }
        for s in &streams {
            push_stream(&mut out, s, Some(&p.id), |u| url(Some(p), u));
        }
    }
    (out, dropped)
}

fn push_stream(out: &mut String, s: &Stream, pathway: Option<&str>, url: impl Fn(&str) -> String) {
    let mut tag = s.tag.clone();
    if let Some(p) = pathway {
        for group in ["AUDIO", "SUBTITLES", "VIDEO"] {
            tag = rename_group(&tag, group, p);
        }
        tag.push_str(&format!(",PATHWAY-ID=\"{p}\""));
    }
    if tag.starts_with("#EXT-X-I-FRAME-STREAM-INF:") {
        out.push_str(&retarget_uri_attr(&tag, url));
        out.push('\n');
    } else {
        out.push_str(&tag);
        out.push('\n');
        out.push_str(&url(&s.uri));
        out.push('\n');
    }
}

/// `NAME="g"` → `NAME="g-{pathway}"`.
fn rename_group(tag: &str, name: &str, pathway: &str) -> String {
    let needle = format!("{name}=\"");
    let mut search = 0;
    while let Some(pos) = tag[search..].find(&needle).map(|p| p + search) {
        // Only a whole attribute name: preceded by ':' or ','.
        if pos > 0 && matches!(tag.as_bytes()[pos - 1], b':' | b',') {
            let start = pos + needle.len();
            if let Some(len) = tag[start..].find('"') {
                return format!("{}-{pathway}{}", &tag[..start + len], &tag[start + len..]);
            }
        }
        search = pos + needle.len();
    }
    tag.to_owned()
}

/// The tag with its `URI` attribute's value replaced by `url(value)`. Only
/// the attribute named exactly `URI` (after `:` or `,`), so `SERVER-URI` or a
/// quoted value that happens to contain `URI="` is left alone.
fn retarget_uri_attr(tag: &str, url: impl Fn(&str) -> String) -> String {
    let Some((name, body)) = tag.split_once(':') else { return tag.to_owned() };
    let mut at = name.len() + 1;
    let mut rest = body;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let value_at = at + key.len() + 1;
        let (value_len, quoted, next) = match after.strip_prefix('"') {
            Some(q) => {
                let Some(end) = q.find('"') else { break };
                (end, true, q[end + 1..].strip_prefix(',').unwrap_or(&q[end + 1..]))
            }
            None => match after.split_once(',') {
                Some((v, n)) => (v.len(), false, n),
                None => (after.len(), false, ""),
            },
        };
        if key == "URI" && quoted {
            let start = value_at + 1;
            return format!("{}{}{}", &tag[..start], url(&tag[start..start + value_len]), &tag[start + value_len..]);
        }
        at = tag.len() - next.len();
        rest = next;
    }
    tag.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Main\",DEFAULT=YES,URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"audio\"\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=130000,CODECS=\"mp4a.40.2\",AUDIO=\"audio\"\naudio/index.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"720p/iframes.m3u8\"\n";

    #[test]
    fn every_uri_of_a_media_playlist_carries_the_query() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:6.0,\nseg_00000.m4s\n#EXT-X-ENDLIST\n";
        let t = tag_uris(p, "sid=abc");
        assert!(t.contains("#EXT-X-MAP:URI=\"init_0.mp4?sid=abc\"\n"));
        assert!(t.contains("\nseg_00000.m4s?sid=abc\n"));
        assert!(t.contains("#EXTINF:6.0,\n"));
        assert_eq!(tag_uris(p, ""), p);
    }

    #[test]
    fn the_token_reaches_segments_the_init_segment_and_the_content_key() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"../content.key\",IV=0x01\n#EXTINF:6.0,\nseg_00000.m4s\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:6.0,\nseg_00001.m4s\n";
        let q = viewer_query(Some("abc"), Some("k1.p.s"));
        assert_eq!(q, "sid=abc&token=k1.p.s");
        let t = tag_uris(p, &q);
        assert!(t.contains("#EXT-X-MAP:URI=\"init_0.mp4?sid=abc&token=k1.p.s\"\n"), "{t}");
        assert!(t.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"../content.key?sid=abc&token=k1.p.s\",IV=0x01\n"), "{t}");
        assert!(t.contains("\nseg_00000.m4s?sid=abc&token=k1.p.s\n") && t.contains("\nseg_00001.m4s?sid=abc&token=k1.p.s\n"), "{t}");
        assert!(t.contains("#EXT-X-KEY:METHOD=NONE\n"), "a tag without a URI is left alone: {t}");
        // A token without a session still reaches every URI.
        let t = tag_uris(p, &viewer_query(None, Some("k1.p.s")));
        assert!(t.contains("URI=\"../content.key?token=k1.p.s\"") && t.contains("\nseg_00000.m4s?token=k1.p.s\n"), "{t}");
        assert_eq!(viewer_query(None, None), "");
    }

    #[test]
    fn only_the_attribute_named_uri_is_retargeted() {
        let f = |u: &str| format!("{u}?q");
        assert_eq!(retarget_uri_attr("#EXT-X-KEY:KEYFORMAT=\"URI=\",URI=\"k\"", f), "#EXT-X-KEY:KEYFORMAT=\"URI=\",URI=\"k?q\"");
        assert_eq!(retarget_uri_attr("#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\",PATHWAY-ID=\"p\"", f), "#EXT-X-CONTENT-STEERING:SERVER-URI=\"/s\",PATHWAY-ID=\"p\"");
        assert_eq!(retarget_uri_attr("#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x1", f), "#EXT-X-KEY:METHOD=AES-128,URI=\"k?q\",IV=0x1");
        assert_eq!(retarget_uri_attr("#EXT-X-MAP:URI=\"i.mp4\",BYTERANGE=\"10@0\"", f), "#EXT-X-MAP:URI=\"i.mp4?q\",BYTERANGE=\"10@0\"");
        assert_eq!(retarget_uri_attr("#EXTINF:6.0,", f), "#EXTINF:6.0,");
    }

    #[test]
    fn the_cap_drops_top_rungs_but_never_the_last_video_rung() {
        assert_eq!(dropped_heights(MASTER, 1), vec![720]);
        assert_eq!(dropped_heights(MASTER, 5), vec![720]);
        let (m, _) = rewrite_master(MASTER, &MasterOptions { drop_top_rungs: 1, query: "sid=x".into(), ..Default::default() });
        assert!(!m.contains("720p/"), "{m}");
        assert!(m.contains("\n360p/index.m3u8?sid=x\n"));
        assert!(m.contains("\naudio/index.m3u8?sid=x\n"));
        assert!(m.contains("URI=\"audio/index.m3u8?sid=x\""));
    }

    #[test]
    fn pathways_each_get_every_variant_and_their_own_audio_group() {
        let pathways = vec![Pathway { id: "primary".into(), base: "http://a".into() }, Pathway { id: "secondary".into(), base: "http://b/".into() }];
        let opts = MasterOptions { query: "sid=x".into(), public_prefix: "/hls/v/".into(), pathways, steering_uri: Some("/steering/v?sid=x".into()), ..Default::default() };
        let (m, _) = rewrite_master(MASTER, &opts);
        assert!(m.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steering/v?sid=x\",PATHWAY-ID=\"primary\"\n"), "{m}");
        assert!(m.contains("GROUP-ID=\"audio-secondary\",NAME=\"Main\",DEFAULT=YES,URI=\"http://b/hls/v/audio/index.m3u8?sid=x\""), "{m}");
        assert!(m.contains("RESOLUTION=1280x720,AUDIO=\"audio-primary\",PATHWAY-ID=\"primary\"\nhttp://a/hls/v/720p/index.m3u8?sid=x\n"), "{m}");
        assert!(m.contains("URI=\"http://b/hls/v/720p/iframes.m3u8?sid=x\",PATHWAY-ID=\"secondary\""), "{m}");
        assert_eq!(m.matches("#EXT-X-STREAM-INF:").count(), 6);
        // Rewriting is stable: the steering tag is not duplicated.
        assert_eq!(rewrite_master(&m, &MasterOptions::default()).0.matches("CONTENT-STEERING").count(), 0);
    }

    #[test]
    fn a_pinned_or_relative_pathway_gives_a_plain_master() {
        let relative = vec![Pathway { id: "primary".into(), base: String::new() }];
        let (m, _) = rewrite_master(MASTER, &MasterOptions { query: "sid=x".into(), public_prefix: "/hls/v/".into(), pathways: relative, ..Default::default() });
        assert!(m.contains("AUDIO=\"audio\"\n720p/index.m3u8?sid=x\n"), "{m}");
        assert!(!m.contains("PATHWAY-ID"));
        let pinned = vec![Pathway { id: "secondary".into(), base: "http://b".into() }];
        let (m, _) = rewrite_master(MASTER, &MasterOptions { public_prefix: "/hls/v/".into(), pathways: pinned, ..Default::default() });
        assert!(m.contains("\nhttp://b/hls/v/360p/index.m3u8\n"), "{m}");
        assert!(m.contains("GROUP-ID=\"audio\""));
    }

    /// Found by `scripts/fuzz` (playlist): a steering server with no pathway
    /// indexed the empty pathway list. (The origin never asks for that today.)
    #[test]
    fn regression_steering_without_pathways_gives_a_plain_master() {
        let opts = MasterOptions { steering_uri: Some("/steering/v".into()), ..Default::default() };
        let (m, _) = rewrite_master(MASTER, &opts);
        assert_eq!(m, rewrite_master(MASTER, &MasterOptions::default()).0);
        assert!(!m.contains("CONTENT-STEERING"), "{m}");
    }

    #[test]
    fn quoted_attributes_may_hold_commas() {
        assert_eq!(attr("#EXT-X-STREAM-INF:CODECS=\"a,b\",RESOLUTION=10x20", "RESOLUTION"), Some("10x20"));
        assert_eq!(attr("#EXT-X-STREAM-INF:CODECS=\"a,b\",RESOLUTION=10x20", "CODECS"), Some("a,b"));
    }
}
