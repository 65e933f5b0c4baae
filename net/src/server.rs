//! A shard's server: a listener on the shard's own port (base port plus
//! shard index), on the shard's own executor, so that a client that knows
//! a region's shard reaches the core that owns it with no hop.
//!
//! Per connection:
//! 1. a reader task feeds bytes to a [`FrameDecoder`]; every whole frame
//!    becomes a request task, up to `max_in_flight` at once (then the reader
//!    stops reading: TCP pushes back on the client, other connections go on);
//! 2. each request task decodes its message, calls the store (a region on
//!    another shard is forwarded over the store's bounded channel; an
//!    unknown region gets RegionNotFound), and queues its answer;
//! 3. a writer task sends answers as they come, matched by request id, in
//!    any order.
//!
//! Each answered request is counted per operation and outcome, with its
//! time from read to answer queued ([`crate::server_stats`]).
//!
//! Bad input: a frame whose header is wrong (magic, version, checksum,
//! oversize) gets one error frame and the connection is closed; a frame of
//! an unknown type or with a malformed body gets an error frame and the
//! connection goes on. Each is logged in one line.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ekv_engine::fsm::ShardStop;
use ekv_engine::{Request, StoreHandle};
use ekv_proto::frame::{Frame, FrameDecoder, FrameError, FrameFlags, FrameHeader, FrameLimits, HEADER_LEN};
use ekv_proto::msg::{AnyMessage, ErrorResponse, MsgType};
use ekv_proto::{RegionId, RequestId, ShardId};
use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use glommio::net::{TcpListener, TcpStream};

use crate::dispatch::{to_command, to_response};
use crate::errors::to_wire;
use crate::server_stats::{op_slot, outcome_slot, ServerStats, ShardServerStats};

/// Settings of the shard servers of a store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (the port is `base_port + shard`).
    pub host: std::net::IpAddr,
    /// Port of shard 0.
    pub base_port: u16,
    /// Frame and message limits.
    pub limits: FrameLimits,
    /// Requests one connection may have in flight; beyond it the server
    /// stops reading that connection until answers leave.
    pub max_in_flight: usize,
    /// Where the servers count requests; clones of the settings share it,
    /// so whoever made them reads every shard's counters from their copy.
    pub stats: ServerStats,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: std::net::IpAddr::from([127, 0, 0, 1]),
            base_port: 20160,
            limits: FrameLimits::default(),
            max_in_flight: 1024,
            stats: ServerStats::default(),
        }
    }
}

impl ServerConfig {
    /// The address shard `shard` listens on.
    pub fn addr(&self, shard: ShardId) -> SocketAddr {
        SocketAddr::new(self.host, self.base_port + shard.get() as u16)
    }
}

/// Answers the frames addressed to the cluster rather than to a region
/// (region id [`RegionId::META`]): the meta service, on its members.
pub trait MetaService {
    /// The answer to `msg`.
    fn call(&self, msg: AnyMessage) -> futures::future::LocalBoxFuture<'static, AnyMessage>;
}

/// Binds shard `shard`'s listener and spawns its accept loop on the current
/// glommio executor: call it from `StoreSpec::on_shard_start`.
///
/// # Errors
/// The port cannot be bound.
pub fn spawn_shard_server(
    cfg: Rc<ServerConfig>,
    shard: ShardId,
    store: StoreHandle,
    stop: ShardStop,
) -> std::io::Result<()> {
    spawn_server(cfg, shard, store, stop, None)
}

/// [`spawn_shard_server`] that also answers meta-service frames through `meta`.
///
/// # Errors
/// The port cannot be bound.
pub fn spawn_server(
    cfg: Rc<ServerConfig>,
    shard: ShardId,
    store: StoreHandle,
    stop: ShardStop,
    meta: Option<Rc<dyn MetaService>>,
) -> std::io::Result<()> {
    let addr = cfg.addr(shard);
    let listener = TcpListener::bind(addr).map_err(|e| std::io::Error::other(e.to_string()))?;
    let stats = cfg.stats.shard(shard, addr);
    glommio::spawn_local(async move {
        loop {
            let accepted = {
                let (accept, stopped) = (listener.accept(), stop.wait());
                futures::pin_mut!(accept, stopped);
                match future::select(accept, stopped).await {
                    Either::Left((r, _)) => r,
                    // The shard stops: the listener closes with this task.
                    Either::Right(_) => return,
                }
            };
            match accepted {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stats.connection();
                    let conn = Conn { cfg: cfg.clone(), store: store.clone(), shard, stats: stats.clone() };
                    let conn = serve(stream, conn, stop.clone(), meta.clone());
                    glommio::spawn_local(conn).detach();
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "accept failed");
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
    .detach();
    Ok(())
}

/// The frame of an answer; an answer over the frame limit becomes the
/// FrameTooLarge error instead.
fn frame_bytes(msg: &AnyMessage, region: RegionId, request: RequestId, limits: &FrameLimits) -> Vec<u8> {
    let framed = |msg: &AnyMessage| -> Result<Vec<u8>, FrameError> {
        let body = msg.encode_into_vec();
        if body.len() > limits.max_frame_body as usize {
            return Err(FrameError::TooLarge {
                len: body.len() as u64,
                limit: u64::from(limits.max_frame_body),
            });
        }
        let flags = match msg {
            AnyMessage::ErrorResponse(_) => FrameFlags::RESPONSE.union(FrameFlags::ERROR),
            _ => FrameFlags::RESPONSE,
        };
        let mut out = vec![0u8; HEADER_LEN];
        let mut h = [0u8; HEADER_LEN];
        FrameHeader::new(msg.msg_type(), flags, region, request, body.len() as u32).encode_into(&mut h);
        out.copy_from_slice(&h);
        out.extend_from_slice(&body);
        Ok(out)
    };
    framed(msg).unwrap_or_else(|e| {
        let err = AnyMessage::ErrorResponse(ErrorResponse::from(e));
        framed(&err).unwrap_or_default()
    })
}

/// What a connection's tasks share.
struct Conn {
    cfg: Rc<ServerConfig>,
    store: StoreHandle,
    shard: ShardId,
    stats: Arc<ShardServerStats>,
}

async fn serve(stream: TcpStream, conn: Conn, stop: ShardStop, meta: Option<Rc<dyn MetaService>>) {
    let Conn { cfg, store, shard, stats } = conn;
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = stream.split();
    let (tx, mut rx) = mpsc::unbounded::<Vec<u8>>();
    let in_flight = Rc::new(Cell::new(0usize));
    let answered = Rc::new(ekv_io::Event::default());
    let writer = glommio::spawn_local(async move {
        while let Some(bytes) = rx.next().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.close().await;
    });
    let mut decoder = FrameDecoder::new(cfg.limits);
    let mut buf = vec![0u8; 64 << 10];
    'read: loop {
        while in_flight.get() >= cfg.max_in_flight && !stop.is_stopped() {
            // Answers must leave before more is read: backpressure.
            let g = answered.generation();
            answered.changed_since(g).await;
        }
        let read = {
            let (read, stopped) = (rd.read(&mut buf), stop.wait());
            futures::pin_mut!(read, stopped);
            match future::select(read, stopped).await {
                Either::Left((r, _)) => r,
                // The shard stops: the connection closes.
                Either::Right(_) => break,
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A request's time starts when its frame is decoded, read once for
        // all the requests of one read, and not at all for raft traffic
        // (a clock read costs several times what counting does).
        let mut decoded_at: Option<Instant> = None;
        let mut data = &buf[..n];
        while !data.is_empty() {
            let taken = decoder.feed(data);
            data = &data[taken..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) if is_raft(&frame) => {
                        // Raft traffic from another store: one-way, no answer.
                        stats.raft_frame(frame.header.body_len as usize);
                        match frame.message(&cfg.limits) {
                            Ok(AnyMessage::RaftMessage(m)) => {
                                crate::transport::deliver(&store, shard, &m.payload);
                            }
                            Ok(AnyMessage::SnapshotChunk(m)) => {
                                crate::transport::deliver(&store, shard, &m.payload);
                            }
                            _ => tracing::info!(peer = ?peer, "bad raft frame"),
                        }
                    }
                    Ok(Some(frame)) => {
                        let started = *decoded_at.get_or_insert_with(Instant::now);
                        in_flight.set(in_flight.get() + 1);
                        let (cfg, store, tx, in_flight) =
                            (cfg.clone(), store.clone(), tx.clone(), in_flight.clone());
                        let (answered, meta, stats) = (answered.clone(), meta.clone(), stats.clone());
                        glommio::spawn_local(async move {
                            let op = op_slot(frame.header.msg_type);
                            let (bytes, outcome) = answer(frame, &cfg, &store, meta.as_deref()).await;
                            let _ = tx.unbounded_send(bytes);
                            stats.record(op, outcome, started.elapsed().as_nanos() as u64);
                            in_flight.set(in_flight.get() - 1);
                            answered.notify();
                        })
                        .detach();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(peer = ?peer, error = %e, "bad frame; closing the connection");
                        stats.bad_frame();
                        let err = AnyMessage::ErrorResponse(ErrorResponse::from(e));
                        let _ = tx.unbounded_send(frame_bytes(&err, RegionId(0), RequestId(0), &cfg.limits));
                        break 'read;
                    }
                }
            }
            if taken == 0 && !data.is_empty() {
                // The decoder holds a whole frame it has not handed out.
                break;
            }
        }
    }
    drop(tx);
    // Answers of requests still running go out before the writer stops.
    let _ = writer.await;
}

fn is_raft(frame: &Frame) -> bool {
    matches!(frame.header.kind(), Ok(MsgType::RaftMessage | MsgType::SnapshotChunk))
}

/// The bytes of the answer to one frame, and its outcome slot
/// ([`outcome_slot`]).
async fn answer(
    frame: Frame,
    cfg: &ServerConfig,
    store: &StoreHandle,
    meta: Option<&dyn MetaService>,
) -> (Vec<u8>, usize) {
    let (region, request) = (frame.header.region_id, frame.header.request_id);
    let reply = match frame.message(&cfg.limits) {
        Err(e) => {
            tracing::info!(region = %region, error = %e, "bad request");
            AnyMessage::ErrorResponse(e)
        }
        Ok(msg) if region == RegionId::META => match meta {
            Some(m) => m.call(msg).await,
            None => AnyMessage::ErrorResponse(ErrorResponse::bad_request(
                "this is a store, not a meta-service member",
            )),
        },
        Ok(msg) => match to_command(msg) {
            Err(e) => AnyMessage::ErrorResponse(e),
            Ok((epoch, cmd, expect)) => match store.call(Request { region_id: region, epoch, cmd }).await {
                Ok(r) => to_response(expect, r).unwrap_or_else(AnyMessage::ErrorResponse),
                Err(e) => AnyMessage::ErrorResponse(to_wire(&e)),
            },
        },
    };
    (frame_bytes(&reply, region, request, &cfg.limits), outcome_slot(&reply))
}
