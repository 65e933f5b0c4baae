//! Admitting commands on the leader and proposing them to raft.

use ekv_proto::PeerId;
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};

use crate::operation::apply::{check_admin_epoch, check_data_epoch, check_key, check_split_keys};
use crate::peer::{Peer, Proposal};
use crate::raft::cmd::{self, CmdHeader, EntryCmd};
use crate::router::{Callback, PeerChange, Request, WriteOp};
use crate::transport::SplitIds;
use crate::{Config, Error, Result};

impl Peer {
    /// Refuses `req` unless this peer leads and the request's epoch is current.
    pub(crate) fn admit(&self, req: &Request) -> Result<CmdHeader> {
        if !self.is_leader() {
            return Err(Error::NotLeader { region: self.region_id(), leader: self.leader() });
        }
        let h = CmdHeader { region_id: req.region_id, epoch: req.epoch };
        if req.cmd.is_read()
            || matches!(req.cmd, crate::router::Command::Write(_) | crate::router::Command::Cas { .. })
        {
            check_data_epoch(self.region(), &h)?;
        } else {
            check_admin_epoch(self.region(), &h)?;
        }
        Ok(h)
    }

    fn propose_entry(
        &mut self,
        data: Vec<u8>,
        cb: Callback,
        now: u64,
        cfg: &Config,
    ) -> std::result::Result<(), (Callback, Error)> {
        if data.len() > cfg.command_limit() {
            return Err((
                cb,
                Error::BadRequest(format!("command of {} bytes exceeds {}", data.len(), cfg.command_limit())),
            ));
        }
        if self.proposals.len() >= cfg.max_pending_proposals {
            return Err((cb, Error::ServerBusy("too many pending proposals for the region")));
        }
        let before = self.raft.raft.raft_log.last_index();
        if let Err(e) = self.raft.propose(vec![], data) {
            return Err((cb, self.proposal_error(e)));
        }
        self.track(before, cb, now)
    }

    fn proposal_error(&self, e: raft::Error) -> Error {
        match e {
            raft::Error::ProposalDropped => {
                Error::NotLeader { region: self.region_id(), leader: self.leader() }
            }
            e => Error::Raft(e),
        }
    }

    fn track(&mut self, before: u64, cb: Callback, now: u64) -> std::result::Result<(), (Callback, Error)> {
        let index = self.raft.raft.raft_log.last_index();
        if index == before {
            return Err((cb, Error::NotLeader { region: self.region_id(), leader: self.leader() }));
        }
        let term = self.raft.raft.term;
        // Proposals of an earlier term at this index or later were cut from
        // the log when this leader's log replaced them: they never apply.
        // Answering them now keeps the queue in index order.
        while self.proposals.back().is_some_and(|p| p.index >= index) {
            let p = self.proposals.pop_back().expect("back");
            (p.cb)(Err(Error::StaleCommand { region: self.region_id(), term: p.term }));
        }
        self.proposals.push_back(Proposal { index, term, tick: now, cb });
        Ok(())
    }

    /// Proposes a write batch.
    pub(crate) fn propose_write(
        &mut self,
        h: CmdHeader,
        ops: Vec<WriteOp>,
        cb: Callback,
        now: u64,
        cfg: &Config,
    ) -> std::result::Result<(), (Callback, Error)> {
        if ops.is_empty() || ops.len() > cmd::MAX_BATCH_OPS {
            return Err((
                cb,
                Error::BadRequest(format!("a write batch holds 1..={} ops", cmd::MAX_BATCH_OPS)),
            ));
        }
        for op in &ops {
            let (WriteOp::Put { key, .. }
            | WriteOp::Delete { key, .. }
            | WriteOp::DeleteRange { start: key, .. }) = op;
            if let Err(e) = check_key(self.region(), key) {
                return Err((cb, e));
            }
        }
        self.propose_entry(EntryCmd::Write(ops).encode(&h), cb, now, cfg)
    }

    /// Proposes a compare-and-swap.
    pub(crate) fn propose_cas(
        &mut self,
        h: CmdHeader,
        cmd: EntryCmd,
        cb: Callback,
        now: u64,
        cfg: &Config,
    ) -> std::result::Result<(), (Callback, Error)> {
        if let EntryCmd::Cas { key, .. } = &cmd {
            if let Err(e) = check_key(self.region(), key) {
                return Err((cb, e));
            }
        }
        self.propose_entry(cmd.encode(&h), cb, now, cfg)
    }

    /// Proposes a split with ids from the meta service.
    pub(crate) fn propose_split(
        &mut self,
        h: CmdHeader,
        keys: Vec<bytes::Bytes>,
        ids: Vec<SplitIds>,
        cb: Callback,
        now: u64,
        cfg: &Config,
    ) -> std::result::Result<(), (Callback, Error)> {
        if let Err(e) =
            check_admin_epoch(self.region(), &h).and_then(|_| check_split_keys(self.region(), &keys))
        {
            return Err((cb, e));
        }
        self.propose_entry(EntryCmd::Split { keys, ids }.encode(&h), cb, now, cfg)
    }

    /// Proposes a membership change: one change directly, more through
    /// joint consensus (left automatically).
    pub(crate) fn propose_conf_change(
        &mut self,
        h: CmdHeader,
        changes: Vec<PeerChange>,
        cb: Callback,
        now: u64,
    ) -> std::result::Result<(), (Callback, Error)> {
        if changes.is_empty() {
            return Err((cb, Error::BadRequest("no peer change given".into())));
        }
        for c in &changes {
            if let PeerChange::Remove(p) | PeerChange::AddLearner(p) = c {
                if p.id == self.meta.id {
                    return Err((
                        cb,
                        Error::BadRequest(
                            "transfer leadership before removing or demoting the leader".into(),
                        ),
                    ));
                }
            }
            if let PeerChange::AddVoter(p) | PeerChange::AddLearner(p) = c {
                if let Some(q) = self.region().peer_on(p.store_id) {
                    if q.id != p.id {
                        return Err((
                            cb,
                            Error::BadRequest(format!(
                                "{} already has a replica on {}",
                                self.region_id(),
                                p.store_id
                            )),
                        ));
                    }
                }
            }
        }
        let mut cc = ConfChangeV2::default();
        for c in &changes {
            let (ty, p) = match c {
                PeerChange::AddVoter(p) => (ConfChangeType::AddNode, p),
                PeerChange::AddLearner(p) => (ConfChangeType::AddLearnerNode, p),
                PeerChange::Remove(p) => (ConfChangeType::RemoveNode, p),
            };
            let mut s = ConfChangeSingle::default();
            s.set_change_type(ty);
            s.node_id = p.id.get();
            cc.mut_changes().push(s);
        }
        if changes.len() > 1 {
            cc.set_transition(ConfChangeTransition::Auto);
        }
        cc.set_context(cmd::encode_changes(&h, &changes).into());
        let before = self.raft.raft.raft_log.last_index();
        if let Err(e) = self.raft.propose_conf_change(vec![], cc) {
            return Err((cb, self.proposal_error(e)));
        }
        self.track(before, cb, now)
    }

    /// Starts handing leadership to `to`. Lease reads stop at once.
    pub(crate) fn transfer_leader(&mut self, to: PeerId) -> Result<()> {
        if !self.state().conf_state.voters.contains(&to.get()) {
            return Err(Error::BadRequest(format!("{to:?} is not a voter of {}", self.region_id())));
        }
        self.lease_until = 0;
        if to != self.meta.id {
            self.raft.transfer_leader(to.get());
        }
        Ok(())
    }
}
