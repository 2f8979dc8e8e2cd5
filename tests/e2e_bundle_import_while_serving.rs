//! `berth import --url` into a registry that clients are pulling from at the same moment:
//! skopeo pulls that overlap the import each get the served image whole and unchanged, the
//! imported image's tag appears only once everything it references is stored, and
//! `berth import --data` on the serving registry's own directory is refused (the store is
//! locked) without touching it.

mod e2e;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use e2e::cmd::{self, run, run_expect_failure};
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::{berth_bin, Registry};

const PULLERS: usize = 3;

#[test]
fn import_while_clients_pull() {
    let work = e2e::workdir();
    let served = OciImage::build(&work.path().join("served"), "v1", &[2048, 1024]);
    let incoming = OciImage::build(&work.path().join("incoming"), "v2", &[40960, 16384, 4096]);
    // The bundle is made the way a connected site makes one: import, then export.
    let staging = work.path().join("staging");
    run(Command::new(berth_bin())
        .args(["import", "--data"])
        .arg(&staging)
        .arg(&incoming.layout)
        .args(["--repo", "e2e/live/new"]));
    let bundle = work.path().join("bundle.tar");
    run(Command::new(berth_bin())
        .args(["export", "--data"])
        .arg(&staging)
        .args(["e2e/live/new:v2", "-o"])
        .arg(&bundle));

    let reg = Arc::new(Registry::start());
    let url = format!("http://{}", reg.host());
    run(Command::new(berth_bin())
        .args(["import", "--url", &url])
        .arg(&served.layout)
        .args(["--repo", "e2e/live/app"]));

    let importing = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let pullers: Vec<_> = (0..PULLERS)
        .map(|i| {
            let (reg, importing) = (reg.clone(), importing.clone());
            let (layout, out) = (served.layout.clone(), work.path().join(format!("pull-{i}")));
            thread::spawn(move || {
                let mut spans = Vec::new();
                // One more pull after the import ended, so the pulls cover all of it.
                let mut last = false;
                while !last {
                    last = !importing.load(Ordering::SeqCst);
                    let _ = std::fs::remove_dir_all(&out);
                    let from = started.elapsed();
                    run(cmd::tool("skopeo")
                        .args(["copy", "--src-tls-verify=false"])
                        .arg(format!("docker://{}/e2e/live/app:v1", reg.host()))
                        .arg(format!("oci:{}:v1", out.display())));
                    assert_same_image(&layout, &out, "v1");
                    spans.push((from, started.elapsed()));
                }
                spans
            })
        })
        .collect();
    // Watches the incoming tag: once it answers, everything its manifest names is there.
    let watcher = {
        let (reg, importing) = (reg.clone(), importing.clone());
        thread::spawn(move || {
            let mut checked = 0;
            while importing.load(Ordering::SeqCst) {
                let (status, body) = reg.request(
                    "GET",
                    "/v2/e2e/live/new/manifests/v2",
                    &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
                );
                if status != 200 {
                    assert_eq!(status, 404, "{body}");
                    continue;
                }
                let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
                let layers = manifest["layers"].as_array().unwrap();
                for d in layers.iter().chain([&manifest["config"]]) {
                    let digest = d["digest"].as_str().unwrap();
                    let path = format!("/v2/e2e/live/new/blobs/{digest}");
                    let (status, _) = reg.request("HEAD", &path, &["-I"]);
                    assert_eq!(status, 200, "tag visible before blob {digest}");
                }
                checked += 1;
            }
            checked
        })
    };

    // Pulls are going on before the import starts.
    while reg.log_text().matches("/e2e/live/app/blobs/").count() < 2 {
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let import_from = started.elapsed();
    let names = run(Command::new(berth_bin())
        .args(["import", "--url", &url])
        .arg(&bundle));
    let import_to = started.elapsed();
    importing.store(false, Ordering::SeqCst);
    assert_eq!(names.trim(), "e2e/live/new:v2");

    let overlapping = pullers
        .into_iter()
        .flat_map(|p| p.join().expect("a pull failed or returned other bytes"))
        .filter(|(from, to)| *from < import_to && *to > import_from)
        .count();
    assert!(overlapping >= 1, "no pull overlapped the import");
    watcher
        .join()
        .expect("the imported tag was visible too early");

    let out = work.path().join("pulled-new");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/e2e/live/new:v2", reg.host()))
        .arg(format!("oci:{}:v2", out.display())));
    assert_same_image(&incoming.layout, &out, "v2");

    // The serving registry holds its data directory: a local import there is refused.
    let refused = run_expect_failure(
        Command::new(berth_bin())
            .args(["import", "--data"])
            .arg(reg.data_dir())
            .arg(&bundle)
            .args(["--repo", "e2e/live/other"]),
    );
    assert!(refused.contains("lock"), "{refused}");
    let (status, _) = reg.request("GET", "/v2/e2e/live/other/tags/list", &[]);
    assert_eq!(status, 404);
}
