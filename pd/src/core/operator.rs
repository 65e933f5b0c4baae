//! Operators: multi-step plans for one region, advanced one step per
//! region heartbeat.
//!
//! An operator never stores "the step it is at". Each heartbeat it looks
//! at the region (and the learners) as the leader reports it and derives
//! the next step from that, so a lost answer or a step the leader dropped
//! is simply issued again, a step applied twice changes nothing, and a
//! region that moved on its own is noticed.

use std::fmt;

use ekv_proto::msg::{ChangeKind, Operator, PeerChange};
use ekv_proto::{PeerMeta, RegionEpoch, RegionId};
use serde::Serialize;

use super::routing::RegionInfo;
use super::schedule::Ctx;

/// Why the scheduler created an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OperatorReason {
    /// The region had fewer live replicas than configured.
    Repair,
    /// A replica sat on a store being decommissioned.
    Decommission,
    /// The region had more replicas than configured.
    ExtraReplica,
    /// Leader counts of the stores were uneven.
    LeaderBalance,
    /// Region counts of the stores were uneven.
    RegionBalance,
    /// Region sizes of the stores were uneven.
    SizeBalance,
    /// The region took a dominant share of its store's traffic.
    HotRegion,
}

/// What an operator does, as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// 1. AddLearner(peer); 2. once caught up, AddVoter(peer).
    AddPeer {
        /// The new replica.
        peer: PeerMeta,
    },
    /// 1. AddLearner(add);
    /// 2. once caught up, if `remove` leads, transfer leadership to
    ///    another voter;
    /// 3. one joint change `[AddVoter(add), Remove(remove)]`, so the voter
    ///    count never dips.
    MovePeer {
        /// The new replica.
        add: PeerMeta,
        /// The replica it replaces.
        remove: PeerMeta,
    },
    /// 1. If `peer` leads, transfer leadership to another voter;
    /// 2. Remove(peer).
    RemovePeer {
        /// The replica to remove.
        peer: PeerMeta,
    },
    /// TransferLeader(to).
    TransferLeader {
        /// The leader when the operator was made.
        from: Option<PeerMeta>,
        /// The new leader.
        to: PeerMeta,
    },
    /// Split at the middle key the leader finds.
    Split,
}

impl OperatorKind {
    /// A short name for logs and the status view.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorKind::AddPeer { .. } => "add-peer",
            OperatorKind::MovePeer { .. } => "move-peer",
            OperatorKind::RemovePeer { .. } => "remove-peer",
            OperatorKind::TransferLeader { .. } => "transfer-leader",
            OperatorKind::Split => "split",
        }
    }

    /// The replica this operator adds, if any.
    pub fn added(&self) -> Option<PeerMeta> {
        match self {
            OperatorKind::AddPeer { peer } => Some(*peer),
            OperatorKind::MovePeer { add, .. } => Some(*add),
            _ => None,
        }
    }
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |p: &PeerMeta| format!("{}@{}", p.id.get(), p.store_id.get());
        match self {
            OperatorKind::AddPeer { peer } => write!(f, "add-peer {}", p(peer)),
            OperatorKind::MovePeer { add, remove } => write!(f, "move-peer {} -> {}", p(remove), p(add)),
            OperatorKind::RemovePeer { peer } => write!(f, "remove-peer {}", p(peer)),
            OperatorKind::TransferLeader { from, to } => {
                write!(f, "transfer-leader {} -> {}", from.as_ref().map_or("?".into(), p), p(to))
            }
            OperatorKind::Split => f.write_str("split"),
        }
    }
}

/// Describes one step as sent to a leader (`peer@store` for peers).
pub fn describe_step(op: &Operator) -> String {
    let p = |p: &PeerMeta| format!("{}@{}", p.id.get(), p.store_id.get());
    match op {
        Operator::ChangePeer { changes } => {
            let parts: Vec<String> = changes
                .iter()
                .map(|c| {
                    let kind = match c.kind {
                        ChangeKind::AddVoter => "add-voter",
                        ChangeKind::AddLearner => "add-learner",
                        ChangeKind::Remove => "remove",
                    };
                    format!("{kind} {}", p(&c.peer))
                })
                .collect();
            if parts.len() > 1 {
                format!("joint [{}]", parts.join(", "))
            } else {
                parts.concat()
            }
        }
        Operator::TransferLeader { to } => format!("transfer-leader to {}", p(to)),
        Operator::Split { keys } if keys.is_empty() => "split at the middle".into(),
        Operator::Split { keys } => format!("split at {} keys", keys.len()),
    }
}

/// Where an operator stands, as the status view shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorState {
    /// Made, no step issued yet.
    Created,
    /// This step was issued last.
    Issued(Operator),
    /// Waiting for the region to catch up; the reason.
    Waiting(&'static str),
}

/// An operator in flight for one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningOperator {
    /// The region.
    pub region_id: RegionId,
    /// What it does.
    pub kind: OperatorKind,
    /// Why it was made.
    pub reason: OperatorReason,
    /// When it was made.
    pub created_ms: u64,
    /// When it is cancelled if not finished.
    pub deadline_ms: u64,
    /// The region's epoch when it was made.
    pub epoch: RegionEpoch,
    /// Steps issued so far (a step issued again counts again).
    pub steps_sent: u32,
    /// Where it stands.
    pub state: OperatorState,
    /// The added replica has shown up in the region.
    pub(crate) learner_seen: bool,
}

/// What an operator wants after looking at its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Send this step to the leader.
    Step(Operator),
    /// Nothing to send yet.
    Wait(&'static str),
    /// The effect shows in the region: finished.
    Done,
    /// The region moved so that the operator no longer applies.
    Invalid(&'static str),
}

fn change(kind: ChangeKind, peer: PeerMeta) -> PeerChange {
    PeerChange { kind, peer }
}

impl RunningOperator {
    /// A new operator for the region in `info`.
    pub(crate) fn new(
        info: &RegionInfo,
        kind: OperatorKind,
        reason: OperatorReason,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Self {
        Self {
            region_id: info.region.id,
            kind,
            reason,
            created_ms: now_ms,
            deadline_ms: now_ms.saturating_add(timeout_ms),
            epoch: info.region.epoch,
            steps_sent: 0,
            state: OperatorState::Created,
            learner_seen: false,
        }
    }

    /// Looks at the region and decides the next step. Records whether the
    /// replica this operator adds has shown up.
    pub(crate) fn progress(&mut self, ctx: &Ctx<'_>, info: &RegionInfo) -> Progress {
        let region = &info.region;
        let has = |p: &PeerMeta| region.peer(p.id).is_some();
        let leads = |p: &PeerMeta| info.leader.is_some_and(|l| l.id == p.id);
        match self.kind.clone() {
            OperatorKind::AddPeer { peer } => {
                if !has(&peer) {
                    return self.add_learner(ctx, peer);
                }
                self.learner_seen = true;
                if !info.learners.contains(&peer.id) {
                    return Progress::Done;
                }
                if !ctx.live(peer.store_id) {
                    return Progress::Invalid("the new replica's store is not live");
                }
                if info.is_pending(peer.id) {
                    return Progress::Wait("the learner is catching up");
                }
                Progress::Step(Operator::ChangePeer { changes: vec![change(ChangeKind::AddVoter, peer)] })
            }
            OperatorKind::MovePeer { add, remove } => match (has(&add), has(&remove)) {
                (true, false) => Progress::Done,
                (false, false) => Progress::Invalid("the replica to replace left the region"),
                (false, true) => self.add_learner(ctx, add),
                (true, true) => {
                    self.learner_seen = true;
                    if !info.learners.contains(&add.id) {
                        return Progress::Wait("the joint change is under way");
                    }
                    if !ctx.live(add.store_id) {
                        return Progress::Invalid("the new replica's store is not live");
                    }
                    if info.is_pending(add.id) {
                        return Progress::Wait("the learner is catching up");
                    }
                    if leads(&remove) {
                        return match ctx.new_leader(info, &[remove.id, add.id]) {
                            Some(to) => Progress::Step(Operator::TransferLeader { to }),
                            None => Progress::Wait("no voter can take over leadership"),
                        };
                    }
                    Progress::Step(Operator::ChangePeer {
                        changes: vec![change(ChangeKind::AddVoter, add), change(ChangeKind::Remove, remove)],
                    })
                }
            },
            OperatorKind::RemovePeer { peer } => {
                if !has(&peer) {
                    return Progress::Done;
                }
                let voters = region.peers.iter().filter(|p| !info.learners.contains(&p.id)).count();
                if !info.learners.contains(&peer.id) && voters <= ctx.settings.replicas {
                    return Progress::Invalid("removing the replica would leave too few voters");
                }
                if leads(&peer) {
                    return match ctx.new_leader(info, &[peer.id]) {
                        Some(to) => Progress::Step(Operator::TransferLeader { to }),
                        None => Progress::Wait("no voter can take over leadership"),
                    };
                }
                Progress::Step(Operator::ChangePeer { changes: vec![change(ChangeKind::Remove, peer)] })
            }
            OperatorKind::TransferLeader { to, .. } => {
                if leads(&to) {
                    return Progress::Done;
                }
                if !has(&to) || info.learners.contains(&to.id) {
                    return Progress::Invalid("the new leader is not a voter of the region");
                }
                if !ctx.live(to.store_id) || info.is_pending(to.id) {
                    return Progress::Invalid("the new leader cannot take over");
                }
                Progress::Step(Operator::TransferLeader { to })
            }
            OperatorKind::Split => {
                if region.epoch.version > self.epoch.version {
                    return Progress::Done;
                }
                Progress::Step(Operator::Split { keys: vec![] })
            }
        }
    }

    /// Step 1 of adding a replica, unless the learner was already seen
    /// and has since vanished.
    fn add_learner(&self, ctx: &Ctx<'_>, peer: PeerMeta) -> Progress {
        if self.learner_seen {
            return Progress::Invalid("the new learner left the region");
        }
        if !ctx.accepts_load(peer.store_id) {
            return Progress::Invalid("the target store no longer accepts replicas");
        }
        Progress::Step(Operator::ChangePeer { changes: vec![change(ChangeKind::AddLearner, peer)] })
    }

    /// Notes what [`RunningOperator::progress`] answered.
    pub(crate) fn note(&mut self, p: &Progress) {
        match p {
            Progress::Step(op) => {
                self.steps_sent += 1;
                self.state = OperatorState::Issued(op.clone());
            }
            Progress::Wait(why) => self.state = OperatorState::Waiting(why),
            Progress::Done | Progress::Invalid(_) => {}
        }
    }

    /// The current step for the status view.
    pub fn describe_state(&self) -> String {
        match &self.state {
            OperatorState::Created => "created".into(),
            OperatorState::Issued(op) => describe_step(op),
            OperatorState::Waiting(why) => format!("waiting: {why}"),
        }
    }
}
