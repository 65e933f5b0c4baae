//! Many seeds, random faults, one linearizability check each; and many
//! idle regions hibernating and waking.

mod sim;

use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};
use rand::Rng;
use sim::workload::Workload;
use sim::{sim_config, Chaos, SimCluster};

/// Seeds per run: `EKV_SIM_SEEDS` (default 40; CI sets more).
fn seeds() -> u64 {
    std::env::var("EKV_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40)
}

#[test]
fn seed_sweep_with_random_partitions_crashes_and_loss() {
    let first = std::env::var("EKV_SIM_FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    for seed in first..first + seeds() {
        let mut c = SimCluster::new(seed, 4, 2, sim_config());
        let region = c.bootstrap(&[1, 2, 3]);
        c.must_leader(region.id, 300);
        let mut w = Workload::new(4, &["a", "h", "q", "x"]);
        for round in 0..6 {
            let fault = c.rng.gen_range(0..7);
            let victim = c.rng.gen_range(1..=4u64);
            match fault {
                0 => c.isolate(victim),
                1 => {
                    let others: Vec<u64> = (1..=3).filter(|s| *s != victim).collect();
                    c.add_filter(sim::Partition {
                        a: [StoreId(victim)].into(),
                        b: others.iter().map(|s| StoreId(*s)).collect(),
                        one_way: true,
                    });
                }
                2 => c.add_filter(Chaos {
                    drop: 0.2,
                    duplicate: 0.1,
                    delay: 0.3,
                    max_delay_steps: 8,
                    reorder: true,
                }),
                3 => c.crash(victim),
                4 => c.pause(victim),
                5 => {
                    // Membership churn: a fourth replica comes and goes.
                    if let Some(region) = c.region_for(b"a") {
                        if let Some((leader, _)) = c.leader(region.id) {
                            let change = if region.peers.len() == 3 {
                                let store =
                                    (1..=4).map(StoreId).find(|s| region.peer_on(*s).is_none()).unwrap();
                                ekv_engine::PeerChange::AddVoter(PeerMeta {
                                    id: PeerId(c.pd.alloc()),
                                    store_id: store,
                                })
                            } else {
                                let p = region.peers.iter().copied().find(|p| p.store_id != leader).unwrap();
                                ekv_engine::PeerChange::Remove(p)
                            };
                            let cmd = ekv_engine::Command::ChangePeers(vec![change]);
                            let req = ekv_engine::Request { region_id: region.id, epoch: region.epoch, cmd };
                            let _ = c.call(leader, req);
                        }
                    }
                }
                _ => {
                    // An admin command in the middle of the load: a split
                    // once, leader transfers after.
                    if let Some(region) = c.region_for(b"m") {
                        if let Some((leader, _)) = c.leader(region.id) {
                            let cmd = if region.id == RegionId(1) && round < 3 {
                                ekv_engine::Command::Split { keys: vec![bytes::Bytes::from_static(b"m")] }
                            } else {
                                let to = region.peers[c.rng.gen_range(0..region.peers.len())].id;
                                ekv_engine::Command::TransferLeader { to }
                            };
                            let req = ekv_engine::Request { region_id: region.id, epoch: region.epoch, cmd };
                            let _ = c.call(leader, req);
                        }
                    }
                }
            }
            for _ in 0..40 {
                w.drive(&mut c);
                c.tick();
            }
            c.recover();
            match fault {
                3 => c.restart(victim),
                4 => c.resume(victim),
                _ => {}
            }
            for _ in 0..40 {
                w.drive(&mut c);
                c.tick();
            }
        }
        w.finish(&mut c);
        w.must_be_linearizable(seed, "sweep");
    }
}

#[test]
fn ten_thousand_idle_regions_hibernate_and_wake() {
    let n: u64 = std::env::var("EKV_SIM_IDLE_REGIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut cfg = sim_config();
    cfg.hibernate_after_ticks = 25;
    let mut c = SimCluster::new(7, 3, 1, cfg);
    let regions: Vec<Region> = (0..n)
        .map(|i| Region {
            id: RegionId(i + 1),
            start_key: if i == 0 { vec![] } else { format!("r{i:06}").into_bytes() },
            end_key: if i + 1 == n { vec![] } else { format!("r{:06}", i + 1).into_bytes() },
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: (1..=3).map(|s| PeerMeta { id: PeerId(i * 3 + s), store_id: StoreId(s) }).collect(),
        })
        .collect();
    c.bootstrap_regions(regions);
    c.run_ticks(120);
    let leaders = c.status().iter().filter(|(_, _, p)| p.is_leader).count();
    assert_eq!(leaders as u64, n, "every region elects a leader");
    let asleep = |c: &SimCluster| c.status().iter().filter(|(_, _, p)| p.hibernating).count() as u64;
    assert_eq!(asleep(&c), 3 * n, "idle regions did not all hibernate");
    let ticks_before: u64 = c.nodes.values().map(|n| n.shards[0].stats().peer_ticks).sum();
    c.run_ticks(50);
    let ticks_after: u64 = c.nodes.values().map(|n| n.shards[0].stats().peer_ticks).sum();
    assert_eq!(ticks_after, ticks_before, "hibernating peers were ticked");
    // A write to one region wakes only it, and it is served.
    let key = format!("r{:06}", n / 2).into_bytes();
    c.must_put(&key, b"awake");
    assert_eq!(c.must_get(&key).as_deref(), Some(&b"awake"[..]));
    assert!(asleep(&c) >= 3 * (n - 1));
    // A store that dies wakes the followers of the regions it led.
    let victim = c.leader(RegionId(1)).unwrap().0;
    c.crash(victim.get());
    c.run_ticks(80);
    let led_by_victim_elsewhere = c.leader(RegionId(1)).map(|l| l.0);
    assert!(led_by_victim_elsewhere.is_some_and(|s| s != victim), "region 1 found no new leader");
}
