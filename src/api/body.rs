//! The response body: a queue of `Bytes` handed to hyper one frame at a time. Blob extents
//! are slices of the segment maps, so a blob is sent without being copied or concatenated,
//! and each is pulled from the store's reader (which checks it) only when hyper wants it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::storage::{BlobReader, StorageError};

/// Largest frame handed to hyper at once: big extents are split so that one frame never pins
/// more than this many mapped pages in the socket's send path.
const MAX_FRAME: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct ResponseBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// The rest of a blob, read (and checked) extent by extent once `chunks` runs dry.
    blob: Option<BlobReader>,
}

impl ResponseBody {
    pub fn empty() -> ResponseBody {
        ResponseBody::default()
    }

    pub fn from_chunks(chunks: Vec<Bytes>) -> ResponseBody {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ResponseBody {
            chunks,
            remaining,
            blob: None,
        }
    }

    /// A blob streamed from the store. If a chunk fails its checksum the body ends with that
    /// error, so hyper drops the connection: the client sees a short body, never a wrong byte.
    pub fn blob(reader: BlobReader) -> ResponseBody {
        ResponseBody {
            chunks: VecDeque::new(),
            remaining: reader.remaining(),
            blob: Some(reader),
        }
    }

    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl From<Bytes> for ResponseBody {
    fn from(b: Bytes) -> ResponseBody {
        ResponseBody::from_chunks(vec![b])
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(v: Vec<u8>) -> ResponseBody {
        ResponseBody::from(Bytes::from(v))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = StorageError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StorageError>>> {
        while self.chunks.is_empty() {
            // Checking a chunk hashes at most one record (1 MiB by default) on this thread.
            match self.blob.as_mut().and_then(Iterator::next) {
                Some(Ok(part)) => {
                    if !part.is_empty() {
                        self.chunks.push_back(part);
                    }
                }
                Some(Err(e)) => {
                    self.blob = None;
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    self.blob = None;
                    return Poll::Ready(None);
                }
            }
        }
        let Some(front) = self.chunks.front_mut() else {
            return Poll::Ready(None);
        };
        let frame = if front.len() > MAX_FRAME {
            front.split_to(MAX_FRAME)
        } else {
            self.chunks.pop_front().unwrap_or_default()
        };
        self.remaining -= frame.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn frames_preserve_bytes_and_length() {
        let big = Bytes::from(vec![7u8; MAX_FRAME + 3]);
        let body = ResponseBody::from_chunks(vec![Bytes::from_static(b"ab"), Bytes::new(), big]);
        assert_eq!(body.size_hint().exact(), Some(MAX_FRAME as u64 + 5));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), MAX_FRAME + 5);
        assert_eq!(&all[..3], b"ab\x07");
        assert!(ResponseBody::empty().is_end_stream());
    }
}
