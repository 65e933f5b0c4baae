//! A shard server on loopback, spoken to byte by byte: requests, pipelining,
//! routing errors and bad frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ekv_engine::{Config, Store};
use ekv_net::local::{free_base_port, single_replica_server};
use ekv_net::server::ServerConfig;
use ekv_proto::frame::{encode_frame, Frame, FrameDecoder, FrameFlags, FrameHeader, FrameLimits, HEADER_LEN};
use ekv_proto::msg::{AnyMessage, GetRequest, MsgType, PutRequest, RequestContext, WireError};
use ekv_proto::{RegionEpoch, RegionId, RequestId};

const EPOCH: RegionEpoch = RegionEpoch { conf_ver: 1, version: 1 };

struct Server {
    store: Option<Store>,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.store.take() {
            s.stop().expect("store stops");
        }
    }
}

/// A store with one shard serving region 1 on a free port.
fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = Config { tick_interval: Duration::from_millis(10), ..Config::default() };
    let base_port = free_base_port(ServerConfig::default().host, 1).expect("a free port");
    let server = ServerConfig { base_port, ..ServerConfig::default() };
    let (store, addr) =
        single_replica_server(dir.path(), cfg, server, Duration::from_secs(20)).expect("server");
    Server { store: Some(store), addr, _dir: dir }
}

fn ctx() -> RequestContext {
    RequestContext { cf: String::new(), epoch: EPOCH }
}

fn request<M: ekv_proto::msg::Message>(msg: &M, region: u64, id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, msg, FrameFlags::NONE, RegionId(region), RequestId(id), &FrameLimits::default())
        .expect("frame");
    out
}

/// Reads frames until `n` arrived or the server closed the connection.
fn read_frames(s: &mut TcpStream, n: usize) -> (Vec<Frame>, bool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut dec = FrameDecoder::new(FrameLimits::default());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        let got = s.read(&mut buf).expect("read (or timeout)");
        if got == 0 {
            return (out, true);
        }
        let mut data = &buf[..got];
        while !data.is_empty() {
            let t = dec.feed(data);
            data = &data[t..];
            while let Some(f) = dec.next_frame().expect("server frames decode") {
                out.push(f);
            }
        }
    }
    (out, false)
}

fn message(f: &Frame) -> AnyMessage {
    f.message(&FrameLimits::default()).expect("a message")
}

#[test]
fn requests_are_served_pipelined_and_out_of_order() {
    let server = start();
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let put = PutRequest { ctx: ctx(), key: b"k".to_vec(), value: b"v".to_vec() };
    s.write_all(&request(&put, 1, 1)).unwrap();
    let (frames, _) = read_frames(&mut s, 1);
    assert_eq!(frames[0].header.request_id, RequestId(1));
    let m = message(&frames[0]);
    assert!(matches!(m, AnyMessage::PutResponse(_)), "{m:?}");
    // Two gets and a request for an unknown region in one write.
    let mut bytes = request(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, 1, 2);
    bytes.extend(request(&GetRequest { ctx: ctx(), key: b"missing".to_vec() }, 1, 3));
    bytes.extend(request(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, 9, 4));
    s.write_all(&bytes).unwrap();
    let (mut frames, closed) = read_frames(&mut s, 3);
    assert!(!closed);
    frames.sort_by_key(|f| f.header.request_id);
    match message(&frames[0]) {
        AnyMessage::GetResponse(r) => assert_eq!(r.value.as_deref(), Some(&b"v"[..])),
        m => panic!("{m:?}"),
    }
    match message(&frames[1]) {
        AnyMessage::GetResponse(r) => assert_eq!(r.value, None),
        m => panic!("{m:?}"),
    }
    match message(&frames[2]) {
        AnyMessage::ErrorResponse(e) => {
            assert_eq!(e.error, WireError::RegionNotFound { region: RegionId(9) })
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn bad_frames_get_a_typed_error_and_the_server_goes_on() {
    let server = start();
    // Garbage: an error frame, then the connection is closed.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(&[0xab; HEADER_LEN]).unwrap();
    let (frames, closed) = read_frames(&mut s, 2);
    assert_eq!(frames.len(), 1);
    assert!(
        matches!(message(&frames[0]), AnyMessage::ErrorResponse(e) if matches!(e.error, WireError::BadRequest { .. }))
    );
    assert!(closed);
    // An oversize frame is refused from its header alone.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let mut h = [0u8; HEADER_LEN];
    FrameHeader::new(MsgType::PutRequest, FrameFlags::NONE, RegionId(1), RequestId(5), u32::MAX)
        .encode_into(&mut h);
    s.write_all(&h).unwrap();
    let (frames, closed) = read_frames(&mut s, 2);
    assert!(
        matches!(message(&frames[0]), AnyMessage::ErrorResponse(e) if matches!(e.error, WireError::FrameTooLarge { .. }))
    );
    assert!(closed);
    // A truncated frame and a hang-up harm nothing.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let put = request(&PutRequest { ctx: ctx(), key: b"k".to_vec(), value: b"v".to_vec() }, 1, 6);
    s.write_all(&put[..put.len() - 3]).unwrap();
    drop(s);
    // A response type sent as a request gets BadRequest on a live connection.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let mut bytes = request(&ekv_proto::msg::PutResponse, 1, 7);
    bytes.extend(request(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, 1, 8));
    s.write_all(&bytes).unwrap();
    let (mut frames, closed) = read_frames(&mut s, 2);
    assert!(!closed);
    frames.sort_by_key(|f| f.header.request_id);
    assert!(
        matches!(message(&frames[0]), AnyMessage::ErrorResponse(e) if matches!(e.error, WireError::BadRequest { .. }))
    );
    assert!(matches!(message(&frames[1]), AnyMessage::GetResponse(_)));
}

/// One connection serves far more reads than a glommio task can hold
/// references (i16): the stop signal a read races against must not keep a
/// waker per read.
#[test]
fn one_connection_serves_forty_thousand_sequential_requests() {
    let server = start();
    let mut s = TcpStream::connect(server.addr).expect("connect");
    let get = request(&GetRequest { ctx: ctx(), key: b"k".to_vec() }, 1, 1);
    for i in 0..40_000u32 {
        s.write_all(&get).unwrap();
        let (frames, closed) = read_frames(&mut s, 1);
        assert!(!closed, "closed after {i} requests");
        assert!(matches!(message(&frames[0]), AnyMessage::GetResponse(_)), "request {i}");
    }
}
