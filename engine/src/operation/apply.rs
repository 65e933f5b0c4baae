//! Applying committed entries: every peer of a shard applies its entries of
//! a round into one LSM write batch, which also carries each peer's new
//! [`PeerState`], so that data and the index it is applied to become
//! durable together.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use ekv_lsm::{Cf, Lsm, WriteBatch};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType};

use crate::peer::Peer;
use crate::raft::cmd::{self, CmdHeader, EntryCmd};
use crate::raft::state::{state_key, ApplyState, PeerState};
use crate::router::{Callback, PeerChange, Response, WriteOp};
use crate::Fs;
use crate::{Error, Result};

/// Something the shard does once the round's batch is written.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Create peers for regions split off.
    Split { parent: RegionId, created: Vec<PeerState> },
    /// WAL entries below `to` may go once this round's batch is durable.
    CompactWal { region: RegionId, to: u64 },
}

/// The shared state of one round's apply.
pub(crate) struct ApplyCtx<F: Fs> {
    pub lsm: Lsm<F>,
    pub batch: WriteBatch,
    pub cfs: HashMap<String, Cf>,
    pub meta_cf: Cf,
    pub lease_ticks: u64,
    /// Callbacks to answer once the batch is written.
    pub answers: Vec<(Callback, Result<Response>)>,
    pub effects: Vec<Effect>,
    /// Entries applied this round (for stats).
    pub applied: u64,
    /// The store's region table: a split claims its new regions there.
    pub router: crate::StoreRouter,
    /// The applying shard.
    pub shard: ekv_proto::ShardId,
}

impl<F: Fs> ApplyCtx<F> {
    fn cf(&self, name: &str) -> Result<Cf> {
        self.cfs
            .get(name)
            .copied()
            .ok_or_else(|| Error::BadRequest(format!("unknown column family {name:?}")))
    }
}

/// Which regions exist on the shard, initialized or not.
pub(crate) type Existing<'a> = &'a BTreeMap<RegionId, Peer>;

/// Checks a data command's epoch (the region's version) and region id.
pub(crate) fn check_data_epoch(region: &Region, h: &CmdHeader) -> Result<()> {
    if h.region_id != region.id || h.epoch.version != region.epoch.version {
        return Err(Error::EpochNotMatch {
            region: h.region_id,
            request: h.epoch,
            current: vec![region.clone()],
        });
    }
    Ok(())
}

/// Checks an admin command's epoch (both numbers).
pub(crate) fn check_admin_epoch(region: &Region, h: &CmdHeader) -> Result<()> {
    if h.region_id != region.id || h.epoch != region.epoch {
        return Err(Error::EpochNotMatch {
            region: h.region_id,
            request: h.epoch,
            current: vec![region.clone()],
        });
    }
    Ok(())
}

/// Checks that `key` lies in `region`.
pub(crate) fn check_key(region: &Region, key: &[u8]) -> Result<()> {
    if !region.contains(key) {
        return Err(Error::KeyNotInRegion { key: key.to_vec(), region: region.id });
    }
    Ok(())
}

/// Checks the split keys: inside the region, strictly increasing, none at its start.
pub(crate) fn check_split_keys(region: &Region, keys: &[Bytes]) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::BadRequest("split needs at least one key".into()));
    }
    for (i, k) in keys.iter().enumerate() {
        check_key(region, k)?;
        if k.as_ref() == region.start_key.as_slice() || (i > 0 && keys[i - 1] >= *k) {
            return Err(Error::BadRequest("split keys must be increasing and past the region start".into()));
        }
    }
    Ok(())
}

impl Peer {
    /// Applies committed `entries` into the round's batch.
    pub(crate) async fn apply_entries<F: Fs>(
        &mut self,
        entries: Vec<Entry>,
        ctx: &mut ApplyCtx<F>,
        existing: Existing<'_>,
    ) -> Result<()> {
        let mut changed = false;
        for e in entries {
            if e.index <= self.applied_index() {
                continue;
            }
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => Ok(Response::Written),
                EntryType::EntryNormal => match EntryCmd::decode(&e.data) {
                    Ok((h, cmd)) => self.apply_cmd(&e, h, cmd, ctx, existing).await?,
                    Err(err) => {
                        Err(Error::Corruption(format!("entry {} of {}: {err}", e.index, self.region_id())))
                    }
                },
                EntryType::EntryConfChange => Ok(Response::Done),
                EntryType::EntryConfChangeV2 => self.apply_conf_change(&e)?,
            };
            let st = &mut self.raft.mut_store().state;
            st.apply.applied_index = e.index;
            st.apply.applied_term = e.term;
            self.applied_term = e.term;
            changed = true;
            ctx.applied += 1;
            self.answer(e.index, e.term, result, ctx);
            if self.pending_destroy {
                break;
            }
        }
        if changed {
            ctx.batch.put(ctx.meta_cf, &state_key(self.region_id()), &self.state().encode());
        }
        Ok(())
    }

    fn answer<F: Fs>(&mut self, index: u64, term: u64, result: Result<Response>, ctx: &mut ApplyCtx<F>) {
        while let Some(p) = self.proposals.front() {
            if p.index > index {
                break;
            }
            let p = self.proposals.pop_front().expect("front");
            if p.index == index && p.term == term {
                if self.is_leader() && term == self.raft.raft.term {
                    self.lease_until = self.lease_until.max(p.tick + ctx.lease_ticks);
                }
                ctx.answers.push((p.cb, result));
                return;
            }
            ctx.answers.push((p.cb, Err(Error::StaleCommand { region: self.region_id(), term: p.term })));
        }
    }

    async fn apply_cmd<F: Fs>(
        &mut self,
        e: &Entry,
        h: CmdHeader,
        cmd: EntryCmd,
        ctx: &mut ApplyCtx<F>,
        existing: Existing<'_>,
    ) -> Result<Result<Response>> {
        match cmd {
            EntryCmd::Write(ops) => Ok(self.apply_write(&h, &ops, ctx)),
            EntryCmd::Cas { cf, key, expected, new } => {
                if let Err(err) =
                    check_data_epoch(self.region(), &h).and_then(|_| check_key(self.region(), &key))
                {
                    return Ok(Err(err));
                }
                let cf = match ctx.cf(&cf) {
                    Ok(cf) => cf,
                    Err(err) => return Ok(Err(err)),
                };
                // The compare must see every earlier entry: write the batch
                // so far, with this peer's state as of the previous entry so
                // that what becomes durable is always self-consistent.
                ctx.batch.put(ctx.meta_cf, &state_key(self.region_id()), &self.state().encode());
                let batch = std::mem::take(&mut ctx.batch);
                ctx.lsm.write(batch).await?;
                let previous = ctx.lsm.get(cf, &key).await?;
                let succeeded = previous == expected;
                if succeeded {
                    match &new {
                        Some(v) => ctx.batch.put(cf, &key, v),
                        None => ctx.batch.delete(cf, &key),
                    };
                    self.note_write(key.len() + new.as_ref().map_or(0, |v| v.len()), new.is_some());
                }
                Ok(Ok(Response::Cas { succeeded, previous }))
            }
            EntryCmd::Split { keys, ids } => Ok(self.apply_split(&h, keys, ids, ctx, existing)),
            EntryCmd::CompactLog { index, term } => {
                let a = self.state().apply;
                if index > a.truncated_index && index <= a.applied_index.max(e.index - 1) {
                    self.raft.mut_store().compact_to(index, term);
                    ctx.effects.push(Effect::CompactWal { region: self.region_id(), to: index + 1 });
                }
                Ok(Ok(Response::Done))
            }
        }
    }

    fn note_write(&mut self, bytes: usize, adds: bool) {
        self.flow.written_bytes += bytes as u64;
        self.flow.written_keys += 1;
        if adds {
            self.approx_size += bytes as u64;
            self.approx_keys += 1;
        }
    }

    fn apply_write<F: Fs>(
        &mut self,
        h: &CmdHeader,
        ops: &[WriteOp],
        ctx: &mut ApplyCtx<F>,
    ) -> Result<Response> {
        check_data_epoch(self.region(), h)?;
        // Validate everything before writing anything: the batch is atomic.
        for op in ops {
            match op {
                WriteOp::Put { cf, key, .. } | WriteOp::Delete { cf, key } => {
                    ctx.cf(cf)?;
                    check_key(self.region(), key)?;
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    ctx.cf(cf)?;
                    check_key(self.region(), start)?;
                    if !end.is_empty() && (end.as_ref() < start.as_ref() || !self.range_end_ok(end)) {
                        return Err(Error::KeyNotInRegion { key: end.to_vec(), region: self.region_id() });
                    }
                }
            }
        }
        for op in ops {
            match op {
                WriteOp::Put { cf, key, value } => {
                    ctx.batch.put(ctx.cf(cf)?, key, value);
                    self.note_write(key.len() + value.len(), true);
                }
                WriteOp::Delete { cf, key } => {
                    ctx.batch.delete(ctx.cf(cf)?, key);
                    self.note_write(key.len(), false);
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    let cf = ctx.cf(cf)?;
                    let region_end = self.region().end_key.clone();
                    let end: &[u8] = if end.is_empty() { &region_end } else { end };
                    if end.is_empty() {
                        ctx.batch.delete_from(cf, start);
                    } else {
                        ctx.batch.delete_range(cf, start, end);
                    }
                    self.note_write(start.len() + end.len(), false);
                }
            }
        }
        Ok(Response::Written)
    }

    fn range_end_ok(&self, end: &[u8]) -> bool {
        let r = self.region();
        r.end_key.is_empty() || end <= r.end_key.as_slice()
    }

    fn apply_split<F: Fs>(
        &mut self,
        h: &CmdHeader,
        keys: Vec<Bytes>,
        ids: Vec<crate::transport::SplitIds>,
        ctx: &mut ApplyCtx<F>,
        existing: Existing<'_>,
    ) -> Result<Response> {
        let region = self.region().clone();
        check_admin_epoch(&region, h)?;
        check_split_keys(&region, &keys)?;
        if ids.len() != keys.len() || ids.iter().any(|i| i.peer_ids.len() != region.peers.len()) {
            return Err(Error::BadRequest("split ids do not match the keys and peers".into()));
        }
        let cs = self.state().conf_state.clone();
        if !cs.voters_outgoing.is_empty() {
            return Err(Error::BadRequest("cannot split during a membership change".into()));
        }
        let my_pos = region.peers.iter().position(|p| p.id == self.meta.id);
        let version = region.epoch.version + keys.len() as u64;
        let mut out = Vec::with_capacity(keys.len() + 1);
        let mut parent = region.clone();
        parent.end_key = keys[0].to_vec();
        parent.epoch.version = version;
        out.push(parent.clone());
        let mut created = Vec::new();
        for (i, (k, id)) in keys.iter().zip(&ids).enumerate() {
            let map = |old: &u64| -> u64 {
                let pos = region.peers.iter().position(|p| p.id.get() == *old).unwrap_or(0);
                id.peer_ids[pos].get()
            };
            let new_region = Region {
                id: id.region_id,
                start_key: k.to_vec(),
                end_key: keys.get(i + 1).map_or(region.end_key.clone(), |n| n.to_vec()),
                epoch: ekv_proto::RegionEpoch { conf_ver: region.epoch.conf_ver, version },
                peers: region
                    .peers
                    .iter()
                    .zip(&id.peer_ids)
                    .map(|(p, nid)| PeerMeta { id: *nid, store_id: p.store_id })
                    .collect(),
            };
            out.push(new_region.clone());
            let Some(pos) = my_pos else { continue };
            // A peer that already has data (from a snapshot of the new
            // region's own leader) is newer than what this split would make.
            if existing.get(&id.region_id).is_some_and(|p| p.is_initialized()) {
                continue;
            }
            if let Err(owner) = ctx.router.claim_for_split(id.region_id, ctx.shard) {
                // Another shard made the new region's peer first, from its
                // messages, while this store had no initialized parent
                // covering it. That peer (and the vote in its shard's WAL)
                // stays the only one and gets the data by snapshot; the
                // range's data here belongs to no region any more.
                tracing::debug!(region = %id.region_id, %owner, "new region already on another shard");
                let end = new_region.end_key.clone();
                for cf in ctx.cfs.values() {
                    if end.is_empty() {
                        ctx.batch.delete_from(*cf, &new_region.start_key);
                    } else {
                        ctx.batch.delete_range(*cf, &new_region.start_key, &end);
                    }
                }
                continue;
            }
            let state = PeerState {
                peer_id: id.peer_ids[pos],
                region: new_region,
                tombstone: false,
                apply: ApplyState::initial(),
                conf_state: ConfState {
                    voters: cs.voters.iter().map(map).collect(),
                    learners: cs.learners.iter().map(map).collect(),
                    ..Default::default()
                },
            };
            ctx.batch.put(ctx.meta_cf, &state_key(id.region_id), &state.encode());
            created.push(state);
        }
        self.raft.mut_store().state.region = parent;
        // A snapshot taken before the split covers the new regions' ranges
        // too: a follower holding one of them refuses it forever.
        self.raft.mut_store().snapshot = None;
        // Halves are estimated until the next split check measures them.
        let parts = keys.len() as u64 + 1;
        self.approx_size /= parts;
        self.approx_keys /= parts;
        self.split_asked = false;
        ctx.effects.push(Effect::Split { parent: region.id, created });
        Ok(Response::Split(out))
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<Result<Response>> {
        let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| {
            Error::Corruption(format!("conf change at {} of {}: {err}", e.index, self.region_id()))
        })?;
        let mut region = self.region().clone();
        let mut known: BTreeMap<PeerId, PeerMeta> = region.peers.iter().map(|p| (p.id, *p)).collect();
        if !cc.context.is_empty() {
            let (h, changes) = cmd::decode_changes(&cc.context).map_err(|err| {
                Error::Corruption(format!("conf change context of {}: {err}", self.region_id()))
            })?;
            if let Err(err) = check_admin_epoch(&region, &h) {
                return Ok(Err(err));
            }
            for c in changes {
                let (PeerChange::AddVoter(p) | PeerChange::AddLearner(p) | PeerChange::Remove(p)) = c;
                known.entry(p.id).or_insert(p);
            }
        }
        let cs = match self.raft.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => return Ok(Err(Error::Raft(err))),
        };
        crash_point!("engine::conf_change::after_raft_apply");
        let members: std::collections::BTreeSet<u64> = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .copied()
            .collect();
        region.peers = members.iter().filter_map(|id| known.get(&PeerId(*id)).copied()).collect();
        region.epoch.conf_ver += cc.changes.len().max(1) as u64;
        let st = &mut self.raft.mut_store().state;
        st.region = region.clone();
        st.conf_state = cs;
        if !members.contains(&self.meta.id.get()) {
            self.pending_destroy = true;
        }
        Ok(Ok(Response::Changed(region)))
    }
}
