//! One connection to one shard's port, shared by any number of callers:
//! requests are pipelined and matched to answers by request id.
//!
//! Runtime-agnostic by design: a reader thread per connection fills each
//! request's slot, which a blocking caller waits on (with a deadline) and an
//! async caller polls (any executor: tokio, futures, ...). Writes go out
//! under a lock from the caller's thread; they are small and never wait on
//! the server's answers.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ekv_proto::frame::{encode_frame, FrameDecoder, FrameFlags, FrameLimits};
use ekv_proto::msg::{AnyMessage, Message, WireError};
use ekv_proto::{RegionId, RequestId};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server answered with a typed error.
    #[error("{0}")]
    Wire(WireError),
    /// No answer before the deadline: the outcome is unknown.
    #[error("no answer before the deadline")]
    Timeout,
    /// The connection broke before the answer came: the outcome is unknown.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The request could not be sent (nothing reached the server).
    #[error("send failed: {0}")]
    Send(String),
}

impl CallError {
    /// True when the request certainly did not take effect, so that even a
    /// write may be retried.
    pub fn definitely_not_applied(&self) -> bool {
        match self {
            CallError::Wire(w) => w.definitely_not_applied(),
            CallError::Send(_) => true,
            CallError::Timeout | CallError::ConnectionLost(_) => false,
        }
    }
}

#[derive(Default)]
struct SlotState {
    result: Option<Result<AnyMessage, CallError>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, r: Result<AnyMessage, CallError>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.result.is_none() {
            st.result = Some(r);
        }
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        self.ready.notify_all();
    }
}

struct Inner {
    writer: Mutex<TcpStream>,
    pending: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    limits: FrameLimits,
    addr: SocketAddr,
}

impl Inner {
    fn fail_all(&self, why: &str) {
        self.closed.store(true, Ordering::SeqCst);
        let slots: Vec<Arc<Slot>> =
            self.pending.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, s)| s).collect();
        for s in slots {
            s.fill(Err(CallError::ConnectionLost(why.to_owned())));
        }
    }
}

impl Drop for Inner {
    /// The reader thread holds a clone of the socket: shut it down so that
    /// the thread sees the end and the server its connection close.
    fn drop(&mut self) {
        let w = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
}

/// A pipelined connection to one shard.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.inner.addr).finish_non_exhaustive()
    }
}

/// An answer on its way: `.await` it, or [`Reply::wait`] with a deadline.
pub struct Reply {
    slot: Arc<Slot>,
    id: u64,
    conn: Arc<Inner>,
    /// The answer was taken (the reader thread removed the slot).
    done: bool,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Reply {
    /// Blocks until the answer comes or `deadline` passes ([`CallError::Timeout`]).
    pub fn wait(mut self, deadline: Instant) -> Result<AnyMessage, CallError> {
        let slot = self.slot.clone();
        let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = st.result.take() {
                self.done = true;
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CallError::Timeout);
            }
            st = self.slot.ready.wait_timeout(st, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for Reply {
    /// An answer no one waits for any more (a timeout, a dropped future)
    /// must not keep its slot until the connection closes.
    fn drop(&mut self) {
        if !self.done {
            self.conn.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        }
    }
}

impl Future for Reply {
    type Output = Result<AnyMessage, CallError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.slot.clone();
        let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        match st.result.take() {
            Some(r) => {
                self.done = true;
                Poll::Ready(r)
            }
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Connection {
    /// Connects to `addr` (within `timeout`) and starts the reader thread.
    ///
    /// # Errors
    /// The connection cannot be made.
    pub fn connect(addr: SocketAddr, timeout: Duration, limits: FrameLimits) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            limits,
            addr,
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(format!("ekv-client-{addr}"))
            .spawn(move || read_loop(reader, weak, limits))?;
        Ok(Self { inner })
    }

    /// True once the connection broke (callers should dial a new one).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Sends `msg` for `region`; the answer comes through the [`Reply`].
    ///
    /// # Errors
    /// [`CallError::Send`] when nothing could be sent.
    pub fn send<M: Message>(&self, msg: &M, region: RegionId) -> Result<Reply, CallError> {
        if self.is_closed() {
            return Err(CallError::Send("connection closed".into()));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode_frame(&mut frame, msg, FrameFlags::NONE, region, RequestId(id), &self.inner.limits)
            .map_err(|e| CallError::Send(e.to_string()))?;
        let slot = Arc::new(Slot::default());
        self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(id, slot.clone());
        let written = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner).write_all(&frame);
        if let Err(e) = written {
            self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            // Part of the frame may have left: the stream is unusable.
            self.inner.fail_all(&e.to_string());
            return Err(CallError::ConnectionLost(e.to_string()));
        }
        Ok(Reply { slot, id, conn: self.inner.clone(), done: false })
    }

    /// Sends `msg` and blocks for its answer until `deadline`.
    ///
    /// # Errors
    /// See [`CallError`]; a typed server error is [`CallError::Wire`].
    pub fn call_blocking<M: Message>(
        &self,
        msg: &M,
        region: RegionId,
        deadline: Instant,
    ) -> Result<AnyMessage, CallError> {
        into_result(self.send(msg, region)?.wait(deadline))
    }

    /// Sends `msg` and awaits its answer (wrap it in your runtime's timeout).
    ///
    /// # Errors
    /// See [`CallError`]; a typed server error is [`CallError::Wire`].
    pub async fn call<M: Message>(&self, msg: &M, region: RegionId) -> Result<AnyMessage, CallError> {
        into_result(self.send(msg, region)?.await)
    }
}

fn into_result(r: Result<AnyMessage, CallError>) -> Result<AnyMessage, CallError> {
    match r? {
        AnyMessage::ErrorResponse(e) => Err(CallError::Wire(e.error)),
        m => Ok(m),
    }
}

fn read_loop(mut stream: TcpStream, inner: std::sync::Weak<Inner>, limits: FrameLimits) {
    let mut dec = FrameDecoder::new(limits);
    let mut buf = vec![0u8; 64 << 10];
    let why = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break "closed by the server".to_owned(),
            Ok(n) => n,
            Err(e) => break e.to_string(),
        };
        let Some(conn) = inner.upgrade() else { return };
        let mut data = &buf[..n];
        let mut bad = None;
        while !data.is_empty() && bad.is_none() {
            let taken = dec.feed(data);
            data = &data[taken..];
            loop {
                match dec.next_frame() {
                    Ok(Some(frame)) => {
                        let id = frame.header.request_id.get();
                        let slot = conn.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                        if let Some(slot) = slot {
                            let msg = frame.message(&limits).unwrap_or_else(AnyMessage::ErrorResponse);
                            slot.fill(Ok(msg));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        bad = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(why) = bad {
            break why;
        }
    };
    if let Some(conn) = inner.upgrade() {
        conn.fail_all(&why);
    }
}
