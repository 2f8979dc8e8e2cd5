//! Collection racing with clients, step by step: a segment backend that holds one thread's
//! log sync until the test lets it go puts a group commit exactly where the race needs it (in
//! flight while a collection marks, sweeps or compacts), so each scenario is deterministic.
//! Each scenario ends with what a client was promised: a manifest PUT or a blob push that
//! returned success serves every byte it names.

mod storage_support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use berth::oci::digest::Digest;
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use storage_support::sha;
use storage_support::sync_hook::SyncHook;

thread_local! {
    /// Set on the one thread whose next log sync the stall holds.
    static HOLD_MY_SYNC: Cell<bool> = const { Cell::new(false) };
}

/// Holds the first `sync_data` of a marked thread until [`Stall::release`].
#[derive(Default)]
struct Stall {
    state: Mutex<StallState>,
    cv: Condvar,
}

#[derive(Default)]
struct StallState {
    held: Option<mpsc::Sender<()>>,
    released: bool,
}

impl Stall {
    /// The next sync on a thread that called [`hold_next_sync`] blocks; `held` hears of it.
    fn arm(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let mut st = self.state.lock().unwrap();
        st.held = Some(tx);
        st.released = false;
        rx
    }

    fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.cv.notify_all();
    }

    fn maybe_hold(&self) {
        if !HOLD_MY_SYNC.with(|h| h.replace(false)) {
            return;
        }
        let mut st = self.state.lock().unwrap();
        if let Some(tx) = st.held.take() {
            let _ = tx.send(());
            while !st.released {
                st = self.cv.wait(st).unwrap();
            }
        }
    }
}

fn hold_next_sync() {
    HOLD_MY_SYNC.with(|h| h.set(true));
}

fn open(opts: StoreOptions) -> (Store, Arc<Stall>) {
    let disk = MemDisk::new();
    let stall = Arc::new(Stall::default());
    let held = stall.clone();
    let io = Arc::new(SyncHook::new(
        disk.segments(),
        Box::new(move |_| {
            held.maybe_hold();
            Ok(())
        }),
    ));
    (Store::open_with(io, disk.index(), opts).unwrap(), stall)
}

fn manifest(body: &[u8], references: Vec<Digest>, tags: &[&str]) -> ManifestPut {
    ManifestPut {
        digest: sha(body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: body.to_vec(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        references,
        subject: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ seed)
        .collect()
}

/// Waits for a signal that the scenario's timing depends on, failing instead of hanging.
fn wait(rx: &mpsc::Receiver<()>, what: &str) {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A manifest PUT whose group commit is syncing the log when a collection starts to mark:
/// the mark's snapshot does not have the manifest, so its layer (pushed earlier, referenced by
/// nothing yet) is a candidate. The PUT then commits and returns success; the sweep must not
/// take the layer it now references (the touch the PUT made has to count, or the mark has to
/// wait for commits in flight).
#[test]
fn a_manifest_committing_while_the_mark_starts_keeps_its_layers() {
    let (store, stall) = open(StoreOptions::default());
    let data = layer(1, 10_000);
    store.put_blob("app", &sha(&data), &data).unwrap();
    store.checkpoint().unwrap(); // so the background checkpointer has nothing to commit
    let m = manifest(b"{\"image\":1}", vec![sha(&data)], &["v1"]);

    let held = stall.arm();
    let (marked_tx, marked) = mpsc::channel();
    std::thread::scope(|s| {
        let store = &store;
        let pusher = s.spawn(|| {
            hold_next_sync();
            store.put_manifest("app", &m)
        });
        wait(&held, "the manifest's commit to reach its log sync");
        let collector = s.spawn(move || {
            let mut told = false;
            store.gc(&GcOptions::default(), &mut |p: GcProgress| {
                if p.phase == GcPhase::Mark && !told {
                    told = true;
                    let _ = marked_tx.send(());
                }
            })
        });
        // A mark that waits for commits in flight cannot take its snapshot until the release;
        // one that does not has taken it by now.
        let _ = marked.recv_timeout(Duration::from_millis(500));
        stall.release();
        pusher.join().unwrap().expect("the manifest PUT succeeds");
        let report = collector.join().unwrap().unwrap();
        eprintln!("{report:?}");
    });
    let got = store
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .expect("tag v1");
    assert_eq!(got.digest, m.digest);
    assert!(
        store.repo_has_blob("app", &sha(&data)).unwrap(),
        "the layer of a manifest whose PUT succeeded was swept"
    );
    let blob = store.get(&sha(&data)).unwrap().expect("layer present");
    assert!(blob.read_all().unwrap() == data);
}

/// Pushing a manifest that was deleted and is a sweep candidate again: `put_manifest` finds
/// its body still stored and writes no bytes, and a sweep commits before the PUT's own commit.
/// The PUT must not then publish a manifest whose body has no bytes.
#[test]
fn a_manifest_pushed_again_while_its_body_is_swept_reads_back() {
    let (store, stall) = open(StoreOptions::default());
    let m = manifest(b"{\"artifact\":\"no layers\"}", vec![], &["v1"]);
    store.put_manifest("app", &m).unwrap();
    assert!(store.delete_manifest("app", &m.digest).unwrap());
    store.checkpoint().unwrap();

    let held = stall.arm();
    std::thread::scope(|s| {
        let store = &store;
        let collector = s.spawn(|| {
            hold_next_sync(); // the sweep's commit
            store.gc(&GcOptions::default(), &mut |_| {})
        });
        wait(&held, "the sweep's commit to reach its log sync");
        let pusher = s.spawn(|| store.put_manifest("app", &m));
        // The PUT touches the body whose removal the sweep is committing, and waits for it.
        let blocked = store.wait_for_blocked_touch(Duration::from_secs(20));
        stall.release();
        assert!(blocked, "the PUT never waited for the sweep");
        let report = collector.join().unwrap().unwrap();
        eprintln!("{report:?}");
        pusher.join().unwrap().expect("the manifest PUT succeeds");
    });
    let got = store
        .get_manifest("app", &Reference::Tag("v1".into()))
        .expect("the manifest reads back")
        .expect("tag v1");
    assert!(got.body == m.body);
}

/// A monolithic push writes its chunk records, rolls past the segments holding them, and is
/// still waiting for its commit while a compaction picks those sealed segments (nothing in the
/// index names them, so they are all dead bytes). The commit lands after the compaction looked
/// for blobs in its victims and before it deletes them: the push returned success, so its
/// bytes must still be there.
#[test]
fn a_push_committing_during_compaction_keeps_its_segments() {
    let (store, stall) = open(StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    });
    // Nothing else is stored: every sealed segment holds only bytes no index row names yet.
    store.checkpoint().unwrap();

    let held = stall.arm();
    let big = layer(9, 48 * 1024);
    let (compacted_tx, compacted) = mpsc::channel();
    std::thread::scope(|s| {
        let store = &store;
        // A small push whose commit holds the group: every later commit queues behind it.
        let small = layer(3, 100);
        let holder = s.spawn(move || {
            hold_next_sync();
            store.put_blob("other", &sha(&small), &small)
        });
        wait(&held, "the small push to hold the group commit");
        // The big push writes its records (several segments, sealed as they fill) and queues
        // its commit.
        let pusher = s.spawn(|| store.put_blob("app", &sha(&big), &big));
        if !store.wait_for_queued_commits(1, Duration::from_secs(20)) {
            stall.release();
            panic!("the big push never queued its commit");
        }
        let collector = s.spawn(move || {
            let mut compact_reports = 0;
            store.gc(
                &GcOptions {
                    compact_threshold: 0.5,
                    ..Default::default()
                },
                &mut |p: GcProgress| {
                    if p.phase == GcPhase::Compact {
                        compact_reports += 1;
                        // The second report comes after the copies, before the victims are
                        // checked once more and the base is written.
                        if compact_reports == 2 {
                            let _ = compacted_tx.send(());
                        }
                    }
                },
            )
        });
        // A collection that waits for commits in flight gets here only after the release.
        // One that does not has compacted by now; the pause is its chance to delete victims.
        let _ = compacted.recv_timeout(Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(300));
        stall.release();
        holder.join().unwrap().unwrap();
        pusher.join().unwrap().expect("the big push succeeds");
        let report = collector.join().unwrap().unwrap();
        eprintln!("{report:?}");
    });
    let got = store
        .get(&sha(&big))
        .expect("the pushed blob's segments are there")
        .expect("pushed blob present");
    assert!(got.read_all().unwrap() == big);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Retention keeps the newest tag only; the older tag is set again (to the same manifest) after
/// the mark listed it for removal. The client just tagged it: the sweep must leave it.
#[test]
fn a_tag_set_again_during_the_mark_survives_retention() {
    let (store, _stall) = open(StoreOptions::default());
    let old = manifest(b"{\"image\":\"old\"}", vec![], &["v1"]);
    let new = manifest(b"{\"image\":\"new\"}", vec![], &["v2"]);
    store.put_manifest("app", &old).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    store.put_manifest("app", &new).unwrap();
    let opts = GcOptions {
        retention: vec![RetentionRule {
            repositories: "app".into(),
            delete_untagged_after: None,
            keep_newest_tags: Some(1),
            protect_tags: vec![],
        }],
        ..GcOptions::default()
    };
    let mut retagged = false;
    let report = store
        .gc(&opts, &mut |p: GcProgress| {
            if p.phase == GcPhase::Mark && !retagged {
                retagged = true;
                store.put_manifest("app", &old).expect("re-tag v1");
            }
        })
        .unwrap();
    assert!(retagged, "the mark reported no progress");
    assert!(report.tags_deleted.is_empty(), "{report:?}");
    let got = store
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .expect("tag v1 set during the collection");
    assert_eq!(got.digest, old.digest);
}
