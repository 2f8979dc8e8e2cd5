//! Arbitrary bytes as a pushed manifest, under each content type a client may send: never a
//! panic, and whatever parses names only valid digests.
#![no_main]

use berth::oci::manifest::parse;
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 6] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    if let Ok(parsed) = parse(body, content_type) {
        for d in &parsed.references {
            assert_eq!(berth::oci::name::parse_digest(&d.to_string()).ok().as_ref(), Some(d));
        }
    }
});
