//! What the status server shows: Prometheus text for `/metrics` and JSON
//! for `/status`, for a store and for a meta-service member.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ekv_client::rt::block_on;
use ekv_client::{MetaClient, MetaConfig};
use ekv_engine::{PeerStatus, ShardStats, StoreHandle};
use ekv_pd::member::META_REGION;
use ekv_proto::msg::{AnyMessage, GetStatusRequest};
use serde_json::{json, Value};

use crate::http::{Body, Handler};

/// Builds Prometheus text exposition: one `# HELP`/`# TYPE` head per
/// family, then its samples.
#[derive(Debug, Default)]
pub struct Prom {
    out: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, String)];

impl Prom {
    /// A page that starts with `ekv_build_info`, as every status page does.
    fn with_build_info() -> Self {
        let mut p = Prom::default();
        p.single(
            "ekv_build_info",
            "gauge",
            "ekv version.",
            &[("version", env!("CARGO_PKG_VERSION").into())],
            1,
        );
        p
    }

    /// Starts a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        labels: Labels<'_>,
        value: impl std::fmt::Display,
    ) {
        self.family(name, kind, help);
        self.sample(name, labels, value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A shard counter: name, help, and how to read it.
type ShardCounter = (&'static str, &'static str, fn(&ShardStats) -> u64);

/// The shard counters.
const SHARD_COUNTERS: &[ShardCounter] = &[
    ("ekv_shard_rounds_total", "Shard rounds run.", |s| s.rounds),
    ("ekv_shard_wal_writes_total", "WAL writes, each with one fdatasync.", |s| s.wal_writes),
    ("ekv_shard_proposals_total", "Commands proposed.", |s| s.proposals),
    ("ekv_shard_applied_entries_total", "Raft entries applied.", |s| s.applied_entries),
    ("ekv_shard_apply_batches_total", "LSM write batches written by apply.", |s| s.apply_batches),
    ("ekv_shard_lease_reads_total", "Reads served under the leader lease.", |s| s.lease_reads),
    ("ekv_shard_read_index_reads_total", "Reads served through ReadIndex.", |s| s.read_index_reads),
    ("ekv_shard_messages_sent_total", "Raft messages sent.", |s| s.messages_sent),
    ("ekv_shard_snapshots_generated_total", "Snapshots generated.", |s| s.snapshots_generated),
    ("ekv_shard_snapshots_applied_total", "Snapshots applied.", |s| s.snapshots_applied),
    ("ekv_shard_peer_ticks_total", "Peers ticked (hibernating peers are not).", |s| s.peer_ticks),
];

fn shard_metrics(p: &mut Prom, role: &str, id: &str, stats: &[ShardStats]) {
    for (name, help, get) in SHARD_COUNTERS {
        p.family(name, "counter", help);
        for (i, s) in stats.iter().enumerate() {
            p.sample(name, &[(role, id.to_owned()), ("shard", i.to_string())], get(s));
        }
    }
}

fn peer_metrics(p: &mut Prom, role: &str, id: &str, peers: &[PeerStatus]) {
    let l = [(role, id.to_owned())];
    let count = |f: fn(&PeerStatus) -> bool| peers.iter().filter(|x| f(x)).count();
    p.single("ekv_regions", "gauge", "Region peers on this process.", &l, peers.len());
    p.single("ekv_leaders", "gauge", "Region peers that lead.", &l, count(|x| x.is_leader));
    p.single("ekv_hibernating_regions", "gauge", "Region peers not ticking.", &l, count(|x| x.hibernating));
    p.single(
        "ekv_regions_without_leader",
        "gauge",
        "Region peers that know no leader.",
        &l,
        count(|x| !x.is_leader && x.leader.is_none()),
    );
}

fn stats_json(stats: &[ShardStats]) -> Value {
    Value::Array(
        stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "shard": i, "rounds": s.rounds, "wal_writes": s.wal_writes, "proposals": s.proposals,
                    "applied_entries": s.applied_entries, "apply_batches": s.apply_batches,
                    "lease_reads": s.lease_reads, "read_index_reads": s.read_index_reads,
                    "messages_sent": s.messages_sent, "snapshots_generated": s.snapshots_generated,
                    "snapshots_applied": s.snapshots_applied, "peer_ticks": s.peer_ticks,
                })
            })
            .collect(),
    )
}

fn peers_json(peers: &[PeerStatus]) -> Value {
    Value::Array(
        peers
            .iter()
            .map(|p| {
                json!({
                    "region": p.region.id.get(),
                    "start_key": p.region.start_key.escape_ascii().to_string(),
                    "end_key": p.region.end_key.escape_ascii().to_string(),
                    "conf_ver": p.region.epoch.conf_ver,
                    "version": p.region.epoch.version,
                    "peer": p.peer.id.get(),
                    "is_leader": p.is_leader,
                    "leader": p.leader.map(|l| l.id.get()),
                    "term": p.term,
                    "applied_index": p.applied_index,
                    "hibernating": p.hibernating,
                })
            })
            .collect(),
    )
}

/// What a store's status server needs.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    /// The store.
    pub handle: StoreHandle,
    /// Address of shard 0.
    pub addr: SocketAddr,
    /// Data directory.
    pub data_dir: String,
}

/// The status handler of a store.
pub fn store_handler(info: StoreInfo) -> Handler {
    Arc::new(move |path: &str| {
        let id = info.handle.store_id().get().to_string();
        match path {
            "/metrics" => {
                let stats = block_on(info.handle.stats());
                let peers = block_on(info.handle.status());
                let mut p = Prom::with_build_info();
                p.single(
                    "ekv_store_shards",
                    "gauge",
                    "Shards of this store.",
                    &[("store", id.clone())],
                    stats.len(),
                );
                peer_metrics(&mut p, "store", &id, &peers);
                shard_metrics(&mut p, "store", &id, &stats);
                Some(Body::metrics(p.finish()))
            }
            "/status" => {
                let stats = block_on(info.handle.stats());
                let peers = block_on(info.handle.status());
                Some(Body::json(&json!({
                    "role": "store",
                    "store_id": info.handle.store_id().get(),
                    "address": info.addr.to_string(),
                    "shards": info.handle.shard_count(),
                    "data_dir": info.data_dir,
                    "version": env!("CARGO_PKG_VERSION"),
                    "regions": peers_json(&peers),
                    "stats": stats_json(&stats),
                })))
            }
            _ => None,
        }
    })
}

/// What a member's status server needs.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// The member's store (the meta service's raft group).
    pub handle: StoreHandle,
    /// Member id.
    pub id: u64,
    /// Its address.
    pub addr: SocketAddr,
    /// Every member.
    pub members: Vec<(u64, String)>,
    /// Voters every region should have.
    pub replicas: usize,
}

/// The meta service's status view, asked of this member (only when it
/// leads; followers would only redirect).
fn cluster_view(addr: SocketAddr) -> Result<Value, String> {
    let meta = MetaClient::new(MetaConfig {
        endpoints: vec![addr.to_string()],
        timeout: Duration::from_secs(2),
        ..MetaConfig::default()
    })
    .map_err(|e| e.to_string())?;
    match block_on(meta.call(&GetStatusRequest)) {
        Ok(AnyMessage::GetStatusResponse(s)) => serde_json::from_slice(&s.json).map_err(|e| e.to_string()),
        Ok(other) => Err(format!("unexpected answer {:?}", other.msg_type())),
        Err(e) => Err(e.to_string()),
    }
}

fn view_metrics(p: &mut Prom, view: &Value, replicas: usize) {
    let empty = Vec::new();
    let stores = view["stores"].as_array().unwrap_or(&empty);
    let regions = view["regions"].as_array().unwrap_or(&empty);
    let mut states: BTreeMap<String, usize> =
        ["Up", "Down", "Offline", "Tombstone"].iter().map(|s| ((*s).to_owned(), 0)).collect();
    for s in stores {
        *states.entry(s["state"].as_str().unwrap_or("unknown").to_owned()).or_default() += 1;
    }
    p.family("ekv_pd_stores", "gauge", "Stores by state, from the meta service's view.");
    for (state, n) in &states {
        p.sample("ekv_pd_stores", &[("state", state.clone())], n);
    }
    p.single("ekv_pd_regions", "gauge", "Regions in the routing table.", &[], regions.len());
    let peers = |r: &Value| r["peers"].as_array().map_or(0, Vec::len);
    let flagged = |r: &Value, flag: &str| {
        r["peers"].as_array().map_or(0, |ps| ps.iter().filter(|x| x[flag].as_bool() == Some(true)).count())
    };
    p.single(
        "ekv_pd_regions_under_replicated",
        "gauge",
        "Regions with fewer peers than schedule.replicas.",
        &[],
        regions.iter().filter(|r| peers(r) < replicas).count(),
    );
    p.single(
        "ekv_pd_regions_without_leader",
        "gauge",
        "Regions whose leader is unknown.",
        &[],
        regions.iter().filter(|r| r["leader"].is_null()).count(),
    );
    p.single("ekv_pd_down_peers", "gauge", "Peers their leader reports unreachable.", &[], {
        regions.iter().map(|r| flagged(r, "down")).sum::<usize>()
    });
    p.single("ekv_pd_pending_peers", "gauge", "Peers their leader reports lagging.", &[], {
        regions.iter().map(|r| flagged(r, "pending")).sum::<usize>()
    });
    p.single(
        "ekv_pd_operators",
        "gauge",
        "Operators in flight.",
        &[],
        view["operators"].as_array().map_or(0, Vec::len),
    );
    for (name, field, help) in [
        ("ekv_pd_store_regions", "region_count", "Regions with a replica on the store."),
        ("ekv_pd_store_leaders", "leader_count", "Regions led on the store."),
        ("ekv_pd_store_region_bytes", "region_size", "Approximate bytes of the store's regions."),
        ("ekv_pd_store_capacity_bytes", "capacity", "Disk capacity the store reported."),
        ("ekv_pd_store_available_bytes", "available", "Free disk the store reported."),
    ] {
        p.family(name, "gauge", help);
        for s in stores {
            p.sample(name, &[("store", s["id"].to_string())], s[field].as_u64().unwrap_or(0));
        }
    }
}

fn meta_peer(peers: &[PeerStatus]) -> Option<&PeerStatus> {
    peers.iter().find(|p| p.region.id == META_REGION)
}

/// The status handler of a meta-service member.
pub fn member_handler(info: MemberInfo) -> Handler {
    Arc::new(move |path: &str| {
        let id = info.id.to_string();
        let peers = block_on(info.handle.status());
        let me = meta_peer(&peers);
        let leads = me.is_some_and(|p| p.is_leader);
        let view = if leads { Some(cluster_view(info.addr)) } else { None };
        match path {
            "/metrics" => {
                let stats = block_on(info.handle.stats());
                let mut p = Prom::with_build_info();
                p.single(
                    "ekv_pd_is_leader",
                    "gauge",
                    "1 when this member leads the meta service.",
                    &[("member", id.clone())],
                    u8::from(leads),
                );
                p.single("ekv_pd_members", "gauge", "Members configured.", &[], info.members.len());
                if let Some(Ok(v)) = &view {
                    view_metrics(&mut p, v, info.replicas);
                }
                shard_metrics(&mut p, "member", &id, &stats);
                Some(Body::metrics(p.finish()))
            }
            "/status" => {
                let stats = block_on(info.handle.stats());
                let cluster = match view {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => json!({ "error": e }),
                    None => Value::Null,
                };
                Some(Body::json(&json!({
                    "role": "pd",
                    "member_id": info.id,
                    "address": info.addr.to_string(),
                    "is_leader": leads,
                    "leader": me.and_then(|p| if p.is_leader { Some(p.peer) } else { p.leader }).map(|l| l.store_id.get()),
                    "term": me.map(|p| p.term),
                    "applied_index": me.map(|p| p.applied_index),
                    "members": info.members.iter().map(|(i, a)| json!({"id": i, "address": a})).collect::<Vec<_>>(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "stats": stats_json(&stats),
                    "cluster": cluster,
                })))
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_head_per_family_and_escaped_labels() {
        let mut p = Prom::default();
        p.family("ekv_x_total", "counter", "X.");
        p.sample("ekv_x_total", &[("shard", "0".into())], 3);
        p.sample("ekv_x_total", &[("shard", "1\"\\".into())], 4);
        p.single("ekv_up", "gauge", "Up.", &[], 1);
        assert_eq!(
            p.finish(),
            "# HELP ekv_x_total X.\n# TYPE ekv_x_total counter\nekv_x_total{shard=\"0\"} 3\n\
             ekv_x_total{shard=\"1\\\"\\\\\"} 4\n# HELP ekv_up Up.\n# TYPE ekv_up gauge\nekv_up 1\n"
        );
    }

    #[test]
    fn the_status_view_becomes_gauges() {
        let view = json!({
            "stores": [
                {"id": 1, "state": "Up", "region_count": 1, "leader_count": 1, "region_size": 10, "capacity": 100, "available": 50},
                {"id": 2, "state": "Down", "region_count": 1, "leader_count": 0, "region_size": 10, "capacity": 100, "available": 50},
            ],
            "regions": [{"id": 2, "leader": 3, "peers": [{"id": 3, "down": false, "pending": false}, {"id": 4, "down": true, "pending": true}]}],
            "operators": [{"region_id": 2}],
        });
        let mut p = Prom::default();
        view_metrics(&mut p, &view, 3);
        let text = p.finish();
        for line in [
            "ekv_pd_stores{state=\"Up\"} 1",
            "ekv_pd_stores{state=\"Down\"} 1",
            "ekv_pd_stores{state=\"Tombstone\"} 0",
            "ekv_pd_regions 1",
            "ekv_pd_regions_under_replicated 1",
            "ekv_pd_down_peers 1",
            "ekv_pd_pending_peers 1",
            "ekv_pd_operators 1",
            "ekv_pd_store_leaders{store=\"1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
