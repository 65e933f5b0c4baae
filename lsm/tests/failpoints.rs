//! Crashes between a table written and synced and the manifest edit that
//! would list it (flush, compaction, ingest), through failpoints. After the
//! stop the tree refuses writes; reopened (after a power cut or not) it
//! holds exactly what its manifest lists, and the table nobody lists is
//! removed. Run with `cargo test -p ekv-lsm --features failpoints --test failpoints`.
#![cfg(feature = "failpoints")]

mod faults;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ekv_io::{CrashMode, MemFs};
use ekv_lsm::{Error, KeyRange, Lsm};
use fail::FailScenario;
use faults::{contents, dir, durable_then_more, options, put_all, Model};
use futures::executor::block_on;

fn tables(fs: &MemFs) -> BTreeSet<PathBuf> {
    fs.paths().into_iter().filter(|p| p.extension().is_some_and(|e| e == "sst")).collect()
}

/// After the failure at `point` (already returned as `err`): the tree is
/// poisoned; reopened after a power cut and without one it holds `durable`,
/// the orphan tables (written after `before`) are gone, and it takes writes.
async fn must_recover(
    fs: &MemFs,
    lsm: Lsm<MemFs>,
    err: Error,
    point: &str,
    before: &BTreeSet<PathBuf>,
    durable: &Model,
) {
    assert!(err.to_string().contains(point), "the error must name the point: {err}");
    let cf = lsm.default_cf();
    assert!(matches!(lsm.put(cf, b"late", b"write").await, Err(Error::Poisoned(_))), "{point}: writes go on");
    let orphans: Vec<PathBuf> = tables(fs).difference(before).cloned().collect();
    assert!(!orphans.is_empty(), "{point}: no table was written before the stop");
    drop(lsm);
    for crash in [false, true] {
        let fs = fs.snapshot();
        if crash {
            fs.crash(CrashMode::DropUnsynced);
        }
        let what = format!("{point} (power cut: {crash})");
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        assert_eq!(&contents(&lsm).await, durable, "{what}: contents after reopen");
        for o in &orphans {
            assert!(fs.read_file(o).is_none(), "{what}: orphan {} kept", o.display());
        }
        let cf = lsm.default_cf();
        lsm.put(cf, b"after", b"reopen").await.unwrap();
        lsm.flush().await.unwrap();
        assert_eq!(lsm.get(cf, b"after").await.unwrap().as_deref(), Some(&b"reopen"[..]), "{what}");
        lsm.close().await.unwrap();
    }
}

#[test]
fn flush_stopped_before_the_manifest_lists_its_table() {
    let scenario = FailScenario::setup();
    block_on(async {
        let (fs, lsm, durable, _) = durable_then_more(150).await;
        let before = tables(&fs);
        fail::cfg("lsm::flush::before_manifest", "return").unwrap();
        let err = lsm.flush().await.unwrap_err();
        fail::remove("lsm::flush::before_manifest");
        // The tree keeps no log: what was not flushed is the engine's to replay.
        must_recover(&fs, lsm, err, "lsm::flush::before_manifest", &before, &durable).await;
    });
    scenario.teardown();
}

#[test]
fn compaction_stopped_before_the_manifest_switches_to_its_outputs() {
    let scenario = FailScenario::setup();
    block_on(async {
        let fs = MemFs::new(512);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let mut model = Model::new();
        for round in 0..4 {
            put_all(&lsm, &mut model, round * 40, round * 40 + 80, &format!("r{round}")).await;
            lsm.flush().await.unwrap();
        }
        let before = tables(&fs);
        fail::cfg("lsm::compaction::before_manifest", "return").unwrap();
        let err = lsm.compact_all().await.unwrap_err();
        fail::remove("lsm::compaction::before_manifest");
        must_recover(&fs, lsm, err, "lsm::compaction::before_manifest", &before, &model).await;
    });
    scenario.teardown();
}

#[test]
fn ingest_stopped_before_the_manifest_lists_the_tables() {
    let scenario = FailScenario::setup();
    block_on(async {
        let fs = MemFs::new(512);
        let source = Lsm::open(fs.clone(), PathBuf::from("/src"), options()).await.unwrap();
        put_all(&source, &mut Model::new(), 0, 60, "ingested").await;
        let cf = source.default_cf();
        let range = KeyRange { cf, start: b"key00000".to_vec(), end: Some(b"key00060".to_vec()) };
        let files = source.export(&[range], None, Path::new("/snap"), "s").await.unwrap();
        source.close().await.unwrap();

        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let mut model = Model::new();
        put_all(&lsm, &mut model, 30, 90, "own").await;
        lsm.flush().await.unwrap();
        let before = tables(&fs);
        fail::cfg("lsm::ingest::before_manifest", "return").unwrap();
        let err = lsm.ingest(&files).await.unwrap_err();
        fail::remove("lsm::ingest::before_manifest");
        must_recover(&fs, lsm, err, "lsm::ingest::before_manifest", &before, &model).await;
    });
    scenario.teardown();
}
