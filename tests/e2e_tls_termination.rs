//! The main client flow against the registry terminating TLS itself (`--tls-cert/--tls-key`).

mod e2e;

use e2e::flows::main_flow_over_tls;
use e2e::registry::Registry;
use e2e::tls::Certs;

#[test]
fn main_flow_with_registry_terminating_tls() {
    let work = e2e::workdir();
    let certs = Certs::generate(&work.path().join("certs"));
    let reg = Registry::start_tls(&certs);
    main_flow_over_tls(reg.host(), &certs, work.path());

    // TLS 1.3 with HTTP/2 offered by ALPN, as the issue asks of the server.
    let out = e2e::cmd::run(
        reg.curl()
            .args([
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(reg.url("/v2/")),
    );
    assert_eq!(out, "2 200", "HTTP version and status over TLS");
}
