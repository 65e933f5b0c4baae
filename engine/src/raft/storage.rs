//! raft-rs's view of a peer's log: the persisted entries above the
//! truncated index (a copy of the WAL's, kept short by log GC), the hard
//! state, and the membership as of the applied index.

use std::cell::Cell;
use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::raft::state::PeerState;

/// A peer's raft storage.
#[derive(Debug)]
pub struct PeerStorage {
    /// Region, apply position and membership (what the LSM holds).
    pub state: PeerState,
    /// Current hard state (what the WAL holds).
    pub hard_state: HardState,
    /// Persisted entries `truncated_index + 1 ..= last_index`.
    pub entries: VecDeque<Entry>,
    /// A generated snapshot, offered to raft until a newer one is needed.
    pub snapshot: Option<Snapshot>,
    /// Set when raft asked for a snapshot that is not there: the lowest
    /// index it must cover.
    pub snapshot_wanted: Cell<Option<u64>>,
}

impl PeerStorage {
    /// Storage over a recovered or new state.
    pub fn new(state: PeerState, hard_state: HardState, entries: VecDeque<Entry>) -> Self {
        Self { state, hard_state, entries, snapshot: None, snapshot_wanted: Cell::new(None) }
    }

    /// Index of the first entry held.
    pub fn first(&self) -> u64 {
        self.state.apply.truncated_index + 1
    }

    /// Index of the last entry held (the truncated index when none).
    pub fn last(&self) -> u64 {
        self.state.apply.truncated_index + self.entries.len() as u64
    }

    /// Appends persisted entries, replacing any conflicting suffix.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let keep = first.index.saturating_sub(self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend(ents.iter().cloned());
    }

    /// Drops entries up to `index` (inclusive), recording its term.
    pub fn compact_to(&mut self, index: u64, term: u64) {
        let a = &mut self.state.apply;
        if index <= a.truncated_index {
            return;
        }
        let n = ((index - a.truncated_index) as usize).min(self.entries.len());
        self.entries.drain(..n);
        a.truncated_index = index;
        a.truncated_term = term;
    }

    /// Approximate bytes of the entries held.
    pub fn entries_bytes(&self) -> u64 {
        self.entries.iter().map(|e| (e.data.len() + e.context.len() + 16) as u64).sum()
    }

    /// The conf state raft restarts with.
    pub fn conf_state(&self) -> &ConfState {
        &self.state.conf_state
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.state.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut ents: Vec<Entry> = self.entries.range(lo..hi).cloned().collect();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let a = &self.state.apply;
        if idx == a.truncated_index {
            return Ok(a.truncated_term);
        }
        if idx < a.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - a.truncated_index - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(s) = &self.snapshot {
            let meta = s.get_metadata();
            // A snapshot taken before `to` joined would be refused by it
            // (its configuration does not name it): make a new one.
            let cs = meta.get_conf_state();
            let names_to =
                [cs.get_voters(), cs.get_learners(), cs.get_voters_outgoing(), cs.get_learners_next()]
                    .iter()
                    .any(|ids| ids.contains(&to));
            if meta.index >= request_index && meta.index >= self.first() - 1 && names_to {
                return Ok(s.clone());
            }
        }
        let want = self.snapshot_wanted.get().map_or(request_index, |w| w.max(request_index));
        self.snapshot_wanted.set(Some(want));
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}
