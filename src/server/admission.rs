//! The cap on open connections, and the answer given to the ones past it.
//!
//! Each accepted connection holds a permit until it ends. A plain-HTTP connection past the cap
//! gets a canned `503` with the registry's `TOOMANYREQUESTS` body, written without parsing its
//! request, then the socket is closed once the client has had a moment to read it. Past the
//! cap, a TLS connection is closed at once: answering it would cost a handshake, which is what
//! the cap is there to save. Refusals in progress are themselves bounded; beyond that bound a
//! connection is closed at once too.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::{ApiError, ErrorCode};

/// Refused connections being answered at once; more are closed without an answer.
const REFUSALS: usize = 64;

/// How long a refused connection may take to receive its answer and to close.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
}

impl Admission {
    pub fn new(max_connections: usize) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            refusing: Arc::new(Semaphore::new(REFUSALS)),
        }
    }

    /// A slot for a new connection, held until it is dropped; `None` past the cap.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Turns away a connection past the cap (see the module's note).
    pub fn refuse(&self, mut tcp: TcpStream, tls: bool) {
        if tls {
            return;
        }
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIME, async {
                tcp.write_all(&refusal()).await?;
                tcp.shutdown().await?;
                // Read what the client sent before closing, so its answer is not lost to a
                // reset caused by unread bytes.
                let mut sink = [0u8; 4096];
                while tcp.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
            drop(permit);
        });
    }
}

/// The bytes of the 503 answer.
fn refusal() -> Vec<u8> {
    let err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyRequests)
        .with_detail("too many connections");
    let body = err.body();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         docker-distribution-api-version: registry/2.0\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
