//! Splits seen from the shard: creating the new regions' peers once a
//! split applies, and the leaders' split checks.

use bytes::Bytes;
use ekv_lsm::IterOptions;
use ekv_proto::{Region, RegionId};

use crate::raft::state::PeerState;
use crate::shard::{noop_cb, PdTask, Shard};
use crate::{Error, Fs, Result};

impl<F: Fs> Shard<F> {
    pub(crate) async fn on_split_applied(&mut self, parent: RegionId, created: Vec<PeerState>) -> Result<()> {
        let mut regions = Vec::new();
        let mut is_leader = false;
        if let Some(p) = self.peers.get(&parent) {
            regions.push(p.region().clone());
            is_leader = p.is_leader();
            // The parent shrinks in the store's table before the new
            // regions join it, so that its ranges never overlap; the new
            // regions were claimed for this shard when the split applied,
            // so no other shard creates them meanwhile.
            self.router.set_range(p.region());
        }
        for st in created {
            let id = st.region.id;
            regions.push(st.region.clone());
            if let Some(mut old) = self.peers.remove(&id) {
                // An uninitialized peer made by the new region's messages
                // gives way to the split's.
                old.fail_all(|| Error::RegionNotFound(id));
            }
            // The WAL may already hold the new region's log: its vote as an
            // uninitialized peer, or, when this split is replayed after a
            // crash, entries it took before (its state was not yet durable).
            let (hs, entries) = self.load_log(&st).await?;
            self.add_peer(st, hs, entries)?;
            if is_leader {
                // The parent's leader campaigns at once so that the new
                // region is served without waiting for an election timeout.
                if let Some(p) = self.peers.get_mut(&id) {
                    let _ = p.raft.campaign();
                }
            }
        }
        if is_leader {
            self.pd.push(PdTask::ReportSplit(regions));
        }
        Ok(())
    }

    pub(crate) async fn run_split_checks(&mut self) -> Result<()> {
        if self.split_checks.is_empty() {
            return Ok(());
        }
        let due = std::mem::take(&mut self.split_checks);
        for id in due {
            let Some(peer) = self.peers.get(&id) else { continue };
            if !peer.is_leader() || peer.split_asked {
                continue;
            }
            let region = peer.region().clone();
            let (size, keys, middle) = self.measure(&region).await?;
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            peer.approx_size = size;
            peer.approx_keys = keys;
            let over = size > self.cfg.region_split_size || keys > self.cfg.region_split_keys;
            if let Some(k) = middle.filter(|_| over) {
                self.ask_split(id, vec![k], noop_cb());
            }
        }
        Ok(())
    }

    /// Size and key count of `region`'s data, and a key near the middle by size.
    pub(crate) async fn measure(&self, region: &Region) -> Result<(u64, u64, Option<Bytes>)> {
        let upper = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
        let mut total = 0u64;
        let mut keys = 0u64;
        let mut samples: Vec<(u64, Bytes)> = Vec::new();
        let mut names: Vec<&String> = self.cfs.keys().collect();
        names.sort();
        for name in names {
            let cf = self.cfs[name];
            let mut it =
                self.lsm.iter(cf, IterOptions { lower: Some(&region.start_key), upper, snapshot: None })?;
            it.seek_to_first().await?;
            let mut next_sample = 0u64;
            while it.valid() {
                total += (it.key().len() + it.value().len()) as u64;
                keys += 1;
                if total >= next_sample {
                    samples.push((total, Bytes::copy_from_slice(it.key())));
                    next_sample = total + (self.cfg.region_split_size / 64).max(1);
                }
                it.next().await?;
            }
        }
        samples.sort_by(|a, b| a.1.cmp(&b.1));
        let half = total / 2;
        let mut acc = 0u64;
        let mut middle = None;
        let mut prev = 0u64;
        for (cum, k) in &samples {
            acc += cum.saturating_sub(prev).min(*cum);
            prev = *cum;
            if acc >= half && k.as_ref() != region.start_key.as_slice() {
                middle = Some(k.clone());
                break;
            }
        }
        Ok((total, keys, middle))
    }
}
