//! A shard: one core's peers, WAL and LSM, driven in rounds.
//!
//! The shell (glommio in production, the simulator in tests) feeds a shard
//! inputs — [`Shard::on_command`], [`Shard::on_store_msg`], [`Shard::tick`],
//! meta-service answers — and then runs [`Shard::handle_ready`], one round:
//!
//! 1. every peer touched since the last round hands over its `Ready`;
//!    messages a leader may send before its own sync go out at once;
//! 2. the entries and hard states of all peers go into **one** WAL write
//!    and **one** fdatasync;
//! 3. messages that had to wait for the sync are released, and the
//!    committed entries of all peers are applied into **one** LSM write
//!    batch, which also carries each peer's apply state;
//! 4. waiting commands are answered, reads whose index is applied become
//!    [`ReadTask`]s, and the round's side effects (splits, removals, log GC)
//!    are carried out.
//!
//! The shell then drains the outputs ([`Shard::flush_io`],
//! [`Shard::take_reads`], [`Shard::take_forwards`]). Nothing here waits on
//! the network or a clock: the same code runs in the deterministic simulator.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use ekv_lsm::{Cf, IterOptions, Lsm, Options as LsmOptions, WriteBatch};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, ShardId, StoreId};
use ekv_wal::{LogBatch, Wal, WalOptions};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, MessageType};
use raft::StateRole;

use crate::config::{Config, META_CF};
use crate::operation::apply::{ApplyCtx, Effect};
use crate::operation::read::ReadTask;
use crate::operation::snapshot::SnapState;
use crate::peer::Peer;
use crate::raft::state::{parse_state_key, state_key, ApplyState, PeerState, INIT_INDEX, INIT_TERM};
use crate::router::{Callback, PeerMsg, RaftEnvelope, ShardAddr, StoreMsg, StoreRouter};
use crate::transport::{PdClient, RegionHeartbeat, StoreHeartbeat, Transport};
use crate::Fs;
use crate::{Error, Result};

/// A request to the meta service, queued until the shell sends it.
#[derive(Debug, Clone)]
pub(crate) enum PdTask {
    AskSplit { region: Region, count: usize, token: u64 },
    ReportSplit(Vec<Region>),
    RegionHeartbeat(RegionHeartbeat),
    StoreHeartbeat(StoreHeartbeat),
}

/// A split waiting for ids.
pub(crate) struct SplitWaiter {
    pub region: RegionId,
    pub keys: Vec<Bytes>,
    pub cb: Callback,
}

/// WAL work that must wait until the LSM state allowing it is durable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WalOp {
    Compact(u64),
    Remove,
}

/// Counters of a shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Rounds run.
    pub rounds: u64,
    /// WAL writes (each one fdatasync).
    pub wal_writes: u64,
    /// Commands proposed.
    pub proposals: u64,
    /// Entries applied.
    pub applied_entries: u64,
    /// LSM batches written by apply.
    pub apply_batches: u64,
    /// Reads served under the lease.
    pub lease_reads: u64,
    /// Reads served through ReadIndex.
    pub read_index_reads: u64,
    /// Raft messages sent.
    pub messages_sent: u64,
    /// Snapshots generated.
    pub snapshots_generated: u64,
    /// Snapshots applied.
    pub snapshots_applied: u64,
    /// Peers ticked (hibernating ones are not).
    pub peer_ticks: u64,
    /// Entries appended to raft logs (written to the WAL).
    pub appended_entries: u64,
    /// Raft messages received for peers of this shard.
    pub messages_received: u64,
    /// The WAL's counters, as of [`Shard::stats`].
    pub wal: ekv_wal::Stats,
    /// The LSM tree's counters and shape, as of [`Shard::stats`].
    pub lsm: ekv_lsm::Stats,
}

/// What one peer looks like from outside, for tests and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The region.
    pub region: Region,
    /// This peer.
    pub peer: PeerMeta,
    /// Whether it leads.
    pub is_leader: bool,
    /// The leader it knows.
    pub leader: Option<PeerMeta>,
    /// Applied index.
    pub applied_index: u64,
    /// Raft term.
    pub term: u64,
    /// Not ticking.
    pub hibernating: bool,
    /// First index of its log.
    pub first_index: u64,
    /// Has data.
    pub initialized: bool,
    /// The learners of its configuration (the region's peer list carries
    /// no role).
    pub learners: Vec<PeerId>,
}

pub(crate) fn noop_cb() -> Callback {
    Box::new(|_| {})
}

/// One core's share of a store.
pub struct Shard<F: Fs> {
    pub(crate) store_id: StoreId,
    pub(crate) id: ShardId,
    pub(crate) cfg: Rc<Config>,
    pub(crate) fs: F,
    pub(crate) wal: Wal<F>,
    pub(crate) lsm: Lsm<F>,
    pub(crate) cfs: HashMap<String, Cf>,
    pub(crate) meta_cf: Cf,
    pub(crate) peers: BTreeMap<RegionId, Peer>,
    pub(crate) tombstones: HashMap<RegionId, PeerState>,
    /// Peers to look at in the next round.
    pub(crate) touched: BTreeSet<RegionId>,
    /// Peers that tick (not hibernating), as of their last round: a tick
    /// costs nothing per hibernating region.
    pub(crate) awake: BTreeSet<RegionId>,
    pub(crate) router: StoreRouter,
    /// Logical time in ticks.
    pub(crate) clock: u64,
    pub(crate) round: u64,
    pub(crate) wal_extra: LogBatch,
    /// Hard states whose only change is the commit index, written with the
    /// next WAL write that happens anyway.
    pub(crate) lazy_hard_states: BTreeMap<RegionId, ekv_wal::HardState>,
    /// Damage found while stepping a message; the next round stops the
    /// shard with it.
    pub(crate) fatal: Option<Error>,
    pub(crate) wal_deferred: VecDeque<(u64, RegionId, WalOp)>,
    pub(crate) out: BTreeMap<ShardAddr, Vec<StoreMsg>>,
    pub(crate) forward: Vec<(ShardId, StoreMsg)>,
    pub(crate) pd: Vec<PdTask>,
    pub(crate) reads: Vec<ReadTask>,
    pub(crate) split_waiters: HashMap<u64, SplitWaiter>,
    pub(crate) next_token: u64,
    pub(crate) snap: SnapState<F>,
    /// Shard tick at which each store was last heard from.
    pub(crate) last_heard: HashMap<StoreId, u64>,
    /// Every shard of another store this shard talks to (probed).
    pub(crate) known_addrs: BTreeSet<ShardAddr>,
    /// Leaders due for a split check.
    pub(crate) split_checks: BTreeSet<RegionId>,
    pub(crate) stats: ShardStats,
}

impl<F: Fs> std::fmt::Debug for Shard<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("store", &self.store_id)
            .field("shard", &self.id)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl<F: Fs> Shard<F> {
    /// Opens (or creates) the shard in `dir`: its WAL in `dir/wal`, its LSM
    /// in `dir/lsm`, snapshots in `dir/snap`. Finds its peers again and
    /// registers them with `router`; raft replays committed entries above
    /// each region's durable applied index.
    ///
    /// # Errors
    /// Storage failures; [`Error::Corruption`] for a peer state that does not decode.
    pub async fn open(
        fs: F,
        dir: PathBuf,
        cfg: Rc<Config>,
        store_id: StoreId,
        id: ShardId,
        router: StoreRouter,
    ) -> Result<Self> {
        Self::open_with_yield(fs, dir, cfg, store_id, id, router, None).await
    }

    /// [`Shard::open`] with the LSM's background work yielding through
    /// `lsm_yield` after each work slice (the glommio shell yields its task
    /// queue, so that a round never waits behind a compaction).
    ///
    /// # Errors
    /// As [`Shard::open`].
    pub async fn open_with_yield(
        fs: F,
        dir: PathBuf,
        cfg: Rc<Config>,
        store_id: StoreId,
        id: ShardId,
        router: StoreRouter,
        lsm_yield: Option<ekv_lsm::YieldHook>,
    ) -> Result<Self> {
        cfg.validate()?;
        fs.create_dir_all(&dir).await?;
        let wal_opts = WalOptions {
            segment_size: cfg.wal_segment_bytes,
            cache_capacity: cfg.wal_cache_bytes,
            ..WalOptions::default()
        };
        let wal = Wal::open(fs.clone(), dir.join("wal"), wal_opts).await?;
        let lsm_opts = LsmOptions {
            memtable_size: cfg.lsm_memtable_bytes,
            block_cache_size: cfg.lsm_block_cache_bytes,
            yield_hook: lsm_yield,
            ..LsmOptions::default()
        };
        let lsm = Lsm::open(fs.clone(), dir.join("lsm"), lsm_opts).await?;
        let meta_cf = match lsm.cf(META_CF) {
            Ok(cf) => cf,
            Err(_) => lsm.create_cf(META_CF).await?,
        };
        let mut cfs = HashMap::new();
        for name in &cfg.cfs {
            let cf = match lsm.cf(name) {
                Ok(cf) => cf,
                Err(_) => lsm.create_cf(name).await?,
            };
            cfs.insert(name.clone(), cf);
        }
        let round =
            lsm.recovered_marker().and_then(|m| <[u8; 8]>::try_from(m).ok()).map_or(0, u64::from_le_bytes);
        let snap = SnapState::open(&fs, &dir).await?;
        let mut shard = Self {
            store_id,
            id,
            cfg,
            fs,
            wal,
            lsm,
            cfs,
            meta_cf,
            peers: BTreeMap::new(),
            tombstones: HashMap::new(),
            touched: BTreeSet::new(),
            awake: BTreeSet::new(),
            router,
            clock: 0,
            round,
            wal_extra: LogBatch::new(),
            lazy_hard_states: BTreeMap::new(),
            fatal: None,
            wal_deferred: VecDeque::new(),
            out: BTreeMap::new(),
            forward: Vec::new(),
            pd: Vec::new(),
            reads: Vec::new(),
            split_waiters: HashMap::new(),
            next_token: 1,
            snap,
            last_heard: HashMap::new(),
            known_addrs: BTreeSet::new(),
            split_checks: BTreeSet::new(),
            stats: ShardStats::default(),
        };
        shard.recover_peers().await?;
        Ok(shard)
    }

    async fn recover_peers(&mut self) -> Result<()> {
        let mut it = self.lsm.iter(self.meta_cf, IterOptions::default())?;
        it.seek_to_first().await?;
        let mut states = Vec::new();
        while it.valid() {
            if let Some(region) = parse_state_key(it.key()) {
                let st = PeerState::decode(it.value())
                    .map_err(|e| Error::Corruption(format!("state of {region} on {}: {e}", self.id)))?;
                states.push(st);
            }
            it.next().await?;
        }
        for st in states {
            if st.tombstone {
                self.router.tombstone(st.region.id, st.peer_id, st.region.epoch);
                self.tombstones.insert(st.region.id, st);
                continue;
            }
            let region = st.region.id;
            let (hs, entries) = self.load_log(&st).await?;
            if self.wal.first_index(region).is_some_and(|first| first <= st.apply.truncated_index) {
                // The WAL still holds entries the applied state truncated: a
                // crash came between a snapshot's ingest (or a log GC's
                // flush) and the WAL write dropping them. Drop them now, or
                // the next append, past the truncated index, leaves a gap.
                self.wal_extra.compact(region, st.apply.truncated_index + 1);
            }
            let peer = Peer::new(&self.cfg, self.store_id, st, hs, entries, self.clock)?;
            self.router.register(region, self.id);
            if peer.is_initialized() {
                self.router.set_range(peer.region());
            }
            self.peers.insert(region, peer);
            self.touched.insert(region);
        }
        // A raft log in the WAL without a peer holds the vote of an
        // uninitialized peer, or the entries of a new region whose split
        // replays: the region stays on this shard, so that the peer made
        // again (by a message or the split) finds them.
        for region in self.wal.regions() {
            if !self.peers.contains_key(&region)
                && !self.tombstones.contains_key(&region)
                && self.router.owner(region).is_none()
            {
                self.router.register(region, self.id);
            }
        }
        Ok(())
    }

    /// The hard state and the entries above the truncated index from the WAL.
    pub(crate) async fn load_log(&self, st: &PeerState) -> Result<(HardState, VecDeque<Entry>)> {
        let region = st.region.id;
        let a = st.apply;
        let mut hs = hard_state(a.truncated_term, 0, a.applied_index);
        if let Some(w) = self.wal.hard_state(region) {
            hs.term = hs.term.max(w.term);
            hs.vote = w.vote;
            hs.commit = hs.commit.max(w.commit);
        }
        let mut entries = VecDeque::new();
        if let (Some(first), Some(last)) = (self.wal.first_index(region), self.wal.last_index(region)) {
            let lo = first.max(a.truncated_index + 1);
            if lo <= last {
                if first > a.truncated_index + 1 {
                    // The log lost entries the LSM has not applied: this
                    // replica cannot recover alone.
                    return Err(Error::Corruption(format!(
                        "{region}: WAL starts at {first}, applied state needs {}",
                        a.truncated_index + 1
                    )));
                }
                for e in self.wal.entries(region, lo, last + 1, u64::MAX).await? {
                    entries.push_back(to_raft_entry(e));
                }
            }
        }
        // The WAL's commit may point past entries it no longer holds after
        // a crash lost a torn tail; raft must not see commit > last.
        let last = a.truncated_index + entries.len() as u64;
        hs.commit = hs.commit.min(last.max(a.applied_index));
        Ok((hs, entries))
    }

    /// Creates the first replica of `region` on this shard with the region's
    /// data empty (cluster bootstrap, or a test). The region lists its
    /// replicas; every store in it must be bootstrapped the same way.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the region has no replica here or already
    /// exists; storage failures.
    pub async fn bootstrap_region(&mut self, region: Region) -> Result<()> {
        self.bootstrap_regions(vec![region]).await
    }

    /// [`Shard::bootstrap_region`] for many regions with one durable write.
    ///
    /// # Errors
    /// As [`Shard::bootstrap_region`]; nothing is created when any region is refused.
    pub async fn bootstrap_regions(&mut self, regions: Vec<Region>) -> Result<()> {
        let mut states = Vec::with_capacity(regions.len());
        let mut batch = WriteBatch::new();
        for region in regions {
            let Some(me) = region.peer_on(self.store_id) else {
                return Err(Error::BadRequest(format!("{} has no replica on {}", region.id, self.store_id)));
            };
            if self.peers.contains_key(&region.id) || self.router.owner(region.id).is_some() {
                return Err(Error::BadRequest(format!("{} already exists", region.id)));
            }
            let st = PeerState {
                peer_id: me.id,
                conf_state: ConfState {
                    voters: region.peers.iter().map(|p| p.id.get()).collect(),
                    ..Default::default()
                },
                region,
                tombstone: false,
                apply: ApplyState::initial(),
            };
            batch.put(self.meta_cf, &state_key(st.region.id), &st.encode());
            states.push(st);
        }
        self.lsm.write(batch).await?;
        // Bootstrap is rare: make it durable now rather than replay it.
        self.lsm.flush().await?;
        for st in states {
            self.add_peer(st, hard_state(INIT_TERM, 0, INIT_INDEX), VecDeque::new())?;
        }
        Ok(())
    }

    pub(crate) fn add_peer(&mut self, st: PeerState, hs: HardState, entries: VecDeque<Entry>) -> Result<()> {
        let region = st.region.id;
        let peer = Peer::new(&self.cfg, self.store_id, st, hs, entries, self.clock)?;
        self.router.register(region, self.id);
        if peer.is_initialized() {
            self.router.set_range(peer.region());
        }
        self.tombstones.remove(&region);
        self.peers.insert(region, peer);
        self.touched.insert(region);
        Ok(())
    }

    /// The LSM tree (read tasks run against it).
    pub fn lsm(&self) -> &Lsm<F> {
        &self.lsm
    }

    /// The WAL.
    pub fn wal(&self) -> &Wal<F> {
        &self.wal
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Logical time (ticks since open).
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Counters, with the WAL's and the LSM tree's.
    pub fn stats(&self) -> ShardStats {
        ShardStats { wal: self.wal.stats(), lsm: self.lsm.stats(), ..self.stats.clone() }
    }

    /// Number of peers, and how many of them hibernate.
    pub fn peer_counts(&self) -> (usize, usize) {
        (self.peers.len(), self.peers.values().filter(|p| p.hibernating).count())
    }

    /// Status of every peer.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|p| PeerStatus {
                region: p.region().clone(),
                peer: p.meta,
                is_leader: p.is_leader(),
                leader: p.leader(),
                applied_index: p.applied_index(),
                term: p.raft.raft.term,
                hibernating: p.hibernating,
                first_index: p.raft.store().first(),
                initialized: p.is_initialized(),
                learners: p.state().conf_state.learners.iter().map(|id| PeerId(*id)).collect(),
            })
            .collect()
    }

    /// Regions removed from this shard (tombstones).
    pub fn tombstones(&self) -> Vec<RegionId> {
        let mut v: Vec<RegionId> = self.tombstones.keys().copied().collect();
        v.sort();
        v
    }

    /// True when a round has work.
    pub fn has_ready(&self) -> bool {
        !self.touched.is_empty() || self.snap.has_work()
    }

    // ----- inputs -----

    /// Wraps raft messages of region `id` in envelopes for their stores.
    pub(crate) fn envelopes(&mut self, id: RegionId, msgs: Vec<PeerMsgTo>) -> Vec<(ShardAddr, StoreMsg)> {
        let Some(peer) = self.peers.get(&id) else { return Vec::new() };
        let mut out = Vec::with_capacity(msgs.len());
        // One copy of the range per call; the envelopes share it.
        let (start_key, end_key) = range_bytes(peer.region());
        for (to, msg) in msgs {
            let Some(addr) = peer.addr_of(to) else { continue };
            let to = PeerMeta { id: to, store_id: addr.store };
            out.push((
                addr,
                StoreMsg::Peer(RaftEnvelope {
                    region_id: id,
                    from: peer.meta,
                    from_shard: self.id,
                    to,
                    epoch: peer.region().epoch,
                    start_key: start_key.clone(),
                    end_key: end_key.clone(),
                    msg,
                }),
            ));
        }
        out
    }

    pub(crate) fn queue_out(&mut self, msgs: Vec<(ShardAddr, StoreMsg)>) {
        for (addr, m) in msgs {
            self.stats.messages_sent += 1;
            if addr.store != self.store_id {
                self.known_addrs.insert(addr);
            }
            self.out.entry(addr).or_default().push(m);
        }
    }

    pub(crate) fn send_raft(&mut self, id: RegionId, msgs: Vec<raft::eraftpb::Message>) {
        if msgs.is_empty() {
            return;
        }
        let mut plain = Vec::with_capacity(msgs.len());
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.queue_snapshot(id, m);
            } else {
                plain.push((ekv_proto::PeerId(m.to), PeerMsg::Raft(Box::new(m))));
            }
        }
        let env = self.envelopes(id, plain);
        self.queue_out(env);
    }

    // ----- the round -----

    /// Runs one round over every peer touched since the last one.
    ///
    /// # Errors
    /// Storage failures; the shard must stop (fail-stop).
    pub async fn handle_ready(&mut self) -> Result<()> {
        self.round(None).await
    }

    /// [`Shard::handle_ready`], handing the messages that may leave before
    /// the WAL sync (a leader's appends, raft allows it) to `transport` just
    /// before the sync, so that followers write their logs while the leader
    /// writes its own. The rest go out through [`Shard::flush_io`].
    ///
    /// # Errors
    /// As [`Shard::handle_ready`].
    pub async fn handle_ready_sending(&mut self, transport: &mut dyn Transport) -> Result<()> {
        self.round(Some(transport)).await
    }

    async fn round(&mut self, early: Option<&mut dyn Transport>) -> Result<()> {
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        self.round += 1;
        self.stats.rounds += 1;
        self.receive_snapshot_chunks().await?;
        let touched = std::mem::take(&mut self.touched);
        let mut wal_batch = std::mem::take(&mut self.wal_extra);
        // A round's writes can outgrow one WAL record (many followers
        // catching up at once): full parts are written first, in order, and
        // the last part carries the hard states. Half a record per part
        // leaves room for those.
        let part_limit = (self.wal.options().max_payload() / 2) as usize;
        let mut wal_parts: Vec<LogBatch> = Vec::new();
        let mut readies = Vec::new();
        let mut to_apply: BTreeMap<RegionId, Vec<Entry>> = BTreeMap::new();
        for id in &touched {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            peer.flush_reads(self.clock);
            if !peer.raft.has_ready() {
                continue;
            }
            let mut rd = peer.raft.ready();
            let must_sync = rd.must_sync();
            if let Some(ss) = rd.ss() {
                if ss.raft_state != StateRole::Leader {
                    peer.on_lost_leadership();
                } else {
                    peer.lease_until = 0;
                }
            }
            let msgs = rd.take_messages();
            self.send_raft(*id, msgs);
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                self.apply_snapshot(*id, &snap, &mut wal_batch).await?;
            }
            let peer = self.peers.get_mut(id).expect("present");
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.entry(*id).or_default().extend(committed);
            }
            if !rd.entries().is_empty() {
                let ents = rd.take_entries();
                self.stats.appended_entries += ents.len() as u64;
                split_into_parts(&mut wal_batch, &mut wal_parts, part_limit, *id, &ents);
                peer.raft.mut_store().append(&ents);
            }
            if let Some(hs) = rd.hs() {
                let state = ekv_wal::HardState { term: hs.term, vote: hs.vote, commit: hs.commit };
                if must_sync {
                    wal_batch.put_hard_state(*id, state);
                    self.lazy_hard_states.remove(id);
                } else {
                    // Only the commit index moved: it need not be durable
                    // (a restart learns it again from the leader, and never
                    // goes below the applied index), so it rides on the next
                    // write instead of costing an fdatasync of its own.
                    self.lazy_hard_states.insert(*id, state);
                }
                peer.raft.mut_store().hard_state = hs.clone();
            }
            if !rd.read_states().is_empty() {
                let states = rd.take_read_states();
                peer.on_read_states(states, self.cfg.lease_ticks);
            }
            let snap_index = (!rd.snapshot().is_empty()).then(|| rd.snapshot().get_metadata().index);
            readies.push((*id, rd, snap_index));
        }
        if let Some(t) = early {
            for (addr, msgs) in std::mem::take(&mut self.out) {
                t.send(addr, msgs);
            }
        }
        if !wal_batch.is_empty() || !wal_parts.is_empty() {
            for (id, hs) in std::mem::take(&mut self.lazy_hard_states) {
                if self.peers.contains_key(&id) {
                    wal_batch.put_hard_state(id, hs);
                }
            }
            for mut part in wal_parts {
                self.wal.write(&mut part).await?;
                self.stats.wal_writes += 1;
            }
            self.wal.write(&mut wal_batch).await?;
            crash_point!("engine::round::after_wal_sync");
            self.stats.wal_writes += 1;
        }
        for (id, mut rd, snap_index) in readies {
            let persisted = rd.take_persisted_messages();
            self.send_raft(id, persisted);
            let peer = self.peers.get_mut(&id).expect("present");
            let mut light = peer.raft.advance_append(rd);
            if let Some(index) = snap_index {
                // The snapshot's entries are applied by the ingest.
                peer.raft.advance_apply_to(index);
            }
            if let Some(c) = light.commit_index() {
                peer.raft.mut_store().hard_state.commit = c;
            }
            let committed = light.take_committed_entries();
            let msgs = light.take_messages();
            if !committed.is_empty() {
                to_apply.entry(id).or_default().extend(committed);
            }
            self.send_raft(id, msgs);
        }
        self.apply(to_apply).await?;
        for id in &touched {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            let servable = peer.take_servable();
            if !servable.is_empty() {
                self.stats.read_index_reads += servable.len() as u64;
                let (start, end) = (peer.region().start_key.clone(), peer.region().end_key.clone());
                for read in servable {
                    self.reads.push(ReadTask {
                        snapshot: self.lsm.snapshot(),
                        read,
                        start: start.clone(),
                        end: end.clone(),
                        flow: peer.read_flow.clone(),
                    });
                }
            }
            if peer.pending_destroy {
                self.destroy_peer(*id).await?;
                continue;
            }
            if peer.raft.has_ready() {
                self.touched.insert(*id);
            }
        }
        for id in &touched {
            match self.peers.get(id) {
                Some(p) if !p.hibernating => self.awake.insert(*id),
                _ => self.awake.remove(id),
            };
        }
        self.release_wal_work();
        self.run_split_checks().await?;
        self.generate_snapshots(&touched).await?;
        self.pump_snapshots().await?;
        Ok(())
    }

    async fn apply(&mut self, to_apply: BTreeMap<RegionId, Vec<Entry>>) -> Result<()> {
        if to_apply.is_empty() {
            return Ok(());
        }
        let mut ctx = ApplyCtx {
            lsm: self.lsm.clone(),
            batch: WriteBatch::new(),
            cfs: self.cfs.clone(),
            meta_cf: self.meta_cf,
            lease_ticks: self.cfg.lease_ticks,
            answers: Vec::new(),
            effects: Vec::new(),
            applied: 0,
            router: self.router.clone(),
            shard: self.id,
        };
        let mut applied_peers = Vec::with_capacity(to_apply.len());
        for (id, entries) in to_apply {
            let Some(mut peer) = self.peers.remove(&id) else { continue };
            let r = peer.apply_entries(entries, &mut ctx, &self.peers).await;
            self.peers.insert(id, peer);
            r?;
            applied_peers.push(id);
        }
        ctx.batch.set_marker(self.round.to_le_bytes().to_vec());
        self.lsm.write(std::mem::take(&mut ctx.batch)).await?;
        self.stats.apply_batches += 1;
        self.stats.applied_entries += ctx.applied;
        for id in applied_peers {
            if let Some(peer) = self.peers.get_mut(&id) {
                let applied = peer.applied_index();
                peer.raft.advance_apply_to(applied);
                if peer.raft.has_ready() {
                    self.touched.insert(id);
                }
            }
        }
        for (cb, r) in ctx.answers {
            cb(r);
        }
        for effect in ctx.effects {
            match effect {
                Effect::Split { parent, created } => self.on_split_applied(parent, created).await?,
                Effect::CompactWal { region, to } => {
                    self.wal_deferred.push_back((self.round, region, WalOp::Compact(to)));
                }
            }
        }
        Ok(())
    }

    /// Moves WAL compactions and removals whose LSM state is durable into
    /// the next WAL write; flushes the LSM when the WAL grows long waiting.
    pub(crate) fn release_wal_work(&mut self) {
        if self.wal_deferred.is_empty() {
            return;
        }
        let durable = self
            .lsm
            .durable_marker()
            .and_then(|m| <[u8; 8]>::try_from(m.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        while let Some((round, region, op)) = self.wal_deferred.front().copied() {
            if round > durable {
                break;
            }
            self.wal_deferred.pop_front();
            match op {
                WalOp::Compact(to) => {
                    if self.peers.contains_key(&region) {
                        self.wal_extra.compact(region, to);
                    }
                }
                WalOp::Remove => {
                    if !self.peers.contains_key(&region) {
                        self.wal_extra.remove(region);
                    }
                }
            }
        }
    }

    /// Runs WAL segment recycling and, when compactions wait on an LSM
    /// flush for too long, the flush. Call between rounds, off the hot path.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn maintain(&mut self) -> Result<()> {
        if self.wal.needs_maintenance() {
            self.wal.maintain().await?;
        }
        if let Some((round, _, _)) = self.wal_deferred.front() {
            let segments = self.wal.stats().segments;
            if segments > 4 && *round + 1000 < self.round {
                self.lsm.flush().await?;
            }
        }
        Ok(())
    }

    /// Flushes the LSM so that every applied state is durable and the WAL
    /// can drop what it no longer needs.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn flush(&mut self) -> Result<()> {
        self.lsm.flush().await?;
        self.release_wal_work();
        Ok(())
    }

    // ----- outputs -----

    /// Hands this round's messages to `transport` (one call per
    /// destination) and its requests to `pd`.
    pub fn flush_io(&mut self, transport: &mut dyn Transport, pd: &mut dyn PdClient) {
        for (addr, msgs) in std::mem::take(&mut self.out) {
            transport.send(addr, msgs);
        }
        for task in self.pd.drain(..) {
            match task {
                PdTask::AskSplit { region, count, token } => pd.ask_batch_split(&region, count, token),
                PdTask::ReportSplit(regions) => pd.report_batch_split(&regions),
                PdTask::RegionHeartbeat(hb) => pd.region_heartbeat(hb),
                PdTask::StoreHeartbeat(hb) => pd.store_heartbeat(hb),
            }
        }
    }

    /// Reads ready to run (see [`ReadTask::run`]).
    pub fn take_reads(&mut self) -> Vec<ReadTask> {
        std::mem::take(&mut self.reads)
    }

    /// Messages for other shards of this store.
    pub fn take_forwards(&mut self) -> Vec<(ShardId, StoreMsg)> {
        std::mem::take(&mut self.forward)
    }

    /// Stops the shard: fails waiting commands (their outcome is unknown),
    /// flushes the LSM, closes WAL and LSM.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn close(mut self) -> Result<()> {
        for (id, peer) in self.peers.iter_mut() {
            let id = *id;
            peer.fail_all(|| Error::Unknown { region: id, why: "shard stopped" });
        }
        for (_, w) in self.split_waiters.drain() {
            (w.cb)(Err(Error::Stopped));
        }
        self.lsm.flush().await?;
        self.release_wal_work();
        for (id, hs) in std::mem::take(&mut self.lazy_hard_states) {
            if self.peers.contains_key(&id) {
                self.wal_extra.put_hard_state(id, hs);
            }
        }
        if !self.wal_extra.is_empty() {
            self.wal.write(&mut self.wal_extra).await?;
        }
        self.wal.close().await?;
        self.lsm.close().await?;
        Ok(())
    }
}

/// A message for one peer of a region.
pub(crate) type PeerMsgTo = (ekv_proto::PeerId, PeerMsg);

/// `region`'s range as carried in messages.
pub(crate) fn range_bytes(region: &Region) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(&region.start_key), Bytes::copy_from_slice(&region.end_key))
}

pub(crate) fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..Default::default() }
}

/// Adds `ents` of `region` to `batch`, moving `batch` to `parts` whenever the
/// next entry would take it past `limit` bytes. One entry never exceeds a
/// part on its own: [`Config::command_limit`] keeps commands within half a
/// segment.
fn split_into_parts(
    batch: &mut LogBatch,
    parts: &mut Vec<LogBatch>,
    limit: usize,
    region: RegionId,
    ents: &[Entry],
) {
    let mut chunk = Vec::new();
    let mut chunk_len = 0;
    for e in ents {
        let w = to_wal_entry(e);
        let len = w.encoded_len();
        if batch.encoded_len() + chunk_len + len > limit && (chunk_len > 0 || !batch.is_empty()) {
            batch.add_entries(region, std::mem::take(&mut chunk));
            chunk_len = 0;
            parts.push(std::mem::take(batch));
        }
        chunk_len += len;
        chunk.push(w);
    }
    batch.add_entries(region, chunk);
}

fn to_wal_entry(e: &Entry) -> ekv_wal::Entry {
    ekv_wal::Entry {
        index: e.index,
        term: e.term,
        entry_type: match e.get_entry_type() {
            EntryType::EntryNormal => ekv_wal::EntryType::Normal,
            EntryType::EntryConfChange => ekv_wal::EntryType::ConfChange,
            EntryType::EntryConfChangeV2 => ekv_wal::EntryType::ConfChangeV2,
        },
        data: e.data.clone(),
        context: e.context.clone(),
    }
}

fn to_raft_entry(e: ekv_wal::Entry) -> Entry {
    let mut out =
        Entry { index: e.index, term: e.term, data: e.data, context: e.context, ..Default::default() };
    out.set_entry_type(match e.entry_type {
        ekv_wal::EntryType::Normal => EntryType::EntryNormal,
        ekv_wal::EntryType::ConfChange => EntryType::EntryConfChange,
        ekv_wal::EntryType::ConfChangeV2 => EntryType::EntryConfChangeV2,
    });
    out
}
