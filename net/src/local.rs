//! Stores with shard servers in one process: the wiring tests, benchmarks
//! and the playground share.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ekv_engine::{Config, LocalNetwork, LocalPd, Store, StoreSpec};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};

use crate::server::{spawn_shard_server, ServerConfig};

/// A base port such that `count` consecutive ports from it are free on
/// `host` right now, below the kernel's ephemeral range so that outgoing
/// connections do not take them meanwhile. Tests, benchmarks and the
/// playground use it so that parallel runs do not collide; a port can
/// still be taken between this probe and the bind, which then fails loudly.
///
/// # Errors
/// When no run of `count` free ports is found.
pub fn free_base_port(host: std::net::IpAddr, count: u16) -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const HIGH: u32 = 32_000;
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(nanos)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
    let count = u32::from(count.max(1));
    let span = HIGH - LOW - count;
    for attempt in 0..512u32 {
        let base = LOW + (seed.wrapping_add(attempt.wrapping_mul(4_099)) % span);
        let all_free = (base..base + count)
            .all(|p| std::net::TcpListener::bind(SocketAddr::new(host, p as u16)).is_ok());
        if all_free {
            return Ok(base as u16);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {count} consecutive free ports on {host}"),
    ))
}

/// The first port a shard server failed to bind, if any.
pub type BindError = Arc<Mutex<Option<String>>>;

/// Makes `spec` start a shard server (see [`ServerConfig`]) on each of its
/// shards' executors. A port that cannot be bound is recorded in the
/// returned slot (the shard itself runs on).
pub fn serve_shards(spec: &mut StoreSpec, cfg: ServerConfig) -> BindError {
    let failed = BindError::default();
    let seen = failed.clone();
    let cfg = Arc::new(cfg);
    spec.on_shard_start = Some(Arc::new(move |shard, handle, stop| {
        let addr = cfg.addr(shard);
        if let Err(e) = spawn_shard_server(Rc::new((*cfg).clone()), shard, handle, stop) {
            let mut slot = seen.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(format!("binding the shard server on {addr}: {e}"));
        }
    }));
    failed
}

/// The region [`single_replica_server`] serves: region 1 over all keys,
/// its one replica (peer 1) on store 1.
pub fn single_replica_region() -> Region {
    Region {
        id: RegionId(1),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: PeerId(1), store_id: StoreId(1) }],
        ..Region::default()
    }
}

/// Store 1 with one shard in `dir`, serving [`single_replica_region`] on
/// `server`'s port for shard 0, once its peer leads (within `leader_wait`).
/// Returns the store and the address to connect to.
///
/// # Errors
/// The store does not start, the port cannot be bound, or no leader in time.
pub fn single_replica_server(
    dir: &Path,
    cfg: Config,
    server: ServerConfig,
    leader_wait: Duration,
) -> Result<(Store, SocketAddr), String> {
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let addr = server.addr(ShardId(0));
    let cfg = Config { shards: 1, ..cfg };
    let mut spec = StoreSpec::new(
        cfg,
        dir.join("s1"),
        StoreId(1),
        net.transport_for(StoreId(1)),
        pd.client_for(StoreId(1)),
    );
    let failed = serve_shards(&mut spec, server);
    let store = Store::start(spec).map_err(|e| format!("starting the store: {e}"))?;
    net.register(&store);
    let bind_failure = || failed.lock().unwrap_or_else(PoisonError::into_inner).take();
    let ready = (|| {
        futures::executor::block_on(store.bootstrap_region(single_replica_region()))
            .map_err(|e| format!("bootstrap: {e}"))?;
        let deadline = Instant::now() + leader_wait;
        while !futures::executor::block_on(store.status()).iter().any(|p| p.is_leader) {
            if Instant::now() >= deadline {
                return Err(format!("no leader after {leader_wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bind_failure().map_or(Ok(()), Err)
    })();
    match ready {
        Ok(()) => Ok((store, addr)),
        Err(e) => {
            let _ = store.stop();
            Err(e)
        }
    }
}
