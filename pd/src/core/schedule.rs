//! The schedulers: given one region (that has no operator in flight) and
//! the cluster, decide whether it needs one. Checked in this order, the
//! first that applies wins:
//!
//! 1. Replica repair and decommission: fewer live voters than
//!    [`Settings::replicas`] (a voter on a Down, Offline or Tombstone
//!    store, or one its leader reports down, is missing) → add a replica on
//!    the live store with the fewest regions, replacing a missing one in a
//!    joint change.
//! 2. Extra replicas: more peers than configured → remove the one on a
//!    bad store, else a lagging one, else the one on the fullest store,
//!    never the leader (leadership is transferred first). A live learner
//!    stays while a voter is in doubt (silent, but not yet for long
//!    enough to be replaced): step 1 promotes it if the voter is lost.
//! 3. Hot region: a region whose traffic dominates its leader's store →
//!    split it, or when too small to split, move its leader or a replica to
//!    a cooler store.
//! 4. Leader balance: the leader's store leads more regions than a
//!    follower's store, by more than the tolerance → transfer leadership.
//! 5. Region balance: by region count, then by size → move a replica
//!    from the region's fullest store to the emptiest store.
//!
//! Steps 3-5 wait until [`Settings::prepared_ratio`] of the regions have
//! reported since this meta-service leader started, and only touch
//! regions whose replicas are all live, caught-up voters.
//!
//! Balancing counts what in-flight operators will change ("influence"), so
//! that a burst of heartbeats does not send every region to one store, and
//! no store receives more than [`Settings::max_snapshots_per_store`] new
//! replicas at once.

use std::collections::BTreeMap;

use ekv_proto::msg::StoreState;
use ekv_proto::{PeerId, PeerMeta, RegionId, StoreId};

use super::operator::{OperatorKind, OperatorReason, RunningOperator};
use super::routing::{RegionInfo, RegionTable};
use super::settings::Settings;
use super::stores::Stores;

/// Where a replica an operator adds comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NewPeer {
    /// A learner already in the region (left behind by an earlier
    /// operator): promote it rather than copying the data again.
    Existing(PeerMeta),
    /// A fresh replica on this store; the peer id is allocated later.
    On(StoreId),
}

/// A scheduler's decision, before peer ids are allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    Add { peer: NewPeer },
    Move { add: NewPeer, remove: PeerMeta },
    Remove { peer: PeerMeta },
    TransferLeader { to: PeerMeta },
    Split,
}

/// What in-flight operators will change on a store once finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Influence {
    regions: i64,
    leaders: i64,
    size: i64,
    /// Add-peer operators whose new replica has not caught up yet: each
    /// means a snapshot towards the store.
    snapshots: usize,
}

/// A read-only view of the cluster for one scheduling decision.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub settings: &'a Settings,
    pub stores: &'a Stores,
    pub table: &'a RegionTable,
    pub now_ms: u64,
    influence: BTreeMap<StoreId, Influence>,
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl<'a> Ctx<'a> {
    pub fn new(
        settings: &'a Settings,
        stores: &'a Stores,
        table: &'a RegionTable,
        operators: &BTreeMap<RegionId, RunningOperator>,
        now_ms: u64,
    ) -> Self {
        let mut influence: BTreeMap<StoreId, Influence> = BTreeMap::new();
        for op in operators.values() {
            let Some(info) = table.get(op.region_id) else { continue };
            let size = signed(info.approximate_size);
            let adjust = |influence: &mut BTreeMap<StoreId, Influence>, store, regions: i64, leaders: i64| {
                let i = influence.entry(store).or_default();
                i.regions += regions;
                i.leaders += leaders;
                i.size += regions * size;
            };
            let region = &info.region;
            // Only what the region does not show yet counts, so that a
            // half-done operator is not counted twice.
            if let Some(add) = op.kind.added() {
                if region.peer(add.id).is_none() {
                    adjust(&mut influence, add.store_id, 1, 0);
                }
                if region.peer(add.id).is_none() || info.is_pending(add.id) {
                    influence.entry(add.store_id).or_default().snapshots += 1;
                }
            }
            match &op.kind {
                OperatorKind::MovePeer { remove: p, .. } | OperatorKind::RemovePeer { peer: p } => {
                    if region.peer(p.id).is_some() {
                        adjust(&mut influence, p.store_id, -1, 0);
                    }
                }
                OperatorKind::TransferLeader { from, to } => {
                    if info.leader.map(|l| l.id) != Some(to.id) {
                        adjust(&mut influence, to.store_id, 0, 1);
                        if let Some(from) = from {
                            adjust(&mut influence, from.store_id, 0, -1);
                        }
                    }
                }
                OperatorKind::AddPeer { .. } | OperatorKind::Split => {}
            }
        }
        Self { settings, stores, table, now_ms, influence }
    }

    fn influence(&self, store: StoreId) -> Influence {
        self.influence.get(&store).copied().unwrap_or_default()
    }

    /// True when a replica on `store` counts as live.
    pub fn live(&self, store: StoreId) -> bool {
        self.stores.is_live(store, self.now_ms, self.settings)
    }

    /// True when `store` may take a new replica or leader.
    pub fn accepts_load(&self, store: StoreId) -> bool {
        self.stores.get(store).is_some_and(|s| s.accepts_load(self.now_ms, self.settings))
    }

    /// Regions on `store`, counting operators in flight.
    pub fn regions(&self, store: StoreId) -> i64 {
        signed(self.table.store_load(store).regions) + self.influence(store).regions
    }

    /// Leaders on `store`, counting operators in flight.
    pub fn leaders(&self, store: StoreId) -> i64 {
        signed(self.table.store_load(store).leaders) + self.influence(store).leaders
    }

    /// Bytes of regions on `store`, counting operators in flight.
    pub fn size(&self, store: StoreId) -> i64 {
        signed(self.table.store_load(store).region_size) + self.influence(store).size
    }

    /// Add-peer operators whose snapshot towards `store` is in flight.
    pub fn snapshots(&self, store: StoreId) -> usize {
        self.influence(store).snapshots
    }

    /// True when the leader reports `peer` as lagging or down.
    fn lagging(&self, info: &RegionInfo, peer: PeerId) -> bool {
        info.is_pending(peer) || info.is_down(peer, self.settings.down_after_ms)
    }

    /// True when `p` is a voter that counts as live.
    fn live_voter(&self, info: &RegionInfo, p: &PeerMeta) -> bool {
        !info.learners.contains(&p.id)
            && self.live(p.store_id)
            && !info.is_down(p.id, self.settings.down_after_ms)
    }

    /// True when `p` counts as a live voter but may not be one for long:
    /// its leader hears nothing from it (not yet for `down_after_ms`), or
    /// its store has not reported since this meta-service leader started.
    fn in_doubt(&self, info: &RegionInfo, p: &PeerMeta) -> bool {
        self.live_voter(info, p)
            && (info.down_peers.iter().any(|d| d.peer.id == p.id)
                || !self.stores.get(p.store_id).is_some_and(|s| s.heartbeated))
    }

    /// The voter best placed to take leadership, leaving out `exclude`:
    /// caught up, on a store that accepts load, with the fewest leaders.
    pub fn new_leader(&self, info: &RegionInfo, exclude: &[PeerId]) -> Option<PeerMeta> {
        info.region
            .peers
            .iter()
            .filter(|p| !exclude.contains(&p.id) && Some(**p) != info.leader)
            .filter(|p| !info.learners.contains(&p.id) && !self.lagging(info, p.id))
            .filter(|p| self.accepts_load(p.store_id))
            .min_by_key(|p| (self.leaders(p.store_id), p.store_id))
            .copied()
    }

    /// Stores that may take a new replica of the region: accepting load,
    /// holding none of its peers, and under the snapshot limit.
    fn targets<'b>(&'b self, info: &'b RegionInfo) -> impl Iterator<Item = StoreId> + 'b {
        self.stores
            .iter()
            .map(|s| s.meta.id)
            .filter(move |id| info.region.peer_on(*id).is_none())
            .filter(move |id| self.accepts_load(*id))
            .filter(move |id| self.snapshots(*id) < self.settings.max_snapshots_per_store)
    }

    /// True when enough regions have reported for balancing.
    fn prepared(&self) -> bool {
        self.table.reported() as f64 >= self.settings.prepared_ratio * self.table.len() as f64
    }

    /// True when every replica is a live, caught-up voter and their number
    /// is the configured one: only such regions are balanced.
    fn healthy(&self, info: &RegionInfo) -> bool {
        let peers = &info.region.peers;
        info.leader.is_some()
            && peers.len() == self.settings.replicas
            && info.learners.is_empty()
            && peers.iter().all(|p| self.live_voter(info, p) && !self.lagging(info, p.id))
    }
}

/// Whether `diff` between a source with `source` units and a target
/// exceeds both tolerances.
fn exceeds(diff: i64, source: i64, tolerance: u64, ratio: f64) -> bool {
    diff > signed(tolerance) && diff as f64 > ratio * source as f64
}

/// Decides what region `info` (with no operator in flight) needs.
pub(crate) fn schedule(ctx: &Ctx<'_>, info: &RegionInfo) -> Option<(Plan, OperatorReason)> {
    info.leader?;
    if let Some(d) = check_replicas(ctx, info) {
        return d;
    }
    if !ctx.healthy(info) || !ctx.prepared() {
        return None;
    }
    check_hot(ctx, info).or_else(|| balance_leader(ctx, info)).or_else(|| balance_region(ctx, info))
}

/// Repair, decommission and extra replicas. `Some(None)`: the region needs
/// replica work but nothing can be done now (no store to move to), so the
/// other schedulers must leave it alone too.
fn check_replicas(ctx: &Ctx<'_>, info: &RegionInfo) -> Option<Option<(Plan, OperatorReason)>> {
    let s = ctx.settings;
    let region = &info.region;
    let is_leader = |p: &PeerMeta| info.leader.is_some_and(|l| l.id == p.id);
    let voters: Vec<PeerMeta> =
        region.peers.iter().filter(|p| !info.learners.contains(&p.id)).copied().collect();
    let mut bad: Vec<PeerMeta> = voters.iter().filter(|p| !ctx.live_voter(info, p)).copied().collect();
    // Replace followers before the leader, which needs a transfer first.
    bad.sort_by_key(|p| (is_leader(p), p.id));
    let live = voters.len() - bad.len();

    if live < s.replicas {
        let decommission =
            bad.iter().any(|p| ctx.stores.get(p.store_id).is_some_and(|st| st.meta.state != StoreState::Up));
        let reason = if decommission { OperatorReason::Decommission } else { OperatorReason::Repair };
        if voters.len() >= s.replicas {
            if let Some(b) = bad.first() {
                // The leader is still serving from a store being drained:
                // move leadership first, then its replica.
                if is_leader(b) && ctx.live_leader_store(b.store_id) {
                    return Some(
                        ctx.new_leader(info, &[b.id]).map(|to| (Plan::TransferLeader { to }, reason)),
                    );
                }
            }
        }
        let adopt = region
            .peers
            .iter()
            .find(|p| info.learners.contains(&p.id) && ctx.live(p.store_id) && !ctx.lagging(info, p.id));
        let add = match adopt {
            Some(p) => NewPeer::Existing(*p),
            None => match ctx.targets(info).min_by_key(|id| (ctx.regions(*id), *id)) {
                Some(id) => NewPeer::On(id),
                None => return Some(None),
            },
        };
        let plan = match bad.first() {
            Some(b) if voters.len() >= s.replicas => Plan::Move { add, remove: *b },
            _ => Plan::Add { peer: add },
        };
        return Some(Some((plan, reason)));
    }

    if region.peers.len() > s.replicas {
        let learner = region.peers.iter().find(|p| info.learners.contains(&p.id));
        // A learner is what a repair promotes (one an earlier meta-service
        // leader left mid-repair, say): keep it while a voter is in doubt,
        // rather than drop it and copy the region again moments later.
        let keep = learner.is_some_and(|l| {
            ctx.live(l.store_id)
                && !info.down_peers.iter().any(|d| d.peer.id == l.id)
                && voters.iter().any(|p| ctx.in_doubt(info, p))
        });
        if keep {
            return Some(None);
        }
        let lagging = voters.iter().filter(|p| !is_leader(p)).find(|p| ctx.lagging(info, p.id));
        let fullest = voters
            .iter()
            .filter(|p| !is_leader(p))
            .max_by_key(|p| (ctx.regions(p.store_id), ctx.size(p.store_id), p.store_id));
        let victim = learner.or(bad.first()).or(lagging).or(fullest)?;
        return Some(Some((Plan::Remove { peer: *victim }, OperatorReason::ExtraReplica)));
    }
    None
}

impl Ctx<'_> {
    /// True when a store holding a replica still serves: Offline but heard
    /// from, so it can hand leadership over.
    fn live_leader_store(&self, store: StoreId) -> bool {
        self.stores.get(store).is_some_and(|s| {
            s.meta.state == StoreState::Offline
                && self.now_ms.saturating_sub(s.last_seen_ms) < self.settings.down_after_ms
        })
    }
}

/// Splits or moves a region whose traffic dominates its leader's store.
fn check_hot(ctx: &Ctx<'_>, info: &RegionInfo) -> Option<(Plan, OperatorReason)> {
    let s = ctx.settings;
    let leader = info.leader?;
    let totals = |store: StoreId| ctx.table.store_load(store).leader_load.dims();
    let source = totals(leader.store_id);
    let rates = info.load.dims();
    let thresholds = [
        s.hot_write_bytes_per_sec,
        s.hot_write_keys_per_sec,
        s.hot_read_bytes_per_sec,
        s.hot_read_keys_per_sec,
    ];
    let dim = (0..4).find(|&d| {
        rates[d] > 0 && rates[d] >= thresholds[d] && rates[d] as f64 >= s.hot_store_share * source[d] as f64
    })?;
    let reason = OperatorReason::HotRegion;
    if info.approximate_size >= s.hot_split_min_bytes {
        return Some((Plan::Split, reason));
    }
    // Too small to split: the traffic goes wherever the leader goes. Move
    // it only where it leaves the target cooler than the source is now.
    let (rate, hot) = (rates[dim], source[dim]);
    let cooler = |store: StoreId| totals(store)[dim].saturating_add(rate) < hot;
    let followers = || info.region.peers.iter().filter(|p| p.id != leader.id);
    if let Some(to) = followers()
        .filter(|p| ctx.accepts_load(p.store_id) && !ctx.lagging(info, p.id))
        .min_by_key(|p| (totals(p.store_id)[dim], p.store_id))
        .filter(|p| cooler(p.store_id))
    {
        return Some((Plan::TransferLeader { to: *to }, reason));
    }
    // No follower is cooler: bring a replica to a cooler store; a later
    // heartbeat transfers the leadership there.
    let target = ctx.targets(info).min_by_key(|id| (totals(*id)[dim], *id)).filter(|id| cooler(*id))?;
    let remove = followers().max_by_key(|p| (totals(p.store_id)[dim], p.store_id))?;
    Some((Plan::Move { add: NewPeer::On(target), remove: *remove }, reason))
}

/// Moves leadership from a store leading more regions to a follower's.
fn balance_leader(ctx: &Ctx<'_>, info: &RegionInfo) -> Option<(Plan, OperatorReason)> {
    let s = ctx.settings;
    let leader = info.leader?;
    let source = ctx.leaders(leader.store_id);
    let to = ctx.new_leader(info, &[leader.id])?;
    let diff = source - ctx.leaders(to.store_id);
    exceeds(diff, source, s.leader_tolerance, s.leader_tolerance_ratio)
        .then_some((Plan::TransferLeader { to }, OperatorReason::LeaderBalance))
}

/// Moves a replica from the region's fullest store to the emptiest store
/// that may take it: by region count, or by size when counts are even.
fn balance_region(ctx: &Ctx<'_>, info: &RegionInfo) -> Option<(Plan, OperatorReason)> {
    let s = ctx.settings;
    let is_leader = |p: &PeerMeta| info.leader.is_some_and(|l| l.id == p.id);
    let peers = &info.region.peers;
    let targets: Vec<StoreId> = ctx.targets(info).collect();

    // By count. Among equally full stores prefer a follower's (no leader
    // transfer needed).
    let source = peers.iter().max_by_key(|p| (ctx.regions(p.store_id), !is_leader(p), p.store_id))?;
    let target = targets.iter().copied().min_by_key(|id| (ctx.regions(*id), *id))?;
    let (from, to) = (ctx.regions(source.store_id), ctx.regions(target));
    if exceeds(from - to, from, s.region_tolerance, s.region_tolerance_ratio) {
        return Some((
            Plan::Move { add: NewPeer::On(target), remove: *source },
            OperatorReason::RegionBalance,
        ));
    }

    // By size: only a region small enough to narrow the gap without
    // reversing it, and only where the counts stay within tolerance.
    let source = peers.iter().max_by_key(|p| (ctx.size(p.store_id), !is_leader(p), p.store_id))?;
    let target = targets.iter().copied().min_by_key(|id| (ctx.size(*id), *id))?;
    let (from, to) = (ctx.size(source.store_id), ctx.size(target));
    let size = signed(info.approximate_size);
    let counts_ok = ctx.regions(target) + 2 <= ctx.regions(source.store_id) + signed(s.region_tolerance);
    (exceeds(from - to, from, s.size_tolerance_bytes, s.size_tolerance_ratio)
        && size > 0
        && size.saturating_mul(2) <= from - to
        && counts_ok)
        .then_some((Plan::Move { add: NewPeer::On(target), remove: *source }, OperatorReason::SizeBalance))
}
