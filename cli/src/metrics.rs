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
use ekv_io::Histogram;
use ekv_net::server_stats::{ServerSnapshot, ServerStats, OUTCOMES};
use ekv_pd::member::META_REGION;
use ekv_proto::msg::{AnyMessage, GetStatusRequest};
use ekv_proto::ShardId;
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

    /// The samples of one histogram of the current family (a family of
    /// type `histogram`): cumulative `_bucket`s ending with `+Inf`, `_sum`
    /// and `_count`, in seconds.
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, h: &Histogram) {
        let mut with_le: Vec<(&str, String)> = labels.to_vec();
        with_le.push(("le", String::new()));
        let bucket = format!("{name}_bucket");
        let mut total = 0;
        for (bound, count) in h.cumulative() {
            if let Some(le) = with_le.last_mut() {
                le.1 = bound.map_or_else(|| "+Inf".to_owned(), |us| seconds(us as f64 / 1e6));
            }
            self.sample(&bucket, &with_le, count);
            total = count;
        }
        self.sample(&format!("{name}_sum"), labels, seconds(h.sum_nanos as f64 / 1e9));
        self.sample(&format!("{name}_count"), labels, total);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Seconds to the nanosecond as a plain decimal (`0.00015`, `2`, `0`).
fn seconds(s: f64) -> String {
    let t = format!("{s:.9}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
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
    ("ekv_shard_appended_entries_total", "Raft entries appended to the log (the WAL).", |s| {
        s.appended_entries
    }),
    ("ekv_shard_messages_received_total", "Raft messages received.", |s| s.messages_received),
    ("ekv_wal_records_total", "WAL records written (one per write).", |s| s.wal.records),
    ("ekv_wal_batches_total", "WAL batches written (records carry several).", |s| s.wal.batches),
    ("ekv_wal_syncs_total", "WAL fdatasync calls.", |s| s.wal.syncs),
    ("ekv_wal_written_bytes_total", "Bytes the WAL handed to the disk (alignment included).", |s| {
        s.wal.bytes_written
    }),
    ("ekv_wal_payload_bytes_total", "Payload bytes the WAL wrote.", |s| s.wal.payload_bytes),
    ("ekv_lsm_user_written_bytes_total", "Key and value bytes written to the LSM tree.", |s| {
        s.lsm.user_bytes_written
    }),
    ("ekv_lsm_flushes_total", "Memtables flushed.", |s| s.lsm.flushes),
    ("ekv_lsm_flush_written_bytes_total", "Table bytes written by flushes.", |s| s.lsm.flush_bytes_written),
    ("ekv_lsm_compactions_total", "Compactions that rewrote tables.", |s| s.lsm.compactions),
    ("ekv_lsm_trivial_moves_total", "Compactions that only moved a table down.", |s| s.lsm.trivial_moves),
    ("ekv_lsm_compaction_read_bytes_total", "Table bytes read by compactions.", |s| {
        s.lsm.compaction_bytes_read
    }),
    ("ekv_lsm_compaction_written_bytes_total", "Table bytes written by compactions.", |s| {
        s.lsm.compaction_bytes_written
    }),
    ("ekv_lsm_write_stalls_total", "Writes that waited on flushes or compactions.", |s| s.lsm.stall_count),
    ("ekv_lsm_table_probes_total", "Tables consulted by point reads.", |s| s.lsm.table_probes),
    ("ekv_lsm_ingested_tables_total", "Tables ingested (snapshots).", |s| s.lsm.ingested_tables),
    ("ekv_lsm_block_cache_hits_total", "Block cache hits.", |s| s.lsm.cache.hits),
    ("ekv_lsm_block_cache_misses_total", "Block cache misses.", |s| s.lsm.cache.misses),
    ("ekv_lsm_block_cache_inserts_total", "Blocks added to the block cache.", |s| s.lsm.cache.inserts),
    ("ekv_lsm_block_cache_evictions_total", "Blocks evicted from the block cache.", |s| {
        s.lsm.cache.evictions
    }),
];

/// A shard gauge: name, help, and how to read it.
const SHARD_GAUGES: &[ShardCounter] = &[
    ("ekv_wal_segments", "WAL segments in use.", |s| s.wal.segments as u64),
    ("ekv_wal_spare_segments", "Pre-written WAL segments ready.", |s| s.wal.spare_segments as u64),
    ("ekv_wal_regions", "Regions with state in the WAL.", |s| s.wal.regions as u64),
    ("ekv_wal_entries", "Live entries the WAL indexes.", |s| s.wal.entries as u64),
    ("ekv_wal_index_bytes", "Memory of the WAL's index.", |s| s.wal.index_bytes as u64),
    ("ekv_wal_cache_bytes", "Entry payload bytes in the WAL's cache.", |s| s.wal.cache_bytes as u64),
    ("ekv_wal_poisoned", "1 when an I/O failure poisoned the WAL.", |s| u64::from(s.wal.poisoned)),
    ("ekv_lsm_memtable_bytes", "Bytes in memtables (mutable and frozen).", |s| s.lsm.memtable_bytes as u64),
    ("ekv_lsm_immutable_memtables", "Frozen memtables waiting for flush.", |s| {
        s.lsm.immutable_memtables as u64
    }),
    ("ekv_lsm_pending_compaction_bytes", "Bytes compaction still has to rewrite (estimate).", |s| {
        s.lsm.pending_compaction_bytes
    }),
    ("ekv_lsm_table_raw_bytes", "Key and value bytes in tables, all versions.", |s| s.lsm.table_raw_bytes),
    ("ekv_lsm_block_cache_usage_bytes", "Bytes the block cache holds.", |s| s.lsm.cache.usage as u64),
    ("ekv_lsm_block_cache_capacity_bytes", "The block cache's bound.", |s| s.lsm.cache.capacity as u64),
];

/// A shard time total: name, help, and how to read it in nanoseconds.
const SHARD_SECONDS: &[ShardCounter] = &[
    ("ekv_wal_encode_seconds_total", "Time the WAL spent building records.", |s| s.wal.encode_nanos),
    ("ekv_lsm_flush_seconds_total", "Time spent flushing memtables.", |s| s.lsm.flush_micros * 1_000),
    ("ekv_lsm_compaction_seconds_total", "Wall time of compactions.", |s| s.lsm.compaction_micros * 1_000),
    ("ekv_lsm_stall_seconds_total", "Time writers waited on flushes and compactions.", |s| {
        s.lsm.stall_micros * 1_000
    }),
    ("ekv_lsm_stop_seconds_total", "The part of the stall time writers were stopped.", |s| {
        s.lsm.stop_micros * 1_000
    }),
];

fn shard_metrics(p: &mut Prom, role: &str, id: &str, stats: &[ShardStats]) {
    let labels = |i: usize| [(role, id.to_owned()), ("shard", i.to_string())];
    for (kind, table) in [("counter", SHARD_COUNTERS), ("gauge", SHARD_GAUGES)] {
        for (name, help, get) in table {
            p.family(name, kind, help);
            for (i, s) in stats.iter().enumerate() {
                p.sample(name, &labels(i), get(s));
            }
        }
    }
    for (name, help, get) in SHARD_SECONDS {
        p.family(name, "counter", help);
        for (i, s) in stats.iter().enumerate() {
            p.sample(name, &labels(i), seconds(get(s) as f64 / 1e9));
        }
    }
    let name = "ekv_wal_sync_duration_seconds";
    p.family(name, "histogram", "Time of each WAL write + fdatasync.");
    for (i, s) in stats.iter().enumerate() {
        p.histogram(name, &labels(i), &s.wal.io_latency);
    }
    p.family("ekv_lsm_max_stall_seconds", "gauge", "The longest wait of one write since start.");
    for (i, s) in stats.iter().enumerate() {
        p.sample("ekv_lsm_max_stall_seconds", &labels(i), seconds(s.lsm.max_stall_micros as f64 / 1e6));
    }
    for (k, (name, help)) in [
        ("ekv_lsm_level_files", "Tables per LSM level."),
        ("ekv_lsm_level_bytes", "Table bytes per LSM level."),
        ("ekv_lsm_level_target_bytes", "Target size per LSM level (0 for L0)."),
    ]
    .into_iter()
    .enumerate()
    {
        p.family(name, "gauge", help);
        for (i, s) in stats.iter().enumerate() {
            for (level, l) in s.lsm.levels.iter().enumerate() {
                let [a, b] = labels(i);
                p.sample(
                    name,
                    &[a, b, ("level", level.to_string())],
                    [l.files as u64, l.bytes, l.target_bytes][k],
                );
            }
        }
    }
}

/// The shard servers' request counters and latencies.
fn server_metrics(p: &mut Prom, role: &str, id: &str, shards: &[(ShardId, ServerSnapshot)]) {
    let labels = |shard: ShardId| vec![(role, id.to_owned()), ("shard", shard.get().to_string())];
    p.family("ekv_requests_total", "counter", "Requests answered, by operation and outcome.");
    for (shard, s) in shards {
        for op in &s.ops {
            for (outcome, n) in OUTCOMES.iter().zip(op.outcomes) {
                // `ok` always, errors once they happened: a page lists
                // what was asked, not every error of every operation.
                if n > 0 || *outcome == "ok" {
                    let mut l = labels(*shard);
                    l.extend([("op", op.op.to_owned()), ("outcome", (*outcome).to_owned())]);
                    p.sample("ekv_requests_total", &l, n);
                }
            }
        }
    }
    let name = "ekv_request_duration_seconds";
    p.family(name, "histogram", "Time from a request read to its answer queued, by operation.");
    for (shard, s) in shards {
        for op in &s.ops {
            let mut l = labels(*shard);
            l.push(("op", op.op.to_owned()));
            p.histogram(name, &l, &op.latency);
        }
    }
    for (name, help, get) in [
        (
            "ekv_net_raft_frames_received_total",
            "Frames of raft traffic received from other stores.",
            (|s| s.raft_frames) as fn(&ServerSnapshot) -> u64,
        ),
        ("ekv_net_raft_received_bytes_total", "Body bytes of those frames.", |s| s.raft_bytes),
        ("ekv_net_connections_accepted_total", "Connections accepted.", |s| s.connections),
        ("ekv_net_bad_frames_total", "Frames refused for a bad header (connection closed).", |s| {
            s.bad_frames
        }),
    ] {
        p.family(name, "counter", help);
        for (shard, s) in shards {
            p.sample(name, &labels(*shard), get(s));
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
                    "appended_entries": s.appended_entries, "messages_received": s.messages_received,
                    "wal": {
                        "syncs": s.wal.syncs, "bytes_written": s.wal.bytes_written,
                        "segments": s.wal.segments, "entries": s.wal.entries, "poisoned": s.wal.poisoned,
                    },
                    "lsm": {
                        "memtable_bytes": s.lsm.memtable_bytes, "flushes": s.lsm.flushes,
                        "compactions": s.lsm.compactions, "stall_count": s.lsm.stall_count,
                        "level_files": s.lsm.levels.iter().map(|l| l.files).collect::<Vec<_>>(),
                        "level_bytes": s.lsm.levels.iter().map(|l| l.bytes).collect::<Vec<_>>(),
                    },
                })
            })
            .collect(),
    )
}

/// Requests answered per shard and operation, all outcomes.
fn requests_json(shards: &[(ShardId, ServerSnapshot)]) -> Value {
    Value::Array(
        shards
            .iter()
            .map(|(shard, s)| {
                let ops: serde_json::Map<String, Value> =
                    s.ops.iter().map(|o| (o.op.to_owned(), json!(o.outcomes.iter().sum::<u64>()))).collect();
                json!({ "shard": shard.get(), "requests": ops })
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
    /// The request counters of its shard servers.
    pub server: ServerStats,
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
                server_metrics(&mut p, "store", &id, &info.server.snapshot());
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
                    "requests": requests_json(&info.server.snapshot()),
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
    /// The request counters of its server.
    pub server: ServerStats,
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
                server_metrics(&mut p, "member", &id, &info.server.snapshot());
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
                    "requests": requests_json(&info.server.snapshot()),
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
    fn histograms_are_cumulative_in_seconds_and_end_at_inf() {
        let mut h = Histogram::default();
        h.record_nanos(8_000);
        h.record_nanos(120_000);
        h.record_nanos(20_000_000_000);
        let mut p = Prom::default();
        p.family("ekv_x_seconds", "histogram", "X.");
        p.histogram("ekv_x_seconds", &[("op", "get".into())], &h);
        let text = p.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "ekv_x_seconds_bucket{op=\"get\",le=\"0.00001\"} 1");
        assert!(lines.contains(&"ekv_x_seconds_bucket{op=\"get\",le=\"0.00015\"} 2"), "{text}");
        assert!(lines.contains(&"ekv_x_seconds_bucket{op=\"get\",le=\"10\"} 2"), "{text}");
        let n = lines.len();
        assert_eq!(lines[n - 3], "ekv_x_seconds_bucket{op=\"get\",le=\"+Inf\"} 3");
        assert_eq!(lines[n - 2], "ekv_x_seconds_sum{op=\"get\"} 20.000128");
        assert_eq!(lines[n - 1], "ekv_x_seconds_count{op=\"get\"} 3");
        assert_eq!(n, 2 + ekv_io::histogram::BUCKETS + 2);
    }

    #[test]
    fn request_counters_become_families_per_operation_and_outcome() {
        use ekv_net::server_stats::{op_slot, outcome_slot};
        use ekv_proto::msg::{ErrorResponse, MsgType, PutResponse, WireError};
        let stats = ServerStats::default();
        let shard = stats.shard(ShardId(1), "127.0.0.1:1".parse().unwrap());
        let put = op_slot(MsgType::PutRequest as u16);
        shard.record(put, outcome_slot(&AnyMessage::PutResponse(PutResponse)), 300_000);
        let not_leader =
            AnyMessage::ErrorResponse(ErrorResponse::from(WireError::NotLeader { leader: None }));
        shard.record(put, outcome_slot(&not_leader), 50_000);
        let mut p = Prom::default();
        server_metrics(&mut p, "store", "4", &stats.snapshot());
        let text = p.finish();
        for line in [
            "ekv_requests_total{store=\"4\",shard=\"1\",op=\"put\",outcome=\"ok\"} 1",
            "ekv_requests_total{store=\"4\",shard=\"1\",op=\"put\",outcome=\"not_leader\"} 1",
            "ekv_request_duration_seconds_bucket{store=\"4\",shard=\"1\",op=\"put\",le=\"0.00005\"} 1",
            "ekv_request_duration_seconds_bucket{store=\"4\",shard=\"1\",op=\"put\",le=\"0.0003\"} 2",
            "ekv_request_duration_seconds_count{store=\"4\",shard=\"1\",op=\"put\"} 2",
            "ekv_request_duration_seconds_sum{store=\"4\",shard=\"1\",op=\"put\"} 0.00035",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        assert!(!text.contains("op=\"get\""), "operations never asked are left out:\n{text}");
        assert!(!text.contains("outcome=\"timeout\""), "errors that never happened are left out");
        assert_eq!(text.matches("# TYPE ekv_requests_total counter").count(), 1);
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
