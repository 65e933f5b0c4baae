//! Periodic work of a peer: log GC, heartbeats to the meta service, and
//! hibernation of idle regions.
//!
//! Hibernation: a leader whose region saw no command for
//! `hibernate_after_ticks`, with every follower holding its whole log and
//! everything applied, tells its followers and stops ticking; followers
//! with the same log stop too. Any command or non-heartbeat message wakes
//! a peer. A hibernating follower also wakes when its leader's store goes
//! silent (stores probe each other once per `store_probe_ticks`, one message
//! per pair of shards however many regions they share), so that a dead
//! leader is replaced.

use ekv_proto::msg::DownPeer;
use ekv_proto::{PeerId, StoreId};

use crate::peer::Peer;
use crate::raft::cmd::{CmdHeader, EntryCmd};
use crate::router::PeerMsg;
use crate::router::StoreMsg;
use crate::shard::PdTask;
use crate::shard::PeerMsgTo;
use crate::transport::RegionHeartbeat;
use crate::transport::StoreHeartbeat;
use crate::{Config, Error};

impl Peer {
    /// Leadership moved away: waiting reads cannot be served here.
    pub(crate) fn on_lost_leadership(&mut self) {
        self.lease_until = 0;
        self.reported_epoch = None;
        let region = self.region_id();
        let leader = self.leader();
        self.reads.fail_all(&|| Error::NotLeader { region, leader });
    }

    /// On the leader: proposes a log truncation when enough is applied.
    pub(crate) fn maybe_compact_log(&mut self, cfg: &Config) {
        let st = self.raft.store();
        let applied = st.state.apply.applied_index;
        let truncated = st.state.apply.truncated_index;
        if applied <= truncated + cfg.raft_log_gc_threshold {
            return;
        }
        let replicated = self.raft.raft.prs().iter().map(|(_, p)| p.matched).min().unwrap_or(applied);
        let forced = applied - truncated > cfg.raft_log_gc_count_limit
            || st.entries_bytes() > cfg.raft_log_gc_size_limit;
        let to = if forced { applied } else { replicated.min(applied) };
        if to <= truncated + cfg.raft_log_gc_threshold / 2 && !forced {
            return;
        }
        let Ok(term) = raft::Storage::term(st, to) else { return };
        let h = CmdHeader { region_id: self.region_id(), epoch: self.region().epoch };
        let data = EntryCmd::CompactLog { index: to, term }.encode(&h);
        let _ = self.raft.propose(vec![], data);
    }

    /// Followers behind the leader's applied index.
    pub(crate) fn pending_count(&self) -> usize {
        let applied = self.applied_index();
        let me = self.meta.id.get();
        self.raft.raft.prs().iter().filter(|(id, pr)| **id != me && pr.matched < applied).count()
    }

    /// The leader's report for the meta service; resets the load counters.
    pub(crate) fn heartbeat(&mut self, now: u64, cfg: &Config) -> RegionHeartbeat {
        let applied = self.applied_index();
        let mut pending = Vec::new();
        let mut down = Vec::new();
        for (id, pr) in self.raft.raft.prs().iter() {
            let Some(meta) = self.region().peer(PeerId(*id)) else { continue };
            if *id == self.meta.id.get() {
                continue;
            }
            if pr.matched < applied {
                pending.push(meta);
            }
            // Down: silent for two election timeouts (raft-rs's own
            // `recent_active` is reset at every quorum check, too often to tell).
            let heard = *self.peer_heard.entry(PeerId(*id)).or_insert(now);
            let silent = now.saturating_sub(heard);
            if silent > 2 * cfg.election_ticks as u64 {
                down.push(DownPeer { peer: meta, down_seconds: down_seconds(silent, cfg) });
            }
        }
        let learners = &self.state().conf_state.learners;
        let learners =
            self.region().peers.iter().filter(|p| learners.contains(&p.id.get())).copied().collect();
        self.reported_pending = pending.len();
        let flow = std::mem::take(&mut self.flow);
        let (read_bytes, read_keys) = self.read_flow.take();
        RegionHeartbeat {
            region: self.region().clone(),
            leader: self.meta,
            pending_peers: pending,
            down_peers: down,
            learners,
            approximate_size: self.approx_size,
            approximate_keys: self.approx_keys,
            written_bytes: flow.written_bytes,
            written_keys: flow.written_keys,
            read_bytes,
            read_keys,
        }
    }

    /// True when the leader's region is settled: nothing waits, every
    /// replica holds the whole log, everything is applied.
    fn settled(&self) -> bool {
        let r = &self.raft.raft;
        let last = r.raft_log.last_index();
        self.proposals.is_empty()
            && self.reads.is_empty()
            && r.raft_log.committed == last
            && self.applied_index() == last
            && r.lead_transferee.is_none()
            && self.state().conf_state.voters_outgoing.is_empty()
            && r.prs().iter().all(|(_, p)| p.matched == last)
    }

    /// On the leader: stops ticking when idle and settled, returning the
    /// messages that put the followers to sleep.
    pub(crate) fn maybe_hibernate_leader(&mut self, now: u64, cfg: &Config) -> Option<Vec<PeerMsgTo>> {
        if cfg.hibernate_after_ticks == 0
            || now < self.last_active + cfg.hibernate_after_ticks
            || !self.settled()
        {
            return None;
        }
        self.hibernating = true;
        self.lease_until = 0;
        let term = self.raft.raft.term;
        let last_index = self.raft.raft.raft_log.last_index();
        let me = self.meta.id;
        Some(
            self.region()
                .peers
                .iter()
                .filter(|p| p.id != me)
                .map(|p| (p.id, PeerMsg::Hibernate { term, last_index }))
                .collect(),
        )
    }

    /// On a follower: follows its leader to sleep when it holds the same log.
    pub(crate) fn maybe_hibernate_follower(&mut self, from: PeerId, term: u64, last_index: u64) {
        let r = &self.raft.raft;
        if r.leader_id == from.get()
            && r.term == term
            && r.raft_log.last_index() == last_index
            && r.raft_log.committed == last_index
            && self.applied_index() == last_index
            && self.proposals.is_empty()
            && self.reads.is_empty()
        {
            self.hibernating = true;
        }
    }
}

impl<F: crate::Fs> crate::shard::Shard<F> {
    /// Advances logical time by `ticks` without ticking raft: a shell that
    /// fell behind its timer (a long pause) catches up the clock this way, so
    /// that leases, which are measured on this clock, expire in real time.
    pub fn skip_time(&mut self, ticks: u64) {
        self.clock += ticks;
    }

    /// Advances logical time by one tick: ticks every awake peer, and runs
    /// the periodic work that is due.
    pub fn tick(&mut self) {
        self.clock += 1;
        let now = self.clock;
        let cfg = self.cfg.clone();
        let mut hibernated = Vec::new();
        for id in &self.awake {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            if peer.hibernating {
                continue;
            }
            self.stats.peer_ticks += 1;
            peer.raft.tick();
            self.touched.insert(*id);
            if peer.is_leader() {
                peer.retry_reads(now, cfg.election_ticks as u64);
                if now >= peer.last_gc + cfg.raft_log_gc_ticks {
                    peer.last_gc = now;
                    peer.maybe_compact_log(&cfg);
                }
                if now >= peer.last_split_check + cfg.split_check_ticks {
                    peer.last_split_check = now;
                    if !peer.split_asked
                        && (peer.approx_size > cfg.region_split_size
                            || peer.approx_keys > cfg.region_split_keys)
                    {
                        self.split_checks.insert(*id);
                    }
                }
                let epoch = peer.region().epoch;
                let caught_up = peer.reported_pending > 0 && peer.pending_count() < peer.reported_pending;
                if now >= peer.last_heartbeat + cfg.pd_heartbeat_ticks
                    || peer.reported_epoch != Some(epoch)
                    || caught_up
                {
                    peer.last_heartbeat = now;
                    peer.reported_epoch = Some(epoch);
                    self.pd.push(PdTask::RegionHeartbeat(peer.heartbeat(now, &cfg)));
                }
                if let Some(msgs) = peer.maybe_hibernate_leader(now, &cfg) {
                    hibernated.push((*id, msgs));
                }
            }
        }
        for (id, msgs) in hibernated {
            let env = self.envelopes(id, msgs);
            self.queue_out(env);
        }
        if now % cfg.store_probe_ticks == 0 {
            self.probe_and_wake(now);
        }
        if now % cfg.pd_heartbeat_ticks == 0 {
            self.heartbeat_hibernating(now);
        }
        if now % cfg.pd_store_heartbeat_ticks == 0 {
            let leaders = self.peers.values().filter(|p| p.is_leader()).count() as u64;
            // Capacity is the file system's, which the shell knows: it
            // fills it in. This shard's share of the store's usage is its
            // tables and its WAL segments.
            let wal = self.wal.stats();
            let used = self.lsm.stats().levels.iter().map(|l| l.bytes).sum::<u64>()
                + (wal.segments + wal.spare_segments) as u64 * self.cfg.wal_segment_bytes;
            self.pd.push(PdTask::StoreHeartbeat(StoreHeartbeat {
                store_id: self.store_id,
                region_count: self.peers.len() as u64,
                leader_count: leaders,
                commands: self.stats.proposals,
                used,
                ..Default::default()
            }));
        }
    }

    /// Hibernating leaders still report to the meta service (it schedules
    /// on their heartbeats), at the heartbeat interval, in one sweep. Their
    /// followers are silent by design, so a replica counts as down only
    /// when its store is.
    fn heartbeat_hibernating(&mut self, now: u64) {
        let silent_after = 2 * self.cfg.election_ticks as u64;
        let cfg = self.cfg.clone();
        for peer in self.peers.values_mut() {
            if !peer.hibernating || !peer.is_leader() {
                continue;
            }
            peer.last_heartbeat = now;
            peer.reported_epoch = Some(peer.region().epoch);
            let mut hb = peer.heartbeat(now, &cfg);
            hb.down_peers = hb
                .region
                .peers
                .iter()
                .filter(|p| p.store_id != self.store_id)
                .filter_map(|p| {
                    // Never heard from since this shard started: as long.
                    let silent = self.last_heard.get(&p.store_id).map_or(now, |t| now.saturating_sub(*t));
                    (silent > silent_after)
                        .then(|| DownPeer { peer: *p, down_seconds: down_seconds(silent, &cfg) })
                })
                .collect();
            self.pd.push(PdTask::RegionHeartbeat(hb));
        }
    }

    pub(crate) fn probe_and_wake(&mut self, now: u64) {
        for addr in &self.known_addrs {
            self.out.entry(*addr).or_default().push(StoreMsg::Probe { from: self.store_id });
        }
        let silent_after = 2 * self.cfg.election_ticks as u64;
        let last_heard = &self.last_heard;
        let any_silent = self.known_addrs.iter().any(|a| {
            a.store != self.store_id
                && last_heard.get(&a.store).is_none_or(|t| now.saturating_sub(*t) > silent_after)
        });
        if !any_silent {
            return;
        }
        for (id, peer) in self.peers.iter_mut() {
            if !peer.hibernating {
                continue;
            }
            let leader_store = peer.leader().map(|l| l.store_id);
            let store_silent =
                |s: &StoreId| last_heard.get(s).is_none_or(|t| now.saturating_sub(*t) > silent_after);
            let silent = match leader_store {
                // A leader wakes when a replica's store went silent, so
                // that it reports the replica down and raft notices.
                Some(s) if s == self.store_id => peer
                    .region()
                    .peers
                    .iter()
                    .any(|p| p.store_id != self.store_id && store_silent(&p.store_id)),
                Some(s) => last_heard.get(&s).is_none_or(|t| now.saturating_sub(*t) > silent_after),
                None => true,
            };
            if silent {
                peer.hibernating = false;
                peer.last_active = now;
                self.touched.insert(*id);
            }
        }
    }
}

/// Whole seconds in `ticks` of logical time.
fn down_seconds(ticks: u64, cfg: &Config) -> u64 {
    let ms = u64::try_from(cfg.tick_interval.as_millis()).unwrap_or(u64::MAX);
    ticks.saturating_mul(ms) / 1000
}
