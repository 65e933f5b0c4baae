//! Tests of the core, one file per concern, sharing the builders below
//! and the deterministic cluster simulation in `sim`.

mod ids;
mod persistence;
mod routing;
mod scheduling;
mod sim;
mod stores;

use ekv_proto::msg::{RegionHeartbeatRequest, StoreMeta};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};

use super::{Cluster, Settings};

fn peer(id: u64, store: u64) -> PeerMeta {
    PeerMeta { id: PeerId(id), store_id: StoreId(store) }
}

/// A region with `(peer id, store id)` peers; `""` bounds are unbounded.
fn region(id: u64, start: &str, end: &str, (conf_ver, version): (u64, u64), peers: &[(u64, u64)]) -> Region {
    Region {
        id: RegionId(id),
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        epoch: RegionEpoch { conf_ver, version },
        peers: peers.iter().map(|&(p, s)| peer(p, s)).collect(),
    }
}

fn store(id: u64) -> StoreMeta {
    StoreMeta { id: StoreId(id), address: format!("10.0.0.{id}:20160"), shard_count: 2, ..Default::default() }
}

fn heartbeat(region: &Region, leader: PeerMeta) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest { region: region.clone(), leader: Some(leader), ..Default::default() }
}

/// A cluster bootstrapped with store 1 holding region 1 (peer 1, every
/// key, epoch 1/1), plus the stores `others` registered at time 0.
fn must_bootstrapped(settings: Settings, others: &[u64]) -> Cluster {
    let mut pd = Cluster::new(settings);
    pd.bootstrap(store(1), region(1, "", "", (1, 1), &[(1, 1)]), 0).unwrap();
    for &s in others {
        pd.put_store(store(s), 0).unwrap();
    }
    pd
}

/// The ids of the regions in key order.
fn routed_ids(pd: &Cluster) -> Vec<u64> {
    pd.scan_regions(b"", b"", 0).iter().map(|r| r.region.id.get()).collect()
}
