//! Token mode behind nginx terminating TLS (`tools/nginx/registry.conf.template`): the challenge
//! a client sees through the proxy names the proxy's own https token endpoint (berth builds it
//! from the X-Forwarded-Proto and X-Forwarded-Host nginx passes), nginx forwards `/token`, and
//! podman and skopeo log in, push and pull through it trusting only the test CA.

mod e2e;

use e2e::auth::{
    challenge, podman_digest, podman_login, refusal, skopeo, statuses, AuthRegistry, ALICE,
    ALICE_PASSWORD, PRIVATE,
};
use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::OciImage;
use e2e::nginx::Nginx;
use e2e::tls::Certs;

#[test]
fn token_login_push_pull_through_nginx_tls_proxy() {
    let ar = AuthRegistry::start("token", None);
    let work = e2e::workdir();
    let w = work.path();
    let certs = Certs::generate(&w.join("certs"));
    let nginx = Nginx::start(&w.join("nginx"), ar.host(), &certs);
    let proxy = nginx.host().to_string();
    let ca = Some(certs.ca_crt.as_path());

    // The realm is the proxy's https URL (curl speaks HTTP/2 to nginx here, so the host comes
    // from `:authority`).
    let realm = format!("Bearer realm=\"https://{proxy}/token\",service=\"berth\"");
    assert_eq!(
        challenge(&format!("https://{proxy}/v2/"), ca),
        (401, realm.clone())
    );
    let (status, value) = challenge(
        &format!("https://{proxy}/v2/{PRIVATE}/app/manifests/v1"),
        ca,
    );
    assert_eq!(status, 401);
    assert_eq!(
        value,
        format!("{realm},scope=\"repository:{PRIVATE}/app:pull\"")
    );
    // Reached directly, berth names its own plain-HTTP address.
    let (_, direct) = challenge(&ar.reg.url("/v2/"), None);
    assert_eq!(
        direct,
        format!(
            "Bearer realm=\"http://{}/token\",service=\"berth\"",
            ar.host()
        )
    );

    // The token endpoint answers through the proxy (over HTTP/1.1 this time).
    let body = run(cmd::tool("curl")
        .args(["-sS", "--fail-with-body", "--http1.1", "--cacert"])
        .arg(&certs.ca_crt)
        .args(["-u", &format!("{ALICE}:{ALICE_PASSWORD}")])
        .arg(format!(
            "https://{proxy}/token?service=berth&scope=repository:{PRIVATE}/app:pull,push"
        )));
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        token["token"].as_str().is_some_and(|t| t.len() > 20),
        "{token}"
    );

    // podman logs in, pushes and pulls back through the proxy.
    let cert_dir = certs.cert_dir.to_str().unwrap();
    let tls = ["--cert-dir", cert_dir];
    let image = OciImage::build(&w.join("layout"), "v1", &[256]);
    let pusher = Engine::new(&w.join("pusher"));
    let id = run(pusher
        .podman()
        .args(["pull", "-q"])
        .arg(image.transport_ref()));
    let remote = format!("{proxy}/{PRIVATE}/app:v1");
    podman_login(&pusher, &proxy, ALICE, ALICE_PASSWORD, &tls);
    let digest_file = w.join("pushed.digest");
    run(pusher
        .podman()
        .args(["push", "-q", "--digestfile"])
        .arg(&digest_file)
        .args(tls)
        .arg(id.trim())
        .arg(&remote));
    let pushed = std::fs::read_to_string(&digest_file).unwrap();

    let puller = Engine::new(&w.join("puller"));
    let err = refusal(puller.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    assert!(err.contains("unauthorized"), "{err}");
    podman_login(&puller, &proxy, ALICE, ALICE_PASSWORD, &tls);
    run(puller.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    assert_eq!(podman_digest(&puller, &remote), pushed);

    // skopeo with --creds through the proxy reads the same manifest.
    let raw = run(skopeo(w)
        .args(["inspect", "--raw", "--cert-dir", cert_dir])
        .args(["--creds", &format!("{ALICE}:{ALICE_PASSWORD}")])
        .arg(format!("docker://{remote}")));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), pushed);

    // All of it went through berth's token endpoint, reached via nginx.
    let tokens = statuses(&ar.reg, "GET", "/token");
    assert!(
        tokens.iter().filter(|s| **s == 200).count() >= 3,
        "{tokens:?}"
    );
}
