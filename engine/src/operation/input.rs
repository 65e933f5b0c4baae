//! Inputs of a shard: client commands, messages from other stores (with
//! routing to the owning shard and creation of new peers), meta-service
//! answers.

use std::collections::VecDeque;

use bytes::Bytes;
use ekv_proto::{Region, RegionId};
use raft::eraftpb::{HardState, MessageType};

use crate::operation::read::{PendingRead, ReadTask};
use crate::raft::cmd::{CmdHeader, EntryCmd};
use crate::raft::state::PeerState;
use crate::router::{Callback, Command, PeerMsg, RaftEnvelope, Request, Response, ShardAddr, StoreMsg};
use crate::shard::{hard_state, noop_cb, PdTask, Shard, SplitWaiter};
use crate::transport::{Operator, SplitIds};
use crate::{Error, Fs, Result};

impl<F: Fs> Shard<F> {
    /// A client command. The callback is called exactly once, possibly
    /// during this call (refusals), otherwise in a later round.
    pub fn on_command(&mut self, req: Request, cb: Callback) {
        let now = self.clock;
        let region_id = req.region_id;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return cb(Err(Error::RegionNotFound(region_id)));
        };
        if peer.hibernating {
            peer.hibernating = false;
        }
        peer.last_active = now;
        self.touched.insert(region_id);
        let h = match peer.admit(&req) {
            Ok(h) => h,
            Err(e) => return cb(Err(e)),
        };
        let cfg = self.cfg.clone();
        let refused = match req.cmd {
            Command::Write(ops) => peer.propose_write(h, ops, cb, now, &cfg),
            Command::Cas { cf, key, expected, new } => {
                if !self.cfs.contains_key(&cf) {
                    return cb(Err(Error::BadRequest(format!("unknown column family {cf:?}"))));
                }
                peer.propose_cas(h, EntryCmd::Cas { cf, key, expected, new }, cb, now, &cfg)
            }
            cmd @ (Command::Get { .. } | Command::BatchGet { .. } | Command::Scan(_)) => {
                let (Command::Get { cf, .. }
                | Command::BatchGet { cf, .. }
                | Command::Scan(crate::router::Scan { cf, .. })) = &cmd
                else {
                    unreachable!("matched above")
                };
                let Some(cf) = self.cfs.get(cf).copied() else {
                    return cb(Err(Error::BadRequest(format!("unknown column family {cf:?}"))));
                };
                let keys: Vec<&[u8]> = match &cmd {
                    Command::Get { key, .. } => vec![key],
                    Command::BatchGet { keys, .. } => keys.iter().map(|k| k.as_ref()).collect(),
                    _ => vec![],
                };
                for k in keys {
                    if let Err(e) = crate::operation::apply::check_key(peer.region(), k) {
                        return cb(Err(e));
                    }
                }
                let read = PendingRead { cmd, cf, cb };
                if peer.lease_valid(now) {
                    self.stats.lease_reads += 1;
                    let region = peer.region();
                    self.reads.push(ReadTask {
                        snapshot: self.lsm.snapshot(),
                        start: region.start_key.clone(),
                        end: region.end_key.clone(),
                        read,
                        flow: peer.read_flow.clone(),
                    });
                } else {
                    peer.queue_read(read);
                }
                Ok(())
            }
            Command::TransferLeader { to } => {
                let r = peer.transfer_leader(to);
                cb(r.map(|_| Response::Done));
                Ok(())
            }
            Command::ChangePeers(changes) => peer.propose_conf_change(h, changes, cb, now),
            Command::Split { keys } => {
                if let Err(e) = crate::operation::apply::check_split_keys(peer.region(), &keys) {
                    return cb(Err(e));
                }
                self.ask_split(region_id, keys, cb);
                Ok(())
            }
        };
        match refused {
            Ok(()) => self.stats.proposals += 1,
            Err((cb, e)) => cb(Err(e)),
        }
    }

    pub(crate) fn ask_split(&mut self, region_id: RegionId, keys: Vec<Bytes>, cb: Callback) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return cb(Err(Error::RegionNotFound(region_id)));
        };
        peer.split_asked = true;
        let token = self.next_token;
        self.next_token += 1;
        self.pd.push(PdTask::AskSplit { region: peer.region().clone(), count: keys.len(), token });
        self.split_waiters.insert(token, SplitWaiter { region: region_id, keys, cb });
    }

    /// The meta service's answer to a split's id request.
    pub fn on_split_ids(&mut self, token: u64, ids: Result<Vec<SplitIds>>) {
        let Some(w) = self.split_waiters.remove(&token) else { return };
        let Some(peer) = self.peers.get_mut(&w.region) else {
            return (w.cb)(Err(Error::RegionNotFound(w.region)));
        };
        peer.split_asked = false;
        let ids = match ids {
            Ok(ids) => ids,
            Err(e) => return (w.cb)(Err(e)),
        };
        if !peer.is_leader() {
            return (w.cb)(Err(Error::NotLeader { region: w.region, leader: peer.leader() }));
        }
        let h = CmdHeader { region_id: w.region, epoch: peer.region().epoch };
        let now = self.clock;
        let cfg = self.cfg.clone();
        match peer.propose_split(h, w.keys, ids, w.cb, now, &cfg) {
            Ok(()) => {
                peer.split_asked = true;
                self.touched.insert(w.region);
            }
            Err((cb, e)) => cb(Err(e)),
        }
    }

    /// An operator from the meta service for `region`'s leader.
    pub fn on_operator(&mut self, region: RegionId, op: Operator) {
        let Some(peer) = self.peers.get(&region) else { return };
        if !peer.is_leader() {
            return;
        }
        let epoch = peer.region().epoch;
        let cmd = match op {
            Operator::AddPeer { peer, as_learner: true } => {
                Command::ChangePeers(vec![crate::router::PeerChange::AddLearner(peer)])
            }
            Operator::AddPeer { peer, as_learner: false } => {
                Command::ChangePeers(vec![crate::router::PeerChange::AddVoter(peer)])
            }
            Operator::RemovePeer(p) => Command::ChangePeers(vec![crate::router::PeerChange::Remove(p)]),
            Operator::ChangePeers(changes) => Command::ChangePeers(changes),
            Operator::TransferLeader(to) => Command::TransferLeader { to },
            Operator::Split(keys) if keys.is_empty() => {
                self.split_checks.insert(region);
                return;
            }
            Operator::Split(keys) => Command::Split { keys: keys.into_iter().map(Bytes::from).collect() },
        };
        self.on_command(Request { region_id: region, epoch, cmd }, noop_cb());
    }

    /// A message from another store (or forwarded by another shard).
    pub fn on_store_msg(&mut self, msg: StoreMsg) {
        let now = self.clock;
        match msg {
            StoreMsg::Probe { from } => {
                self.last_heard.insert(from, now);
            }
            StoreMsg::Peer(env) => {
                self.stats.messages_received += 1;
                self.last_heard.insert(env.from.store_id, now);
                if env.to.store_id != self.store_id {
                    return;
                }
                if !self.route_here(&env) {
                    return;
                }
                self.step_envelope(env);
            }
            StoreMsg::Snapshot(chunk) => {
                self.last_heard.insert(chunk.from.store_id, now);
                if chunk.to.store_id != self.store_id {
                    return;
                }
                let probe = RaftEnvelope {
                    region_id: chunk.region_id,
                    from: chunk.from,
                    from_shard: chunk.from_shard,
                    to: chunk.to,
                    epoch: chunk.epoch,
                    start_key: chunk.start_key.clone(),
                    end_key: chunk.end_key.clone(),
                    msg: PeerMsg::Raft(Box::default()),
                };
                if self.peers.contains_key(&chunk.region_id) || self.route_new(&probe, true) {
                    self.snap.incoming.push_back(chunk);
                } else if let Some(s) = self.router.owner(chunk.region_id).filter(|s| *s != self.id) {
                    self.forward.push((s, StoreMsg::Snapshot(chunk)));
                }
            }
        }
    }

    /// True when `env` is for a peer of this shard (created if need be);
    /// otherwise forwards or drops it.
    pub(crate) fn route_here(&mut self, env: &RaftEnvelope) -> bool {
        if self.peers.contains_key(&env.region_id) {
            return true;
        }
        let creates = matches!(&env.msg, PeerMsg::Raft(m) if matches!(
            m.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ));
        if self.route_new(env, creates) {
            return true;
        }
        if let Some(s) = self.router.owner(env.region_id).filter(|s| *s != self.id) {
            self.forward.push((s, StoreMsg::Peer(env.clone())));
        }
        false
    }

    /// For a region unknown here: creates an uninitialized peer when `env`
    /// may create one and the store places the region on this shard. The
    /// store's router decides for all shards under one lock
    /// ([`StoreRouter::place_new`](crate::StoreRouter::place_new)): never
    /// for a destroyed peer, nor while a local region on any shard still
    /// covers part of the sender's range (its split creates the peer).
    pub(crate) fn route_new(&mut self, env: &RaftEnvelope, creates: bool) -> bool {
        if let Some(owner) = self.router.owner(env.region_id) {
            // Another shard of this store may have placed the region here
            // and forwarded the message: then the peer is made here.
            if owner != self.id || self.peers.contains_key(&env.region_id) {
                return owner == self.id;
            }
            if !creates {
                return false;
            }
        } else {
            if !creates {
                return false;
            }
            let placed =
                self.router.place_new(env.region_id, env.to.id, env.epoch, &env.start_key, &env.end_key);
            match placed {
                Ok(s) if s == self.id => {}
                Ok(_) => return false,
                Err(why) => {
                    tracing::trace!(region = %env.region_id, ?why, "message creates no peer");
                    return false;
                }
            }
        }
        let st = PeerState {
            peer_id: env.to.id,
            region: Region { id: env.region_id, ..Default::default() },
            ..Default::default()
        };
        // A vote cast by an earlier incarnation of this peer is in the WAL.
        let hs = self
            .wal
            .hard_state(env.region_id)
            .map_or_else(HardState::default, |w| hard_state(w.term, w.vote, 0));
        match self.add_peer(st, hs, VecDeque::new()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(region = %env.region_id, error = %e, "cannot create peer");
                self.router.unregister(env.region_id);
                false
            }
        }
    }

    pub(crate) fn step_envelope(&mut self, env: RaftEnvelope) {
        let now = self.clock;
        let region_id = env.region_id;
        let Some(peer) = self.peers.get_mut(&region_id) else { return };
        if env.to.id != peer.meta.id {
            // A newer peer of the region on this store (peer ids only grow)
            // from a newer configuration: this one was removed while it
            // heard nothing (a learner never asks). It goes, so that the
            // next message creates the new peer.
            if env.to.id > peer.meta.id && env.epoch.conf_ver > peer.region().epoch.conf_ver {
                peer.pending_destroy = true;
                self.touched.insert(region_id);
            }
            return;
        }
        let from_addr = ShardAddr { store: env.from.store_id, shard: env.from_shard };
        peer.peer_addrs.insert(env.from.id, from_addr);
        peer.peer_heard.insert(env.from.id, now);
        self.known_addrs.insert(from_addr);
        match env.msg {
            PeerMsg::Raft(m) => {
                // Heartbeats and their answers neither count as traffic nor
                // wake a hibernating peer (answers still in flight when a
                // leader fell asleep would wake it at once); stepping them
                // needs no ticking.
                let quiet =
                    matches!(m.get_msg_type(), MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse);
                if !quiet {
                    peer.last_active = now;
                    peer.hibernating = false;
                }
                let from_member = peer.region().peer(env.from.id).is_some();
                if peer.is_leader()
                    && !from_member
                    && peer.is_initialized()
                    && env.epoch.conf_ver < peer.region().epoch.conf_ver
                {
                    // A removed peer that missed its removal: tell it.
                    let epoch = peer.region().epoch;
                    let (start_key, end_key) = crate::shard::range_bytes(peer.region());
                    let reply = RaftEnvelope {
                        region_id,
                        from: peer.meta,
                        from_shard: self.id,
                        to: env.from,
                        epoch,
                        start_key,
                        end_key,
                        msg: PeerMsg::Tombstone,
                    };
                    self.out.entry(from_addr).or_default().push(StoreMsg::Peer(reply));
                    return;
                }
                let last = peer.raft.raft.raft_log.last_index();
                if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > last {
                    // The leader only sends a commit index this peer
                    // acknowledged storing: a shorter log lost synced
                    // entries (a damaged or rolled-back WAL). Raft cannot
                    // go on from here; stop instead of voting or serving.
                    self.fatal = Some(Error::Corruption(format!(
                        "{region_id}: the leader counts entries up to {} as stored here, but the log ends at {last}; \
                         the WAL lost synced entries and this store must be rebuilt",
                        m.commit
                    )));
                    return;
                }
                let _ = peer.raft.step(*m);
            }
            PeerMsg::Hibernate { term, last_index } => {
                peer.maybe_hibernate_follower(env.from.id, term, last_index);
            }
            PeerMsg::Tombstone => {
                if env.epoch.conf_ver > peer.region().epoch.conf_ver
                    && peer.region().peer(env.from.id).is_some()
                    || !peer.is_initialized()
                {
                    peer.pending_destroy = true;
                }
            }
        }
        self.touched.insert(region_id);
    }
}
