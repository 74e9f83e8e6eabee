//! Per-viewer HLS playlist rewriting (origin and edges) on arbitrary stored
//! playlists and viewer options. Input: the playlist text, a NUL, then the
//! bytes the options are drawn from (so real playlists work as seeds).
#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use shared::playlist::{rewrite_master, tag_uris, MasterOptions, Pathway};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let Ok(playlist) = std::str::from_utf8(&data[..split]) else { return };
    let mut u = Unstructured::new(data.get(split + 1..).unwrap_or_default());
    let Ok((query, drop, public_prefix, pathways, steering_uri)) =
        <(String, u8, String, Vec<(String, String)>, Option<String>)>::arbitrary(&mut u)
    else {
        return;
    };
    let tagged = tag_uris(playlist, &query);
    if !query.contains(['\n', '\r']) {
        // One line out per line in: a URI never swallows or splits a line.
        assert_eq!(tagged.lines().count(), playlist.lines().count());
    }
    let opts = MasterOptions {
        drop_top_rungs: drop as usize,
        query,
        public_prefix,
        pathways: pathways.into_iter().map(|(id, base)| Pathway { id, base }).collect(),
        steering_uri,
    };
    let _ = rewrite_master(playlist, &opts);
});
