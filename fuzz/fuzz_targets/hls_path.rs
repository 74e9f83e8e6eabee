//! The origin's HLS object path parser and the video id at the front of
//! every `/hls/{id}/…` path: what passes must stay inside the video's prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::extract::VideoId;
use streaming::hls::HlsObject;

fuzz_target!(|raw: &str| {
    if let Some(o) = HlsObject::parse(raw) {
        assert_eq!(o.path, raw);
        let parts: Vec<&str> = raw.split('/').collect();
        assert!((1..=2).contains(&parts.len()), "{raw:?}");
        assert!(parts.iter().all(|p| !p.is_empty() && !p.starts_with('.')), "{raw:?}");
        assert!(!raw.contains(['\\', '%', '?', '#']), "{raw:?}");
    }
    let _ = VideoId::parse(raw);
    if let Some((id, rest)) = raw.split_once('/') {
        if VideoId::parse(id).is_ok() {
            let _ = HlsObject::parse(rest);
        }
    }
});
