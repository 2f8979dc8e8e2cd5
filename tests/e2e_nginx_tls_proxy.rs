//! The main client flow through nginx terminating TLS with request buffering off, the set-up
//! that breaks registries which hand out absolute upload URLs or rely on buffered bodies.

mod e2e;

use e2e::flows::main_flow_over_tls;
use e2e::nginx::Nginx;
use e2e::registry::Registry;
use e2e::tls::Certs;

#[test]
fn main_flow_through_nginx_tls_proxy() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let certs = Certs::generate(&work.path().join("certs"));
    let nginx = Nginx::start(&work.path().join("nginx"), reg.host(), &certs);
    main_flow_over_tls(nginx.host(), &certs, work.path());
}
