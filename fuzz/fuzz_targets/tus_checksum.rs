//! tus checksums: the `Upload-Checksum` header and the saved SHA-256 state
//! an upload resumes its whole-file digest from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upload_chunked::checksum::ResumableSha256;
use upload_chunked::protocol::Checksum;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Ok(c) = Checksum::parse(raw) {
            assert_eq!(c.digest.len(), c.algorithm.digest_len());
        }
    }
    if let Ok(mut h) = ResumableSha256::from_bytes(data) {
        // What was accepted is exactly what would be saved again.
        assert_eq!(h.to_bytes(), data);
        h.update(data);
        let _ = h.hex();
    }
});
