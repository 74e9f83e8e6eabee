//! The HTTP Range parser shared by the origin and the edges: whatever the
//! header, a partial answer lies inside the object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::range::{parse, RangeRequest};

fuzz_target!(|input: (Option<&str>, u64)| {
    let (header, total) = input;
    if let RangeRequest::Partial(r) = parse(header, total) {
        assert!(r.start <= r.end && r.end < total, "{header:?} of {total}: {r:?}");
        let _ = r.content_range(total);
    }
});
