//! Concurrent clients over a [`SimCluster`], recording a history for
//! `ekv_checker`'s register linearizability check.
#![allow(dead_code)]

use bytes::Bytes;
use ekv_checker::{History, Op, OpId, Outcome, ProcessId, Value};
use ekv_engine::{Command, Error, Request, Response, WriteOp};
use rand::Rng;

use super::{SimCluster, Slot};

struct Inflight {
    id: OpId,
    slot: Slot,
    deadline: u64,
}

/// Clients issuing gets, puts and compare-and-swaps on a few keys.
pub struct Workload {
    clients: Vec<Option<Inflight>>,
    keys: Vec<Vec<u8>>,
    pub history: History,
    next_value: u64,
    /// Steps after which an unanswered command counts as unknown.
    pub timeout_steps: u64,
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Successful writes (for checking progress after a fault).
    pub ok_writes: u64,
}

impl Workload {
    pub fn new(clients: usize, keys: &[&str]) -> Self {
        Self {
            clients: (0..clients).map(|_| None).collect(),
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            history: History::new(),
            next_value: 0,
            timeout_steps: 150,
            ok: 0,
            failed: 0,
            unknown: 0,
            ok_writes: 0,
        }
    }

    /// Collects answers and starts new commands on idle clients.
    pub fn drive(&mut self, c: &mut SimCluster) {
        for i in 0..self.clients.len() {
            if let Some(f) = &self.clients[i] {
                let answer = f.slot.borrow_mut().take();
                match answer {
                    Some(r) => {
                        let f = self.clients[i].take().expect("inflight");
                        let outcome = self.outcome(r);
                        self.history.complete(f.id, outcome);
                    }
                    None if c.step_no >= f.deadline => {
                        let f = self.clients[i].take().expect("inflight");
                        self.unknown += 1;
                        self.history.complete(f.id, Outcome::Unknown);
                    }
                    None => continue,
                }
            }
            if c.rng.gen_bool(0.5) {
                self.start(i, c);
            }
        }
    }

    fn outcome(&mut self, r: Result<Response, Error>) -> Outcome {
        match r {
            Ok(resp) => {
                self.ok += 1;
                match resp {
                    Response::Value(v) => Outcome::Read(v.map(|v| Value::from(&v[..]))),
                    Response::Written => {
                        self.ok_writes += 1;
                        Outcome::Written
                    }
                    Response::Cas { succeeded, previous } => {
                        self.ok_writes += 1;
                        Outcome::Cas {
                            swapped: succeeded,
                            previous: Some(previous.map(|v| Value::from(&v[..]))),
                        }
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            Err(
                Error::NotLeader { .. }
                | Error::EpochNotMatch { .. }
                | Error::RegionNotFound(_)
                | Error::KeyNotInRegion { .. }
                | Error::ServerBusy(_)
                | Error::StaleCommand { .. },
            ) => {
                self.failed += 1;
                Outcome::Fail
            }
            Err(_) => {
                self.unknown += 1;
                Outcome::Unknown
            }
        }
    }

    fn start(&mut self, client: usize, c: &mut SimCluster) {
        let key = self.keys[c.rng.gen_range(0..self.keys.len())].clone();
        let roll = c.rng.gen_range(0..100);
        self.next_value += 1;
        let value = format!("v{}", self.next_value).into_bytes();
        let (op, cmd) = if roll < 45 {
            (Op::get(key.clone()), Command::Get { cf: "default".into(), key: Bytes::from(key.clone()) })
        } else if roll < 85 {
            (
                Op::put(key.clone(), value.clone()),
                Command::Write(vec![WriteOp::Put {
                    cf: "default".into(),
                    key: Bytes::from(key.clone()),
                    value: Bytes::from(value),
                }]),
            )
        } else {
            // Compare against a value some earlier put used (or absent).
            let expected = if self.next_value > 2 && c.rng.gen_bool(0.8) {
                Some(format!("v{}", c.rng.gen_range(1..self.next_value)).into_bytes())
            } else {
                None
            };
            (
                Op::cas(key.clone(), expected.clone(), Some(value.clone())),
                Command::Cas {
                    cf: "default".into(),
                    key: Bytes::from(key.clone()),
                    expected: expected.map(Bytes::from),
                    new: Some(Bytes::from(value)),
                },
            )
        };
        let Some(region) = c.region_for(&key) else { return };
        // Route as a client with a slightly stale cache would: usually the
        // leader, sometimes a random replica.
        let store = match c.leader(region.id) {
            Some((s, _)) if c.rng.gen_bool(0.9) => s,
            _ => region.peers[c.rng.gen_range(0..region.peers.len())].store_id,
        };
        let id = self.history.invoke(ProcessId(client as u64), op);
        let slot = c.call(store, Request { region_id: region.id, epoch: region.epoch, cmd });
        self.clients[client] = Some(Inflight { id, slot, deadline: c.step_no + self.timeout_steps });
    }

    /// Runs until every client's command is answered or timed out.
    pub fn finish(&mut self, c: &mut SimCluster) {
        for _ in 0..(self.timeout_steps + 10) {
            if self.clients.iter().all(Option::is_none) {
                break;
            }
            for i in 0..self.clients.len() {
                if let Some(f) = &self.clients[i] {
                    let answer = f.slot.borrow_mut().take();
                    if let Some(r) = answer {
                        let f = self.clients[i].take().expect("inflight");
                        let outcome = self.outcome(r);
                        self.history.complete(f.id, outcome);
                    } else if c.step_no >= f.deadline {
                        let f = self.clients[i].take().expect("inflight");
                        self.unknown += 1;
                        self.history.complete(f.id, Outcome::Unknown);
                    }
                }
            }
            c.tick();
        }
    }

    /// Checks the history; unless it passes, saves it and panics with the seed.
    pub fn must_be_linearizable(&self, seed: u64, name: &str) {
        let verdict = ekv_checker::register::check(&self.history);
        if !verdict.is_ok() {
            let path = std::env::temp_dir().join(format!("ekv-sim-{name}-seed{seed}.jsonl"));
            let saved = match ekv_checker::save_jsonl(&path, &self.history) {
                Ok(()) => format!("history in {}", path.display()),
                Err(e) => format!("history not saved: {e}"),
            };
            panic!("seed {seed}: {name}: {verdict}({saved})");
        }
        assert!(self.ok > 0, "seed {seed}: {name}: no command succeeded");
    }
}
