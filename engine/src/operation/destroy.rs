//! Destroying a removed peer: its data (only what no other peer of the
//! shard covers), a tombstone, and its log once the tombstone is durable.

use ekv_lsm::WriteBatch;
use ekv_proto::{Region, RegionId};

use crate::raft::state::state_key;
use crate::shard::{Shard, WalOp};
use crate::{Error, Fs, Result};

impl<F: Fs> Shard<F> {
    pub(crate) async fn destroy_peer(&mut self, id: RegionId) -> Result<()> {
        let Some(mut peer) = self.peers.remove(&id) else { return Ok(()) };
        self.lazy_hard_states.remove(&id);
        peer.fail_all(|| Error::RegionRemoved(id));
        let mut st = peer.state().clone();
        let mut batch = WriteBatch::new();
        if peer.is_initialized() {
            for (start, end) in self.unowned_parts(&st.region) {
                for cf in self.cfs.values() {
                    if end.is_empty() {
                        batch.delete_from(*cf, &start);
                    } else {
                        batch.delete_range(*cf, &start, &end);
                    }
                }
            }
        }
        st.tombstone = true;
        batch.put(self.meta_cf, &state_key(id), &st.encode());
        batch.set_marker(self.round.to_le_bytes().to_vec());
        self.lsm.write(batch).await?;
        self.wal_deferred.push_back((self.round, id, WalOp::Remove));
        self.router.tombstone(id, st.peer_id, st.region.epoch);
        self.snap.forget(&self.fs, id).await;
        self.tombstones.insert(id, st);
        Ok(())
    }

    /// Parts of `region`'s range that no other peer of this shard covers
    /// (a stale peer must not delete a newer region's data).
    pub(crate) fn unowned_parts(&self, region: &Region) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut others: Vec<(&[u8], &[u8])> = self
            .peers
            .values()
            .filter(|p| p.is_initialized() && p.region_id() != region.id)
            .map(|p| (p.region().start_key.as_slice(), p.region().end_key.as_slice()))
            .collect();
        others.sort();
        let mut parts = Vec::new();
        let mut cur = region.start_key.clone();
        let end = region.end_key.as_slice();
        let before_end = |k: &[u8]| end.is_empty() || k < end;
        for (s, e) in others {
            if !before_end(s) {
                break;
            }
            if (!e.is_empty() && e <= cur.as_slice())
                || s < cur.as_slice() && !e.is_empty() && e <= cur.as_slice()
            {
                continue;
            }
            if s > cur.as_slice() {
                parts.push((cur.clone(), s.to_vec()));
            }
            if e.is_empty() {
                return parts;
            }
            if e > cur.as_slice() {
                cur = e.to_vec();
            }
        }
        if before_end(&cur) || end.is_empty() {
            parts.push((cur, end.to_vec()));
        }
        parts
    }
}
