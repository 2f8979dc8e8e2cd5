//! The response body: a queue of `Bytes` handed to hyper one frame at a time. Blob extents
//! are slices of the segment maps, so a blob is sent without being copied or concatenated,
//! and each is pulled from the store's reader (which checks it) only when hyper wants it.
//!
//! Pulling an extent may hash a whole chunk record and fault its pages in from the disk, so
//! it runs on a blocking thread, never on the async threads that serve other requests.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::storage::{BlobReader, StorageError};

/// Largest frame handed to hyper at once: big extents are split so that one frame never pins
/// more than this many mapped pages in the socket's send path.
const MAX_FRAME: usize = 4 << 20;

/// Where the reader is while its next extent is pulled on a blocking thread.
type Pull = JoinHandle<(BlobReader, Option<Result<Bytes, StorageError>>)>;

#[derive(Debug, Default)]
pub struct ResponseBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// The rest of a blob, read (and checked) extent by extent once `chunks` runs dry.
    blob: Option<BlobReader>,
    /// The next extent being pulled (the reader is in there meanwhile).
    pulling: Option<Pull>,
    /// Bytes handed over by another task (a blob arriving from a mirror's upstream).
    channel: Option<mpsc::Receiver<Result<Bytes, StorageError>>>,
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
            ..ResponseBody::default()
        }
    }

    /// A blob streamed from the store. If a chunk fails its checksum the body ends with that
    /// error, so hyper drops the connection: the client sees a short body, never a wrong byte.
    pub fn blob(reader: BlobReader) -> ResponseBody {
        ResponseBody {
            remaining: reader.remaining(),
            blob: Some(reader),
            ..ResponseBody::default()
        }
    }

    /// `len` bytes sent by another task; an error it sends, or fewer bytes, end the body with
    /// an error (hyper then cuts the connection, so the client never keeps a short blob).
    pub fn channel(rx: mpsc::Receiver<Result<Bytes, StorageError>>, len: u64) -> ResponseBody {
        ResponseBody {
            remaining: len,
            channel: Some(rx),
            ..ResponseBody::default()
        }
    }

    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl ResponseBody {
    /// The blob's next extent, pulled on a blocking thread (inline outside a runtime).
    fn poll_pull(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, StorageError>>> {
        if let Some(rx) = self.channel.as_mut() {
            return match rx.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
                Poll::Ready(None) => {
                    self.channel = None;
                    if self.remaining > 0 {
                        Poll::Ready(Some(Err(StorageError::Io(std::io::Error::other(
                            "the blob's source ended early",
                        )))))
                    } else {
                        Poll::Ready(None)
                    }
                }
            };
        }
        if self.pulling.is_none() {
            let Some(mut reader) = self.blob.take() else {
                return Poll::Ready(None);
            };
            if tokio::runtime::Handle::try_current().is_err() {
                let next = reader.next();
                self.blob = Some(reader);
                return Poll::Ready(next);
            }
            self.pulling = Some(tokio::task::spawn_blocking(move || {
                let next = reader.next().map(|r| r.map(fault_in));
                (reader, next)
            }));
        }
        let Some(pull) = self.pulling.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = match Pin::new(pull).poll(cx) {
            Poll::Ready(joined) => joined,
            Poll::Pending => return Poll::Pending,
        };
        self.pulling = None;
        Poll::Ready(match joined {
            Ok((reader, next)) => {
                self.blob = Some(reader);
                next
            }
            Err(e) => Some(Err(StorageError::Io(std::io::Error::other(e.to_string())))),
        })
    }
}

/// Touches every page of mapped bytes, so that the disk reads happen here (on a blocking
/// thread) rather than inside the socket write on an async thread. Pages already checked or
/// hashed are resident and cost nothing.
fn fault_in(bytes: Bytes) -> Bytes {
    let x = bytes.iter().step_by(4096).fold(0u8, |x, b| x ^ b);
    std::hint::black_box(x);
    bytes
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
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StorageError>>> {
        while self.chunks.is_empty() {
            let next = match self.as_mut().poll_pull(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            };
            match next {
                Some(Ok(part)) => {
                    if !part.is_empty() {
                        self.chunks.push_back(part);
                    }
                }
                Some(Err(e)) => {
                    self.blob = None;
                    self.channel = None;
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    self.blob = None;
                    self.channel = None;
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
        if frame.len() as u64 > self.remaining {
            // More than the declared length: never send it, Content-Length said otherwise.
            self.chunks.clear();
            self.blob = None;
            self.channel = None;
            self.remaining = 0;
            return Poll::Ready(Some(Err(StorageError::Io(std::io::Error::other(
                "a body source sent more than its length",
            )))));
        }
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
