//! The two floors a replicated write stands on, measured in the same run
//! as the cluster cases:
//!
//! - [`wal_append_sync`]: one WAL record per write, awaited before the next
//!   (one writer, no group commit): an [`ekv_wal::Wal`] on [`GlommioFs`]
//!   in the same data directory (same file system, same DMA path, same
//!   segment size and cache as a shard's WAL), each record one raft entry
//!   carrying exactly the bytes a shard logs for the suite's Put command
//!   plus the hard state whose commit index moves with it, as a shard's
//!   round writes them. Timed: [`Wal::write`] (encode, one write, one
//!   fdatasync). Segment maintenance, when the log asks for it, runs
//!   between writes, untimed.
//! - [`round_trip`]: one hop of [`ekv_engine::LocalNetwork`] and back. Two
//!   glommio executors on their own threads (unpinned and parking, as the
//!   stores' shards are); each owns the receiving end of a bounded
//!   `futures::channel::mpsc` channel and the other reaches it through the
//!   sender behind a mutex, as `StoreHandle::deliver_batch` does. Timed:
//!   from before the ping's `try_send` to the moment the pinger's task is
//!   polled with the pong, i.e. two cross-thread wake-ups of a parked
//!   executor plus two channel operations. No raft, no encoding.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use ekv_engine::fsm::DEFAULT_INPUT_CAPACITY;
use ekv_engine::Config;
use ekv_io::GlommioFs;
use ekv_proto::RegionId;
use ekv_wal::{Entry, HardState, LogBatch, Wal, WalOptions};
use futures::channel::mpsc;
use futures::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};

use super::BoxError;
use crate::harness::{self, Latency};

/// Appends `warmup + n` records of `payload` to a fresh WAL in `dir`, each
/// awaited before the next; returns the latencies of the last `n`.
///
/// # Errors
/// Storage failures, as text.
pub fn wal_append_sync(
    dir: std::path::PathBuf,
    cfg: &Config,
    payload: Bytes,
    warmup: usize,
    n: usize,
) -> Result<Latency, BoxError> {
    let opts = WalOptions {
        segment_size: cfg.wal_segment_bytes,
        cache_capacity: cfg.wal_cache_bytes,
        ..WalOptions::default()
    };
    let r = harness::run_on_executor("ekv-bench-engine-wal", move || async move {
        let run = async {
            let fs = GlommioFs::new(&dir).await.map_err(|e| e.to_string())?;
            let wal = Wal::open(fs, dir.join("wal"), opts).await.map_err(|e| e.to_string())?;
            let region = RegionId(1);
            let mut batch = LogBatch::new();
            let mut lat = Latency::new();
            for i in 1..=(warmup + n) as u64 {
                let e = Entry { index: i, term: 1, data: payload.clone(), ..Entry::default() };
                batch.add_entries(region, vec![e]);
                batch.put_hard_state(region, HardState { term: 1, vote: 1, commit: i });
                let t = Instant::now();
                wal.write(&mut batch).await.map_err(|e| e.to_string())?;
                let d = t.elapsed();
                if i as usize > warmup {
                    lat.record(d);
                }
                if i % 64 == 0 {
                    // Keep the log short, as a shard's log GC would.
                    batch.compact(region, i - 32);
                }
                if wal.needs_maintenance() {
                    wal.maintain().await.map_err(|e| e.to_string())?;
                }
            }
            wal.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(lat)
        };
        run.await
    });
    r.map_err(|e| format!("WAL baseline: {e}").into())
}

/// `warmup + n` ping-pongs between two executors; the latencies of the last `n`.
///
/// # Errors
/// The echo executor cannot be started or stops early.
pub fn round_trip(warmup: usize, n: usize) -> Result<Latency, BoxError> {
    let (to_echo, mut echo_rx) = mpsc::channel::<u64>(DEFAULT_INPUT_CAPACITY);
    let (to_pinger, mut pinger_rx) = mpsc::channel::<u64>(DEFAULT_INPUT_CAPACITY);
    let to_pinger = Arc::new(Mutex::new(to_pinger));
    // The echo does no I/O: 2 MiB of registered memory suffice, root or not.
    let echo = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ekv-bench-echo")
        .io_memory(2 << 20)
        .spawn(move || async move {
            while let Some(x) = echo_rx.next().await {
                let sent = to_pinger.lock().unwrap_or_else(PoisonError::into_inner).try_send(x);
                if sent.is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("round-trip baseline: starting the echo executor: {e}"))?;
    let lat = harness::run_on_executor("ekv-bench-ping", move || async move {
        let to_echo = Mutex::new(to_echo);
        let mut lat = Latency::new();
        for i in 0..(warmup + n) as u64 {
            let t = Instant::now();
            let sent = to_echo.lock().unwrap_or_else(PoisonError::into_inner).try_send(i);
            if sent.is_err() {
                return Err("the echo executor stopped".to_owned());
            }
            match pinger_rx.next().await {
                Some(x) if x == i => {}
                other => return Err(format!("expected pong {i}, got {other:?}")),
            }
            if i as usize >= warmup {
                lat.record(t.elapsed());
            }
        }
        Ok(lat)
        // `to_echo` drops here: the echo's loop ends.
    });
    let joined = echo.join();
    let lat = lat.map_err(|e| format!("round-trip baseline: {e}"))?;
    joined.map_err(|e| format!("round-trip baseline: echo executor: {e}"))?;
    Ok(lat)
}
