//! systemd's readiness protocol (`Type=notify`): a datagram to the socket named by
//! `NOTIFY_SOCKET` says when berth starts answering and when it begins to stop. Without the
//! variable (not started by systemd) nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Connections are about to be answered.
pub fn ready() {
    send("READY=1");
}

/// Shutdown began: requests in flight get their grace period, then the store closes.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let name = name.to_string_lossy();
    // A leading '@' names a socket in the abstract namespace.
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
        None => SocketAddr::from_pathname(name.as_ref()),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!(socket = %name, "telling systemd {state}: {e}");
    }
}
