//! Request counters of the shard servers, for status pages: per shard and
//! per operation, requests by outcome and a latency histogram from the
//! frame decoded to its answer queued for the socket.
//!
//! Cost on the request path: one clock read per answer and one per socket
//! read that brought requests (shared by its frames), a five-step bucket
//! search and three counter bumps; about 4 ns of CPU without the clock
//! reads, which cost about 18 ns each on the machines ekv is developed on.
//! Counters are atomics written by one thread only, the shard's executor,
//! with a relaxed load and a store (no locked read-modify-write, no cache
//! line shared with another writer); a scrape on another thread reads
//! them with relaxed loads. A scrape may see a request's outcome counted
//! and its latency not yet: every counter is exact on its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ekv_io::histogram::{bucket_of, BUCKETS};
use ekv_io::Histogram;
use ekv_proto::msg::{AnyMessage, MsgType};
use ekv_proto::ShardId;

/// The requests counted apart, by wire type, with their metric label.
/// Anything else a client sends is counted as `other`.
pub const OPS: &[(MsgType, &str)] = &[
    (MsgType::GetRequest, "get"),
    (MsgType::BatchGetRequest, "batch_get"),
    (MsgType::ScanRequest, "scan"),
    (MsgType::PutRequest, "put"),
    (MsgType::BatchPutRequest, "batch_put"),
    (MsgType::DeleteRequest, "delete"),
    (MsgType::BatchDeleteRequest, "batch_delete"),
    (MsgType::DeleteRangeRequest, "delete_range"),
    (MsgType::CompareAndSwapRequest, "compare_and_swap"),
    (MsgType::TransferLeaderRequest, "transfer_leader"),
    (MsgType::ChangePeerRequest, "change_peer"),
    (MsgType::SplitRequest, "split"),
    (MsgType::GetRegionRequest, "get_region"),
    (MsgType::GetRegionByIdRequest, "get_region_by_id"),
    (MsgType::ScanRegionsRequest, "scan_regions"),
    (MsgType::GetMembersRequest, "get_members"),
    (MsgType::AllocIdRequest, "alloc_id"),
    (MsgType::PutStoreRequest, "put_store"),
    (MsgType::GetStoreRequest, "get_store"),
    (MsgType::GetAllStoresRequest, "get_all_stores"),
    (MsgType::StoreHeartbeatRequest, "store_heartbeat"),
    (MsgType::RegionHeartbeatRequest, "region_heartbeat"),
    (MsgType::AskBatchSplitRequest, "ask_batch_split"),
    (MsgType::ReportBatchSplitRequest, "report_batch_split"),
    (MsgType::IsBootstrappedRequest, "is_bootstrapped"),
    (MsgType::BootstrapRequest, "bootstrap"),
    (MsgType::DeleteStoreRequest, "delete_store"),
    (MsgType::GetStatusRequest, "get_status"),
];

/// Label of requests of no type in [`OPS`] (unknown types, responses sent
/// as requests, frames that did not decode).
pub const OTHER_OP: &str = "other";

const OP_SLOTS: usize = OPS.len() + 1;

/// Outcome labels, `ok` first, then one per wire error kind.
pub const OUTCOMES: [&str; 11] = [
    "ok",
    "not_leader",
    "epoch_not_match",
    "region_not_found",
    "key_not_in_region",
    "server_busy",
    "store_not_match",
    "bad_request",
    "timeout",
    "stale_command",
    "other_error",
];

/// The counter slot of a request of wire type `code` (a frame header's
/// raw type).
pub fn op_slot(code: u16) -> usize {
    OPS.iter().position(|(t, _)| *t as u16 == code).unwrap_or(OPS.len())
}

/// The label of slot `slot`.
pub fn op_name(slot: usize) -> &'static str {
    OPS.get(slot).map_or(OTHER_OP, |(_, n)| n)
}

/// The outcome slot of an answer.
pub fn outcome_slot(reply: &AnyMessage) -> usize {
    use ekv_proto::msg::WireError as W;
    let AnyMessage::ErrorResponse(e) = reply else { return 0 };
    match e.error {
        W::NotLeader { .. } => 1,
        W::EpochNotMatch { .. } => 2,
        W::RegionNotFound { .. } => 3,
        W::KeyNotInRegion { .. } => 4,
        W::ServerBusy => 5,
        W::StoreNotMatch { .. } => 6,
        W::BadRequest { .. } | W::FrameTooLarge { .. } => 7,
        W::Timeout => 8,
        W::StaleCommand => 9,
        _ => 10,
    }
}

/// A counter one thread writes and any thread reads.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning shard's executor calls this: a load and a
    /// store are then exact, and cheaper than a locked add.
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct OpCounters {
    outcomes: [Counter; OUTCOMES.len()],
    buckets: [Counter; BUCKETS],
    sum_nanos: Counter,
}

/// The counters of one shard's server. Written only on that shard's
/// executor; see the module doc.
#[derive(Debug, Default)]
pub struct ShardServerStats {
    ops: [OpCounters; OP_SLOTS],
    raft_frames: Counter,
    raft_bytes: Counter,
    connections: Counter,
    bad_frames: Counter,
}

impl ShardServerStats {
    /// Counts one answered request of slot `op` ([`op_slot`]) with outcome
    /// slot `outcome` ([`outcome_slot`]) that took `nanos`.
    #[inline]
    pub fn record(&self, op: usize, outcome: usize, nanos: u64) {
        let Some(c) = self.ops.get(op) else { return };
        if let Some(o) = c.outcomes.get(outcome) {
            o.add(1);
        }
        c.buckets[bucket_of(nanos)].add(1);
        c.sum_nanos.add(nanos);
    }

    /// Counts a frame of raft traffic of `bytes` bytes (body) received.
    pub fn raft_frame(&self, bytes: usize) {
        self.raft_frames.add(1);
        self.raft_bytes.add(bytes as u64);
    }

    /// Counts an accepted connection.
    pub fn connection(&self) {
        self.connections.add(1);
    }

    /// Counts a frame whose header was refused (the connection closes).
    pub fn bad_frame(&self) {
        self.bad_frames.add(1);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> ServerSnapshot {
        let ops = self
            .ops
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut latency = Histogram::default();
                for (dst, src) in latency.counts.iter_mut().zip(c.buckets.iter()) {
                    *dst = src.get();
                }
                latency.sum_nanos = c.sum_nanos.get();
                let mut outcomes = [0u64; OUTCOMES.len()];
                for (dst, src) in outcomes.iter_mut().zip(c.outcomes.iter()) {
                    *dst = src.get();
                }
                OpSnapshot { op: op_name(i), outcomes, latency }
            })
            .filter(|o| o.outcomes.iter().any(|n| *n > 0) || o.latency.count() > 0)
            .collect();
        ServerSnapshot {
            ops,
            raft_frames: self.raft_frames.get(),
            raft_bytes: self.raft_bytes.get(),
            connections: self.connections.get(),
            bad_frames: self.bad_frames.get(),
        }
    }
}

/// One operation's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSnapshot {
    /// Its label ([`OPS`], or [`OTHER_OP`]).
    pub op: &'static str,
    /// Answers by outcome, in [`OUTCOMES`] order.
    pub outcomes: [u64; OUTCOMES.len()],
    /// Time from frame decoded to answer queued.
    pub latency: Histogram,
}

/// One shard server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// Operations that were asked at least once.
    pub ops: Vec<OpSnapshot>,
    /// Frames of raft traffic received.
    pub raft_frames: u64,
    /// Body bytes of those frames.
    pub raft_bytes: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Frames whose header was refused.
    pub bad_frames: u64,
}

/// The counters of every shard server of a store or a meta-service
/// member: cloning shares them. Servers register at start, each under its
/// listening address, so that two servers never write the same counters
/// (settings shared by several stores in one process, as in tests, list
/// each store's shards apart).
#[derive(Clone, Default)]
pub struct ServerStats {
    shards: Arc<Mutex<Registry>>,
}

/// Every server's counters by shard and listening address.
type Registry = BTreeMap<(ShardId, SocketAddr), Arc<ShardServerStats>>;

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.shards.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("ServerStats").field("shards", &n).finish()
    }
}

impl ServerStats {
    /// The counters of the server of shard `shard` listening on `addr`,
    /// made on first use (a shard that restarts in the same process keeps
    /// counting into the same ones).
    pub fn shard(&self, shard: ShardId, addr: SocketAddr) -> Arc<ShardServerStats> {
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        shards.entry((shard, addr)).or_default().clone()
    }

    /// Every shard's counters, in shard order.
    pub fn snapshot(&self) -> Vec<(ShardId, ServerSnapshot)> {
        let shards: Vec<_> = self
            .shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((id, _), s)| (*id, s.clone()))
            .collect();
        shards.into_iter().map(|(id, s)| (id, s.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_proto::msg::{ErrorResponse, GetResponse, WireError};

    #[test]
    fn requests_are_counted_by_operation_and_outcome() {
        let stats = ServerStats::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let s = stats.shard(ShardId(1), addr);
        let get = op_slot(MsgType::GetRequest as u16);
        let ok = outcome_slot(&AnyMessage::GetResponse(GetResponse { value: None }));
        let busy = outcome_slot(&AnyMessage::ErrorResponse(ErrorResponse::from(WireError::ServerBusy)));
        s.record(get, ok, 80_000);
        s.record(get, ok, 120_000);
        s.record(get, busy, 5_000);
        s.record(
            op_slot(0xffff),
            outcome_slot(&AnyMessage::ErrorResponse(ErrorResponse::bad_request("x"))),
            1,
        );
        let snap = stats.snapshot();
        assert_eq!(snap.len(), 1);
        let (id, snap) = &snap[0];
        assert_eq!(*id, ShardId(1));
        assert_eq!(snap.ops.len(), 2, "only operations that were asked: {snap:?}");
        let g = snap.ops.iter().find(|o| o.op == "get").expect("get counted");
        assert_eq!(g.outcomes[0], 2);
        assert_eq!(g.outcomes[OUTCOMES.iter().position(|o| *o == "server_busy").unwrap()], 1);
        assert_eq!(g.latency.count(), 3);
        assert_eq!(g.latency.sum_nanos, 205_000);
        let other = snap.ops.iter().find(|o| o.op == OTHER_OP).expect("other counted");
        assert_eq!(other.outcomes[OUTCOMES.iter().position(|o| *o == "bad_request").unwrap()], 1);
        // The same shard's counters are shared, not made again.
        stats.shard(ShardId(1), addr).connection();
        assert_eq!(stats.snapshot()[0].1.connections, 1);
    }

    #[test]
    fn every_operation_has_its_own_label() {
        let mut names: Vec<_> = OPS.iter().map(|(_, n)| *n).chain([OTHER_OP]).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OP_SLOTS);
        for (i, (t, _)) in OPS.iter().enumerate() {
            assert_eq!(op_slot(*t as u16), i);
        }
    }
}
