//! Raft snapshots as LSM tables.
//!
//! 1. raft-rs asks the leader's storage for a snapshot; the storage notes
//!    the wish and answers "temporarily unavailable".
//! 2. After the round, the shard exports the region's ranges of every
//!    family at the applied index (an LSM snapshot taken synchronously, so
//!    data and index agree) into tables under `snap/gen`, and offers raft a
//!    snapshot whose data is a [`SnapDesc`] listing the tables.
//! 3. When raft sends `MsgSnapshot`, the tables go out in chunks of
//!    `snap_chunk_bytes`, at most `snap_bytes_per_tick` per tick; the last
//!    chunk carries the raft message.
//! 4. The receiver writes the chunks under `snap/recv`, checks them against
//!    the descriptor, and steps the message into raft.
//! 5. When raft hands the snapshot back in a `Ready`, the receiver writes one
//!    more table holding its new peer state and ingests all of them in one
//!    manifest edit: data and apply state change atomically. The WAL drops
//!    the region's older entries in the same round's write.
//!
//! ```text
//! SnapDesc = version u8 (1) | crc32c u32 LE of the rest | region | n uvarint | file size uvarint * n
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ekv_io::{File, IoBuf};
use ekv_lsm::KeyRange;
use ekv_proto::codec::{framed, put_uvarint, unframe, DecodeError, DecodeResult, Reader};
use ekv_proto::{PeerMeta, Region, RegionId};
use ekv_wal::LogBatch;
use raft::eraftpb::{Message, Snapshot};

use crate::raft::state::{state_key, ApplyState, PeerState};
use crate::router::{ShardAddr, SnapshotChunk, StoreMsg};
use crate::shard::Shard;
use crate::Fs;
use crate::{Error, Result};

const DESC_VERSION: u8 = 1;
const MAX_SNAP_FILES: u64 = 4096;

/// What a snapshot's raft data holds: the region and its tables' sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapDesc {
    /// The region as of the snapshot.
    pub region: Region,
    /// Size of each table, in file order.
    pub file_sizes: Vec<u64>,
}

impl SnapDesc {
    /// Encodes the descriptor.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        self.region.encode_into(&mut body);
        put_uvarint(&mut body, self.file_sizes.len() as u64);
        for s in &self.file_sizes {
            put_uvarint(&mut body, *s);
        }
        framed(DESC_VERSION, &body)
    }

    /// Decodes what [`SnapDesc::encode`] wrote.
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong version, checksum or layout.
    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(unframe(data, DESC_VERSION, "snapshot descriptor")?);
        let region = Region::decode_from(&mut r)?;
        let n = r.uvarint("snapshot files")?;
        if n > MAX_SNAP_FILES {
            return Err(DecodeError::TooLarge { what: "snapshot files", len: n, limit: MAX_SNAP_FILES });
        }
        let file_sizes = (0..n).map(|_| r.uvarint("snapshot file size")).collect::<DecodeResult<_>>()?;
        if !r.is_empty() {
            return Err(DecodeError::Invalid {
                what: "trailing snapshot bytes",
                value: r.remaining() as u64,
            });
        }
        Ok(Self { region, file_sizes })
    }
}

/// A snapshot on its way out.
#[derive(Debug)]
struct Outgoing {
    region: RegionId,
    addr: ShardAddr,
    from: PeerMeta,
    to: PeerMeta,
    epoch: ekv_proto::RegionEpoch,
    range: (Bytes, Bytes),
    msg: Message,
    files: Vec<(PathBuf, u64)>,
    file: usize,
    offset: u64,
}

/// A snapshot being received.
struct Incoming<Fi> {
    files: BTreeMap<u32, (PathBuf, Fi)>,
    bytes: BTreeMap<u32, u64>,
}

/// Snapshot traffic and files of a shard.
pub(crate) struct SnapState<F: Fs> {
    gen_dir: PathBuf,
    recv_dir: PathBuf,
    outgoing: VecDeque<Outgoing>,
    /// Chunks received, written in the next round.
    pub incoming: VecDeque<SnapshotChunk>,
    receiving: HashMap<(RegionId, u64, u64), Incoming<F::File>>,
    /// Received and checked, waiting for raft to apply: (index, term, files).
    received: HashMap<RegionId, (u64, u64, Vec<PathBuf>)>,
    generated: HashMap<RegionId, Vec<(PathBuf, u64)>>,
    budget: u64,
    refilled_at: u64,
}

impl<F: Fs> std::fmt::Debug for SnapState<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapState").field("outgoing", &self.outgoing.len()).finish_non_exhaustive()
    }
}

impl<F: Fs> SnapState<F> {
    /// Creates the snapshot directories, emptied: a snapshot in flight when
    /// the store stopped is simply sent again.
    pub async fn open(fs: &F, dir: &Path) -> Result<Self> {
        let gen_dir = dir.join("snap").join("gen");
        let recv_dir = dir.join("snap").join("recv");
        for d in [&gen_dir, &recv_dir] {
            fs.create_dir_all(d).await?;
            for name in fs.list(d).await? {
                fs.remove(&d.join(name)).await?;
            }
        }
        Ok(Self {
            gen_dir,
            recv_dir,
            outgoing: VecDeque::new(),
            incoming: VecDeque::new(),
            receiving: HashMap::new(),
            received: HashMap::new(),
            generated: HashMap::new(),
            budget: 0,
            refilled_at: 0,
        })
    }

    /// True when chunks wait to be written or sent.
    pub fn has_work(&self) -> bool {
        !self.incoming.is_empty() || !self.outgoing.is_empty()
    }

    /// True when a queued outgoing snapshot still reads `path`.
    fn sending(&self, path: &Path) -> bool {
        self.outgoing.iter().any(|o| o.files.iter().any(|(p, _)| p == path))
    }

    /// Removes everything kept for `region`, its snapshots in flight too.
    pub async fn forget(&mut self, fs: &F, region: RegionId) {
        let mut files: Vec<PathBuf> =
            self.generated.remove(&region).unwrap_or_default().into_iter().map(|(p, _)| p).collect();
        for out in self.outgoing.iter().filter(|o| o.region == region) {
            files.extend(out.files.iter().map(|(p, _)| p.clone()));
        }
        self.outgoing.retain(|o| o.region != region);
        files.sort();
        files.dedup();
        for p in files {
            let _ = fs.remove(&p).await;
        }
        if let Some((_, _, files)) = self.received.remove(&region) {
            for p in files {
                let _ = fs.remove(&p).await;
            }
        }
    }
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Corruption(what.to_string())
}

impl<F: Fs> Shard<F> {
    /// Generates snapshots raft asked for (step 2).
    pub(crate) async fn generate_snapshots(
        &mut self,
        touched: &std::collections::BTreeSet<RegionId>,
    ) -> Result<()> {
        for id in touched {
            let Some(peer) = self.peers.get(id) else { continue };
            if peer.raft.store().snapshot_wanted.get().is_none() || !peer.is_initialized() {
                continue;
            }
            let st = peer.state().clone();
            let lsm_snap = self.lsm.snapshot();
            for (p, _) in self.snap.generated.remove(id).unwrap_or_default() {
                // A snapshot still streaming to another follower keeps its
                // files; they go once it is sent.
                if !self.snap.sending(&p) {
                    let _ = self.fs.remove(&p).await;
                }
            }
            let mut names: Vec<(&String, &ekv_lsm::Cf)> = self.cfs.iter().collect();
            names.sort();
            let region = &st.region;
            let ranges: Vec<KeyRange> = names
                .iter()
                .map(|(_, cf)| KeyRange {
                    cf: **cf,
                    start: region.start_key.clone(),
                    end: (!region.end_key.is_empty()).then(|| region.end_key.clone()),
                })
                .collect();
            let (index, term) = (st.apply.applied_index, st.apply.applied_term);
            let prefix = format!("{}-{}-{}", id.get(), term, index);
            let paths = self.lsm.export(&ranges, Some(&lsm_snap), &self.snap.gen_dir, &prefix).await?;
            let mut files = Vec::with_capacity(paths.len());
            for p in paths {
                let f = self.fs.open(&p).await?;
                let size = f.size().await?;
                f.close().await?;
                files.push((p, size));
            }
            let desc =
                SnapDesc { region: st.region.clone(), file_sizes: files.iter().map(|f| f.1).collect() };
            let mut snap = Snapshot { data: desc.encode().into(), ..Default::default() };
            let meta = snap.mut_metadata();
            meta.index = index;
            meta.term = term;
            meta.set_conf_state(st.conf_state.clone());
            self.snap.generated.insert(*id, files);
            let peer = self.peers.get_mut(id).expect("present");
            let store = peer.raft.mut_store();
            store.snapshot = Some(snap);
            store.snapshot_wanted.set(None);
            self.stats.snapshots_generated += 1;
            // raft asks again on the follower's next heartbeat response.
            self.touched.insert(*id);
        }
        Ok(())
    }

    /// Queues an outgoing `MsgSnapshot` behind its tables (step 3).
    pub(crate) fn queue_snapshot(&mut self, id: RegionId, m: Message) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let to = ekv_proto::PeerId(m.to);
        let meta = m.get_snapshot().get_metadata();
        let prefix = format!("{}-{}-{}", id.get(), meta.term, meta.index);
        let files = self.snap.generated.get(&id).cloned().unwrap_or_default();
        let matches = files
            .iter()
            .all(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)));
        let Some(addr) = peer.addr_of(to).filter(|_| matches) else {
            peer.raft.report_snapshot(to.get(), raft::SnapshotStatus::Failure);
            return;
        };
        self.snap.outgoing.push_back(Outgoing {
            region: id,
            addr,
            from: peer.meta,
            to: ekv_proto::PeerMeta { id: to, store_id: addr.store },
            epoch: peer.region().epoch,
            range: crate::shard::range_bytes(peer.region()),
            msg: m,
            files,
            file: 0,
            offset: 0,
        });
    }

    /// Sends snapshot chunks within the rate limit.
    pub(crate) async fn pump_snapshots(&mut self) -> Result<()> {
        let per_tick = self.cfg.snap_bytes_per_tick;
        let elapsed = self.clock.saturating_sub(self.snap.refilled_at);
        if elapsed > 0 || self.snap.refilled_at == 0 {
            self.snap.budget = (self.snap.budget + per_tick * elapsed.max(1)).min(2 * per_tick);
            self.snap.refilled_at = self.clock.max(1);
        }
        while self.snap.budget > 0 {
            let Some(out) = self.snap.outgoing.front_mut() else { break };
            let (data, file, offset) = if let Some((path, size)) = out.files.get(out.file).cloned() {
                let len = (size - out.offset).min(self.cfg.snap_chunk_bytes as u64);
                let f = self.fs.open(&path).await?;
                let bytes = f.read_at(out.offset, len as usize).await?;
                f.close().await?;
                let chunk = (Bytes::copy_from_slice(&bytes), out.file as u32, out.offset);
                out.offset += len;
                if out.offset >= size {
                    out.file += 1;
                    out.offset = 0;
                }
                chunk
            } else {
                (Bytes::new(), 0, 0)
            };
            self.snap.budget = self.snap.budget.saturating_sub(data.len() as u64);
            let last = out.file >= out.files.len();
            let chunk = SnapshotChunk {
                region_id: out.region,
                from: out.from,
                from_shard: self.id,
                to: out.to,
                index: out.msg.get_snapshot().get_metadata().index,
                term: out.msg.get_snapshot().get_metadata().term,
                file,
                offset,
                data,
                msg: last.then(|| Box::new(out.msg.clone())),
                epoch: out.epoch,
                start_key: out.range.0.clone(),
                end_key: out.range.1.clone(),
            };
            let addr = out.addr;
            self.out.entry(addr).or_default().push(StoreMsg::Snapshot(chunk));
            if last {
                let out = self.snap.outgoing.pop_front().expect("front");
                // Files of a snapshot regenerated meanwhile were left for
                // this one to finish.
                for (p, _) in &out.files {
                    let current =
                        self.snap.generated.get(&out.region).is_some_and(|g| g.iter().any(|f| &f.0 == p));
                    if !current && !self.snap.sending(p) {
                        let _ = self.fs.remove(p).await;
                    }
                }
                if let Some(peer) = self.peers.get_mut(&out.region) {
                    peer.raft.report_snapshot(out.to.id.get(), raft::SnapshotStatus::Finish);
                    self.touched.insert(out.region);
                }
            }
        }
        Ok(())
    }

    /// Writes received chunks; steps complete snapshots into raft (step 4).
    pub(crate) async fn receive_snapshot_chunks(&mut self) -> Result<()> {
        while let Some(chunk) = self.snap.incoming.pop_front() {
            let key = (chunk.region_id, chunk.index, chunk.term);
            if let Err(e) = self.receive_chunk(chunk, key).await {
                if e.is_fatal() && !matches!(e, Error::Corruption(_)) {
                    return Err(e);
                }
                tracing::warn!(region = %key.0, error = %e, "snapshot chunk dropped");
                if let Some(inc) = self.snap.receiving.remove(&key) {
                    for (_, (p, f)) in inc.files {
                        let _ = f.close().await;
                        let _ = self.fs.remove(&p).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn receive_chunk(&mut self, chunk: SnapshotChunk, key: (RegionId, u64, u64)) -> Result<()> {
        let Some(peer) = self.peers.get(&chunk.region_id) else { return Ok(()) };
        if peer.meta.id != chunk.to.id {
            return Ok(());
        }
        // A late duplicate of a snapshot already complete (or older than
        // what the peer holds) must not reopen its files: they wait to be
        // ingested.
        let complete = self.snap.received.get(&chunk.region_id).is_some_and(|r| (r.0, r.1) == (key.1, key.2));
        if complete || (peer.is_initialized() && key.1 <= peer.applied_index()) {
            return Ok(());
        }
        if !chunk.data.is_empty() {
            let inc = self
                .snap
                .receiving
                .entry(key)
                .or_insert_with(|| Incoming { files: BTreeMap::new(), bytes: BTreeMap::new() });
            if let std::collections::btree_map::Entry::Vacant(slot) = inc.files.entry(chunk.file) {
                let name = format!("{}-{}-{}-{:04}.sst", key.0.get(), key.2, key.1, chunk.file);
                let path = self.snap.recv_dir.join(name);
                let f = self.fs.create(&path).await?;
                slot.insert((path, f));
            }
            let (_, f) = &inc.files[&chunk.file];
            if chunk.offset % f.alignment() != 0 || chunk.data.len() as u64 % f.alignment() != 0 {
                return Err(corrupt(format!(
                    "snapshot chunk at {} is not aligned for this disk",
                    chunk.offset
                )));
            }
            let mut buf = f.alloc_buf(chunk.data.len());
            buf.as_mut_slice().copy_from_slice(&chunk.data);
            f.write_at(buf, chunk.offset).await?;
            *inc.bytes.entry(chunk.file).or_default() += chunk.data.len() as u64;
        }
        let Some(msg) = chunk.msg else { return Ok(()) };
        let desc = SnapDesc::decode(msg.get_snapshot().get_data())
            .map_err(|e| corrupt(format!("snapshot descriptor: {e}")))?;
        let inc = self
            .snap
            .receiving
            .remove(&key)
            .unwrap_or(Incoming { files: BTreeMap::new(), bytes: BTreeMap::new() });
        let mut paths = Vec::new();
        for (i, size) in desc.file_sizes.iter().enumerate() {
            let got = inc.bytes.get(&(i as u32)).copied().unwrap_or(0);
            if got != *size {
                for (_, (p, f)) in inc.files {
                    let _ = f.close().await;
                    let _ = self.fs.remove(&p).await;
                }
                return Err(corrupt(format!("snapshot file {i}: got {got} bytes of {size}")));
            }
        }
        for (_, (p, f)) in inc.files {
            f.fdatasync().await?;
            f.close().await?;
            paths.push(p);
        }
        self.fs.sync_dir(&self.snap.recv_dir).await?;
        let region = &desc.region;
        // Regions of every shard of the store count: two shards must never
        // hold overlapping regions.
        let overlaps = self.router.overlapping(region.id, &region.start_key, &region.end_key).is_some();
        let peer = self.peers.get_mut(&chunk.region_id).expect("checked above");
        let stale = peer.is_initialized() && region.epoch.is_stale(&peer.region().epoch);
        if overlaps || stale {
            for p in paths {
                let _ = self.fs.remove(&p).await;
            }
            return Ok(());
        }
        if let Some((_, _, old)) = self.snap.received.insert(chunk.region_id, (key.1, key.2, paths)) {
            for p in old {
                let _ = self.fs.remove(&p).await;
            }
        }
        peer.peer_addrs
            .insert(chunk.from.id, ShardAddr { store: chunk.from.store_id, shard: chunk.from_shard });
        peer.hibernating = false;
        let _ = peer.raft.step(*msg);
        self.touched.insert(chunk.region_id);
        Ok(())
    }

    /// Installs a snapshot raft handed back in a `Ready` (step 5).
    pub(crate) async fn apply_snapshot(
        &mut self,
        id: RegionId,
        snap: &Snapshot,
        wal: &mut LogBatch,
    ) -> Result<()> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let desc =
            SnapDesc::decode(snap.get_data()).map_err(|e| corrupt(format!("snapshot descriptor: {e}")))?;
        let Some((ri, rt, mut files)) = self.snap.received.remove(&id) else {
            return Err(corrupt(format!("{id}: snapshot {term}/{index} applied without its files")));
        };
        if (ri, rt) != (index, term) {
            return Err(corrupt(format!("{id}: snapshot {term}/{index} applied with files of {rt}/{ri}")));
        }
        let peer = self.peers.get(&id).expect("caller holds the peer");
        let st = PeerState {
            peer_id: peer.meta.id,
            region: desc.region.clone(),
            tombstone: false,
            apply: ApplyState {
                applied_index: index,
                applied_term: term,
                truncated_index: index,
                truncated_term: term,
            },
            conf_state: meta.get_conf_state().clone(),
        };
        let key = state_key(id).to_vec();
        let mut end = key.clone();
        end.push(0);
        let meta_path = self.snap.recv_dir.join(format!("{}-{}-{}-meta.sst", id.get(), term, index));
        let range = KeyRange { cf: self.meta_cf, start: key.clone(), end: Some(end) };
        self.lsm.write_table(&meta_path, &range, &[(key, st.encode())]).await?;
        files.push(meta_path);
        self.lsm.ingest(&files).await?;
        crash_point!("engine::snapshot::after_ingest");
        let peer = self.peers.get_mut(&id).expect("caller holds the peer");
        let store = peer.raft.mut_store();
        store.state = st;
        store.entries.clear();
        store.hard_state.commit = store.hard_state.commit.max(index);
        store.hard_state.term = store.hard_state.term.max(term);
        store.snapshot = None;
        peer.applied_term = term;
        self.router.set_range(&desc.region);
        wal.compact(id, index + 1);
        self.stats.snapshots_applied += 1;
        Ok(())
    }
}

/// True when `[a0, a1)` and `[b0, b1)` share a key (empty end: unbounded).
#[cfg(test)]
pub(crate) fn ranges_overlap(a0: &[u8], a1: &[u8], b0: &[u8], b1: &[u8]) -> bool {
    (a1.is_empty() || b0 < a1) && (b1.is_empty() || a0 < b1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips_and_damage_is_detected() {
        let d = SnapDesc {
            region: Region { id: RegionId(3), ..Default::default() },
            file_sizes: vec![4096, 512],
        };
        let data = d.encode();
        assert_eq!(SnapDesc::decode(&data).unwrap(), d);
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(SnapDesc::decode(&bad).is_err());
        }
    }

    #[test]
    fn overlap_handles_unbounded_ends() {
        assert!(ranges_overlap(b"", b"", b"a", b"b"));
        assert!(!ranges_overlap(b"a", b"b", b"b", b"c"));
        assert!(ranges_overlap(b"a", b"c", b"b", b""));
        assert!(!ranges_overlap(b"c", b"", b"a", b"c"));
    }
}
