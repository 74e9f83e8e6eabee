//! The ISO-BMFF box reader (media::isobmff; the worker's I-frame playlists, the live packager) on arbitrary bytes: a panic there would
//! leave a transcode's delivery unacked, so any input must be an error or a
//! byte range that lies after the `moof` it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::isobmff::first_sample;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = first_sample(data) {
        assert!((s.moof_start as usize) < data.len(), "{s:?}");
        assert!(s.end > s.moof_start, "{s:?}");
    }
});
