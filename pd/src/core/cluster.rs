//! [`Cluster`]: the meta service's state and every request that reads or
//! changes it.

use std::collections::BTreeMap;

use ekv_proto::msg::{
    RegionHeartbeatRequest, RegionHeartbeatResponse, RegionRoute, SplitIds, StoreHeartbeatRequest, StoreMeta,
    StoreState,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, StoreId};

use super::error::{Error, Result};
use super::format::{Change, Record};
use super::ids::{IdAllocator, NeedReserve};
use super::operator::{OperatorKind, Progress, RunningOperator};
use super::routing::{Load, RegionInfo, RegionTable, Update};
use super::schedule::{self, Ctx, NewPeer, Plan};
use super::settings::Settings;
use super::stores::{StoreHealth, StoreInfo, Stores};

/// The meta service's state: stores, the routing table, the bootstrap
/// flag, the id allocator and the operators in flight.
///
/// Sans I/O and deterministic: time comes in as `now_ms`, iteration is in
/// id order, and the same calls on the same state give the same answers.
///
/// # Persistence
///
/// Every call that changes persisted state queues [`Change`]s (region
/// heartbeats only when a region's epoch moves, or when scheduling needed a
/// new id reservation). The caller must, after each call:
///
/// 1. [`Cluster::take_changes`] and replicate them (as
///    [`Change::to_record`]) in order;
/// 2. only then send the call's answer.
///
/// Ids handed out in an answer are therefore always covered by a persisted
/// [`Change::IdEnd`]. If replication fails, this state is ahead of the
/// persisted one: drop it and [`Cluster::load`] again. Leaders, statistics
/// and operators are soft state, rebuilt from heartbeats.
#[derive(Debug)]
pub struct Cluster {
    settings: Settings,
    bootstrapped: bool,
    stores: Stores,
    table: RegionTable,
    ids: IdAllocator,
    operators: BTreeMap<RegionId, RunningOperator>,
    changes: Vec<Change>,
}

impl Cluster {
    /// An empty, not yet bootstrapped cluster.
    pub fn new(settings: Settings) -> Self {
        let ids = IdAllocator::new(settings.id_batch);
        Self {
            settings,
            bootstrapped: false,
            stores: Stores::default(),
            table: RegionTable::default(),
            ids,
            operators: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    /// Rebuilds the state from persisted records: either every live key
    /// (a scan of [`KEY_PREFIX`](super::format::KEY_PREFIX)) or every record
    /// ever written, in order (deletions included). Then starts serving at
    /// `now_ms` as [`Cluster::reset_soft_state`] does.
    ///
    /// # Errors
    /// [`Error::BadRecord`], [`Error::UnknownRecord`].
    pub fn load(settings: Settings, records: impl IntoIterator<Item = Record>, now_ms: u64) -> Result<Self> {
        let mut cluster = Self::new(settings);
        for rec in records {
            cluster.apply(&rec.to_change()?);
        }
        cluster.reset_soft_state(now_ms);
        Ok(cluster)
    }

    /// Applies a persisted change made elsewhere (a replica following the
    /// meta-service leader). Queues no change of its own. A replica that
    /// becomes the leader calls [`Cluster::reset_soft_state`] first.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::PutStore(meta) => {
                self.ids.observe(meta.id.get());
                self.stores.put(meta.clone(), 0);
            }
            Change::PutRegion(region) => {
                // A persisted id may lie past the persisted end only if
                // it was chosen elsewhere; skipping it is enough, the next
                // allocation reserves (and persists) past it.
                self.ids.observe(max_id(region));
                if let Update::Changed { removed } = self.table.update(region.clone()) {
                    for id in removed {
                        self.operators.remove(&id);
                    }
                } else {
                    tracing::warn!(region = %region.id, "persisted region record conflicts with the table; ignored");
                }
            }
            Change::DeleteRegion(id) => {
                self.table.remove(*id);
                self.operators.remove(id);
            }
            Change::Bootstrapped => self.bootstrapped = true,
            Change::IdEnd(end) => {
                // Every id below a persisted end may be in use.
                if let Some(last) = end.checked_sub(1) {
                    self.ids.observe(last);
                }
                self.ids.on_reserved(*end);
            }
        }
    }

    /// Forgets soft state (operators, leaders, statistics) and starts every
    /// store's liveness clock at `now_ms`. Call when this replica becomes
    /// the meta-service leader, so that its start is not taken for silence
    /// of the stores.
    pub fn reset_soft_state(&mut self, now_ms: u64) {
        self.operators.clear();
        self.stores.reset_soft(now_ms);
        self.table.reset_soft();
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Replaces the settings (they are not persisted by the core). The id
    /// batch takes effect with the next reservation after a reload.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The changes queued since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// True when changes wait to be taken.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    // ---- bootstrap and ids ----

    /// True once [`Cluster::bootstrap`] succeeded.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Creates the cluster with its first store and its first region,
    /// which must cover every key and have its peers on that store.
    ///
    /// # Errors
    /// [`Error::AlreadyBootstrapped`] after the first success;
    /// [`Error::ZeroId`], [`Error::InvalidBootstrap`] for a malformed
    /// request.
    pub fn bootstrap(&mut self, store: StoreMeta, region: Region, now_ms: u64) -> Result<()> {
        if self.bootstrapped {
            return Err(Error::AlreadyBootstrapped);
        }
        if store.id.get() == 0 {
            return Err(Error::ZeroId { what: "store" });
        }
        if region.id.get() == 0 {
            return Err(Error::ZeroId { what: "region" });
        }
        if !region.start_key.is_empty() || !region.end_key.is_empty() {
            return Err(Error::InvalidBootstrap { what: "the first region must cover every key" });
        }
        if region.peers.is_empty() {
            return Err(Error::InvalidBootstrap { what: "the first region has no peer" });
        }
        if region.peers.iter().any(|p| p.id.get() == 0 || p.store_id != store.id) {
            return Err(Error::InvalidBootstrap {
                what: "the first region's peers must be on the first store",
            });
        }
        let meta = StoreMeta { state: StoreState::Up, ..store };
        self.stores.check_put(&meta)?;
        self.observe_id(meta.id.get());
        self.observe_id(max_id(&region));
        self.stores.put(meta.clone(), now_ms);
        self.stores.touch(meta.id, now_ms);
        self.table.update(region.clone());
        self.bootstrapped = true;
        self.changes.extend([Change::PutStore(meta), Change::PutRegion(region), Change::Bootstrapped]);
        Ok(())
    }

    /// Hands out `count` consecutive ids and returns the first.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for 0 or more than
    /// [`Settings::max_id_count`]; [`Error::IdsExhausted`].
    pub fn alloc_ids(&mut self, count: u64) -> Result<u64> {
        if count == 0 || count > self.settings.max_id_count {
            return Err(Error::InvalidCount { count, max: self.settings.max_id_count });
        }
        self.next_ids(count)
    }

    /// The reserved id end (ids below it may have been handed out).
    pub fn id_end(&self) -> u64 {
        self.ids.end()
    }

    /// Ids for `count` regions split off `region`: per new region one
    /// region id and one peer id per peer of `region`, in its peer order.
    ///
    /// # Errors
    /// [`Error::NotBootstrapped`]; [`Error::StaleRegion`] when the table
    /// knows a newer epoch of the region; [`Error::InvalidCount`] for 0 or
    /// more ids than [`Settings::max_id_count`]; [`Error::IdsExhausted`].
    pub fn ask_batch_split(&mut self, region: &Region, count: u32) -> Result<Vec<SplitIds>> {
        if !self.bootstrapped {
            return Err(Error::NotBootstrapped);
        }
        if let Some(cur) = self.table.get(region.id) {
            if region.epoch.is_stale(&cur.region.epoch) {
                return Err(Error::StaleRegion {
                    region: region.id,
                    epoch: region.epoch,
                    current: cur.region.epoch,
                });
            }
        }
        let per = 1 + region.peers.len() as u64;
        let max = self.settings.max_id_count / per;
        if count == 0 || u64::from(count) > max {
            return Err(Error::InvalidCount { count: u64::from(count), max });
        }
        let mut next = self.next_ids(u64::from(count) * per)?;
        let mut take = || {
            next += 1;
            next - 1
        };
        Ok((0..count)
            .map(|_| SplitIds {
                new_region_id: RegionId(take()),
                new_peer_ids: region.peers.iter().map(|_| PeerId(take())).collect(),
            })
            .collect())
    }

    /// Allocates `count` ids, queueing a reservation when the reserved
    /// range is used up (persisted with this call's other changes).
    fn next_ids(&mut self, count: u64) -> Result<u64> {
        match self.ids.alloc(count) {
            Ok(first) => Ok(first),
            Err(NeedReserve { new_end }) => {
                self.ids.on_reserved(new_end);
                self.changes.push(Change::IdEnd(new_end));
                self.ids.alloc(count).map_err(|_| Error::IdsExhausted)
            }
        }
    }

    /// Never hands out `id`, which was chosen elsewhere.
    fn observe_id(&mut self, id: u64) {
        if let Some(NeedReserve { new_end }) = self.ids.observe(id) {
            self.ids.on_reserved(new_end);
            self.changes.push(Change::IdEnd(new_end));
        }
    }

    // ---- stores ----

    /// Registers a store, or updates the address and shard count of a
    /// registered one (its state is kept; a new store is Up).
    ///
    /// # Errors
    /// [`Error::NotBootstrapped`]; [`Error::ZeroId`];
    /// [`Error::StoreTombstoned`] for a decommissioned id;
    /// [`Error::DuplicateAddress`] when another live store has the address.
    pub fn put_store(&mut self, store: StoreMeta, now_ms: u64) -> Result<()> {
        if !self.bootstrapped {
            return Err(Error::NotBootstrapped);
        }
        if let Some(meta) = self.stores.check_put(&store)? {
            self.observe_id(meta.id.get());
            self.stores.put(meta.clone(), now_ms);
            self.changes.push(Change::PutStore(meta));
        }
        self.stores.touch(store.id, now_ms);
        Ok(())
    }

    /// Records a store's heartbeat.
    ///
    /// # Errors
    /// [`Error::StoreNotFound`], [`Error::StoreTombstoned`].
    pub fn store_heartbeat(&mut self, hb: &StoreHeartbeatRequest, now_ms: u64) -> Result<()> {
        self.stores.heartbeat(hb, now_ms)?;
        self.settle_offline();
        Ok(())
    }

    /// Starts decommissioning a store: it becomes Offline, its replicas
    /// are moved off, and once none is left it becomes a Tombstone.
    /// Deleting an Offline or Tombstone store again changes nothing.
    ///
    /// # Errors
    /// [`Error::StoreNotFound`].
    pub fn delete_store(&mut self, id: StoreId) -> Result<()> {
        let store = self.stores.get(id).ok_or(Error::StoreNotFound { store: id })?;
        if store.meta.state == StoreState::Up {
            let meta = StoreMeta { state: StoreState::Offline, ..store.meta.clone() };
            self.stores.put(meta.clone(), 0);
            self.changes.push(Change::PutStore(meta));
            tracing::info!(store = %id, "decommissioning");
        }
        self.settle_offline();
        Ok(())
    }

    /// Turns Offline stores without replicas into Tombstones.
    fn settle_offline(&mut self) {
        let empty: Vec<StoreMeta> = self
            .stores
            .iter()
            .filter(|s| s.meta.state == StoreState::Offline && self.table.store_load(s.meta.id).regions == 0)
            .map(|s| StoreMeta { state: StoreState::Tombstone, ..s.meta.clone() })
            .collect();
        for meta in empty {
            tracing::info!(store = %meta.id, "decommissioned: tombstone");
            self.stores.put(meta.clone(), 0);
            self.changes.push(Change::PutStore(meta));
        }
    }

    /// The registration of store `id`.
    pub fn store(&self, id: StoreId) -> Option<&StoreMeta> {
        self.stores.get(id).map(|s| &s.meta)
    }

    /// Store `id` with its statistics.
    pub fn store_info(&self, id: StoreId) -> Option<&StoreInfo> {
        self.stores.get(id)
    }

    /// Every store, by id.
    pub fn stores(&self, exclude_tombstones: bool) -> Vec<StoreMeta> {
        self.stores
            .iter()
            .filter(|s| !(exclude_tombstones && s.meta.state == StoreState::Tombstone))
            .map(|s| s.meta.clone())
            .collect()
    }

    /// The state of store `id` at `now_ms`, Down included.
    pub fn store_health(&self, id: StoreId, now_ms: u64) -> Option<StoreHealth> {
        self.stores.get(id).map(|s| s.health(now_ms, &self.settings))
    }

    // ---- regions ----

    /// The region holding `key`, with its leader.
    pub fn get_region(&self, key: &[u8]) -> Option<RegionRoute> {
        self.table.locate(key).map(RegionInfo::route)
    }

    /// Region `id`, with its leader.
    pub fn get_region_by_id(&self, id: RegionId) -> Option<RegionRoute> {
        self.table.get(id).map(RegionInfo::route)
    }

    /// Up to `limit` regions (0: no limit) overlapping `[start, end)` in
    /// key order; an empty `end` is unbounded.
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<RegionRoute> {
        self.table.scan(start, end, limit).into_iter().map(RegionInfo::route).collect()
    }

    /// Region `id` with everything its leader reported.
    pub fn region_info(&self, id: RegionId) -> Option<&RegionInfo> {
        self.table.get(id)
    }

    /// The routing table.
    pub fn regions(&self) -> &RegionTable {
        &self.table
    }

    /// Takes the regions a split produced (in key order).
    ///
    /// # Errors
    /// [`Error::NotBootstrapped`].
    pub fn report_batch_split(&mut self, regions: &[Region]) -> Result<()> {
        if !self.bootstrapped {
            return Err(Error::NotBootstrapped);
        }
        for region in regions {
            self.update_region(region);
        }
        self.settle_offline();
        Ok(())
    }

    /// Routes a reported region into the table, queueing the changes.
    fn update_region(&mut self, region: &Region) -> Update {
        let update = self.table.update(region.clone());
        if let Update::Changed { removed } = &update {
            self.changes.push(Change::PutRegion(region.clone()));
            for id in removed {
                self.operators.remove(id);
                self.changes.push(Change::DeleteRegion(*id));
            }
        }
        update
    }

    /// Takes a leader's report on its region and answers with at most one
    /// operator step for it.
    ///
    /// 1. The region is routed (a stale report changes nothing and gets no
    ///    operator).
    /// 2. Leader, pending and down peers, sizes and rates are recorded.
    /// 3. The region's operator, if any, is advanced: its next step is the
    ///    answer; it is dropped when finished, timed out or invalid.
    /// 4. Otherwise the schedulers may start a new operator, whose first
    ///    step is the answer.
    ///
    /// # Errors
    /// [`Error::NotBootstrapped`]; [`Error::ZeroId`].
    pub fn region_heartbeat(
        &mut self,
        hb: &RegionHeartbeatRequest,
        now_ms: u64,
    ) -> Result<RegionHeartbeatResponse> {
        if !self.bootstrapped {
            return Err(Error::NotBootstrapped);
        }
        let id = hb.region.id;
        if id.get() == 0 {
            return Err(Error::ZeroId { what: "region" });
        }
        let quiet = RegionHeartbeatResponse { region_id: id, epoch: hb.region.epoch, operator: None };
        match self.update_region(&hb.region) {
            Update::Stale => {
                tracing::debug!(region = %id, epoch = ?hb.region.epoch, "stale region heartbeat");
                return Ok(quiet);
            }
            Update::Unchanged => {}
            Update::Changed { .. } => self.settle_offline(),
        }
        self.table.update_soft(id, |info| {
            if let Some(last) = info.last_heartbeat_ms {
                let elapsed = now_ms.saturating_sub(last);
                if elapsed > 0 {
                    let rate = |n: u64| {
                        (u128::from(n) * 1000 / u128::from(elapsed)).min(u128::from(u64::MAX)) as u64
                    };
                    info.load = Load {
                        write_bytes: rate(hb.bytes_written),
                        write_keys: rate(hb.keys_written),
                        read_bytes: rate(hb.bytes_read),
                        read_keys: rate(hb.keys_read),
                    };
                }
            }
            info.leader = hb.leader.filter(|l| info.region.peers.contains(l));
            info.leader_shard = if info.leader.is_some() { hb.leader_shard } else { 0 };
            info.pending_peers = hb.pending_peers.clone();
            info.down_peers = hb.down_peers.clone();
            // The leader's word on roles: learners this meta service did
            // not add (copied by a split, or added before a restart) count.
            info.learners =
                hb.learners.iter().filter(|p| info.region.peers.contains(p)).map(|p| p.id).collect();
            info.approximate_size = hb.approximate_size;
            info.approximate_keys = hb.approximate_keys;
            info.last_heartbeat_ms = Some(now_ms);
        });
        let operator = self.dispatch(id, now_ms);
        let epoch = self.table.get(id).map_or(hb.region.epoch, |i| i.region.epoch);
        Ok(RegionHeartbeatResponse { region_id: id, epoch, operator })
    }

    /// Advances the region's operator or starts one; returns the step to
    /// send.
    fn dispatch(&mut self, id: RegionId, now_ms: u64) -> Option<ekv_proto::msg::Operator> {
        if let Some(mut op) = self.operators.remove(&id) {
            let progress = if now_ms >= op.deadline_ms {
                Progress::Invalid("timed out")
            } else {
                let info = self.table.get(id)?;
                op.progress(&self.ctx(now_ms), info)
            };
            if let Some(step) = self.settle(op, progress) {
                return step;
            }
        }
        let info = self.table.get(id)?;
        let (plan, reason) = schedule::schedule(&self.ctx(now_ms), info)?;
        let kind = match self.realize(id, plan) {
            Ok(kind) => kind,
            Err(err) => {
                tracing::error!(region = %id, %err, "cannot allocate a peer id; not scheduling");
                return None;
            }
        };
        let info = self.table.get(id)?;
        let s = &self.settings;
        let timeout = match kind {
            OperatorKind::AddPeer { .. }
            | OperatorKind::MovePeer { .. }
            | OperatorKind::RemovePeer { .. } => s.peer_operator_timeout_ms,
            OperatorKind::TransferLeader { .. } => s.leader_operator_timeout_ms,
            OperatorKind::Split => s.split_operator_timeout_ms,
        };
        let mut op = RunningOperator::new(info, kind, reason, now_ms, timeout);
        tracing::info!(region = %id, op = %op.kind, ?reason, "operator created");
        let progress = op.progress(&self.ctx(now_ms), info);
        self.settle(op, progress).flatten()
    }

    /// Files an operator after [`RunningOperator::progress`]: `Some(step)`
    /// when it stays in flight (with the step to send, if any), `None`
    /// when it ended.
    fn settle(
        &mut self,
        mut op: RunningOperator,
        progress: Progress,
    ) -> Option<Option<ekv_proto::msg::Operator>> {
        op.note(&progress);
        let id = op.region_id;
        match progress {
            Progress::Step(_) | Progress::Wait(_) => {
                let step = match &progress {
                    Progress::Step(step) => Some(step.clone()),
                    _ => None,
                };
                self.operators.insert(id, op);
                Some(step)
            }
            Progress::Done => {
                tracing::info!(region = %id, op = %op.kind, steps = op.steps_sent, "operator finished");
                None
            }
            Progress::Invalid(why) => {
                // A learner it added is still reported as one, so the
                // extra-replica check removes it first.
                tracing::warn!(region = %id, op = %op.kind, why, "operator cancelled");
                None
            }
        }
    }

    /// Turns a plan into an operator, allocating the new peer's id.
    fn realize(&mut self, region: RegionId, plan: Plan) -> Result<OperatorKind> {
        let mut new_peer = |p: NewPeer| -> Result<PeerMeta> {
            Ok(match p {
                NewPeer::Existing(p) => p,
                NewPeer::On(store_id) => PeerMeta { id: PeerId(self.next_ids(1)?), store_id },
            })
        };
        Ok(match plan {
            Plan::Add { peer } => OperatorKind::AddPeer { peer: new_peer(peer)? },
            Plan::Move { add, remove } => OperatorKind::MovePeer { add: new_peer(add)?, remove },
            Plan::Remove { peer } => OperatorKind::RemovePeer { peer },
            Plan::TransferLeader { to } => {
                OperatorKind::TransferLeader { from: self.table.get(region).and_then(|i| i.leader), to }
            }
            Plan::Split => OperatorKind::Split,
        })
    }

    fn ctx(&self, now_ms: u64) -> Ctx<'_> {
        Ctx::new(&self.settings, &self.stores, &self.table, &self.operators, now_ms)
    }

    // ---- operators ----

    /// The operator in flight for `region`.
    pub fn operator(&self, region: RegionId) -> Option<&RunningOperator> {
        self.operators.get(&region)
    }

    /// Every operator in flight, by region.
    pub fn operators(&self) -> impl Iterator<Item = &RunningOperator> {
        self.operators.values()
    }

    /// Periodic housekeeping: cancels operators past their deadline (a
    /// region whose leader went silent would otherwise hold its snapshot
    /// slot) and tombstones drained stores. Returns the regions whose
    /// operators were cancelled.
    pub fn tick(&mut self, now_ms: u64) -> Vec<RegionId> {
        let expired: Vec<RegionId> =
            self.operators.values().filter(|op| now_ms >= op.deadline_ms).map(|op| op.region_id).collect();
        for id in &expired {
            if let Some(op) = self.operators.remove(id) {
                tracing::warn!(region = %id, op = %op.kind, "operator timed out");
            }
        }
        self.settle_offline();
        expired
    }
}

/// The largest id a region names (its own or a peer's).
fn max_id(region: &Region) -> u64 {
    region.peers.iter().map(|p| p.id.get()).chain([region.id.get()]).max().unwrap_or(0)
}
