//! Arbitrary bytes through the record and segment-header decoders and the segment scanner:
//! never a panic, and every record the scanner yields re-encodes to the same bytes.
#![no_main]

use berth::storage::record::{decode_record, decode_segment_header, rec, trailer, Scanner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_segment_header(data);
    let _ = decode_record(data);
    let mut scan = Scanner::new(data, 64);
    let mut pos = 0usize;
    for (at, d) in scan.by_ref() {
        assert_eq!(at, 64 + pos as u64);
        let len = d.header.record_len() as usize;
        let raw = &data[pos..pos + len];
        assert_eq!(
            &raw[..rec::OFF_RESERVED2],
            &d.header.encode_as(d.version)[..rec::OFF_RESERVED2]
        );
        assert_eq!(&raw[len - rec::TRAILER_LEN..], &trailer(d.payload)[..]);
        pos += len;
    }
    assert_eq!(scan.valid_end(), 64 + pos as u64);
});
