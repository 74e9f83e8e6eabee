//! Every tus request-header parser of upload-chunked on arbitrary header
//! values: one input line per header, in a fixed order.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use upload_chunked::protocol::{self, names, ChecksumPlan, Concat, Metadata};

fuzz_target!(|data: &[u8]| {
    let order: [HeaderName; 11] = [
        names::TUS_RESUMABLE,
        names::UPLOAD_OFFSET,
        names::UPLOAD_LENGTH,
        names::UPLOAD_DEFER_LENGTH,
        names::UPLOAD_METADATA,
        names::UPLOAD_CONCAT,
        names::UPLOAD_CHECKSUM,
        http::header::CONTENT_TYPE,
        http::header::CONTENT_LENGTH,
        http::header::TRAILER,
        http::header::TRAILER,
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in order.iter().zip(data.split(|b| *b == b'\n')) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name.clone(), v);
        }
    }
    let _ = protocol::check_resumable(&headers);
    if let Ok(n) = protocol::upload_offset(&headers) {
        assert!(n <= i64::MAX as u64);
    }
    if let Ok(Some(n)) = protocol::upload_length(&headers) {
        assert!(n <= i64::MAX as u64);
    }
    let _ = protocol::defer_length(&headers);
    let _ = protocol::content_length(&headers);
    let _ = protocol::is_offset_octet_stream(&headers);
    if let Ok(m) = Metadata::from_headers(&headers) {
        for (i, (key, _)) in m.pairs.iter().enumerate() {
            assert!(!m.pairs[..i].iter().any(|(k, _)| k == key), "duplicate key {key:?} accepted");
            let _ = m.text(key);
        }
    }
    if let Ok(Concat::Final(ids)) = Concat::from_headers(&headers) {
        assert!(!ids.is_empty());
    }
    let _ = ChecksumPlan::from_headers(&headers);
    // The raw parsers also see text the header layer would have refused.
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = Metadata::parse(raw);
    }
});
