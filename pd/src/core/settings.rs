//! The core's settings: replication, liveness, operator timeouts and the
//! knobs of each scheduler.

use serde::{Deserialize, Serialize};

/// Settings of the meta-service core. [`Settings::default`] gives the
/// values a production cluster starts with.
///
/// Timeouts relate to the raftstore's report intervals: a leader sends a
/// region heartbeat every `pd_heartbeat_ticks` (60 s by default) and a store
/// heartbeat every `pd_store_heartbeat_ticks` (10 s), so an operator needs at
/// least a couple of region heartbeats to show its effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Voters every region should have. Default 3.
    pub replicas: usize,
    /// A store without a heartbeat for this long is Down, and a peer that
    /// its leader reports down for this long counts as missing. Default 30 s.
    pub down_after_ms: u64,
    /// Ids reserved (and persisted) at a time. Default 1,000.
    pub id_batch: u64,
    /// Most ids one allocation may ask for. Default 10,000.
    pub max_id_count: u64,
    /// Timeout of operators that add, move or remove a replica (they may
    /// wait for a snapshot). Default 10 min.
    pub peer_operator_timeout_ms: u64,
    /// Timeout of leader transfers. Default 2 min.
    pub leader_operator_timeout_ms: u64,
    /// Timeout of split operators. Default 2 min.
    pub split_operator_timeout_ms: u64,
    /// Balancing and hot-region scheduling wait until this share of the
    /// regions has reported since this meta-service leader started, so that
    /// they do not act on half-known counts. Repairs do not wait.
    /// Default 0.9.
    pub prepared_ratio: f64,
    /// Most add-peer operators (each ends in a snapshot) in flight towards
    /// one store. Default 3.
    pub max_snapshots_per_store: usize,
    /// No new replica goes to a store whose used share of capacity
    /// (`1 - available / capacity`) is above this. Default 0.8.
    pub max_used_ratio: f64,
    /// Leader balance moves a leader when the stores' leader counts differ
    /// by more than this ... Default 1.
    pub leader_tolerance: u64,
    /// ... and by more than this share of the source's count. Default 0.05.
    pub leader_tolerance_ratio: f64,
    /// Region balance moves a replica when the stores' region counts
    /// differ by more than this ... Default 1.
    pub region_tolerance: u64,
    /// ... and by more than this share of the source's count. Default 0.05.
    pub region_tolerance_ratio: f64,
    /// With counts balanced, a replica moves for size when the stores'
    /// region sizes differ by more than this many bytes ... Default 512 MiB.
    pub size_tolerance_bytes: u64,
    /// ... and by more than this share of the source's size. Default 0.25.
    pub size_tolerance_ratio: f64,
    /// A region writing at least this many bytes per second may be hot.
    /// Default 8 MiB/s.
    pub hot_write_bytes_per_sec: u64,
    /// A region writing at least this many keys per second may be hot.
    /// Default 20,000.
    pub hot_write_keys_per_sec: u64,
    /// A region reading at least this many bytes per second may be hot.
    /// Default 32 MiB/s.
    pub hot_read_bytes_per_sec: u64,
    /// A region reading at least this many keys per second may be hot.
    /// Default 50,000.
    pub hot_read_keys_per_sec: u64,
    /// ... and is hot when its rate is also at least this share of its
    /// leader store's total rate over all regions it leads. Default 0.5.
    pub hot_store_share: f64,
    /// A hot region at least this large is split (its leader picks the
    /// middle key); a smaller one is moved to a cooler store. Default 4 MiB.
    pub hot_split_min_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            replicas: 3,
            down_after_ms: 30_000,
            id_batch: 1_000,
            max_id_count: 10_000,
            peer_operator_timeout_ms: 600_000,
            leader_operator_timeout_ms: 120_000,
            split_operator_timeout_ms: 120_000,
            prepared_ratio: 0.9,
            max_snapshots_per_store: 3,
            max_used_ratio: 0.8,
            leader_tolerance: 1,
            leader_tolerance_ratio: 0.05,
            region_tolerance: 1,
            region_tolerance_ratio: 0.05,
            size_tolerance_bytes: 512 << 20,
            size_tolerance_ratio: 0.25,
            hot_write_bytes_per_sec: 8 << 20,
            hot_write_keys_per_sec: 20_000,
            hot_read_bytes_per_sec: 32 << 20,
            hot_read_keys_per_sec: 50_000,
            hot_store_share: 0.5,
            hot_split_min_bytes: 4 << 20,
        }
    }
}
