//! Write and sync errors through the file-system trait: the tree fails
//! stop. A flush that hits a full disk (or EIO) reports the file and the
//! errno, the tree then refuses writes (never retrying the failed sync), and
//! a reopen, once the disk is healthy, recovers what was durable.

mod faults;

use ekv_io::{CrashMode, Fault, FaultOp, EIO, ENOSPC};
use ekv_lsm::{Error, Lsm};
use faults::{contents, dir, durable_then_more, options, put_all};
use futures::executor::block_on;

/// Flushes once cleanly, arms `fault`, and checks the failed flush, the
/// refusals after it and the recovery (with and without a power cut).
fn must_fail_stop(fault: Fault, errno: i32, op: &str) {
    block_on(async {
        let (fs, lsm, durable, model) = durable_then_more(120).await;
        fs.inject(fault);
        let err = lsm.flush().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(op) && text.contains("/db/") && text.contains(&format!("os error {errno}")),
            "the error must name the operation, file and errno: {text}"
        );
        // Healthy again, the tree still refuses: whatever the failed
        // operation left on disk is unknown.
        fs.clear_faults();
        let syncs = fs.sync_count();
        let cf = lsm.default_cf();
        match lsm.put(cf, b"late", b"write").await {
            Err(Error::Poisoned(why)) => {
                assert!(why.contains(&format!("os error {errno}")), "the refusal must carry the cause: {why}")
            }
            other => panic!("a poisoned tree answered {other:?}"),
        }
        assert!(matches!(lsm.flush().await, Err(Error::Poisoned(_))));
        assert_eq!(fs.sync_count(), syncs, "a poisoned tree retried a sync");
        // Reads still work, from memory.
        assert_eq!(contents(&lsm).await, model);
        drop(lsm);
        for crash in [false, true] {
            let fs = fs.snapshot();
            if crash {
                fs.crash(CrashMode::DropUnsynced);
            }
            let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
            assert_eq!(contents(&lsm).await, durable, "power cut: {crash}");
            put_all(&lsm, &mut durable.clone(), 200, 300, "c").await;
            lsm.flush().await.unwrap();
            lsm.close().await.unwrap();
        }
    });
}

#[test]
fn flush_on_a_full_disk_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Write, ENOSPC).on_path(".sst"), ENOSPC, "write");
}

#[test]
fn flush_sync_eio_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Sync, EIO).on_path(".sst").times(1), EIO, "fdatasync");
}

#[test]
fn manifest_write_eio_poisons_with_file_and_errno() {
    must_fail_stop(Fault::new(FaultOp::Write, EIO).on_path("MANIFEST").times(1), EIO, "write");
}
