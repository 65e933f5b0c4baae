//! Write and sync errors through the file-system trait: the log fails stop.
//! A failed write or fdatasync is reported with the file and the errno, is
//! never retried, and every later write is refused with that cause until
//! the log is reopened; what was acknowledged before survives a crash.

use std::path::PathBuf;

use bytes::Bytes;
use ekv_io::{CrashMode, Fault, FaultOp, MemFs, EIO, ENOSPC};
use ekv_proto::RegionId;
use ekv_wal::{Entry, EntryType, Error, LogBatch, Wal, WalOptions};
use futures::executor::block_on;

fn dir() -> PathBuf {
    PathBuf::from("/wal")
}

fn options() -> WalOptions {
    WalOptions { segment_size: 64 << 10, spare_segments: 1, ..WalOptions::default() }
}

fn batch(region: u64, index: u64) -> LogBatch {
    let mut b = LogBatch::new();
    let entry = Entry {
        index,
        term: 1,
        entry_type: EntryType::Normal,
        data: Bytes::from(format!("entry {index}")),
        context: Bytes::new(),
    };
    b.add_entries(RegionId(region), vec![entry]);
    b
}

/// Writes entries 1..=5 of region 1, arms `fault`, and checks the failure
/// and the refusals that follow; then crashes, reopens and checks that the
/// acknowledged entries are there.
fn must_fail_stop(fault: Fault, errno: i32, op: &str) {
    block_on(async {
        let fs = MemFs::new(512);
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        for i in 1..=5 {
            wal.write(&mut batch(1, i)).await.unwrap();
        }
        fs.inject(fault);
        let err = wal.write(&mut batch(1, 6)).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Io(_)), "{text}");
        assert!(
            text.contains(op) && text.contains("/wal/") && text.contains(&format!("os error {errno}")),
            "the error must name the operation, file and errno: {text}"
        );
        assert!(wal.stats().poisoned);
        // Even with the disk healthy again, nothing is retried or accepted.
        fs.clear_faults();
        let syncs = fs.sync_count();
        for i in 6..8 {
            match wal.write(&mut batch(1, i)).await {
                Err(Error::Poisoned(why)) => {
                    assert!(
                        why.contains(&format!("os error {errno}")),
                        "the refusal must carry the cause: {why}"
                    )
                }
                other => panic!("a poisoned log answered {other:?}"),
            }
        }
        assert_eq!(fs.sync_count(), syncs, "a poisoned log touched the disk");
        assert_eq!(wal.last_index(RegionId(1)), Some(5), "a refused write is visible");
        drop(wal);
        fs.crash(CrashMode::DropUnsynced);
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        assert_eq!(wal.last_index(RegionId(1)), Some(5), "acknowledged entries lost, or the failed one kept");
        let got = wal.entries(RegionId(1), 1, 6, u64::MAX).await.unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        // Reopened, the log takes writes again.
        wal.write(&mut batch(1, 6)).await.unwrap();
        assert_eq!(wal.last_index(RegionId(1)), Some(6));
    });
}

#[test]
fn failed_fdatasync_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Sync, EIO).on_path("/wal/").times(1), EIO, "fdatasync");
}

#[test]
fn full_disk_on_write_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Write, ENOSPC).on_path("/wal/"), ENOSPC, "write");
}

#[test]
fn write_eio_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Write, EIO).on_path("/wal/").times(1), EIO, "write");
}
