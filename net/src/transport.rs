//! The store-to-store raft transport over TCP, implementing
//! `ekv_engine::Transport` on each shard's executor.
//!
//! - The messages of one round to one destination shard become one frame
//!   ([`crate::raft_codec`] inside a `RaftMessage` frame).
//! - Each destination shard has a connection task with a bounded queue; a
//!   full queue drops the frame (raft resends), a broken connection is
//!   re-dialled with backoff.
//! - Snapshot chunks travel on a connection of their own, so that a large
//!   snapshot never sits in front of heartbeats (the engine already limits
//!   their rate).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ekv_engine::{ShardAddr, StoreHandle, StoreMsg, Transport};
use ekv_proto::frame::{encode_frame, FrameFlags, FrameLimits};
use ekv_proto::msg::{RaftMessage, SnapshotChunk};
use ekv_proto::{RegionId, RequestId, StoreId};
use futures::channel::mpsc;
use futures::io::AsyncWriteExt;
use futures::StreamExt;

use crate::raft_codec;

/// Where a store's shard 0 listens; shard `i` listens on that port plus `i`.
pub type Resolver = Arc<dyn Fn(StoreId) -> Option<SocketAddr> + Send + Sync>;

/// Frames queued per destination before new ones are dropped.
const QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One shard's connections to other stores' shards.
pub struct TcpTransport {
    resolver: Resolver,
    limits: FrameLimits,
    /// (destination, snapshot lane) → queue of frames.
    lanes: HashMap<(ShardAddr, bool), mpsc::Sender<Vec<u8>>>,
    /// Frames dropped because a queue was full or a frame did not encode.
    pub dropped: u64,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").field("lanes", &self.lanes.len()).finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// A transport resolving stores with `resolver`. Create it on the
    /// shard's executor: its connection tasks are spawned there.
    pub fn new(resolver: Resolver, limits: FrameLimits) -> Self {
        Self { resolver, limits, lanes: HashMap::new(), dropped: 0 }
    }

    fn lane(&mut self, to: ShardAddr, snapshot: bool) -> &mut mpsc::Sender<Vec<u8>> {
        let resolver = self.resolver.clone();
        self.lanes.entry((to, snapshot)).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            glommio::spawn_local(run_lane(to, resolver, rx)).detach();
            tx
        })
    }

    fn frame(&self, msgs: &[StoreMsg], snapshot: bool) -> Option<Vec<u8>> {
        let mut payload = Vec::new();
        raft_codec::encode_into(&mut payload, msgs).ok()?;
        let mut out = Vec::new();
        let (region, id) = (RegionId(0), RequestId(0));
        let r = if snapshot {
            encode_frame(&mut out, &SnapshotChunk { payload }, FrameFlags::NONE, region, id, &self.limits)
        } else {
            encode_frame(&mut out, &RaftMessage { payload }, FrameFlags::NONE, region, id, &self.limits)
        };
        r.ok().map(|_| out)
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, to: ShardAddr, msgs: Vec<StoreMsg>) {
        let (snaps, raft): (Vec<StoreMsg>, Vec<StoreMsg>) =
            msgs.into_iter().partition(|m| matches!(m, StoreMsg::Snapshot(_)));
        for (group, snapshot) in [(raft, false), (snaps, true)] {
            if group.is_empty() {
                continue;
            }
            let Some(frame) = self.frame(&group, snapshot) else {
                self.dropped += 1;
                continue;
            };
            if self.lane(to, snapshot).try_send(frame).is_err() {
                // Full (or the lane died): raft resends what matters.
                self.dropped += 1;
            }
        }
    }
}

/// Keeps one connection to `to` and writes its frames, re-dialling with
/// backoff; frames queued while it is down wait (up to the queue's bound).
async fn run_lane(to: ShardAddr, resolver: Resolver, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut backoff = BACKOFF_MIN;
    let mut pending: Option<Vec<u8>> = None;
    loop {
        let Some(base) = resolver(to.store) else {
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        let addr = SocketAddr::new(base.ip(), base.port() + to.shard.get() as u16);
        let mut stream = match glommio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        backoff = BACKOFF_MIN;
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => match rx.next().await {
                    Some(f) => f,
                    None => return,
                },
            };
            if stream.write_all(&frame).await.is_err() {
                // The frame may be lost; raft resends.
                break;
            }
        }
    }
}

/// Hands the raft traffic of a received frame to the store: everything to
/// `shard`, whose shard forwards what belongs to another.
pub(crate) fn deliver(store: &StoreHandle, shard: ekv_proto::ShardId, payload: &[u8]) -> bool {
    match raft_codec::decode_from(payload) {
        Ok(msgs) => {
            store.deliver_batch(shard, msgs);
            true
        }
        Err(e) => {
            tracing::info!(error = %e, "bad raft frame");
            false
        }
    }
}
