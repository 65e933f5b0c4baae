//! Concurrent clients recording a history for the checker.
//!
//! * Registers: get, put and compare-and-swap on keys `r/<slot>/<gen>`. Each
//!   slot lives in a region of its own (the runner splits at `r/<slot>`), and
//!   the generation moves on every few seconds so that each key's history
//!   stays short enough for the linearizability search.
//! * Set: unique adds, each a key `s/<element>`; a read is a scan of `s/`.
//!   After the faults are healed, a final read must hold every acknowledged
//!   add and nothing that was never written.
//!
//! Each operation has a deadline (the client's timeout). A write whose
//! answer was lost is recorded as unknown; a read that failed as failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekv_checker::{History, Op, Outcome, ProcessId, Value};
use ekv_client::{Client, Config, Error};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Prefix of every set's element keys.
pub const SET_PREFIX: &[u8] = b"s/";
/// Seconds a set generation lasts: each generation is a set of its own, so
/// that a read returns (and the history keeps) a bounded number of elements.
const SET_GENERATION_SECS: u64 = 30;

/// The checker's key of set generation `gen`.
pub fn set_key(gen: u64) -> String {
    format!("set/{gen}")
}

/// The key range `[start, end)` of set generation `gen`.
fn set_range(gen: u64) -> (Vec<u8>, Vec<u8>) {
    (format!("s/{gen}/").into_bytes(), format!("s/{gen}0").into_bytes())
}

/// Register key slots (one region each).
pub const SLOTS: usize = 4;
/// Seconds a register key generation lasts.
const GENERATION_SECS: u64 = 10;

/// Split keys that put each slot, and the set, in a region of its own.
pub fn split_keys() -> Vec<String> {
    let mut keys: Vec<String> = (1..SLOTS).map(|s| format!("r/{s}")).collect();
    keys.push(String::from_utf8_lossy(SET_PREFIX).into_owned());
    keys
}

/// Keys written to probe whether writes succeed: one in each region made by
/// [`split_keys`], none used by the workload.
pub fn probe_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..SLOTS).map(|s| format!("r/{s}/probe").into_bytes()).collect();
    keys.push(b"t/probe".to_vec());
    keys
}

/// A client configured for the run.
pub fn client(pd: &[String], timeout: Duration) -> Result<Client, String> {
    Client::new(Config {
        pd_endpoints: pd.to_vec(),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(1000).min(timeout),
        timeout,
        ..Config::default()
    })
    .map_err(|e| format!("client: {e}"))
}

/// The history, shared by the client threads.
#[derive(Debug, Clone)]
pub struct Recorder {
    history: Arc<Mutex<History>>,
    t0: Instant,
}

impl Recorder {
    /// An empty history with time zero now.
    pub fn new() -> Self {
        Recorder { history: Arc::new(Mutex::new(History::new())), t0: Instant::now() }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs `f` as operation `op` of `process`, recording its invocation and
    /// outcome around it.
    pub fn record(&self, process: ProcessId, op: Op, f: impl FnOnce() -> Outcome) -> Outcome {
        let id = {
            let mut h = self.history.lock().expect("history lock");
            let t = self.now();
            h.invoke_at(process, op, t)
        };
        let outcome = f();
        let mut h = self.history.lock().expect("history lock");
        let t = self.now();
        h.complete_at(id, outcome.clone(), t);
        outcome
    }

    /// The history so far.
    pub fn snapshot(&self) -> History {
        self.history.lock().expect("history lock").clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A write's outcome from the client's error: unknown when the answer was
/// lost, failed when the client knows nothing was applied.
fn write_error(e: &Error) -> Outcome {
    match e {
        Error::OutcomeUnknown { .. } => Outcome::Unknown,
        _ => Outcome::Fail,
    }
}

/// Most elements a set read may return before it is taken for a scan that
/// makes no progress.
const MAX_SET_ELEMENTS: usize = 2_000_000;

/// Reads the whole set: its elements, across regions, a page at a time.
/// A page that does not move forward or holds keys outside the set's range
/// is an error (naming what came back), never an endless loop.
pub fn read_set(client: &Client, gen: u64) -> Result<Vec<Value>, String> {
    const PAGE: usize = 5_000;
    let (mut start, end) = set_range(gen);
    let prefix = start.len();
    let mut out = Vec::new();
    loop {
        let page = client.scan(&start, &end, PAGE).map_err(|e| e.to_string())?;
        let full = page.len() == PAGE;
        let Some(last) = page.last().map(|p| p.key.clone()) else { break };
        if let Some(bad) = page.iter().find(|p| p.key.as_slice() < start.as_slice() || p.key >= end) {
            return Err(format!(
                "scan [{:?}, {:?}) returned key {:?}, outside the range",
                String::from_utf8_lossy(&start),
                String::from_utf8_lossy(&end),
                String::from_utf8_lossy(&bad.key)
            ));
        }
        out.extend(page.into_iter().map(|p| Value(p.key[prefix..].to_vec())));
        if !full {
            break;
        }
        if out.len() > MAX_SET_ELEMENTS {
            return Err(format!(
                "the set read passed {MAX_SET_ELEMENTS} elements; the scan is not making progress"
            ));
        }
        start = last;
        start.push(0);
    }
    Ok(out)
}

/// The set generation current at `elapsed` into the run.
pub fn set_generation(elapsed: Duration) -> u64 {
    elapsed.as_secs() / SET_GENERATION_SECS
}

impl Recorder {
    /// The set generation current now.
    pub fn set_generation(&self) -> u64 {
        set_generation(self.t0.elapsed())
    }
}

/// Records one read of set generation `gen`; the error, if it failed.
pub fn recorded_read_set(
    rec: &Recorder,
    process: ProcessId,
    client: &Client,
    gen: u64,
) -> (Outcome, Option<String>) {
    let mut error = None;
    let outcome = rec.record(process, Op::read_set(set_key(gen)), || match read_set(client, gen) {
        Ok(v) => Outcome::Elements(v),
        Err(e) => {
            error = Some(e);
            Outcome::Fail
        }
    });
    (outcome, error)
}

/// One client thread: runs operations until `stop`.
pub fn run_client(
    thread: usize,
    clients: usize,
    seed: u64,
    client: Client,
    rec: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (thread as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // A process that saw an unknown outcome may still have that operation
    // in flight; it continues as a new process, so that each process has
    // at most one operation pending.
    let mut process = thread as u64;
    let mut n: u64 = 0;
    let mut last_seen: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let outcome = if n % 499 == 0 {
            let gen = rec.set_generation();
            recorded_read_set(&rec, ProcessId(process), &client, gen).0
        } else if rng.gen_bool(0.3) {
            let gen = rec.set_generation();
            let element = format!("{thread}/{n}");
            let key = [set_range(gen).0, element.clone().into_bytes()].concat();
            rec.record(ProcessId(process), Op::add(set_key(gen), element.as_str()), || {
                match client.put(&key, b"") {
                    Ok(()) => Outcome::Written,
                    Err(e) => write_error(&e),
                }
            })
        } else {
            let slot = rng.gen_range(0..SLOTS);
            let gen = rec.t0.elapsed().as_secs() / GENERATION_SECS;
            let key = format!("r/{slot}/{gen}");
            let value = format!("{thread}-{n}");
            match rng.gen_range(0..10) {
                0..=3 => {
                    let out = rec.record(ProcessId(process), Op::get(key.as_str()), || {
                        match client.get(key.as_bytes()) {
                            Ok(v) => Outcome::Read(v.map(Value)),
                            Err(_) => Outcome::Fail,
                        }
                    });
                    if let Outcome::Read(v) = &out {
                        last_seen.insert(key, v.as_ref().map(|v| v.0.clone()));
                    }
                    out
                }
                4..=6 => {
                    rec.record(ProcessId(process), Op::put(key.as_str(), value.as_str()), || {
                        match client.put(key.as_bytes(), value.as_bytes()) {
                            Ok(()) => Outcome::Written,
                            Err(e) => write_error(&e),
                        }
                    })
                }
                _ => {
                    let expected = last_seen.get(&key).cloned().flatten();
                    let op = Op::cas(key.as_str(), expected.clone(), Some(value.as_str()));
                    let out = rec.record(ProcessId(process), op, || {
                        match client.compare_and_swap(
                            key.as_bytes(),
                            expected.as_deref(),
                            Some(value.as_bytes()),
                        ) {
                            Ok(c) => {
                                Outcome::Cas { swapped: c.succeeded, previous: Some(c.previous.map(Value)) }
                            }
                            Err(e) => write_error(&e),
                        }
                    });
                    if let Outcome::Cas { swapped, previous: Some(prev) } = &out {
                        let now = if *swapped {
                            Some(value.into_bytes())
                        } else {
                            prev.as_ref().map(|v| v.0.clone())
                        };
                        last_seen.insert(key, now);
                    }
                    out
                }
            }
        };
        if outcome == Outcome::Unknown {
            process += clients as u64;
        }
        if outcome == Outcome::Fail {
            // A failed operation is usually a cluster without a leader for
            // the moment; do not spin.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_land_in_every_region_and_outside_the_workload() {
        let mut splits = split_keys();
        splits.sort();
        let probes = probe_keys();
        // One probe per region: region i is [splits[i-1], splits[i]).
        for (i, p) in probes.iter().enumerate() {
            let above = i == 0 || p.as_slice() >= splits[i - 1].as_bytes();
            let below = i == splits.len() || p.as_slice() < splits[i].as_bytes();
            assert!(above && below, "probe {} not in region {i}", String::from_utf8_lossy(p));
            assert!(!p.starts_with(SET_PREFIX));
        }
    }

    #[test]
    fn set_generations_have_disjoint_ranges_inside_the_set_region() {
        let (s9, e9) = set_range(9);
        let (s10, e10) = set_range(10);
        let element = [s10.clone(), b"3/7".to_vec()].concat();
        assert!(element >= s10 && element < e10);
        assert!(!(element >= s9 && element < e9), "gen 10's element is not in gen 9's range");
        assert!(s9.starts_with(SET_PREFIX) && e10.starts_with(SET_PREFIX));
        assert_eq!(set_generation(Duration::from_secs(61)), 2);
        assert_eq!(set_key(2), "set/2");
    }

    #[test]
    fn recorder_records_outcomes_in_order() {
        let rec = Recorder::new();
        rec.record(ProcessId(0), Op::put("k", "1"), || Outcome::Written);
        rec.record(ProcessId(1), Op::get("k"), || Outcome::Read(Some("1".into())));
        let h = rec.snapshot();
        assert_eq!(h.len(), 2);
        assert!(h.ops()[0].complete.unwrap() <= h.ops()[1].invoke);
        assert!(ekv_checker::check(&h).is_ok());
    }

    #[test]
    fn lost_answers_are_unknown_and_refusals_fail() {
        let lost = Error::OutcomeUnknown { region: ekv_proto::RegionId(1), reason: "timeout".into() };
        assert_eq!(write_error(&lost), Outcome::Unknown);
        assert_eq!(write_error(&Error::DeadlineExceeded { attempts: 3, last: "x".into() }), Outcome::Fail);
    }
}
