//! Arbitrary text through what the HTTP layer parses before any handler runs: the path (decoded,
//! then routed), the query string, a chunk's `Content-Range` and a read's `Range`. Never a
//! panic; a route always names a valid repository; ranges always come out ordered and in bounds.
#![no_main]

use berth::api::query::{decode_path, Query};
use berth::api::route::Route;
use berth::api::{parse_content_range, parse_range};
use berth::oci::name::is_valid_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (path, query, content_range, range) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if let Ok(Some(route)) = Route::parse(&decode_path(path)) {
        let name = match &route {
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
            _ => None,
        };
        if let Some(name) = name {
            assert!(is_valid_name(name), "routed an invalid name {name:?}");
        }
        let _ = route.kind();
    }
    let q = Query::parse(Some(query));
    for k in q.keys() {
        let _ = q.get(k);
    }
    if let Some((start, end)) = parse_content_range(content_range) {
        assert!(start <= end);
    }
    let size = data.len() as u64 * 977;
    if let Some((start, end)) = parse_range(range, size) {
        assert!(start < end && end <= size, "{start}..{end} of {size}");
    }
});
