//! The edge's `POST /purge` body: what is accepted names exactly one path or
//! prefix, inside /hls/, with no query and no dot segments.
#![no_main]

use cdn_edge::purge::PurgeRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<PurgeRequest>(data) else { return };
    if req.check().is_ok() {
        let p = match (&req.path, &req.prefix) {
            (Some(p), None) => p,
            (None, Some(p)) => {
                assert!(p.ends_with('/'));
                p
            }
            _ => panic!("accepted {req:?}"),
        };
        assert!(p.starts_with("/hls/") && !p.contains("..") && !p.contains(['?', '#']), "{req:?}");
        // What is accepted survives the trip over the purge channel.
        let again: PurgeRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(again, req);
    }
});
