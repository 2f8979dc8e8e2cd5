//! Token mode with Helm 4's registry client (helm-sdkpy): `registry login` checks the password
//! against the token endpoint (a wrong one is refused), then push and a real pull (`show`) of a
//! chart in a private project work, byte for byte; a guest reads but its push gets 403;
//! `registry logout` and the pull is refused; a public project's chart is read without login.

mod e2e;

use e2e::auth::{
    statuses, AuthRegistry, ALICE, ALICE_PASSWORD, GUEST, GUEST_PASSWORD, PRIVATE, PUBLIC,
};
use e2e::cmd::{self, run, run_expect_failure};
use e2e::python::helm;
use std::path::{Path, PathBuf};

const VALUES: &str = "replicaCount: 3\n";

/// A chart `authchart` at 0.1.0 packaged into `work/dist`; returns the .tgz.
fn package(home: &Path, work: &Path) -> PathBuf {
    let dir = work.join("src").join("authchart");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: authchart\ndescription: chart behind a login\n\
         type: application\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), VALUES).unwrap();
    let dist = work.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    PathBuf::from(run(helm(home).arg("package").arg(&dir).arg(&dist)).trim())
}

/// A fresh Helm home (cache and registry config) under `work`.
fn home(work: &Path, name: &str) -> PathBuf {
    let home = work.join(name);
    std::fs::create_dir_all(&home).unwrap();
    home
}

fn login(home: &Path, host: &str, user: &str, password: &str) -> std::process::Output {
    let mut c = helm(home);
    c.args([
        "--plain-http",
        "login",
        host,
        "--username",
        user,
        "--password-stdin",
    ]);
    cmd::output_with_input(&mut c, Some(format!("{password}\n").as_bytes()))
}

fn push(home: &Path, tgz: &Path, remote: &str) -> std::process::Command {
    let mut c = helm(home);
    c.args(["--plain-http", "push"]).arg(tgz).arg(remote);
    c
}

fn show(home: &Path, reference: &str, out: &Path) -> std::process::Command {
    let mut c = helm(home);
    c.args(["--plain-http", "show-chart", reference]).arg(out);
    c
}

#[test]
fn helm_login_push_show_guest_logout_and_public() {
    let ar = AuthRegistry::start("token", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let w = work.path();
    let alice = home(w, "alice");
    let tgz = package(&alice, w);
    let remote = format!("oci://{host}/{PRIVATE}/charts");
    let reference = format!("{remote}/authchart:0.1.0");
    let manifest_path = format!("/v2/{PRIVATE}/charts/authchart/manifests/0.1.0");

    let err = run_expect_failure(&mut push(&alice, &tgz, &remote));
    assert!(err.contains("401"), "{err}");
    assert!(statuses(&ar.reg, "PUT", &manifest_path).is_empty());

    let wrong = login(&alice, &host, ALICE, "not-her-password");
    assert!(!wrong.status.success(), "a wrong password logged in");
    let refused = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert!(refused.contains("401"), "{refused}");

    let ok = login(&alice, &host, ALICE, ALICE_PASSWORD);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = run(&mut push(&alice, &tgz, &remote));
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in helm push output:\n{out}"))
        .to_string();
    assert_eq!(statuses(&ar.reg, "PUT", &manifest_path), [201]);

    // The chart archive is stored byte for byte (read back with Basic credentials, which
    // token mode accepts on /v2/ too).
    let tgz_digest = format!("sha256:{}", cmd::sha256_file(&tgz));
    let blob = w.join("blob.tgz");
    run(ar
        .reg
        .curl()
        .args(["--fail", "-u", &format!("{ALICE}:{ALICE_PASSWORD}"), "-o"])
        .arg(&blob)
        .arg(ar.reg.url(&format!(
            "/v2/{PRIVATE}/charts/authchart/blobs/{tgz_digest}"
        ))));
    assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(&tgz).unwrap());

    let chart_file = w.join("chart.yaml");
    let shown = run(&mut show(&alice, &reference, &chart_file));
    assert!(shown.contains(&digest), "{shown}");
    let chart = std::fs::read_to_string(&chart_file).unwrap();
    assert!(chart.contains("name: authchart"), "{chart}");
    assert!(
        chart.contains("description: chart behind a login"),
        "{chart}"
    );

    // A guest reads the chart, but may not push one.
    let guest = home(w, "guest");
    let ok = login(&guest, &host, GUEST, GUEST_PASSWORD);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let values_file = w.join("values.yaml");
    run(helm(&guest)
        .args(["--plain-http", "show-values", &reference])
        .arg(&values_file));
    let values = std::fs::read_to_string(&values_file).unwrap();
    assert_eq!(values.trim_end(), VALUES.trim_end());
    let guest_remote = format!("oci://{host}/{PRIVATE}/guest-charts");
    run_expect_failure(&mut push(&guest, &tgz, &guest_remote));
    let uploads = statuses(
        &ar.reg,
        "POST",
        &format!("/v2/{PRIVATE}/guest-charts/authchart/blobs/uploads/"),
    );
    assert!(
        !uploads.is_empty() && uploads.iter().all(|s| *s == 403),
        "{uploads:?}"
    );

    // The public project: alice pushes; a Helm that never logged in reads it. Then alice
    // logs out, and the private chart is refused to her.
    run(&mut push(
        &alice,
        &tgz,
        &format!("oci://{host}/{PUBLIC}/charts"),
    ));
    let nobody = home(w, "nobody");
    run(&mut show(
        &nobody,
        &format!("oci://{host}/{PUBLIC}/charts/authchart:0.1.0"),
        &w.join("public-chart.yaml"),
    ));
    let public_chart = std::fs::read_to_string(w.join("public-chart.yaml")).unwrap();
    assert_eq!(public_chart, chart);
    let err = run_expect_failure(&mut show(&nobody, &reference, &w.join("nobody.yaml")));
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");

    run(helm(&alice).args(["logout", &host]));
    let before = statuses(&ar.reg, "GET", &manifest_path).len();
    let err = run_expect_failure(&mut show(&alice, &reference, &w.join("after-logout.yaml")));
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");
    let after = statuses(&ar.reg, "GET", &manifest_path);
    assert!(
        after.len() > before && after[before..].iter().all(|s| *s == 401),
        "{after:?}"
    );
}
