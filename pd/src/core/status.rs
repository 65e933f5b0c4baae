//! The status view `ekv ctl` prints: stores, regions and operators in
//! flight, serializable with serde.

use serde::Serialize;

use super::cluster::Cluster;
use super::operator::OperatorReason;
use super::routing::Load;
use super::stores::StoreHealth;

/// A snapshot of the meta service's view of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// True once bootstrapped.
    pub bootstrapped: bool,
    /// The reserved id end.
    pub id_end: u64,
    /// Stores by id.
    pub stores: Vec<StoreStatus>,
    /// Regions in key order.
    pub regions: Vec<RegionStatus>,
    /// Operators in flight, by region.
    pub operators: Vec<OperatorStatus>,
}

/// One store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoreStatus {
    /// Store id.
    pub id: u64,
    /// `host:port` of shard 0.
    pub address: String,
    /// Shards (cores).
    pub shard_count: u32,
    /// Up, Down, Offline or Tombstone.
    pub state: StoreHealth,
    /// Regions with a replica here, from the routing table.
    pub region_count: u64,
    /// Regions led here, from the routing table.
    pub leader_count: u64,
    /// Approximate bytes of those regions.
    pub region_size: u64,
    /// Disk capacity, from the last heartbeat.
    pub capacity: u64,
    /// Free disk bytes, from the last heartbeat.
    pub available: u64,
    /// Bytes used by ekv, from the last heartbeat.
    pub used: u64,
    /// The store reported being busy.
    pub busy: bool,
    /// Milliseconds since the last heartbeat; `None` before the first one
    /// this meta-service leader received.
    pub last_heartbeat_age_ms: Option<u64>,
}

/// One replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// Peer id.
    pub id: u64,
    /// Store id.
    pub store_id: u64,
    /// "leader", "voter" or "learner" (as the leader last reported).
    pub role: &'static str,
    /// The leader reports it lagging.
    pub pending: bool,
    /// The leader reports it unreachable.
    pub down: bool,
}

/// One region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionStatus {
    /// Region id.
    pub id: u64,
    /// Inclusive start, escaped; empty is unbounded.
    pub start_key: String,
    /// Exclusive end, escaped; empty is unbounded.
    pub end_key: String,
    /// Epoch: membership version.
    pub conf_ver: u64,
    /// Epoch: range version.
    pub version: u64,
    /// Replicas.
    pub peers: Vec<PeerStatus>,
    /// Leader's peer id, if known.
    pub leader: Option<u64>,
    /// Approximate bytes.
    pub approximate_size: u64,
    /// Approximate keys.
    pub approximate_keys: u64,
    /// Rates per second.
    pub load: Load,
}

/// One operator in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperatorStatus {
    /// Region id.
    pub region_id: u64,
    /// What it does, e.g. `move-peer 7@1 -> 12@4`.
    pub kind: String,
    /// Why.
    pub reason: OperatorReason,
    /// The last step sent, or what it waits for.
    pub step: String,
    /// Steps sent so far.
    pub steps_sent: u32,
    /// Milliseconds since it was made.
    pub age_ms: u64,
}

impl ClusterStatus {
    /// Pretty-printed JSON.
    ///
    /// # Errors
    /// Those of [`serde_json::to_string_pretty`] (none for this type in
    /// practice).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

impl Cluster {
    /// The status view at `now_ms`.
    pub fn status(&self, now_ms: u64) -> ClusterStatus {
        let settings = self.settings();
        let stores = self
            .stores(false)
            .iter()
            .filter_map(|m| self.store_info(m.id))
            .map(|s| {
                let load = self.regions().store_load(s.meta.id);
                StoreStatus {
                    id: s.meta.id.get(),
                    address: s.meta.address.clone(),
                    shard_count: s.meta.shard_count,
                    state: s.health(now_ms, settings),
                    region_count: load.regions,
                    leader_count: load.leaders,
                    region_size: load.region_size,
                    capacity: s.stats.capacity,
                    available: s.stats.available,
                    used: s.stats.used_size,
                    busy: s.stats.is_busy,
                    last_heartbeat_age_ms: s.heartbeated.then(|| now_ms.saturating_sub(s.last_seen_ms)),
                }
            })
            .collect();
        let regions = self
            .regions()
            .scan(b"", b"", 0)
            .into_iter()
            .map(|info| {
                let r = &info.region;
                RegionStatus {
                    id: r.id.get(),
                    start_key: r.start_key.escape_ascii().to_string(),
                    end_key: r.end_key.escape_ascii().to_string(),
                    conf_ver: r.epoch.conf_ver,
                    version: r.epoch.version,
                    peers: r
                        .peers
                        .iter()
                        .map(|p| PeerStatus {
                            id: p.id.get(),
                            store_id: p.store_id.get(),
                            role: if info.leader == Some(*p) {
                                "leader"
                            } else if info.learners.contains(&p.id) {
                                "learner"
                            } else {
                                "voter"
                            },
                            pending: info.is_pending(p.id),
                            down: info.down_peers.iter().any(|d| d.peer.id == p.id),
                        })
                        .collect(),
                    leader: info.leader.map(|l| l.id.get()),
                    approximate_size: info.approximate_size,
                    approximate_keys: info.approximate_keys,
                    load: info.load,
                }
            })
            .collect();
        let operators = self
            .operators()
            .map(|op| OperatorStatus {
                region_id: op.region_id.get(),
                kind: op.kind.to_string(),
                reason: op.reason,
                step: op.describe_state(),
                steps_sent: op.steps_sent,
                age_ms: now_ms.saturating_sub(op.created_ms),
            })
            .collect();
        ClusterStatus {
            bootstrapped: self.is_bootstrapped(),
            id_end: self.id_end(),
            stores,
            regions,
            operators,
        }
    }
}
