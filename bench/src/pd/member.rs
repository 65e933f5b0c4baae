//! The `member/...` cases: a real meta-service member on loopback, driven
//! over raw pipelined sockets (pre-framed requests, one write per batch) so
//! that the load generator's cost stays small next to the member's.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ekv_client::Connection;
use ekv_engine::Config;
use ekv_net::local::free_base_port;
use ekv_pd::core::Settings;
use ekv_pd::member::{Member, MemberConfig};
use ekv_proto::frame::{encode_frame, FrameDecoder, FrameFlags, FrameLimits};
use ekv_proto::msg::{
    AnyMessage, BootstrapRequest, GetRegionRequest, IsBootstrappedRequest, Message, PutStoreRequest,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, RequestId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::core::{store_heartbeat, store_meta};
use super::{
    heartbeat, key_in, median, region_id, rss_bytes, BoxError, Plan, CHANGED_EVERY, CONNS, STORES,
    TARGET_GET_P99, TARGET_HB, TARGET_REGIONS, WINDOW,
};
use crate::harness::{CaseResult, Latency, Report};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the fake stores heartbeat (the member marks a store Down
/// after 30 s of silence).
const STORE_HEARTBEAT: Duration = Duration::from_secs(1);

/// The member under test; stopped on drop.
struct Running(Option<Member>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let _ = m.stop();
        }
    }
}

/// Runs the member cases for `n` regions, data under `dir`.
pub(super) fn run(plan: &Plan, n: usize, dir: &Path, report: &mut Report) -> Result<(), BoxError> {
    let rss_before = rss_bytes();
    let host = IpAddr::from([127, 0, 0, 1]);
    let addr = SocketAddr::new(host, free_base_port(host, 1)?);
    // EKV_BENCH_SPIN_US: let the member's executor poll this long before
    // it sleeps (`Config::spin_before_park`), as the net suite does.
    let spin = std::env::var("EKV_BENCH_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let member = Member::start(MemberConfig {
        cpu: Some(0),
        engine: Config { spin_before_park: Duration::from_micros(spin), ..Config::default() },
        settings: Settings { max_used_ratio: 0.99, ..Settings::default() },
        ..MemberConfig::single(&addr.to_string(), dir)
    })?;
    let mut running = Running(Some(member));
    if spin > 0 {
        report.note(format!("member, {n} regions: the member's executor spins {spin} µs before it sleeps"));
    }
    let ctl = Connection::connect(addr, Duration::from_secs(5), FrameLimits::default())?;
    setup(&ctl, plan.leader_wait)?;

    let stop_stores = AtomicBool::new(false);
    let store_errors = AtomicU64::new(0);
    let operators = AtomicU64::new(0);
    let result = std::thread::scope(|scope| -> Result<(), BoxError> {
        scope.spawn(|| {
            while !stop_stores.load(Ordering::Relaxed) {
                for s in 1..=STORES {
                    let deadline = Instant::now() + CALL_TIMEOUT;
                    if ctl.call_blocking(&store_heartbeat(s), RegionId::META, deadline).is_err() {
                        store_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let next = Instant::now() + STORE_HEARTBEAT;
                while Instant::now() < next && !stop_stores.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let r = cases(plan, n, addr, report, &operators, rss_before);
        stop_stores.store(true, Ordering::Relaxed);
        r
    });
    result?;
    let ops = operators.load(Ordering::Relaxed);
    if ops > 0 {
        report.note(format!("member, {n} regions: {ops} heartbeat answers carried an operator"));
    }
    let errs = store_errors.load(Ordering::Relaxed);
    if errs > 0 {
        report.note(format!("member, {n} regions: {errs} store heartbeats failed"));
    }
    drop(ctl);
    if let Some(m) = running.0.take() {
        m.stop().map_err(|e| format!("stopping the member: {e}"))?;
    }
    Ok(())
}

fn cases(
    plan: &Plan,
    n: usize,
    addr: SocketAddr,
    report: &mut Report,
    operators: &AtomicU64,
    rss_before: u64,
) -> Result<(), BoxError> {
    let case = |what: &str| format!("member/{what}/regions={n}");
    let at_target = n >= TARGET_REGIONS;
    // Per connection: the conf_ver bumps of its regions (i % CONNS == c).
    let mut bumps: Vec<Vec<u64>> = (0..CONNS).map(|c| vec![0; n.saturating_sub(c).div_ceil(CONNS)]).collect();

    let start = Instant::now();
    std::thread::scope(|scope| -> Result<(), BoxError> {
        let handles: Vec<_> = (0..CONNS)
            .map(|c| scope.spawn(move || load(addr, n, c, operators).map_err(|e| e.to_string())))
            .collect();
        for h in handles {
            h.join().map_err(|_| "load thread panicked")??;
        }
        Ok(())
    })?;
    let load_time = start.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    report.push(CaseResult::plain(case("load"), "regions_per_s", n as f64 / load_time.as_secs_f64()));

    // Saturation.
    let rates = drive(addr, n, &mut bumps, plan, None, None, operators)?;
    let hb = median(rates.clone());
    let mut row = CaseResult::plain(case("heartbeat"), "hb_per_s", hb);
    if at_target {
        row = row.with_target(TARGET_HB);
    }
    report.push(row);
    report.note(format!(
        "member, {n} regions: heartbeat rounds {}",
        rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    ));

    // GetRegion alone, then under half the saturation rate.
    let idle = get_regions(addr, n, plan.get, 1)?;
    push_latency(report, &case("get_region"), &idle, at_target);
    let echo = echo_round_trips(n, plan.get)?;
    for (metric, v) in [("p50_us", echo.p50()), ("p99_us", echo.p99()), ("p999_us", echo.p999())] {
        report.push(CaseResult::plain(case("echo"), metric, v));
    }
    let paced = hb / 2.0;
    let stop = AtomicBool::new(false);
    let under = std::thread::scope(|scope| -> Result<(Latency, Vec<f64>), BoxError> {
        let driver = scope.spawn(|| {
            drive(addr, n, &mut bumps, plan, Some(paced), Some(&stop), operators).map_err(|e| e.to_string())
        });
        // Let the paced load settle first.
        std::thread::sleep(plan.warmup);
        let lat = get_regions(addr, n, plan.get, 2);
        stop.store(true, Ordering::Relaxed);
        let rates = driver.join().map_err(|_| "driver panicked")??;
        Ok((lat?, rates))
    })?;
    push_latency(report, &case("get_region_under_load"), &under.0, at_target);
    report.note(format!(
        "member, {n} regions: get_region_under_load with heartbeats paced at {paced:.0}/s (achieved {:.0}/s)",
        median(under.1)
    ));
    report.push(CaseResult::plain(case("rss"), "bytes_per_region", rss as f64 / n as f64));
    report.note(format!(
        "member, {n} regions: loaded in {:.1} s; process RSS grew {} MiB over the load",
        load_time.as_secs_f64(),
        rss >> 20
    ));
    Ok(())
}

fn push_latency(report: &mut Report, case: &str, lat: &Latency, at_target: bool) {
    report.push(CaseResult::plain(case, "p50_us", lat.p50()));
    let mut p99 = CaseResult::plain(case, "p99_us", lat.p99());
    if at_target {
        p99 = p99.with_target(TARGET_GET_P99);
    }
    report.push(p99);
    report.push(CaseResult::plain(case, "p999_us", lat.p999()));
    report.push(CaseResult::plain(case, "count", lat.count() as f64));
}

/// Waits until the member serves, then bootstraps it with the fake stores.
fn setup(ctl: &Connection, wait: Duration) -> Result<(), BoxError> {
    let deadline = Instant::now() + wait;
    loop {
        match ctl.call_blocking(&IsBootstrappedRequest, RegionId::META, Instant::now() + CALL_TIMEOUT) {
            Ok(AnyMessage::IsBootstrappedResponse(r)) if !r.bootstrapped => break,
            Ok(m) => return Err(format!("a fresh member answered IsBootstrapped with {m:?}").into()),
            // Not leading or still loading: ask again.
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("the member does not serve within {wait:?}: {e}").into()),
        }
    }
    let first = Region {
        id: RegionId(2),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: PeerId(3), store_id: ekv_proto::StoreId(1) }],
        ..Region::default()
    };
    let call =
        |m: &dyn Fn() -> Result<AnyMessage, ekv_client::CallError>, what: &str| -> Result<(), BoxError> {
            match m() {
                Ok(AnyMessage::ErrorResponse(e)) => Err(format!("{what}: {e:?}").into()),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{what}: {e}").into()),
            }
        };
    let deadline = || Instant::now() + CALL_TIMEOUT;
    call(
        &|| {
            ctl.call_blocking(
                &BootstrapRequest { store: store_meta(1), region: first.clone() },
                RegionId::META,
                deadline(),
            )
        },
        "bootstrap",
    )?;
    for s in 2..=STORES {
        call(
            &|| ctl.call_blocking(&PutStoreRequest { store: store_meta(s) }, RegionId::META, deadline()),
            "put store",
        )?;
    }
    for s in 1..=STORES {
        call(&|| ctl.call_blocking(&store_heartbeat(s), RegionId::META, deadline()), "store heartbeat")?;
    }
    Ok(())
}

/// A raw pipelined connection to the member: requests go out as batches
/// of frames in one write, answers are decoded as they come.
struct Wire {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    out: Vec<u8>,
    next_id: u64,
    limits: FrameLimits,
    /// Answers already read (and checked) past those asked for: a read
    /// may bring the start of the next batch's answers.
    ahead: usize,
}

impl Wire {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        let limits = FrameLimits::default();
        Ok(Self {
            stream,
            decoder: FrameDecoder::new(limits),
            buf: vec![0; 64 << 10],
            out: Vec::new(),
            next_id: 1,
            limits,
            ahead: 0,
        })
    }

    /// Adds a request to the batch being built.
    fn push<M: Message>(&mut self, msg: &M) -> Result<(), BoxError> {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        encode_frame(&mut self.out, msg, FrameFlags::NONE, RegionId::META, id, &self.limits)?;
        Ok(())
    }

    /// Sends the batch built so far.
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r
    }

    /// Reads `count` answers, handing each to `check` (answers read past
    /// them are checked too, and count towards the next call).
    fn recv(
        &mut self,
        count: usize,
        mut check: impl FnMut(AnyMessage) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let from_ahead = count.min(self.ahead);
        self.ahead -= from_ahead;
        let mut count = count - from_ahead;
        while count > 0 {
            let got = self.stream.read(&mut self.buf)?;
            if got == 0 {
                return Err("the member closed the connection".into());
            }
            let mut data = &self.buf[..got];
            while !data.is_empty() {
                let taken = self.decoder.feed(data);
                data = &data[taken..];
                while let Some(frame) = self.decoder.next_frame()? {
                    let msg = frame.message(&self.limits).map_err(|e| format!("bad answer: {e:?}"))?;
                    if let AnyMessage::ErrorResponse(e) = msg {
                        return Err(format!("the member answered {e:?}").into());
                    }
                    check(msg)?;
                    if count > 0 {
                        count -= 1;
                    } else {
                        self.ahead += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

fn heartbeat_answer(msg: AnyMessage, operators: &AtomicU64) -> Result<(), BoxError> {
    match msg {
        AnyMessage::RegionHeartbeatResponse(r) => {
            if r.operator.is_some() {
                operators.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
        m => Err(format!("a region heartbeat answered {:?}", m.msg_type()).into()),
    }
}

/// Connection `c`'s share of the load: a first heartbeat for each of its
/// regions, two half-window batches in flight.
fn load(addr: SocketAddr, n: usize, c: usize, operators: &AtomicU64) -> Result<(), BoxError> {
    let mut wire = Wire::connect(addr)?;
    let half = WINDOW / 2;
    let mut next = c;
    let mut pending = VecDeque::new();
    loop {
        while pending.len() < 2 && next < n {
            let mut k = 0;
            while k < half && next < n {
                wire.push(&heartbeat(next, n, 0, 0))?;
                next += CONNS;
                k += 1;
            }
            wire.flush()?;
            pending.push_back(k);
        }
        let Some(k) = pending.pop_front() else { return Ok(()) };
        wire.recv(k, |m| heartbeat_answer(m, operators))?;
    }
}

/// Steady heartbeats from [`CONNS`] connections: saturating (`rate`
/// `None`) for the plan's warm-up and rounds, or paced at `rate` per second
/// in all until `stop` is set. Returns the answers per second of each
/// round (paced: one rate over the time after the warm-up).
fn drive(
    addr: SocketAddr,
    n: usize,
    bumps: &mut [Vec<u64>],
    plan: &Plan,
    rate: Option<f64>,
    stop: Option<&AtomicBool>,
    operators: &AtomicU64,
) -> Result<Vec<f64>, BoxError> {
    let (round, rounds) = match rate {
        None => (plan.round, plan.rounds),
        // Paced runs end on `stop`; counted by the second, for the note.
        Some(_) => (Duration::from_secs(1), 3600),
    };
    let t0 = Instant::now();
    let measure_from = t0 + plan.warmup;
    let end = measure_from + round * rounds as u32;
    let per_conn: Vec<Result<Vec<u64>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bumps
            .iter_mut()
            .enumerate()
            .map(|(c, bumps)| {
                scope.spawn(move || {
                    let mut counts = vec![0u64; rounds];
                    let mut wire = Wire::connect(addr).map_err(|e| e.to_string())?;
                    let mut rng = ChaCha8Rng::seed_from_u64((n as u64) << 8 | c as u64);
                    let half = WINDOW / 2;
                    let mut seq = 0u64;
                    let mut batches = 0u64;
                    let mut pending = VecDeque::new();
                    let running = |now: Instant| now < end && stop.is_none_or(|s| !s.load(Ordering::Relaxed));
                    let result = (|| -> Result<(), BoxError> {
                        loop {
                            while pending.len() < 2 && running(Instant::now()) {
                                if let Some(rate) = rate {
                                    // This connection's share: `half` per batch.
                                    let due = t0
                                        + Duration::from_secs_f64(
                                            batches as f64 * half as f64 * CONNS as f64 / rate,
                                        );
                                    let now = Instant::now();
                                    if due > now {
                                        if pending.is_empty() {
                                            std::thread::sleep(due - now);
                                        } else {
                                            break;
                                        }
                                    }
                                }
                                for _ in 0..half {
                                    let j = rng.gen_range(0..bumps.len());
                                    seq += 1;
                                    if seq % CHANGED_EVERY == 0 {
                                        bumps[j] += 1;
                                    }
                                    wire.push(&heartbeat(j * CONNS + c, n, bumps[j], seq))?;
                                }
                                wire.flush()?;
                                batches += 1;
                                pending.push_back(half);
                            }
                            let Some(k) = pending.pop_front() else { return Ok(()) };
                            wire.recv(k, |m| heartbeat_answer(m, operators))?;
                            let now = Instant::now();
                            if now >= measure_from {
                                let slot = ((now - measure_from).as_nanos() / round.as_nanos()) as usize;
                                if let Some(x) = counts.get_mut(slot) {
                                    *x += k as u64;
                                }
                            }
                        }
                    })();
                    result.map_err(|e| e.to_string())?;
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("driver thread panicked".into())))
            .collect()
    });
    let mut totals = vec![0u64; rounds];
    for r in per_conn {
        for (t, x) in totals.iter_mut().zip(r?) {
            *t += x;
        }
    }
    if rate.is_some() {
        // Paced: one rate over the whole time measured.
        let measured = Instant::now().saturating_duration_since(measure_from).as_secs_f64();
        return Ok(vec![totals.iter().sum::<u64>() as f64 / measured.max(1e-9)]);
    }
    Ok(totals.iter().map(|&x| x as f64 / round.as_secs_f64()).collect())
}

/// One closed-loop client: blocking `GetRegion` round trips of random keys
/// for `d`, each answer checked.
fn get_regions(addr: SocketAddr, n: usize, d: Duration, seed: u64) -> Result<Latency, BoxError> {
    let mut wire = Wire::connect(addr)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lat = Latency::new();
    // A few untimed round trips first (connection set-up).
    let end = Instant::now() + d;
    let mut warm = 100;
    while Instant::now() < end {
        let i = rng.gen_range(0..n);
        wire.push(&GetRegionRequest { key: key_in(i, rng.gen()), before: false })?;
        let t = Instant::now();
        wire.flush()?;
        let mut routed = None;
        wire.recv(1, |m| match m {
            AnyMessage::GetRegionResponse(r) => {
                routed = r.route.map(|r| r.region.id);
                Ok(())
            }
            m => Err(format!("GetRegion answered {:?}", m.msg_type()).into()),
        })?;
        let took = t.elapsed();
        if routed != Some(region_id(i)) {
            return Err(format!("a key of region {} was routed to {routed:?}", region_id(i)).into());
        }
        if warm > 0 {
            warm -= 1;
        } else {
            lat.record(took);
        }
    }
    Ok(lat)
}

/// The loopback floor of a `GetRegion` round trip, measured in the same
/// run: a plain TCP echo (a std thread) that reads a `GetRegion` request
/// frame's bytes and writes back as many bytes as the member's answer,
/// driven by the same blocking loop for `d`.
fn echo_round_trips(n: usize, d: Duration) -> Result<Latency, BoxError> {
    let limits = FrameLimits::default();
    let i = n / 2;
    let mut req = Vec::new();
    let get = GetRegionRequest { key: key_in(i, 7), before: false };
    encode_frame(&mut req, &get, FrameFlags::NONE, RegionId::META, RequestId(1), &limits)?;
    let route = ekv_proto::msg::RegionRoute { region: super::region(i, n, 0), leader: None, leader_shard: 0 };
    let mut resp = Vec::new();
    let answer = ekv_proto::msg::GetRegionResponse { route: Some(route) };
    encode_frame(&mut resp, &answer, FrameFlags::RESPONSE, RegionId::META, RequestId(1), &limits)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let echo_addr = listener.local_addr()?;
    let req_len = req.len();
    let server = std::thread::Builder::new().name("pd-echo".into()).spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_nodelay(true);
        let mut buf = vec![0u8; req_len];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&resp).is_err() {
                break;
            }
        }
    })?;
    let mut lat = Latency::new();
    {
        let mut s = TcpStream::connect_timeout(&echo_addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(CALL_TIMEOUT))?;
        let mut buf = vec![0u8; 4096];
        let resp_len = {
            let mut r = Vec::new();
            encode_frame(&mut r, &answer, FrameFlags::RESPONSE, RegionId::META, RequestId(1), &limits)?;
            r.len()
        };
        let end = Instant::now() + d;
        let mut warm = 100;
        while Instant::now() < end {
            let t = Instant::now();
            s.write_all(&req)?;
            s.read_exact(&mut buf[..resp_len])?;
            let took = t.elapsed();
            if warm > 0 {
                warm -= 1;
            } else {
                lat.record(took);
            }
        }
    }
    server.join().map_err(|_| "echo thread panicked")?;
    Ok(lat)
}
