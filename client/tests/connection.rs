//! The client's pipelined connection against a real shard server on loopback.

use std::time::{Duration, Instant};

use ekv_client::{CallError, Connection};
use ekv_engine::{Config, Store};
use ekv_net::local::{free_base_port, single_replica_server};
use ekv_net::server::ServerConfig;
use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{AnyMessage, GetRequest, PutRequest, RequestContext, WireError};
use ekv_proto::{RegionEpoch, RegionId};

const EPOCH: RegionEpoch = RegionEpoch { conf_ver: 1, version: 1 };

fn start() -> (Store, std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = Config { tick_interval: Duration::from_millis(10), ..Config::default() };
    let base_port = free_base_port(ServerConfig::default().host, 1).expect("a free port");
    let server = ServerConfig { base_port, ..ServerConfig::default() };
    let (store, addr) =
        single_replica_server(dir.path(), cfg, server, Duration::from_secs(20)).expect("server");
    (store, addr, dir)
}

fn ctx() -> RequestContext {
    RequestContext { cf: String::new(), epoch: EPOCH }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[test]
fn many_threads_share_one_pipelined_connection() {
    let (store, addr, _dir) = start();
    let conn = Connection::connect(addr, Duration::from_secs(5), FrameLimits::default()).expect("connect");
    std::thread::scope(|s| {
        for t in 0..4 {
            let conn = conn.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let key = format!("t{t}-k{i}").into_bytes();
                    let put = PutRequest { ctx: ctx(), key: key.clone(), value: key.clone() };
                    let r = conn.call_blocking(&put, RegionId(1), soon()).expect("put");
                    assert!(matches!(r, AnyMessage::PutResponse(_)), "{r:?}");
                    let get = GetRequest { ctx: ctx(), key: key.clone() };
                    match conn.call_blocking(&get, RegionId(1), soon()).expect("get") {
                        AnyMessage::GetResponse(g) => assert_eq!(g.value, Some(key)),
                        r => panic!("{r:?}"),
                    }
                }
            });
        }
    });
    // The async form, on any executor.
    let r = futures::executor::block_on(
        conn.call(&GetRequest { ctx: ctx(), key: b"t0-k0".to_vec() }, RegionId(1)),
    );
    assert!(
        matches!(r, Ok(AnyMessage::GetResponse(ref g)) if g.value.as_deref() == Some(&b"t0-k0"[..])),
        "{r:?}"
    );
    // Typed errors come back typed.
    let r = conn.call_blocking(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, RegionId(7), soon());
    assert_eq!(r, Err(CallError::Wire(WireError::RegionNotFound { region: RegionId(7) })));
    assert!(r.unwrap_err().definitely_not_applied());
    // When the server goes away, calls fail as unknown or unsendable, never
    // hang past their deadline.
    store.stop().expect("stop");
    let deadline = Instant::now() + Duration::from_secs(2);
    let r = conn.call_blocking(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, RegionId(1), deadline);
    assert!(
        matches!(r, Err(CallError::ConnectionLost(_) | CallError::Send(_) | CallError::Timeout)),
        "{r:?}"
    );
}
