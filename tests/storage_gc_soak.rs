//! Collection and compaction under load: pushers push images (layers through `put_blob` and
//! through upload sessions, shared base layers by mounting, layers and whole images of deleted
//! images again), retag and delete; pullers resolve tags and read every layer back; one thread
//! runs `gc` with compaction in a loop over small segments and records, so compaction really
//! moves chunks while all that goes on.
//!
//! What must hold:
//! - a pull of an image whose tag was not being deleted always succeeds, and no byte served
//!   ever differs from its digest;
//! - a manifest PUT succeeds, or fails with `ManifestBlobUnknown` for a blob that this client
//!   last touched (pushed, mounted, HEADed) before some collection was started; a collection
//!   is started before its mark begins, so such a blob may have been swept. Anything else is
//!   a wrong refusal. Each client's touch time is taken when its call starts, so a call that
//!   straddles the start of a collection counts as before it;
//! - afterwards every tag resolves, every layer of every live image is present and hashes to
//!   its digest, `verify()` is clean, and the index equals the one a rebuild from the segments
//!   and base produces (index.redb removed, store reopened).
//!
//! Bounded by `BERTH_GC_SOAK_SECS` (default 15 s of load); `BERTH_GC_SOAK_SEED` replays a seed.

mod storage_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use berth::oci::digest::Digest;
use berth::storage::memdisk::SplitMix;
use berth::storage::*;
use storage_support::sha;

const PUSHERS: usize = 3;
const PULLERS: usize = 2;
const BASE_REPO: &str = "soak/base";
const MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 8 * 1024,
        max_segment_bytes: 256 * 1024,
        ..Default::default()
    }
}

fn repo_of(pusher: usize) -> String {
    format!("soak/p{pusher}")
}

fn random_bytes(rng: &mut SplitMix, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    v.truncate(len);
    v
}

/// A manifest body that names its layers, so a puller can check what it got.
fn body_for(name: &str, layers: &[Digest]) -> Vec<u8> {
    serde_json::json!({
        "image": name,
        "layers": layers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

fn layers_of(body: &[u8]) -> Result<Vec<Digest>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    v["layers"]
        .as_array()
        .ok_or("no layers")?
        .iter()
        .map(|d| {
            d.as_str()
                .ok_or("layer not a string")?
                .parse::<Digest>()
                .map_err(|e| format!("{e:?}"))
        })
        .collect()
}

fn manifest_put(body: &[u8], layers: &[Digest], tags: Vec<String>) -> ManifestPut {
    ManifestPut {
        digest: sha(body),
        media_type: MEDIA_TYPE.into(),
        body: body.to_vec(),
        tags,
        references: layers.to_vec(),
        subject: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// An image a pusher published (its PUT returned success).
struct Image {
    repo: String,
    tag: String,
    manifest: Digest,
    layers: Vec<Digest>,
    /// Set by the owner before it deletes the tag and the manifest.
    deleting: AtomicBool,
}

#[derive(Default)]
struct Stats {
    images_pushed: AtomicU64,
    images_repushed: AtomicU64,
    retags: AtomicU64,
    deletions: AtomicU64,
    put_attempts: AtomicU64,
    unknown_expected: AtomicU64,
    unknown_ambiguous: AtomicU64,
    unknown_wrong: AtomicU64,
    abandoned: AtomicU64,
    pulls_ok: AtomicU64,
    pulls_of_deleted_failed: AtomicU64,
    latest_absent: AtomicU64,
    bytes_pulled: AtomicU64,
    gc_runs: AtomicU64,
    gc_dry_runs: AtomicU64,
    blobs_removed: AtomicU64,
    manifests_deleted: AtomicU64,
    kept_touched: AtomicU64,
    segments_compacted: AtomicU64,
    bytes_relocated: AtomicU64,
    bytes_reclaimed: AtomicU64,
}

struct Shared {
    started: Instant,
    deadline: Instant,
    seed: u64,
    /// Each collection (dry runs aside): when `gc` was called, and when its first mark
    /// progress report came. Its mark began (touches started to count) in between: `gc` may
    /// wait for the gate, and the report comes after the snapshot.
    gc_calls: Mutex<Vec<(Instant, Option<Instant>)>>,
    /// Images published and not being deleted.
    published: RwLock<Vec<Arc<Image>>>,
    /// Every image ever published, by (repo, manifest digest); a re-push replaces the entry.
    by_manifest: Mutex<HashMap<(String, Digest), Arc<Image>>>,
    /// Deletions begun and finished, per pusher repository.
    deletions_started: Vec<AtomicU64>,
    deletions_finished: Vec<AtomicU64>,
    base_layers: Vec<Digest>,
    stats: Stats,
    /// Distinct failures and how often each happened.
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut all = self.failures.lock().unwrap();
        let n = all.entry(what.clone()).or_insert(0);
        if *n == 0 {
            eprintln!("FAILURE at {}: {what}", self.at(Instant::now()));
        }
        *n += 1;
    }

    fn at(&self, t: Instant) -> String {
        format!("{:.3}s", (t - self.started).as_secs_f64())
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }
}

/// A layer of an image being pushed: its bytes, or a base layer mounted from `BASE_REPO`.
#[derive(Clone)]
enum Layer {
    Bytes(Arc<Vec<u8>>),
    Base(Digest),
}

impl Layer {
    fn digest(&self) -> Digest {
        match self {
            Layer::Bytes(b) => sha(b),
            Layer::Base(d) => d.clone(),
        }
    }
}

struct Owned {
    img: Arc<Image>,
    body: Vec<u8>,
    layers: Vec<Layer>,
}

struct Pusher<'a> {
    id: usize,
    repo: String,
    store: &'a Store,
    sh: &'a Shared,
    rng: SplitMix,
    /// When this client last started a call that touches each blob.
    touched: HashMap<Digest, Instant>,
    mine: Vec<Owned>,
    /// Layers of images this client deleted, pushed again later.
    old_layers: Vec<Arc<Vec<u8>>>,
    /// Whole images this client deleted: (body, layers), pushed again later.
    old_images: Vec<(Vec<u8>, Vec<Layer>)>,
    next: u64,
}

impl Pusher<'_> {
    fn touch(&mut self, d: &Digest) {
        self.touched.insert(d.clone(), Instant::now());
    }

    fn run(&mut self) {
        while self.sh.running() {
            match self.rng.below(10) {
                _ if self.mine.len() > 40 => self.delete(),
                0..=5 => self.push(),
                6 => self.retag(),
                _ if self.mine.len() > 3 => self.delete(),
                _ => self.push(),
            }
        }
    }

    fn fresh_layer(&mut self) -> Layer {
        let len = match self.rng.below(10) {
            0 => 1 + self.rng.below(512),
            1 => 100_000 + self.rng.below(150_000),
            _ => 1024 + self.rng.below(60_000),
        };
        Layer::Bytes(Arc::new(random_bytes(&mut self.rng, len as usize)))
    }

    fn push(&mut self) {
        let n = self.next;
        self.next += 1;
        let tag = format!("i{n}");
        let (body, layers, repush) = if !self.old_images.is_empty() && self.rng.below(6) == 0 {
            let i = self.rng.below(self.old_images.len() as u64) as usize;
            let (body, layers) = self.old_images.swap_remove(i);
            (body, layers, true)
        } else {
            let count = 1 + self.rng.below(3);
            let mut layers: Vec<Layer> = Vec::new();
            for _ in 0..count {
                let l = match self.rng.below(20) {
                    0..=2 => Layer::Base(
                        self.sh.base_layers
                            [self.rng.below(self.sh.base_layers.len() as u64) as usize]
                            .clone(),
                    ),
                    3..=6 if !self.old_layers.is_empty() => {
                        let i = self.rng.below(self.old_layers.len() as u64) as usize;
                        Layer::Bytes(self.old_layers[i].clone())
                    }
                    _ => self.fresh_layer(),
                };
                if !layers.iter().any(|x| x.digest() == l.digest()) {
                    layers.push(l);
                }
            }
            let digests: Vec<Digest> = layers.iter().map(Layer::digest).collect();
            let body = body_for(&format!("p{}-{n}", self.id), &digests);
            (body, layers, false)
        };
        let digests: Vec<Digest> = layers.iter().map(Layer::digest).collect();
        let put = manifest_put(&body, &digests, vec![tag.clone()]);
        for attempt in 0..4 {
            for l in &layers {
                self.upload(l, attempt > 0);
            }
            // Give collections time to come between the uploads and the PUT.
            if self.rng.below(2) == 0 {
                std::thread::sleep(Duration::from_millis(self.rng.below(40)));
            }
            self.sh.stats.put_attempts.fetch_add(1, SeqCst);
            match self.store.put_manifest(&self.repo, &put) {
                Ok(()) => {
                    let img = Arc::new(Image {
                        repo: self.repo.clone(),
                        tag,
                        manifest: put.digest.clone(),
                        layers: digests,
                        deleting: AtomicBool::new(false),
                    });
                    self.sh.published.write().unwrap().push(img.clone());
                    self.sh
                        .by_manifest
                        .lock()
                        .unwrap()
                        .insert((self.repo.clone(), put.digest.clone()), img.clone());
                    self.mine.push(Owned { img, body, layers });
                    let counter = if repush {
                        &self.sh.stats.images_repushed
                    } else {
                        &self.sh.stats.images_pushed
                    };
                    counter.fetch_add(1, SeqCst);
                    return;
                }
                Err(StorageError::ManifestBlobUnknown(d)) => self.judge_refusal(&d, &digests),
                Err(e) => {
                    self.sh
                        .fail(format!("{}: manifest PUT failed: {e}", self.repo));
                    return;
                }
            }
        }
        self.sh.stats.abandoned.fetch_add(1, SeqCst);
    }

    /// Pushes a layer as a client would: HEAD first (always on a retry and for a layer this
    /// client pushed before, sometimes otherwise), then, if the HEAD found nothing, upload it
    /// monolithically or in a session.
    fn upload(&mut self, l: &Layer, retry: bool) {
        let d = l.digest();
        let data = match l {
            Layer::Base(_) => {
                self.touch(&d);
                match self.store.link_blob(&self.repo, &d) {
                    Ok(true) => {}
                    Ok(false) => self.sh.fail(format!("mount of base layer {d} refused")),
                    Err(e) => self.sh.fail(format!("mount of base layer {d}: {e}")),
                }
                return;
            }
            Layer::Bytes(b) => b.clone(),
        };
        let seen_before = self.touched.contains_key(&d);
        if retry || seen_before || self.rng.below(3) == 0 {
            self.touch(&d);
            if self.store.repo_has_blob(&self.repo, &d).unwrap() {
                return;
            }
        }
        self.touch(&d);
        if self.rng.below(2) == 0 {
            self.store.put_blob(&self.repo, &d, &data).unwrap();
        } else {
            let id = self.store.begin_upload(&self.repo).unwrap();
            let mut off = 0u64;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (1 + self.rng.below(30_000) as usize).min(rest.len());
                off = self.store.append(&id, off, &rest[..n]).unwrap();
                rest = &rest[n..];
            }
            self.store.commit(&id, &d).unwrap();
        }
    }

    /// A `ManifestBlobUnknown` is expected for a blob this client last touched before some
    /// collection was called, excused for one it last touched between a call and that
    /// collection's first mark report (the mark may have begun after the touch), and wrong
    /// otherwise: the touch came after the mark had begun, which must protect the blob.
    fn judge_refusal(&mut self, d: &Digest, references: &[Digest]) {
        let calls = self.sh.gc_calls.lock().unwrap().clone();
        let last = self
            .touched
            .get(d)
            .copied()
            .filter(|_| references.contains(d));
        let before_call = last.is_some_and(|t| calls.iter().any(|&(call, _)| call > t));
        let maybe_before_mark = last.is_some_and(|t| {
            calls
                .iter()
                .any(|&(call, marked)| call <= t && marked.is_none_or(|m| t < m))
        });
        if before_call {
            self.sh.stats.unknown_expected.fetch_add(1, SeqCst);
        } else if maybe_before_mark {
            self.sh.stats.unknown_ambiguous.fetch_add(1, SeqCst);
        } else {
            self.sh.stats.unknown_wrong.fetch_add(1, SeqCst);
            let before = last.and_then(|t| calls.iter().rev().find(|c| c.0 <= t).copied());
            self.sh.fail(format!(
                "{}: ManifestBlobUnknown({d}) though its last touch (at {}) came after the \
                 mark of every collection so far had begun (last call {}, marked by {})",
                self.repo,
                last.map_or("never".into(), |t| self.sh.at(t)),
                before.map_or("none".into(), |c| self.sh.at(c.0)),
                before
                    .and_then(|c| c.1)
                    .map_or("?".into(), |m| self.sh.at(m)),
            ));
        }
    }

    fn retag(&mut self) {
        if self.mine.is_empty() {
            return;
        }
        let i = self.rng.below(self.mine.len() as u64) as usize;
        let o = &self.mine[i];
        let put = manifest_put(&o.body, &o.img.layers, vec!["latest".into()]);
        match self.store.put_manifest(&self.repo, &put) {
            Ok(()) => {
                self.sh.stats.retags.fetch_add(1, SeqCst);
            }
            Err(e) => self.sh.fail(format!(
                "{}: retag of live image {} failed: {e}",
                self.repo, o.img.tag
            )),
        }
    }

    fn delete(&mut self) {
        if self.mine.is_empty() {
            return;
        }
        let i = self.rng.below(self.mine.len() as u64) as usize;
        let o = self.mine.swap_remove(i);
        o.img.deleting.store(true, SeqCst);
        self.sh.deletions_started[self.id].fetch_add(1, SeqCst);
        self.sh
            .published
            .write()
            .unwrap()
            .retain(|x| !Arc::ptr_eq(x, &o.img));
        match self.store.delete_tag(&self.repo, &o.img.tag) {
            Ok(true) => {}
            other => self.sh.fail(format!(
                "{}: delete_tag {}: {other:?}",
                self.repo, o.img.tag
            )),
        }
        match self.store.delete_manifest(&self.repo, &o.img.manifest) {
            Ok(true) => {}
            other => self.sh.fail(format!(
                "{}: delete_manifest {}: {other:?}",
                self.repo, o.img.manifest
            )),
        }
        self.sh.deletions_finished[self.id].fetch_add(1, SeqCst);
        self.sh.stats.deletions.fetch_add(1, SeqCst);
        for l in &o.layers {
            if let Layer::Bytes(b) = l {
                if self.old_layers.len() >= 32 {
                    let j = self.rng.below(32) as usize;
                    self.old_layers.swap_remove(j);
                }
                self.old_layers.push(b.clone());
            }
        }
        if self.old_images.len() < 8 {
            self.old_images.push((o.body, o.layers));
        }
    }
}

fn pull(store: &Store, repo: &str, tag: &str, bytes: &AtomicU64) -> Result<Digest, (bool, String)> {
    // (corrupt, message): a byte that differs from its digest is never excused.
    let m = store
        .get_manifest(repo, &Reference::Tag(tag.to_string()))
        .map_err(|e| (false, format!("get_manifest: {e}")))?
        .ok_or((false, "tag not found".to_string()))?;
    if sha(&m.body) != m.digest {
        return Err((true, format!("manifest {} body differs", m.digest)));
    }
    let layers = layers_of(&m.body).map_err(|e| (true, e))?;
    for d in layers {
        let blob = store
            .get(&d)
            .map_err(|e| (false, format!("get {d}: {e}")))?
            .ok_or_else(|| (false, format!("layer {d} missing")))?;
        let got = blob
            .read_all()
            .map_err(|e| (false, format!("read {d}: {e}")))?;
        if sha(&got) != d {
            return Err((true, format!("layer {d} read back different bytes")));
        }
        bytes.fetch_add(got.len() as u64, SeqCst);
    }
    Ok(m.digest)
}

/// A live image as the end state must have it: its tag names it, every layer is linked in its
/// repository and reads back as its digest.
fn check_image(store: &Store, img: &Image) -> Result<(), String> {
    let m = store
        .get_manifest(&img.repo, &Reference::Tag(img.tag.clone()))
        .map_err(|e| e.to_string())?
        .ok_or("tag does not resolve")?;
    if m.digest != img.manifest || layers_of(&m.body)? != img.layers {
        return Err(format!("resolves to {}", m.digest));
    }
    for d in &img.layers {
        if !store
            .repo_has_blob(&img.repo, d)
            .map_err(|e| e.to_string())?
        {
            return Err(format!("layer {d} not linked"));
        }
        let got = store
            .get(d)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("layer {d} missing"))?
            .read_all()
            .map_err(|e| e.to_string())?;
        if sha(&got) != *d {
            return Err(format!("layer {d} differs"));
        }
    }
    Ok(())
}

fn puller(store: &Store, sh: &Shared, seed: u64) {
    let mut rng = SplitMix(seed);
    while sh.running() {
        if rng.below(5) == 0 {
            // "latest" moves and may be gone: a failure is excused only when a deletion in the
            // repository overlapped the pull (one began before the failure and had not
            // finished when the pull began).
            let p = rng.below(PUSHERS as u64) as usize;
            let repo = repo_of(p);
            let finished = sh.deletions_finished[p].load(SeqCst);
            match pull(store, &repo, "latest", &sh.stats.bytes_pulled) {
                Ok(_) => {
                    sh.stats.pulls_ok.fetch_add(1, SeqCst);
                }
                Err((false, e)) if e == "tag not found" => {
                    sh.stats.latest_absent.fetch_add(1, SeqCst);
                }
                Err((false, _)) if sh.deletions_started[p].load(SeqCst) > finished => {
                    sh.stats.pulls_of_deleted_failed.fetch_add(1, SeqCst);
                }
                Err((_, e)) => sh.fail(format!("pull {repo}:latest: {e}")),
            }
            continue;
        }
        let img = {
            let all = sh.published.read().unwrap();
            if all.is_empty() {
                None
            } else {
                Some(all[rng.below(all.len() as u64) as usize].clone())
            }
        };
        let Some(img) = img else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        match pull(store, &img.repo, &img.tag, &sh.stats.bytes_pulled) {
            Ok(d) if d == img.manifest => {
                sh.stats.pulls_ok.fetch_add(1, SeqCst);
            }
            Ok(d) => sh.fail(format!("{}:{} resolved to {d}", img.repo, img.tag)),
            Err((false, _)) if img.deleting.load(SeqCst) => {
                sh.stats.pulls_of_deleted_failed.fetch_add(1, SeqCst);
            }
            Err((_, e)) => sh.fail(format!(
                "pull of {}:{} (not deleted) failed: {e}",
                img.repo, img.tag
            )),
        }
    }
}

fn collector(store: &Store, sh: &Shared, seed: u64) {
    let mut rng = SplitMix(seed);
    let st = &sh.stats;
    while sh.running() {
        let dry_run = rng.below(10) == 0;
        let opts = GcOptions {
            dry_run,
            compact: true,
            compact_threshold: 0.5 + rng.below(45) as f64 / 100.0,
            ..Default::default()
        };
        if !dry_run {
            sh.gc_calls.lock().unwrap().push((Instant::now(), None));
        }
        let mut marked = dry_run;
        let mut progress = |p: GcProgress| {
            if p.phase == GcPhase::Mark && !marked {
                marked = true;
                sh.gc_calls.lock().unwrap().last_mut().unwrap().1 = Some(Instant::now());
            }
        };
        match store.gc(&opts, &mut progress) {
            Ok(r) if dry_run => {
                st.gc_dry_runs.fetch_add(1, SeqCst);
                assert!(r.dry_run);
            }
            Ok(r) => {
                st.gc_runs.fetch_add(1, SeqCst);
                st.blobs_removed.fetch_add(r.blobs_removed, SeqCst);
                st.manifests_deleted
                    .fetch_add(r.manifests_deleted.len() as u64, SeqCst);
                st.kept_touched.fetch_add(r.kept_touched, SeqCst);
                st.segments_compacted
                    .fetch_add(r.segments_compacted, SeqCst);
                st.bytes_relocated.fetch_add(r.bytes_relocated, SeqCst);
                st.bytes_reclaimed.fetch_add(r.bytes_reclaimed, SeqCst);
            }
            Err(e) => sh.fail(format!("gc failed: {e}")),
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
    }
}

fn show(b: &[u8]) -> String {
    let s = b.escape_ascii().to_string();
    match s.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s,
    }
}

/// Per table: rows only in `a`, rows only in `b`, for a readable failure.
fn describe_difference(a: &[IndexRow], b: &[IndexRow]) -> String {
    let key = |r: &IndexRow| (r.table, r.key.clone(), r.value.clone());
    let sa: HashSet<_> = a.iter().map(key).collect();
    let sb: HashSet<_> = b.iter().map(key).collect();
    let mut out = String::new();
    for (name, only) in [
        ("live only", sa.difference(&sb)),
        ("rebuild only", sb.difference(&sa)),
    ] {
        let mut rows: Vec<_> = only.collect();
        rows.sort();
        out += &format!("{} rows {name}:\n", rows.len());
        for (t, k, v) in rows.iter().take(12) {
            out += &format!("  {t} key={} value={}\n", show(k), show(v));
        }
    }
    out
}

#[test]
fn gc_and_compaction_under_pushes_pulls_and_deletes() {
    let secs: u64 = std::env::var("BERTH_GC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("BERTH_GC_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("gc soak seed {seed} ({secs} s; BERTH_GC_SOAK_SEED={seed} replays the choices)");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();

    // Base layers every pusher mounts; a tagged image keeps them alive throughout.
    let mut rng = SplitMix(seed);
    let base: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            let len = 20_000 + rng.below(20_000) as usize;
            random_bytes(&mut rng, len)
        })
        .collect();
    let base_layers: Vec<Digest> = base.iter().map(|b| sha(b)).collect();
    for b in &base {
        store.put_blob(BASE_REPO, &sha(b), b).unwrap();
    }
    let base_body = body_for("base", &base_layers);
    store
        .put_manifest(
            BASE_REPO,
            &manifest_put(&base_body, &base_layers, vec!["stable".into()]),
        )
        .unwrap();

    let started = Instant::now();
    let sh = Shared {
        started,
        deadline: started + Duration::from_secs(secs),
        seed,
        gc_calls: Mutex::new(Vec::new()),
        published: RwLock::new(Vec::new()),
        by_manifest: Mutex::new(HashMap::new()),
        deletions_started: (0..PUSHERS).map(|_| AtomicU64::new(0)).collect(),
        deletions_finished: (0..PUSHERS).map(|_| AtomicU64::new(0)).collect(),
        base_layers,
        stats: Stats::default(),
        failures: Mutex::new(BTreeMap::new()),
    };
    let base_image = Arc::new(Image {
        repo: BASE_REPO.into(),
        tag: "stable".into(),
        manifest: sha(&base_body),
        layers: sh.base_layers.clone(),
        deleting: AtomicBool::new(false),
    });
    sh.published.write().unwrap().push(base_image);

    std::thread::scope(|s| {
        let (store, sh) = (&store, &sh);
        for id in 0..PUSHERS {
            s.spawn(move || {
                Pusher {
                    id,
                    repo: repo_of(id),
                    store,
                    sh,
                    rng: SplitMix(sh.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
                    touched: HashMap::new(),
                    mine: Vec::new(),
                    old_layers: Vec::new(),
                    old_images: Vec::new(),
                    next: 0,
                }
                .run()
            });
        }
        for p in 0..PULLERS {
            s.spawn(move || puller(store, sh, sh.seed ^ (0x7700 + p as u64)));
        }
        s.spawn(move || collector(store, sh, sh.seed ^ 0x6c));
    });
    let load_time = started.elapsed();

    // One more collection with nothing running, then everything that is left must serve.
    let last = store.gc(&GcOptions::default(), &mut |_| {}).unwrap();
    let live: Vec<Arc<Image>> = sh.published.read().unwrap().clone();
    for img in &live {
        if let Err(e) = check_image(&store, img) {
            sh.fail(format!("after the load, {}:{}: {e}", img.repo, img.tag));
        }
    }
    for p in 0..PUSHERS {
        let repo = repo_of(p);
        match pull(&store, &repo, "latest", &AtomicU64::new(0)) {
            Ok(_) => {}
            Err((_, e)) if e == "tag not found" => {}
            Err((_, e)) => sh.fail(format!("after the load, {repo}:latest: {e}")),
        }
    }
    // Deleted images that were not pushed again are gone.
    let live_keys: HashSet<(String, Digest)> = live
        .iter()
        .map(|i| (i.repo.clone(), i.manifest.clone()))
        .collect();
    let mut gone = 0;
    for ((repo, digest), img) in sh.by_manifest.lock().unwrap().iter() {
        if img.deleting.load(SeqCst) && !live_keys.contains(&(repo.clone(), digest.clone())) {
            match store.get_manifest(repo, &Reference::Digest(digest.clone())) {
                Ok(None) => gone += 1,
                other => sh.fail(format!(
                    "deleted manifest {repo}@{digest} still there: {:?}",
                    other.map(|m| m.map(|m| m.digest))
                )),
            }
        }
    }
    let report = store.verify().unwrap();
    if !report.is_clean() {
        sh.fail(format!("verify: {report:?}"));
    }

    let st = &sh.stats;
    let n = |a: &AtomicU64| a.load(SeqCst);
    eprintln!(
        "load {:.1} s: {} images pushed, {} pushed again after deletion, {} retags, {} deletions \
         ({gone} confirmed gone), {} manifest PUTs ({} abandoned after 4 refusals)",
        load_time.as_secs_f64(),
        n(&st.images_pushed),
        n(&st.images_repushed),
        n(&st.retags),
        n(&st.deletions),
        n(&st.put_attempts),
        n(&st.abandoned),
    );
    eprintln!(
        "ManifestBlobUnknown: {} expected (blob last touched before a gc call), {} excused \
         (touched between a gc call and its first mark report), {} wrong",
        n(&st.unknown_expected),
        n(&st.unknown_ambiguous),
        n(&st.unknown_wrong),
    );
    eprintln!(
        "pulls: {} ok ({:.1} MB), {} failed on images being deleted, {} of an absent latest",
        n(&st.pulls_ok),
        n(&st.bytes_pulled) as f64 / 1e6,
        n(&st.pulls_of_deleted_failed),
        n(&st.latest_absent),
    );
    eprintln!(
        "gc: {} runs + {} dry runs; {} blobs and {} manifests removed, {} candidates kept as \
         touched, {} segments compacted, {:.1} MB relocated, {:.1} MB reclaimed; last run {:?}",
        n(&st.gc_runs),
        n(&st.gc_dry_runs),
        n(&st.blobs_removed),
        n(&st.manifests_deleted),
        n(&st.kept_touched),
        n(&st.segments_compacted),
        n(&st.bytes_relocated) as f64 / 1e6,
        n(&st.bytes_reclaimed) as f64 / 1e6,
        (last.blobs_removed, last.segments_compacted),
    );
    let failures = sh.failures.lock().unwrap().clone();
    let total: u64 = failures.values().sum();
    assert!(
        failures.is_empty(),
        "{total} failures, {} distinct (seed {seed}): {:#?}",
        failures.len(),
        failures.iter().take(12).collect::<Vec<_>>()
    );
    assert_eq!(n(&st.unknown_wrong), 0);
    // The soak tested something: collections removed blobs and compaction moved chunks.
    assert!(n(&st.images_pushed) > 20 && n(&st.pulls_ok) > 20);
    assert!(n(&st.blobs_removed) > 0, "no collection removed anything");
    assert!(
        n(&st.segments_compacted) > 0 && n(&st.bytes_relocated) > 0,
        "compaction never ran"
    );

    // Leave some log after the newest base, so that the rebuild replays ops too: one more
    // image, two deletions, and a sweep without compaction.
    let extra = random_bytes(&mut rng, 30_000);
    store.put_blob("soak/tail", &sha(&extra), &extra).unwrap();
    let tail_body = body_for("tail", &[sha(&extra)]);
    store
        .put_manifest(
            "soak/tail",
            &manifest_put(&tail_body, &[sha(&extra)], vec!["t".into()]),
        )
        .unwrap();
    for img in live.iter().filter(|i| i.repo != BASE_REPO).take(2) {
        assert!(store.delete_manifest(&img.repo, &img.manifest).unwrap());
    }
    let swept = store
        .gc(
            &GcOptions {
                compact: false,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(swept.blobs_removed > 0, "{swept:?}");

    // The live index equals the one rebuilt from the segments and the newest base.
    store.checkpoint().unwrap();
    let before = store.dump_index().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let after = store.dump_index().unwrap();
    assert!(
        before == after,
        "index after a rebuild differs from the live one ({} vs {} rows)\n{}",
        before.len(),
        after.len(),
        describe_difference(&before, &after)
    );
    assert!(store.verify().unwrap().is_clean());
}
