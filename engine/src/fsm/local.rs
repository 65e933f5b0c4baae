//! Stores of one process wired together: [`LocalNetwork`], a transport that
//! hands messages straight to the destination store's shard, and
//! [`LocalPd`], a meta service that allocates ids and remembers what
//! leaders report. For tests and the engine benchmark.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ekv_proto::{PeerId, PeerMeta, Region, RegionId, ShardId, StoreId};

use super::store::{PdFactory, Store, StoreHandle, TransportFactory};
use crate::router::{ShardAddr, StoreMsg};
use crate::transport::{PdClient, RegionHeartbeat, SplitIds, StoreHeartbeat, Transport};

/// A registry of the running stores of this process, by id. Its transports
/// deliver to the registered store; messages to unknown or stopped stores
/// are dropped, as a network would.
#[derive(Clone, Debug, Default)]
pub struct LocalNetwork {
    stores: Arc<Mutex<BTreeMap<StoreId, StoreHandle>>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects `store`, replacing an earlier store of the same id (a restart).
    pub fn register(&self, store: &Store) {
        self.lock().insert(store.store_id(), store.handle());
    }

    /// Disconnects a store: messages to it are dropped from now on.
    pub fn unregister(&self, store: StoreId) {
        self.lock().remove(&store);
    }

    /// The handle of a registered store.
    pub fn handle(&self, store: StoreId) -> Option<StoreHandle> {
        self.lock().get(&store).cloned()
    }

    /// The transport factory for [`StoreSpec::transport`](super::StoreSpec::transport).
    pub fn transport_for(&self, store: StoreId) -> TransportFactory {
        let net = self.clone();
        Box::new(move |_shard| {
            Box::new(LocalTransport { net: net.clone(), from: store, cache: BTreeMap::new() })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StoreId, StoreHandle>> {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One shard's sending side of a [`LocalNetwork`].
struct LocalTransport {
    net: LocalNetwork,
    from: StoreId,
    /// Handles already looked up, so that a round does not take the
    /// registry's lock; dropped when the store behind one is gone.
    cache: BTreeMap<StoreId, StoreHandle>,
}

impl Transport for LocalTransport {
    fn send(&mut self, to: ShardAddr, msgs: Vec<StoreMsg>) {
        let handle = match self.cache.get(&to.store) {
            Some(h) => h.clone(),
            None => match self.net.handle(to.store) {
                Some(h) => {
                    self.cache.insert(to.store, h.clone());
                    h
                }
                None => {
                    tracing::trace!(from = %self.from, to = %to.store, "no such store; messages dropped");
                    return;
                }
            },
        };
        if !handle.deliver_batch(to.shard, msgs) {
            // Stopped (perhaps restarted under a new handle): look it up again next time.
            self.cache.remove(&to.store);
        }
    }
}

/// What [`LocalPd`] knows about a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// The region as last reported (the newest epoch wins).
    pub region: Region,
    /// The leader of the last heartbeat, if one came.
    pub leader: Option<PeerMeta>,
}

#[derive(Debug)]
struct PdState {
    net: LocalNetwork,
    next_id: AtomicU64,
    regions: Mutex<BTreeMap<RegionId, RegionInfo>>,
}

/// A meta service for stores of one process: allocates region and peer
/// ids for splits (answering through the [`LocalNetwork`]'s store handles),
/// records region heartbeats and split reports, ignores store heartbeats,
/// and never sends operators.
#[derive(Clone, Debug)]
pub struct LocalPd {
    state: Arc<PdState>,
}

impl LocalPd {
    /// A meta service answering the stores of `net`; ids are allocated from
    /// `first_id` up (keep it above the ids a test bootstraps with).
    pub fn new(net: LocalNetwork, first_id: u64) -> Self {
        Self {
            state: Arc::new(PdState {
                net,
                next_id: AtomicU64::new(first_id),
                regions: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A fresh id.
    pub fn alloc_id(&self) -> u64 {
        self.state.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The client factory for [`StoreSpec::pd`](super::StoreSpec::pd).
    pub fn client_for(&self, store: StoreId) -> PdFactory {
        let pd = self.clone();
        Box::new(move |shard| Box::new(LocalPdClient { pd: pd.clone(), store, shard }))
    }

    /// Every region reported so far.
    pub fn regions(&self) -> BTreeMap<RegionId, RegionInfo> {
        self.lock().clone()
    }

    /// One region, if reported.
    pub fn region(&self, id: RegionId) -> Option<RegionInfo> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RegionId, RegionInfo>> {
        self.state.regions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `region` unless a newer epoch of it is known; `leader`
    /// replaces the known leader when given.
    fn record(&self, region: &Region, leader: Option<PeerMeta>) {
        let mut regions = self.lock();
        match regions.get_mut(&region.id) {
            Some(info) if region.epoch.is_stale(&info.region.epoch) => {}
            Some(info) => {
                info.region = region.clone();
                if leader.is_some() {
                    info.leader = leader;
                }
            }
            None => {
                regions.insert(region.id, RegionInfo { region: region.clone(), leader });
            }
        }
    }
}

/// One shard's client of a [`LocalPd`].
struct LocalPdClient {
    pd: LocalPd,
    store: StoreId,
    shard: ShardId,
}

impl PdClient for LocalPdClient {
    fn ask_batch_split(&mut self, region: &Region, count: usize, token: u64) {
        let ids = (0..count)
            .map(|_| SplitIds {
                region_id: RegionId(self.pd.alloc_id()),
                peer_ids: region.peers.iter().map(|_| PeerId(self.pd.alloc_id())).collect(),
            })
            .collect();
        // The answer goes through the store's control channel, as a remote
        // meta service's would; it is the asking shard's own thread here.
        let sent = match self.pd.state.net.handle(self.store) {
            Some(h) => h.on_split_ids(self.shard, token, Ok(ids)).is_ok(),
            None => false,
        };
        if !sent {
            tracing::warn!(store = %self.store, region = %region.id, "split ids not delivered: store not registered");
        }
    }

    fn report_batch_split(&mut self, regions: &[Region]) {
        for r in regions {
            self.pd.record(r, None);
        }
    }

    fn region_heartbeat(&mut self, hb: RegionHeartbeat) {
        self.pd.record(&hb.region, Some(hb.leader));
    }

    fn store_heartbeat(&mut self, _hb: StoreHeartbeat) {}
}
