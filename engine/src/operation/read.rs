//! Reads: served by the leader from applied state, never stale.
//!
//! 1. A read is checked (leadership, epoch, keys) when it arrives.
//! 2. Under a valid lease (a quorum acknowledged this leader less than
//!    `lease_ticks` ago, it has applied an entry of its own term, and no
//!    transfer is under way) it is served at once.
//! 3. Otherwise the reads of one round share one raft ReadIndex; once the
//!    quorum answers and the peer has applied up to the read index, they are
//!    served. The answer also renews the lease.
//!
//! Serving takes an LSM snapshot synchronously (so the applied state the
//! read waited for is what it sees) and runs the lookups as a [`ReadTask`].

use std::collections::VecDeque;

use bytes::Bytes;
use ekv_lsm::{Cf, IterOptions, Lsm, Snapshot};

use crate::peer::Peer;
use crate::router::{Callback, Command, Response};
use crate::Fs;
use crate::{Error, Result};

/// A read waiting to be served.
pub(crate) struct PendingRead {
    pub cmd: Command,
    pub cf: Cf,
    pub cb: Callback,
}

/// Reads waiting on one peer.
#[derive(Default)]
pub(crate) struct ReadQueue {
    /// Arrived this round; they will share one read index.
    batch: Vec<PendingRead>,
    /// Sent through ReadIndex: (context id, shard tick sent, reads).
    waiting: VecDeque<(u64, u64, Vec<PendingRead>)>,
    /// Read index known: (index, reads) waiting for apply.
    ready: VecDeque<(u64, Vec<PendingRead>)>,
    next_id: u64,
}

impl std::fmt::Debug for ReadQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadQueue")
            .field("batch", &self.batch.len())
            .field("waiting", &self.waiting.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl ReadQueue {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.waiting.is_empty() && self.ready.is_empty()
    }

    /// Fails everything with `err()`.
    pub fn fail_all(&mut self, err: &dyn Fn() -> Error) {
        let all = self
            .batch
            .drain(..)
            .chain(self.waiting.drain(..).flat_map(|w| w.2))
            .chain(self.ready.drain(..).flat_map(|r| r.1));
        for r in all {
            (r.cb)(Err(err()));
        }
    }
}

/// A read ready to run against the LSM.
pub struct ReadTask {
    pub(crate) snapshot: Snapshot,
    pub(crate) read: PendingRead,
    /// The region's range when the read was admitted (scans are clipped to it).
    pub(crate) start: Vec<u8>,
    pub(crate) end: Vec<u8>,
    /// The region's read counters.
    pub(crate) flow: crate::peer::ReadFlow,
}

impl std::fmt::Debug for ReadTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTask").field("cmd", &self.read.cmd).finish_non_exhaustive()
    }
}

impl ReadTask {
    /// Runs the read and answers its caller; returns the bytes read.
    pub async fn run<F: Fs>(self, lsm: &Lsm<F>) -> u64 {
        let ReadTask { snapshot, read, start, end, flow } = self;
        let result = serve(lsm, &snapshot, read.cf, &read.cmd, &start, &end).await;
        let bytes = match &result {
            Ok(Response::Value(v)) => (v.as_ref().map_or(0, |v| v.len() as u64), 1),
            Ok(Response::Values(vs)) => (vs.iter().flatten().map(|v| v.len() as u64).sum(), vs.len() as u64),
            Ok(Response::Pairs(ps)) => {
                (ps.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(), ps.len() as u64)
            }
            _ => (0, 0),
        };
        let (b, k) = flow.get();
        flow.set((b + bytes.0, k + bytes.1));
        let bytes = bytes.0;
        (read.cb)(result);
        bytes
    }
}

async fn serve<F: Fs>(
    lsm: &Lsm<F>,
    snap: &Snapshot,
    cf: Cf,
    cmd: &Command,
    region_start: &[u8],
    region_end: &[u8],
) -> Result<Response> {
    match cmd {
        Command::Get { key, .. } => Ok(Response::Value(lsm.get_at(cf, key, snap).await?)),
        Command::BatchGet { keys, .. } => {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(lsm.get_at(cf, k, snap).await?);
            }
            Ok(Response::Values(out))
        }
        Command::Scan(s) => {
            let lower = s.start.as_ref().max(region_start).to_vec();
            let upper = match (s.end.is_empty(), region_end.is_empty()) {
                (true, true) => None,
                (true, false) => Some(region_end.to_vec()),
                (false, true) => Some(s.end.to_vec()),
                (false, false) => Some(s.end.as_ref().min(region_end).to_vec()),
            };
            let mut out = Vec::new();
            if upper.as_ref().is_some_and(|u| *u <= lower) || s.limit == 0 {
                return Ok(Response::Pairs(out));
            }
            let mut it = lsm.iter(
                cf,
                IterOptions { lower: Some(&lower), upper: upper.as_deref(), snapshot: Some(snap) },
            )?;
            if s.reverse {
                it.seek_to_last().await?;
            } else {
                it.seek_to_first().await?;
            }
            while it.valid() && out.len() < s.limit {
                let v = if s.key_only { Bytes::new() } else { Bytes::copy_from_slice(it.value()) };
                out.push((Bytes::copy_from_slice(it.key()), v));
                if s.reverse {
                    it.prev().await?;
                } else {
                    it.next().await?;
                }
            }
            Ok(Response::Pairs(out))
        }
        _ => Err(Error::BadRequest("not a read".into())),
    }
}

impl Peer {
    /// True when the leader may serve a read now without asking the quorum.
    pub(crate) fn lease_valid(&self, now: u64) -> bool {
        self.is_leader()
            && now < self.lease_until
            && self.applied_term == self.raft.raft.term
            && self.raft.raft.lead_transferee.is_none()
    }

    /// Queues an admitted read for the next read index.
    pub(crate) fn queue_read(&mut self, read: PendingRead) {
        self.reads.batch.push(read);
    }

    /// Sends this round's reads through one ReadIndex. A leader that has not
    /// yet committed an entry of its term keeps them (raft-rs would drop the
    /// request); they go out in the round its first commit lands in.
    pub(crate) fn flush_reads(&mut self, now: u64) {
        if self.reads.batch.is_empty() || !self.raft.raft.commit_to_current_term() {
            return;
        }
        let id = self.reads.next_id;
        self.reads.next_id += 1;
        self.raft.read_index(id.to_le_bytes().to_vec());
        let batch = std::mem::take(&mut self.reads.batch);
        self.reads.waiting.push_back((id, now, batch));
    }

    /// Sends again the reads whose read index went unanswered for
    /// `after` ticks (the request or its heartbeats were lost).
    pub(crate) fn retry_reads(&mut self, now: u64, after: u64) {
        while self.reads.waiting.front().is_some_and(|w| now >= w.1 + after) {
            let (_, _, reads) = self.reads.waiting.pop_front().expect("front");
            self.reads.batch.extend(reads);
        }
    }

    /// Takes raft's answers to read indexes; renews the lease.
    pub(crate) fn on_read_states(&mut self, states: Vec<raft::ReadState>, lease_ticks: u64) {
        for st in states {
            let Ok(id) = <[u8; 8]>::try_from(st.request_ctx.as_slice()).map(u64::from_le_bytes) else {
                continue;
            };
            // raft-rs answers in the order asked; an older request still
            // waiting was dropped (a leader change in between): ask again.
            while let Some((wid, tick, _)) = self.reads.waiting.front() {
                if *wid > id {
                    break;
                }
                let (wid, tick, reads) = (*wid, *tick, self.reads.waiting.pop_front().expect("front").2);
                if wid == id {
                    self.lease_until = self.lease_until.max(tick + lease_ticks);
                    self.reads.ready.push_back((st.index, reads));
                } else {
                    self.reads.batch.extend(reads);
                }
            }
        }
    }

    /// Reads whose read index is applied.
    pub(crate) fn take_servable(&mut self) -> Vec<PendingRead> {
        let applied = self.applied_index();
        let mut out = Vec::new();
        while let Some((index, _)) = self.reads.ready.front() {
            if *index > applied {
                break;
            }
            out.extend(self.reads.ready.pop_front().expect("front").1);
        }
        out
    }
}
