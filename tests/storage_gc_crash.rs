//! kill -9 during collection: a child process (this test binary re-executed) runs `gc` with
//! compaction in a loop over a store the parent filled with small images, deleted images and
//! stray blobs, while one of its threads pushes images and prints each one once its manifest
//! PUT returned. The parent kills it at a random moment of the mark, the sweep, the compaction,
//! or anywhere, then reopens the store: every image the parent set up and did not delete and
//! every image the child acknowledged resolves by tag and every layer of it hashes to its
//! digest, deleted manifests stay deleted, `verify()` is clean, and the index recovery produced
//! equals the one a rebuild from the segments and the newest base produces (index.redb
//! removed, store reopened). Each round then adds images, deletions and strays for the next.
//! `BERTH_GC_CRASH_SEED` replays a run's choices (the kill moments stay timing-dependent).

mod storage_support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth::oci::digest::Digest;
use berth::storage::memdisk::SplitMix;
use berth::storage::*;
use storage_support::sha;

const TEST: &str = "kill_9_during_gc_keeps_images_and_index";
const CHILD_DIR: &str = "BERTH_GC_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "BERTH_GC_CRASH_CHILD_SEED";
const CHILD_RATE: &str = "BERTH_GC_CRASH_CHILD_RATE";
const ROUNDS: u64 = 15;
const REPOS: u64 = 6;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

fn random_bytes(rng: &mut SplitMix, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    v.truncate(len);
    v
}

/// An image as both processes describe it: repository, tag, manifest, layers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Image {
    repo: String,
    tag: String,
    manifest: Digest,
    layers: Vec<Digest>,
}

impl Image {
    fn line(&self) -> String {
        let layers: Vec<String> = self.layers.iter().map(|d| d.to_string()).collect();
        format!(
            "{} {} {} {}",
            self.repo,
            self.tag,
            self.manifest,
            layers.join(",")
        )
    }

    fn parse(fields: &[&str]) -> Option<Image> {
        let [repo, tag, manifest, layers] = fields else {
            return None;
        };
        Some(Image {
            repo: repo.to_string(),
            tag: tag.to_string(),
            manifest: manifest.parse().ok()?,
            layers: layers
                .split(',')
                .map(|d| d.parse().ok())
                .collect::<Option<_>>()?,
        })
    }
}

/// Pushes layers (monolithic or through a session) and a tagged manifest naming them, pushing
/// again after a `ManifestBlobUnknown` (a collection swept a layer before the PUT).
fn push_image(store: &Store, rng: &mut SplitMix, repo: &str, tag: &str) -> Image {
    let layers: Vec<Vec<u8>> = (0..1 + rng.below(2))
        .map(|_| {
            let len = 500 + rng.below(6000) as usize;
            random_bytes(rng, len)
        })
        .collect();
    let digests: Vec<Digest> = layers.iter().map(|l| sha(l)).collect();
    let body = format!("{{\"tag\":\"{repo}:{tag}\",\"layers\":{digests:?}}}").into_bytes();
    let put = ManifestPut {
        digest: sha(&body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body,
        tags: vec![tag.to_string()],
        references: digests.clone(),
        subject: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    loop {
        for l in &layers {
            if rng.below(2) == 0 {
                store.put_blob(repo, &sha(l), l).unwrap();
            } else {
                let id = store.begin_upload(repo).unwrap();
                let half = l.len() / 2;
                store.append(&id, 0, &l[..half]).unwrap();
                store.append(&id, half as u64, &l[half..]).unwrap();
                store.commit(&id, &sha(l)).unwrap();
            }
        }
        match store.put_manifest(repo, &put) {
            Ok(()) => break,
            Err(StorageError::ManifestBlobUnknown(_)) => continue,
            Err(e) => panic!("manifest PUT: {e}"),
        }
    }
    Image {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest: put.digest,
        layers: digests,
    }
}

/// The child: collect in a loop (announcing each run and its progress) while a thread pushes
/// images and announces each after its PUT returned.
fn child(dir: &Path, seed: u64, rate: Option<u64>) -> ! {
    let store = Store::open(dir, opts()).unwrap();
    {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut rng = SplitMix(seed ^ 0x5eed);
            for n in 0.. {
                let img = push_image(&store, &mut rng, "child", &format!("s{seed:x}-{n}"));
                println!("@@ok {}", img.line());
            }
        });
    }
    let mut rng = SplitMix(seed);
    loop {
        let opts = GcOptions {
            compact_threshold: 0.5 + rng.below(45) as f64 / 100.0,
            compact_rate: rate,
            ..Default::default()
        };
        println!("@@gc");
        let report = store
            .gc(&opts, &mut |p: GcProgress| {
                println!("@@phase {:?} {} {}", p.phase, p.done, p.total);
            })
            .unwrap();
        println!(
            "@@done {} {} {} {}",
            report.blobs_removed,
            report.segments_compacted,
            report.bytes_relocated,
            report.compact_time.as_millis()
        );
        std::io::stdout().flush().unwrap();
    }
}

/// When the parent kills the child.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// Just after a collection is announced.
    Mark,
    /// Just after the mark's first progress report.
    Sweep,
    /// A little after the compaction's first progress report.
    Compact,
    /// After a random time, whatever runs.
    Anytime,
}

/// What the child printed, as the parent's reader thread saw it.
enum Event {
    Gc,
    Phase(String),
    Done,
    Ok(Image),
}

fn parse(line: &str) -> Option<Event> {
    // libtest may print its "test … " prefix on the same line as the first record.
    let at = line.find("@@")?;
    let fields: Vec<&str> = line[at + 2..].split(' ').collect();
    match fields.as_slice() {
        ["gc"] => Some(Event::Gc),
        ["phase", phase, _, _] => Some(Event::Phase(phase.to_string())),
        ["done", _, _, _, _] => Some(Event::Done),
        ["ok", rest @ ..] => Image::parse(rest).map(Event::Ok),
        _ => None, // a line cut by the kill
    }
}

/// Every check after a kill; returns the reopened store.
fn check_after_kill(dir: &Path, round: u64, cat: &Catalog, acked: &[Image]) -> Store {
    let store = Store::open(dir, opts())
        .unwrap_or_else(|e| panic!("round {round}: reopen after the kill failed: {e}"));
    for img in cat.kept.iter().chain(acked) {
        let m = store
            .get_manifest(&img.repo, &Reference::Tag(img.tag.clone()))
            .unwrap_or_else(|e| panic!("round {round}: {}:{}: {e}", img.repo, img.tag))
            .unwrap_or_else(|| panic!("round {round}: {}:{} lost", img.repo, img.tag));
        assert_eq!(
            m.digest, img.manifest,
            "round {round}: {}:{}",
            img.repo, img.tag
        );
        for d in &img.layers {
            let got = store
                .get(d)
                .unwrap_or_else(|e| {
                    panic!("round {round}: {}:{} layer {d}: {e}", img.repo, img.tag)
                })
                .unwrap_or_else(|| panic!("round {round}: {}:{} layer {d} lost", img.repo, img.tag))
                .read_all()
                .unwrap_or_else(|e| panic!("round {round}: layer {d}: {e}"));
            assert_eq!(sha(&got), *d, "round {round}: layer {d} content");
        }
    }
    for img in &cat.deleted {
        assert!(
            store
                .get_manifest(&img.repo, &Reference::Digest(img.manifest.clone()))
                .unwrap()
                .is_none(),
            "round {round}: deleted {}@{} is back",
            img.repo,
            img.manifest
        );
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "round {round}: {report:?}");

    // The index recovery produced equals a rebuild from the segments and the newest base.
    let recovered = store.dump_index().unwrap();
    drop(store);
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    let store = Store::open(dir, opts())
        .unwrap_or_else(|e| panic!("round {round}: rebuild after the kill failed: {e}"));
    let rebuilt = store.dump_index().unwrap();
    if recovered != rebuilt {
        let key = |r: &IndexRow| (r.table, r.key.clone(), r.value.clone());
        let a: HashSet<_> = recovered.iter().map(key).collect();
        let b: HashSet<_> = rebuilt.iter().map(key).collect();
        let show = |rows: Vec<&(&str, Vec<u8>, Vec<u8>)>| -> Vec<String> {
            let mut rows = rows;
            rows.sort();
            rows.iter()
                .take(8)
                .map(|(t, k, v)| format!("{t} {} = {}", k.escape_ascii(), v.escape_ascii()))
                .collect()
        };
        panic!(
            "round {round}: recovered index ({} rows) differs from a rebuild ({} rows)\n\
             recovered only: {:#?}\nrebuilt only: {:#?}",
            recovered.len(),
            rebuilt.len(),
            show(a.difference(&b).collect()),
            show(b.difference(&a).collect()),
        );
    }
    store
}

/// Adds `images` tagged images, deletes `deletions` of the kept ones, and pushes `strays`
/// blobs nothing references, from four threads (so their commits share syncs).
/// The parent's images: set up and still there, or deleted.
#[derive(Default)]
struct Catalog {
    kept: Vec<Image>,
    deleted: Vec<Image>,
}

fn fill(
    store: &Store,
    rng: &mut SplitMix,
    round: u64,
    (images, deletions, strays): (u64, u64, u64),
    cat: &mut Catalog,
) {
    let seeds: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    let new: Vec<Image> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(t, &seed)| {
                s.spawn(move || {
                    let mut rng = SplitMix(seed);
                    let mut out = Vec::new();
                    for i in (t as u64..images).step_by(4) {
                        let repo = format!("fill/r{}", i % REPOS);
                        out.push(push_image(store, &mut rng, &repo, &format!("f{round}-{i}")));
                    }
                    for i in (t as u64..strays).step_by(4) {
                        let len = 64 + rng.below(3000) as usize;
                        let data = random_bytes(&mut rng, len);
                        store
                            .put_blob(&format!("stray/r{}", i % REPOS), &sha(&data), &data)
                            .unwrap();
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    cat.kept.extend(new);
    for _ in 0..deletions.min(cat.kept.len() as u64) {
        let img = cat
            .kept
            .swap_remove(rng.below(cat.kept.len() as u64) as usize);
        assert!(store.delete_tag(&img.repo, &img.tag).unwrap());
        assert!(store.delete_manifest(&img.repo, &img.manifest).unwrap());
        cat.deleted.push(img);
    }
}

#[test]
fn kill_9_during_gc_keeps_images_and_index() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let seed = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
        let rate = std::env::var(CHILD_RATE).ok().and_then(|r| r.parse().ok());
        child(Path::new(&dir), seed, rate);
    }
    let seed: u64 = std::env::var("BERTH_GC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("gc crash test seed {seed} (BERTH_GC_CRASH_SEED={seed} replays the choices)");
    let started = Instant::now();
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut cat = Catalog::default();
    let mut acked: Vec<Image> = Vec::new();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        fill(&store, &mut rng, 0, (200, 120, 600), &mut cat);
        store.close().unwrap();
    }
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..ROUNDS {
        let (moment, rate) = match round % 5 {
            0 => (Moment::Mark, None),
            1 => (Moment::Sweep, None),
            2 => (Moment::Compact, None),
            // A throttled compaction lasts long enough for a kill to land in its middle.
            3 => (Moment::Compact, Some(2_000_000u64)),
            _ => (Moment::Anytime, None),
        };
        let child_seed = rng.next_u64();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, child_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(r) = rate {
            cmd.env(CHILD_RATE, r.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(e) = parse(&line) {
                    let _ = tx.send(e);
                }
            }
        });
        let spawned = Instant::now();
        let round_started = spawned;
        let mut events: Vec<Event> = Vec::new();
        let mut wait_for = |want: &dyn Fn(&Event) -> bool| -> bool {
            let deadline = spawned + Duration::from_secs(10);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(e) => {
                        let hit = want(&e);
                        events.push(e);
                        if hit {
                            return true;
                        }
                    }
                    Err(_) => return false,
                }
            }
            false
        };
        let (found, delay_ms) = match moment {
            Moment::Mark => (wait_for(&|e| matches!(e, Event::Gc)), rng.below(3)),
            Moment::Sweep => (
                wait_for(&|e| matches!(e, Event::Phase(p) if p == "Mark")),
                rng.below(8),
            ),
            Moment::Compact => (
                wait_for(&|e| matches!(e, Event::Phase(p) if p == "Compact")),
                rng.below(if rate.is_some() { 400 } else { 40 }),
            ),
            Moment::Anytime => (true, 100 + rng.below(500)),
        };
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // The last thing the child announced before it died.
        let mut last = "start".to_string();
        let mut runs = 0;
        events.extend(rx.try_iter());
        for e in events {
            match e {
                Event::Gc => last = "gc called".into(),
                Event::Phase(p) => {
                    last = match p.as_str() {
                        "Mark" => "mark snapshot taken".into(),
                        "Sweep" => "sweep step".into(),
                        _ => "compaction".into(),
                    }
                }
                Event::Done => {
                    last = "between runs".into();
                    runs += 1;
                }
                Event::Ok(img) => acked.push(img),
            }
        }
        eprintln!(
            "round {round}: aimed at {moment:?}{} ({}), killed +{delay_ms} ms; last announced: \
             {last}; {runs} whole runs before; {} images acknowledged so far",
            rate.map_or(String::new(), |r| format!(" at {} MB/s", r / 1_000_000)),
            if found { "seen" } else { "not seen in 10 s" },
            acked.len()
        );
        *seen.entry(last).or_default() += 1;

        let store = check_after_kill(dir.path(), round, &cat, &acked);
        fill(&store, &mut rng, round + 1, (30, 20, 500), &mut cat);
        store.close().unwrap();
        eprintln!(
            "round {round}: checked and refilled, {:.1} s in all",
            round_started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "{ROUNDS} kills in {:.1} s; last announcement before each kill: {seen:?}; {} images \
         kept, {} deleted, {} acknowledged by children",
        started.elapsed().as_secs_f64(),
        cat.kept.len(),
        cat.deleted.len(),
        acked.len()
    );
    assert!(!acked.is_empty(), "the children acknowledged nothing");
}
