//! The `net` suite: the wire codec, and one shard server answering gets over
//! loopback against a plain TCP echo of the same byte sizes, measured in the
//! same run.
//!
//! # Cases
//!
//! - `codec/<message>/{encode,decode}`: nanoseconds per message body
//!   (`GetRequest` with a 16 B key, `GetResponse` with a 100 B value,
//!   `PutRequest` 16 B key + 100 B value, `ScanResponse` of 100 such pairs)
//!   and per 32-byte frame header; each the median of a few timed
//!   repetitions. Plain numbers: nothing in the run compares.
//! - `server_stats/record` and `server_stats/clock_read`: what counting a
//!   request costs the shard server (its operation and outcome slots and
//!   the counter and histogram bumps; one clock read). A request pays one
//!   record and at most two clock reads.
//! - `get/seq/client=connection`: one store, one shard, one region with one
//!   replica (no replication), production tick interval, preloaded with
//!   100-byte values written through the server (they stay in the LSM
//!   memtable: an in-memory region). One thread issues gets of random
//!   preloaded keys one after another through [`ekv_client::Connection`]
//!   (`call_blocking`), each timed from the call to its answer. Against
//!   `echo`'s p99, target `<= 1.3`.
//! - `get/seq/client=raw`: the same gets with the echo's client loop: a
//!   blocking `TcpStream` (nodelay) writing a pre-encoded request frame and
//!   reading the header, then the body, of the answer. It leaves out what
//!   the client library adds (its reader thread and the wake-up of the
//!   caller), so it is the like-for-like comparison of server and echo.
//! - `echo/seq`: a plain TCP echo server (std threads, one per connection)
//!   that reads exactly a GetRequest frame's bytes and writes back a
//!   GetResponse frame's bytes (100 B value), driven by the raw loop above.
//!   The three sequential loops run interleaved in rounds, so that a noisy
//!   neighbour hurts them alike.
//! - `get/pipelined/threads=N`: N client threads sharing one `Connection`
//!   (so requests are pipelined on one socket), closed loop: requests/s and
//!   p99.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekv_client::Connection;
use ekv_engine::{Config, Store};
use ekv_net::local::{free_base_port, single_replica_server};
use ekv_net::server::ServerConfig;
use ekv_proto::frame::{encode_frame, FrameFlags, FrameHeader, FrameLimits, HEADER_LEN};
use ekv_proto::msg::{
    AnyMessage, GetRequest, GetResponse, KvPair, Message, MsgType, PutRequest, RequestContext, ScanResponse,
};
use ekv_proto::{RegionEpoch, RegionId, RequestId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::{self, CaseResult, Latency, Machine, Report};

type BoxError = Box<dyn std::error::Error>;

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
const SCAN_PAIRS: usize = 100;
const EPOCH: RegionEpoch = RegionEpoch { conf_ver: 1, version: 1 };
const REGION: RegionId = RegionId(1);
/// Deadline of every call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a preload batch has in flight.
const PRELOAD_BATCH: usize = 256;
/// Pre-encoded request frames the raw loops cycle through.
const FRAME_POOL: usize = 1024;
/// Requests a client connection carries before the bench replaces it
/// (untimed), so that every case sees fresh and aged connections alike.
const ROTATE: u64 = 10_000;
/// The p99 target of the server against the echo.
const TARGET: &str = "<= 1.3";

/// Lengths of a run.
#[derive(Debug, Clone)]
struct Plan {
    codec_reps: usize,
    codec_rep: Duration,
    keys: usize,
    warmup: Duration,
    rounds: usize,
    round: Duration,
    pipelined_threads: usize,
    pipelined: Duration,
    leader_wait: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                codec_reps: 3,
                codec_rep: Duration::from_millis(50),
                keys: 2_000,
                warmup: Duration::from_millis(500),
                rounds: 3,
                round: Duration::from_millis(800),
                pipelined_threads: 8,
                pipelined: Duration::from_secs(3),
                leader_wait: Duration::from_secs(30),
            }
        } else {
            Plan {
                codec_reps: 5,
                codec_rep: Duration::from_millis(200),
                keys: 10_000,
                warmup: Duration::from_secs(2),
                rounds: 10,
                round: Duration::from_secs(2),
                pipelined_threads: 8,
                pipelined: Duration::from_secs(15),
                leader_wait: Duration::from_secs(60),
            }
        }
    }
}

/// Runs the net suite.
pub fn run(opts: &crate::Opts) -> Result<Report, BoxError> {
    let plan = Plan::new(opts.quick);
    let dir = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("net", Machine::detect(Some(dir.path())));
    codec_cases(opts, &plan, &mut report);
    let server_cases = [
        "get/seq/client=connection".to_owned(),
        "get/seq/client=raw".to_owned(),
        "echo/seq".to_owned(),
        format!("get/pipelined/threads={}", plan.pipelined_threads),
    ];
    if server_cases.iter().any(|c| opts.wants(c)) {
        server_and_echo(opts, &plan, dir.path(), &mut report)?;
    }
    report.note(format!(
        "{} run; one store, one shard, one one-replica region, tick_interval {:?}; {} keys of {} B values \
         preloaded through the server (memtable); sequential cases interleaved in {} rounds of {:?}",
        if opts.quick { "quick" } else { "full" },
        Config::default().tick_interval,
        plan.keys,
        VALUE_LEN,
        plan.rounds,
        plan.round,
    ));
    Ok(report)
}

// ---------------------------------------------------------------- codec

fn key(i: usize) -> Vec<u8> {
    let k = format!("key{i:013}").into_bytes();
    debug_assert_eq!(k.len(), KEY_LEN);
    k
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![b'v'; VALUE_LEN];
    let tag = i.to_le_bytes();
    v[..tag.len()].copy_from_slice(&tag);
    v
}

fn ctx() -> RequestContext {
    RequestContext { cf: String::new(), epoch: EPOCH }
}

/// Median over `reps` repetitions of the ns per call of `op`, each
/// repetition running batches of calls for at least `rep`.
fn ns_per_op(reps: usize, rep: Duration, mut op: impl FnMut()) -> f64 {
    const BATCH: u64 = 256;
    // Warm caches and the branch predictor once.
    for _ in 0..BATCH {
        op();
    }
    let mut samples: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            let mut ops = 0u64;
            while start.elapsed() < rep {
                for _ in 0..BATCH {
                    op();
                }
                ops += BATCH;
            }
            start.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn codec_message<M: Message>(opts: &crate::Opts, plan: &Plan, report: &mut Report, name: &str, msg: &M) {
    let limits = FrameLimits::default();
    let case = format!("codec/{name}/encode");
    if opts.wants(&case) {
        let mut buf = Vec::with_capacity(64 << 10);
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            buf.clear();
            black_box(msg).encode_into(&mut buf);
            black_box(&buf);
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
    let case = format!("codec/{name}/decode");
    if opts.wants(&case) {
        let body = msg.encode_into_vec();
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            let m = M::decode_exact(black_box(&body), &limits).expect("the body just encoded decodes");
            black_box(m);
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
}

fn codec_cases(opts: &crate::Opts, plan: &Plan, report: &mut Report) {
    codec_message(opts, plan, report, "get_request/key=16", &GetRequest { ctx: ctx(), key: key(7) });
    codec_message(opts, plan, report, "get_response/value=100", &GetResponse { value: Some(value(7)) });
    codec_message(
        opts,
        plan,
        report,
        "put_request/key=16/value=100",
        &PutRequest { ctx: ctx(), key: key(7), value: value(7) },
    );
    let scan =
        ScanResponse { pairs: (0..SCAN_PAIRS).map(|i| KvPair { key: key(i), value: value(i) }).collect() };
    codec_message(opts, plan, report, "scan_response/pairs=100/key=16/value=100", &scan);

    let limits = FrameLimits::default();
    let header = FrameHeader::new(MsgType::GetRequest, FrameFlags::NONE, REGION, RequestId(42), 123);
    let case = "codec/frame_header/encode";
    if opts.wants(case) {
        let mut out = [0u8; HEADER_LEN];
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            black_box(&header).encode_into(&mut out);
            black_box(&out);
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
    let case = "codec/frame_header/decode";
    if opts.wants(case) {
        let mut bytes = [0u8; HEADER_LEN];
        header.encode_into(&mut bytes);
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            let h = FrameHeader::decode_from(black_box(&bytes), &limits).expect("a header just encoded");
            black_box(h);
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
    let case = "server_stats/record";
    if opts.wants(case) {
        let stats = ekv_net::server_stats::ServerStats::default();
        let shard = stats.shard(ekv_proto::ShardId(0), ([127, 0, 0, 1], 1).into());
        let answer = AnyMessage::GetResponse(GetResponse { value: Some(value(7)) });
        let mut nanos = 0u64;
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            // Latencies that walk the buckets, as real ones do.
            nanos = (nanos + 7_919) % 3_000_000;
            let op = ekv_net::server_stats::op_slot(black_box(MsgType::GetRequest as u16));
            shard.record(op, ekv_net::server_stats::outcome_slot(black_box(&answer)), black_box(nanos));
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
    let case = "server_stats/clock_read";
    if opts.wants(case) {
        let ns = ns_per_op(plan.codec_reps, plan.codec_rep, || {
            black_box(Instant::now());
        });
        report.push(CaseResult::plain(case, "ns_per_op", ns));
    }
}

// ---------------------------------------------------------------- server

/// The store under test with its shard server on loopback.
struct Server {
    store: Option<Store>,
    addr: SocketAddr,
}

impl Server {
    fn stop(mut self) -> Result<(), BoxError> {
        match self.store.take() {
            Some(s) => s.stop().map_err(|e| format!("stopping the store: {e}").into()),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.store.take() {
            let _ = s.stop();
        }
    }
}

fn start_server(dir: &std::path::Path, leader_wait: Duration) -> Result<Server, BoxError> {
    let base_port = free_base_port(ServerConfig::default().host, 1)?;
    let server = ServerConfig { base_port, ..ServerConfig::default() };
    // EKV_BENCH_SPIN_US: let the shard poll this long before sleeping (see
    // `Config::spin_before_park`), to measure what wake-ups cost.
    let spin = std::env::var("EKV_BENCH_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cfg = Config { spin_before_park: Duration::from_micros(spin), ..Config::default() };
    let (store, addr) = single_replica_server(dir, cfg, server, leader_wait)?;
    Ok(Server { store: Some(store), addr })
}

/// Writes `keys` pairs through a new connection to `addr`,
/// [`PRELOAD_BATCH`] in flight at a time.
fn preload(addr: SocketAddr, keys: usize) -> Result<(), BoxError> {
    let conn = Connection::connect(addr, Duration::from_secs(5), FrameLimits::default())?;
    let mut i = 0;
    while i < keys {
        let end = (i + PRELOAD_BATCH).min(keys);
        let replies = (i..end)
            .map(|k| conn.send(&PutRequest { ctx: ctx(), key: key(k), value: value(k) }, REGION))
            .collect::<Result<Vec<_>, _>>()?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        for r in replies {
            match r.wait(deadline)? {
                AnyMessage::PutResponse(_) => {}
                m => return Err(format!("preload put answered {m:?}").into()),
            }
        }
        i = end;
    }
    Ok(())
}

fn get_through(conn: &Connection, k: usize) -> Result<(), BoxError> {
    let req = GetRequest { ctx: ctx(), key: key(k) };
    match conn.call_blocking(&req, REGION, Instant::now() + CALL_TIMEOUT)? {
        AnyMessage::GetResponse(GetResponse { value: Some(v) }) if v.len() == VALUE_LEN => Ok(()),
        m => Err(format!("get of key {k} answered {m:?}").into()),
    }
}

/// The byte sizes of a GetRequest frame (16 B key) and of a GetResponse
/// frame (100 B value).
fn frame_sizes() -> (usize, usize) {
    let limits = FrameLimits::default();
    let mut req = Vec::new();
    encode_frame(
        &mut req,
        &GetRequest { ctx: ctx(), key: key(0) },
        FrameFlags::NONE,
        REGION,
        RequestId(1),
        &limits,
    )
    .expect("a get frame fits");
    let mut resp = Vec::new();
    encode_frame(
        &mut resp,
        &GetResponse { value: Some(value(0)) },
        FrameFlags::RESPONSE,
        REGION,
        RequestId(1),
        &limits,
    )
    .expect("a get response frame fits");
    (req.len(), resp.len())
}

/// Pre-encoded GetRequest frames of random preloaded keys.
fn request_pool(keys: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let limits = FrameLimits::default();
    (0..FRAME_POOL)
        .map(|i| {
            let mut f = Vec::new();
            let req = GetRequest { ctx: ctx(), key: key(rng.gen_range(0..keys)) };
            encode_frame(&mut f, &req, FrameFlags::NONE, REGION, RequestId(i as u64 + 1), &limits)
                .expect("a get frame fits");
            f
        })
        .collect()
}

/// What a raw loop checks of each answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A GetResponse frame with a body of this many bytes.
    GetResponse(usize),
    /// Any bytes, this many in all (the echo).
    Bytes(usize),
}

/// One blocking request/answer over `s`: writes `frame`, reads the header,
/// then the body.
fn raw_round_trip(s: &mut TcpStream, frame: &[u8], expect: Expect, buf: &mut [u8]) -> Result<(), BoxError> {
    s.write_all(frame)?;
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head)?;
    let body = match expect {
        Expect::GetResponse(body) => {
            let h = FrameHeader::decode_from(&head, &FrameLimits::default())
                .map_err(|e| format!("answer header: {e}"))?;
            if h.msg_type != MsgType::GetResponse as u16 || h.body_len as usize != body {
                return Err(format!("unexpected answer {h:?}").into());
            }
            body
        }
        Expect::Bytes(total) => total - HEADER_LEN,
    };
    s.read_exact(&mut buf[..body])?;
    Ok(())
}

/// A plain TCP echo server: a thread per connection reads `req_len` bytes
/// and writes back `resp_len` bytes, until the peer hangs up.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(req_len: usize, resp_len: usize) -> std::io::Result<Echo> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::Builder::new().name("echo-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let _ = std::thread::Builder::new().name("echo-conn".into()).spawn(move || {
                    let _ = s.set_nodelay(true);
                    let mut req = vec![0u8; req_len];
                    let resp = vec![0x5a_u8; resp_len];
                    while s.read_exact(&mut req).is_ok() {
                        if s.write_all(&resp).is_err() {
                            break;
                        }
                    }
                });
            }
        })?;
        Ok(Echo { addr, stop, accept: Some(accept) })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn connect_raw(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(CALL_TIMEOUT))?;
    Ok(s)
}

/// A blocking socket that is replaced, untimed, every [`ROTATE`] requests
/// (see [`ROTATE`]).
struct RawClient {
    addr: SocketAddr,
    stream: TcpStream,
    used: u64,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self { addr, stream: connect_raw(addr)?, used: 0 })
    }

    /// One round trip; returns its latency.
    fn round_trip(&mut self, frame: &[u8], expect: Expect, buf: &mut [u8]) -> Result<Duration, BoxError> {
        if self.used >= ROTATE {
            self.stream = connect_raw(self.addr)?;
            self.used = 0;
        }
        self.used += 1;
        let t = Instant::now();
        raw_round_trip(&mut self.stream, frame, expect, buf)?;
        Ok(t.elapsed())
    }
}

/// An [`ekv_client::Connection`] replaced, untimed, every [`ROTATE`] requests.
struct ConnClient {
    addr: SocketAddr,
    conn: Connection,
    used: u64,
}

impl ConnClient {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            addr,
            conn: Connection::connect(addr, Duration::from_secs(5), FrameLimits::default())?,
            used: 0,
        })
    }

    /// One get of key `k`; returns its latency.
    fn get(&mut self, k: usize) -> Result<Duration, BoxError> {
        if self.used >= ROTATE {
            self.conn = Connection::connect(self.addr, Duration::from_secs(5), FrameLimits::default())?;
            self.used = 0;
        }
        self.used += 1;
        let t = Instant::now();
        get_through(&self.conn, k)?;
        Ok(t.elapsed())
    }
}

/// Runs `op` back to back for `d`, recording the latency each call returns
/// (nothing when `lat` is `None`: a warm-up).
fn timed_loop(
    d: Duration,
    mut lat: Option<&mut Latency>,
    mut op: impl FnMut() -> Result<Duration, BoxError>,
) -> Result<(), BoxError> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let took = op()?;
        if let Some(l) = lat.as_deref_mut() {
            l.record(took);
        }
    }
    Ok(())
}

fn server_and_echo(
    opts: &crate::Opts,
    plan: &Plan,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<(), BoxError> {
    let server = start_server(dir, plan.leader_wait)?;
    let t = Instant::now();
    preload(server.addr, plan.keys)?;
    let preload_time = t.elapsed();

    let (req_len, resp_len) = frame_sizes();
    let echo = Echo::start(req_len, resp_len)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x6e65_7462);
    let pool = request_pool(plan.keys, &mut rng);
    let mut conn = ConnClient::connect(server.addr)?;
    let mut raw = RawClient::connect(server.addr)?;
    let mut echo_conn = RawClient::connect(echo.addr)?;
    let mut buf = vec![0u8; resp_len.max(64 << 10)];
    let body_len = resp_len - HEADER_LEN;

    let run_conn = opts.wants("get/seq/client=connection");
    let run_raw = opts.wants("get/seq/client=raw");
    let run_echo = opts.wants("echo/seq") || run_conn || run_raw;

    // Warm every path up (connections, caches, the server's tasks).
    let mut n = 0usize;
    let keys = plan.keys;
    let next = |rng: &mut ChaCha8Rng| rng.gen_range(0..keys);
    timed_loop(plan.warmup, None, || conn.get(next(&mut rng)))?;
    timed_loop(plan.warmup, None, || {
        n += 1;
        raw.round_trip(&pool[n % FRAME_POOL], Expect::GetResponse(body_len), &mut buf)
    })?;
    timed_loop(plan.warmup, None, || {
        n += 1;
        echo_conn.round_trip(&pool[n % FRAME_POOL], Expect::Bytes(resp_len), &mut buf)
    })?;

    let (mut lat_conn, mut lat_raw, mut lat_echo) = (Latency::new(), Latency::new(), Latency::new());
    for _ in 0..plan.rounds {
        if run_conn {
            timed_loop(plan.round, Some(&mut lat_conn), || conn.get(next(&mut rng)))?;
        }
        if run_raw {
            timed_loop(plan.round, Some(&mut lat_raw), || {
                n += 1;
                raw.round_trip(&pool[n % FRAME_POOL], Expect::GetResponse(body_len), &mut buf)
            })?;
        }
        if run_echo {
            timed_loop(plan.round, Some(&mut lat_echo), || {
                n += 1;
                echo_conn.round_trip(&pool[n % FRAME_POOL], Expect::Bytes(resp_len), &mut buf)
            })?;
        }
    }
    let secs = plan.round.as_secs_f64() * plan.rounds as f64;
    if run_echo {
        let case = "echo/seq";
        report.push(CaseResult::plain(case, "p50_us", lat_echo.p50()));
        report.push(CaseResult::plain(case, "p99_us", lat_echo.p99()));
        report.push(CaseResult::plain(case, "p999_us", lat_echo.p999()));
        report.push(CaseResult::plain(case, "requests_per_s", lat_echo.count() as f64 / secs));
    }
    for (run, case, lat) in
        [(run_raw, "get/seq/client=raw", &lat_raw), (run_conn, "get/seq/client=connection", &lat_conn)]
    {
        if !run {
            continue;
        }
        report.push(CaseResult::against(case, "p50_us", lat.p50(), lat_echo.p50(), None));
        report.push(CaseResult::against(case, "p99_us", lat.p99(), lat_echo.p99(), Some(TARGET)));
        report.push(CaseResult::against(case, "p999_us", lat.p999(), lat_echo.p999(), None));
        report.push(CaseResult::against(
            case,
            "requests_per_s",
            lat.count() as f64 / secs,
            lat_echo.count() as f64 / secs,
            None,
        ));
    }
    drop((conn, raw, echo_conn, echo));

    let case = format!("get/pipelined/threads={}", plan.pipelined_threads);
    if opts.wants(&case) {
        let (rate, lat) = pipelined(server.addr, plan)?;
        report.push(CaseResult::plain(&case, "requests_per_s", rate));
        report.push(CaseResult::plain(&case, "p50_us", lat.p50()));
        report.push(CaseResult::plain(&case, "p99_us", lat.p99()));
    }
    report.note(format!(
        "get frame {req_len} B, answer frame {resp_len} B (the echo moves the same); preload of {} keys took \
         {:.2} s",
        plan.keys,
        preload_time.as_secs_f64()
    ));
    report.note(
        "client=connection goes through ekv_client::Connection (a reader thread hands each answer to the \
         caller: one more thread wake-up than the echo's loop); client=raw uses the echo's exact loop",
    );
    report
        .note(format!("every client connection (echo's too) is replaced, untimed, after {ROTATE} requests"));
    server.stop()
}

/// `plan.pipelined_threads` threads sharing one `Connection`, closed loop,
/// for `plan.pipelined` after a warm-up: requests/s and the merged latency.
/// The connection is replaced every [`ROTATE`] requests (the threads stop,
/// a new connection is made, they resume); only the time the threads run
/// counts.
fn pipelined(addr: SocketAddr, plan: &Plan) -> Result<(f64, Latency), BoxError> {
    let mut all = Latency::new();
    let mut active = Duration::ZERO;
    let mut warm = true;
    let mut segment = 0u64;
    while warm || active < plan.pipelined {
        let window = if warm { plan.warmup } else { plan.pipelined - active };
        let conn = Connection::connect(addr, Duration::from_secs(5), FrameLimits::default())?;
        let issued = AtomicU64::new(0);
        let start = Instant::now();
        let end = start + window;
        let results: Vec<Result<Latency, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..plan.pipelined_threads)
                .map(|t| {
                    let (conn, issued) = (&conn, &issued);
                    scope.spawn(move || {
                        let mut rng = ChaCha8Rng::seed_from_u64((segment << 16) + t as u64 + 1);
                        let mut lat = Latency::new();
                        while Instant::now() < end && issued.fetch_add(1, Ordering::Relaxed) < ROTATE {
                            let t = Instant::now();
                            get_through(conn, rng.gen_range(0..plan.keys)).map_err(|e| e.to_string())?;
                            lat.record(t.elapsed());
                        }
                        Ok(lat)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("client thread panicked".into())))
                .collect()
        });
        let took = start.elapsed();
        for r in results {
            let lat = r?;
            if !warm {
                all.merge(&lat);
            }
        }
        if !warm {
            active += took;
        }
        warm = false;
        segment += 1;
    }
    Ok((all.count() as f64 / active.as_secs_f64(), all))
}
