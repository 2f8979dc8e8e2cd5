//! Deterministic, incompressible test data: any byte range of a seeded stream can be produced
//! on demand; long blobs repeat one generated period, so sending them costs the load tool
//! only its socket writes.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};

/// Largest frame a [`PeriodicBody`] hands to hyper: large enough that per-frame overhead
/// vanishes.
const FRAME_BYTES: u64 = 1 << 20;

/// A seeded byte stream. Word `i` is a SplitMix64 finaliser of `seed + i * GAMMA`: counter
/// based, so any offset is reachable without generating what precedes it, and each word is
/// independent of the previous one (the loop vectorises).
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    seed: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl Stream {
    pub fn new(seed: u64) -> Stream {
        Stream { seed }
    }

    /// A seed nobody has used before, so that repeated runs push distinct blobs.
    pub fn fresh() -> Stream {
        let mut b = [0u8; 8];
        // Without OS randomness the clock still separates runs well enough for a benchmark.
        if getrandom::getrandom(&mut b).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b = now.to_le_bytes();
        }
        Stream::new(u64::from_le_bytes(b))
    }

    /// A different stream derived from this one (for the n-th of many blobs).
    pub fn derive(&self, n: u64) -> Stream {
        Stream::new(mix(self.seed ^ mix(n.wrapping_add(1))))
    }

    fn word(&self, index: u64) -> [u8; 8] {
        mix(self.seed.wrapping_add(index.wrapping_mul(GAMMA))).to_le_bytes()
    }

    /// Fills `buf` with the stream's bytes starting at byte `offset`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut out = buf;
        let head = (offset % 8) as usize;
        let mut index = offset / 8;
        if head != 0 {
            let w = self.word(index);
            let n = (8 - head).min(out.len());
            out[..n].copy_from_slice(&w[head..head + n]);
            out = &mut out[n..];
            index += 1;
        }
        let mut words = out.chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(index));
            index += 1;
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let w = self.word(index);
            let n = rest.len();
            rest.copy_from_slice(&w[..n]);
        }
    }

    /// The bytes `[start, end)` as one buffer (for small blobs).
    pub fn bytes(&self, start: u64, end: u64) -> Bytes {
        let mut buf = BytesMut::zeroed((end - start) as usize);
        self.fill(start, &mut buf);
        buf.freeze()
    }
}

/// A long blob made of one generated period repeated, so that sending it costs the load tool
/// nothing but the socket writes: a push benchmark measures the server, not the generator.
/// Each stream has its own period, so parallel pushes still carry distinct blobs.
pub struct Periodic {
    period: Bytes,
}

impl Periodic {
    /// The period is `len` bytes of `stream` (at most `max_period`).
    pub fn new(stream: &Stream, len: u64, max_period: u64) -> Periodic {
        Periodic {
            period: stream.bytes(0, len.min(max_period).max(1)),
        }
    }

    /// `sha256:<hex>` of the bytes `[0, len)`.
    pub fn sha256(&self, len: u64) -> String {
        let mut hasher = Sha256::new();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(self.period.len() as u64) as usize;
            hasher.update(&self.period[..n]);
            pos += n as u64;
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// A request body of the bytes `[start, end)`: slices of the period, never copied.
    pub fn body(&self, start: u64, end: u64) -> PeriodicBody {
        PeriodicBody {
            period: self.period.clone(),
            pos: start,
            end,
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `sha256:<hex>` of a buffer.
pub fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A body of exactly known length, handed to hyper as slices of a period.
pub struct PeriodicBody {
    period: Bytes,
    pos: u64,
    end: u64,
}

impl Body for PeriodicBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let len = self.period.len() as u64;
        let at = self.pos % len;
        let n = (self.end - self.pos).min(len - at).min(FRAME_BYTES);
        let frame = self.period.slice(at as usize..(at + n) as usize);
        self.pos += n;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn fill_at_any_offset_matches_the_whole_stream() {
        let s = Stream::new(42);
        let whole = s.bytes(0, 1000);
        for start in [0u64, 1, 7, 8, 9, 333] {
            for end in [start, start + 1, start + 5, start + 64, 999] {
                if end < start {
                    continue;
                }
                assert_eq!(
                    s.bytes(start, end),
                    whole.slice(start as usize..end as usize)
                );
            }
        }
    }

    #[test]
    fn streams_differ_by_seed_and_derivation() {
        let s = Stream::new(1);
        assert_ne!(s.bytes(0, 64), Stream::new(2).bytes(0, 64));
        assert_ne!(s.derive(0).bytes(0, 64), s.derive(1).bytes(0, 64));
    }

    #[test]
    fn periodic_digest_and_body_agree_on_the_bytes() {
        let p = Periodic::new(&Stream::new(7), 1 << 30, 1000);
        let len = 2 * 1000 + 13;
        let whole: Vec<u8> = (0..len).map(|i| p.period[i % 1000]).collect();
        assert_eq!(p.sha256(len as u64), sha256_of(&whole));
    }

    #[tokio::test]
    async fn body_yields_exactly_the_requested_range() {
        let p = Periodic::new(&Stream::new(9), 1 << 30, 1000);
        let whole: Vec<u8> = (0..5000).map(|i| p.period[i % 1000]).collect();
        let body = p.body(5, 4020);
        assert_eq!(body.size_hint().exact(), Some(4015));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &whole[5..4020]);
    }

    #[test]
    fn data_does_not_compress() {
        // A run of identical bytes would betray a broken generator; count distinct byte values.
        let b = Stream::new(3).bytes(0, 1 << 16);
        let mut seen = [false; 256];
        for x in b.iter() {
            seen[*x as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
