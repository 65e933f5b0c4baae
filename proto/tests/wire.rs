//! Wire codec tests: round trips for every message type, truncation and
//! corruption refused without panics, limits enforced, codes pinned.

use ekv_proto::codec::DecodeError;
use ekv_proto::frame::{encode_frame, FrameDecoder, FrameFlags, FrameLimits};
use ekv_proto::msg::*;
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, RequestId, StoreId};

fn peer(id: u64, store: u64) -> PeerMeta {
    PeerMeta { id: PeerId(id), store_id: StoreId(store) }
}

fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
    Region {
        id: RegionId(id),
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        epoch: RegionEpoch { conf_ver: 3, version: 300 + id },
        peers: vec![peer(id * 10 + 1, 1), peer(id * 10 + 2, 2), peer(id * 10 + 3, 3)],
    }
}

fn ctx() -> RequestContext {
    RequestContext { cf: "write".into(), epoch: RegionEpoch { conf_ver: 2, version: 9 } }
}

fn kv(k: &str, v: &str) -> KvPair {
    KvPair { key: k.as_bytes().to_vec(), value: v.as_bytes().to_vec() }
}

fn store(id: u64) -> StoreMeta {
    StoreMeta {
        id: StoreId(id),
        address: format!("10.0.0.{id}:20160"),
        shard_count: 8,
        state: StoreState::Offline,
    }
}

fn error_samples() -> Vec<(WireError, u16)> {
    vec![
        (WireError::NotLeader { leader: Some(peer(4, 2)) }, 1),
        (WireError::NotLeader { leader: None }, 1),
        (WireError::EpochNotMatch { regions: vec![region(3, b"a", b"m"), region(9, b"m", b"")] }, 2),
        (WireError::RegionNotFound { region: RegionId(77) }, 3),
        (
            WireError::KeyNotInRegion {
                key: b"zz".to_vec(),
                region: RegionId(3),
                start: b"a".to_vec(),
                end: b"m".to_vec(),
            },
            4,
        ),
        (WireError::ServerBusy, 5),
        (WireError::StoreNotMatch { expected: StoreId(1), actual: StoreId(2) }, 6),
        (WireError::FrameTooLarge { len: 1 << 30, limit: 16 << 20 }, 7),
        (WireError::BadRequest { message: "unknown message type 0xfff0 ü".into() }, 8),
        (WireError::Timeout, 9),
        (WireError::StaleCommand, 10),
        (WireError::OutcomeUnknown, 11),
        (WireError::Unrecognized { code: 999 }, 999),
    ]
}

/// At least one non-trivial sample of every message type.
fn samples() -> Vec<AnyMessage> {
    let mut v: Vec<AnyMessage> = vec![
        GetRequest { ctx: ctx(), key: b"k1".to_vec() }.into(),
        GetResponse { value: Some(b"v1".to_vec()) }.into(),
        GetResponse { value: Some(Vec::new()) }.into(),
        GetResponse { value: None }.into(),
        BatchGetRequest { ctx: ctx(), keys: vec![b"a".to_vec(), Vec::new(), vec![0xff; 300]] }.into(),
        BatchGetResponse { pairs: vec![kv("a", "1"), kv("c", "")] }.into(),
        ScanRequest {
            ctx: ctx(),
            start: b"a".to_vec(),
            end: b"z".to_vec(),
            limit: 500,
            reverse: true,
            key_only: true,
        }
        .into(),
        ScanResponse { pairs: vec![kv("b", "2"), kv("a", "1")] }.into(),
        PutRequest { ctx: ctx(), key: b"k".to_vec(), value: vec![7; 1000] }.into(),
        PutResponse.into(),
        BatchPutRequest { ctx: ctx(), pairs: vec![kv("x", "1"), kv("y", "2")] }.into(),
        BatchPutResponse.into(),
        DeleteRequest { ctx: ctx(), key: b"gone".to_vec() }.into(),
        DeleteResponse.into(),
        BatchDeleteRequest { ctx: ctx(), keys: vec![b"p".to_vec(), b"q".to_vec()] }.into(),
        BatchDeleteResponse.into(),
        DeleteRangeRequest { ctx: ctx(), start: b"a".to_vec(), end: Vec::new() }.into(),
        DeleteRangeResponse.into(),
        CompareAndSwapRequest { ctx: ctx(), key: b"k".to_vec(), expected: None, new: Some(b"n".to_vec()) }
            .into(),
        CompareAndSwapRequest { ctx: ctx(), key: b"k".to_vec(), expected: Some(b"o".to_vec()), new: None }
            .into(),
        CompareAndSwapResponse { succeeded: false, previous: Some(b"o".to_vec()) }.into(),
        TransferLeaderRequest { epoch: RegionEpoch { conf_ver: 1, version: 2 }, to: peer(5, 3) }.into(),
        TransferLeaderResponse.into(),
        ChangePeerRequest {
            epoch: RegionEpoch { conf_ver: 4, version: 1 },
            changes: vec![
                PeerChange { kind: ChangeKind::AddVoter, peer: peer(8, 4) },
                PeerChange { kind: ChangeKind::AddLearner, peer: peer(9, 5) },
                PeerChange { kind: ChangeKind::Remove, peer: peer(2, 2) },
            ],
        }
        .into(),
        ChangePeerResponse { region: region(1, b"", b"") }.into(),
        SplitRequest {
            epoch: RegionEpoch { conf_ver: 1, version: 7 },
            split_keys: vec![b"g".to_vec(), b"p".to_vec()],
        }
        .into(),
        SplitResponse { regions: vec![region(1, b"", b"g"), region(2, b"g", b"p"), region(3, b"p", b"")] }
            .into(),
        GetRegionRequest { key: b"user42".to_vec(), before: false }.into(),
        GetRegionRequest { key: Vec::new(), before: true }.into(),
        GetRegionResponse {
            route: Some(RegionRoute {
                region: region(4, b"u", b"v"),
                leader: Some(peer(41, 1)),
                leader_shard: 3,
            }),
        }
        .into(),
        GetRegionResponse { route: None }.into(),
        GetRegionByIdRequest { region_id: RegionId(1 << 40) }.into(),
        ScanRegionsRequest { start: b"a".to_vec(), end: b"q".to_vec(), limit: 64 }.into(),
        ScanRegionsResponse {
            routes: vec![
                RegionRoute { region: region(1, b"", b"g"), leader: None, leader_shard: 0 },
                RegionRoute { region: region(2, b"g", b""), leader: Some(peer(22, 2)), leader_shard: 1 },
            ],
        }
        .into(),
        GetMembersRequest.into(),
        GetMembersResponse {
            members: vec![
                MetaMember { store_id: StoreId(1), address: "a:1".into() },
                MetaMember { store_id: StoreId(2), address: "b:2".into() },
            ],
            leader: Some(StoreId(2)),
        }
        .into(),
        AllocIdRequest { count: 3 }.into(),
        AllocIdResponse { first: 1000, count: 3 }.into(),
        PutStoreRequest { store: store(1) }.into(),
        PutStoreResponse.into(),
        GetStoreRequest { store_id: StoreId(3) }.into(),
        GetStoreResponse { store: Some(store(3)) }.into(),
        GetStoreResponse { store: None }.into(),
        GetAllStoresRequest { exclude_tombstones: true }.into(),
        GetAllStoresResponse { stores: vec![store(1), store(2)] }.into(),
        StoreHeartbeatRequest {
            store_id: StoreId(2),
            capacity: 1 << 40,
            available: 1 << 39,
            used_size: 12345,
            region_count: 100,
            leader_count: 33,
            sending_snap_count: 1,
            receiving_snap_count: 2,
            bytes_written: 4096,
            keys_written: 40,
            bytes_read: 8192,
            keys_read: 80,
            is_busy: true,
        }
        .into(),
        StoreHeartbeatResponse.into(),
        RegionHeartbeatRequest {
            region: region(6, b"f", b"h"),
            leader: Some(peer(61, 1)),
            leader_shard: 1,
            pending_peers: vec![peer(62, 2)],
            down_peers: vec![DownPeer { peer: peer(63, 3), down_seconds: 120 }],
            learners: vec![peer(64, 4)],
            approximate_size: 96 << 20,
            approximate_keys: 1_000_000,
            bytes_written: 1,
            keys_written: 2,
            bytes_read: 3,
            keys_read: 4,
        }
        .into(),
        AskBatchSplitRequest { region: region(6, b"f", b"h"), split_count: 2 }.into(),
        AskBatchSplitResponse {
            ids: vec![
                SplitIds { new_region_id: RegionId(100), new_peer_ids: vec![PeerId(101), PeerId(102)] },
                SplitIds { new_region_id: RegionId(200), new_peer_ids: vec![PeerId(201)] },
            ],
        }
        .into(),
        ReportBatchSplitRequest { regions: vec![region(1, b"", b"g"), region(2, b"g", b"")] }.into(),
        ReportBatchSplitResponse.into(),
        IsBootstrappedRequest.into(),
        IsBootstrappedResponse { bootstrapped: true }.into(),
        BootstrapRequest { store: store(1), region: region(1, b"", b"") }.into(),
        BootstrapResponse.into(),
        DeleteStoreRequest { store_id: StoreId(4) }.into(),
        DeleteStoreResponse.into(),
        GetStatusRequest.into(),
        GetStatusResponse { json: br#"{"stores":[]}"#.to_vec() }.into(),
        RaftMessage { payload: vec![1, 2, 3, 4, 5] }.into(),
        SnapshotChunk { payload: vec![0xab; 333] }.into(),
    ];
    for op in [
        None,
        Some(Operator::ChangePeer {
            changes: vec![PeerChange { kind: ChangeKind::AddLearner, peer: peer(7, 7) }],
        }),
        Some(Operator::TransferLeader { to: peer(2, 2) }),
        Some(Operator::Split { keys: vec![b"m".to_vec()] }),
        Some(Operator::Split { keys: Vec::new() }),
    ] {
        v.push(
            RegionHeartbeatResponse {
                region_id: RegionId(6),
                epoch: RegionEpoch { conf_ver: 1, version: 2 },
                operator: op,
            }
            .into(),
        );
    }
    for (error, _) in error_samples() {
        v.push(ErrorResponse { error }.into());
    }
    v
}

fn limits() -> FrameLimits {
    FrameLimits::default()
}

#[test]
fn samples_cover_every_message_type() {
    let s = samples();
    for ty in MsgType::ALL {
        assert!(s.iter().any(|m| m.msg_type() == *ty), "no sample of {}", ty.name());
    }
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let body = m.encode_into_vec();
        let back = AnyMessage::decode_from(m.msg_type(), &body, &limits()).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn every_message_round_trips_through_frames() {
    let mut stream = Vec::new();
    let s = samples();
    for (i, m) in s.iter().enumerate() {
        let body = m.encode_into_vec();
        let header = ekv_proto::frame::FrameHeader::new(
            m.msg_type(),
            if m.msg_type() == MsgType::ErrorResponse {
                FrameFlags::RESPONSE.union(FrameFlags::ERROR)
            } else {
                FrameFlags::NONE
            },
            RegionId(i as u64),
            RequestId(1000 + i as u64),
            body.len() as u32,
        );
        let mut h = [0u8; ekv_proto::frame::HEADER_LEN];
        header.encode_into(&mut h);
        stream.extend_from_slice(&h);
        stream.extend_from_slice(&body);
    }
    let mut dec = FrameDecoder::new(limits());
    let mut input = &stream[..];
    let mut got = Vec::new();
    while !input.is_empty() {
        let n = dec.feed(input);
        input = &input[n..];
        while let Some(f) = dec.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got.len(), s.len());
    for (i, (f, m)) in got.iter().zip(&s).enumerate() {
        assert_eq!(f.header.request_id, RequestId(1000 + i as u64));
        assert_eq!(f.header.region_id, RegionId(i as u64));
        assert_eq!(&f.message(&limits()).unwrap(), m);
    }
}

#[test]
fn encode_frame_sets_error_flags() {
    let mut out = Vec::new();
    let e = ErrorResponse { error: WireError::ServerBusy };
    encode_frame(&mut out, &e, FrameFlags::NONE, RegionId(1), RequestId(2), &limits()).unwrap();
    let h = ekv_proto::frame::FrameHeader::decode_from(&out, &limits()).unwrap();
    assert!(h.flags.contains(FrameFlags::RESPONSE.union(FrameFlags::ERROR)));
    assert_eq!(h.kind(), Ok(MsgType::ErrorResponse));
    // ERROR on another type would make the frame invalid: it is cleared.
    out.clear();
    encode_frame(
        &mut out,
        &PutResponse,
        FrameFlags::RESPONSE.union(FrameFlags::ERROR),
        RegionId(1),
        RequestId(3),
        &limits(),
    )
    .unwrap();
    let h = ekv_proto::frame::FrameHeader::decode_from(&out, &limits()).unwrap();
    assert_eq!(h.flags, FrameFlags::RESPONSE);
}

#[test]
fn unknown_type_frame_is_answered_and_the_stream_stays_in_sync() {
    let mut stream = Vec::new();
    let body = [1u8, 2, 3];
    let mut unknown = ekv_proto::frame::FrameHeader::new(
        MsgType::GetRequest,
        FrameFlags::NONE,
        RegionId(1),
        RequestId(1),
        body.len() as u32,
    );
    unknown.msg_type = 0x7777;
    let mut h = [0u8; ekv_proto::frame::HEADER_LEN];
    unknown.encode_into(&mut h);
    stream.extend_from_slice(&h);
    stream.extend_from_slice(&body);
    let get = GetRequest { ctx: ctx(), key: b"k".to_vec() };
    encode_frame(&mut stream, &get, FrameFlags::NONE, RegionId(1), RequestId(2), &limits()).unwrap();

    let mut dec = FrameDecoder::new(limits());
    let mut input = &stream[..];
    let mut got = Vec::new();
    while !input.is_empty() {
        let n = dec.feed(input);
        input = &input[n..];
        while let Some(f) = dec.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got.len(), 2);
    let err = got[0].message(&limits()).unwrap_err();
    assert_eq!(err.code(), code::BAD_REQUEST);
    assert_eq!(got[0].header.request_id, RequestId(1), "the answer can name the request");
    assert_eq!(got[1].message(&limits()).unwrap(), AnyMessage::GetRequest(get));
}

#[test]
fn every_truncation_is_refused() {
    for m in samples() {
        let body = m.encode_into_vec();
        for cut in 0..body.len() {
            assert!(
                AnyMessage::decode_from(m.msg_type(), &body[..cut], &limits()).is_err(),
                "{} cut at {cut} of {}",
                m.msg_type().name(),
                body.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    for m in samples() {
        let mut body = m.encode_into_vec();
        body.push(0);
        assert_eq!(
            AnyMessage::decode_from(m.msg_type(), &body, &limits()),
            Err(DecodeError::Invalid { what: "trailing bytes", value: 1 }),
            "{}",
            m.msg_type().name()
        );
    }
}

/// Marsaglia xorshift64: a fixed seed makes a failure replayable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let s = samples();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..5000 {
        let m = &s[rng.below(s.len())];
        let mut body = m.encode_into_vec();
        if body.is_empty() {
            body.push(rng.next() as u8);
        }
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(body.len());
            body[at] ^= 1 << rng.below(8);
        }
        // As its own type, and as some other type.
        if let Ok(back) = AnyMessage::decode_from(m.msg_type(), &body, &limits()) {
            accepted += 1;
            // A body that decodes must re-encode to something that decodes the same.
            assert_eq!(
                AnyMessage::decode_from(m.msg_type(), &back.encode_into_vec(), &limits()).unwrap(),
                back
            );
        }
        let other = MsgType::ALL[rng.below(MsgType::ALL.len())];
        let _ = AnyMessage::decode_from(other, &body, &limits());
        ekv_proto::msg::fuzz_decode_all(&body[..rng.below(body.len() + 1)]);
    }
    // Flips in values and ids decode fine; flips in tags and lengths do not.
    assert!(accepted > 0);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(42);
    for _ in 0..3000 {
        let len = rng.below(64);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        ekv_proto::msg::fuzz_decode_all(&data);
        ekv_proto::frame::fuzz_frame_decoder(&data);
    }
}

#[test]
fn semantic_limits_are_enforced_with_typed_errors() {
    let l =
        FrameLimits { max_key: 8, max_value: 16, max_batch: 2, max_scan_limit: 5, ..FrameLimits::default() };
    l.validate().unwrap();
    let too_large = |m: AnyMessage, what: &str| {
        let body = m.encode_into_vec();
        match AnyMessage::decode_from(m.msg_type(), &body, &l) {
            Err(DecodeError::TooLarge { what: w, .. }) => assert_eq!(w, what),
            other => panic!("{}: {other:?}", m.msg_type().name()),
        }
    };
    too_large(GetRequest { ctx: ctx(), key: vec![1; 9] }.into(), "key");
    too_large(PutRequest { ctx: ctx(), key: vec![1; 8], value: vec![0; 17] }.into(), "value");
    too_large(BatchGetRequest { ctx: ctx(), keys: vec![Vec::new(); 3] }.into(), "batch");
    too_large(BatchPutRequest { ctx: ctx(), pairs: vec![KvPair::default(); 3] }.into(), "batch");
    too_large(BatchDeleteRequest { ctx: ctx(), keys: vec![Vec::new(); 3] }.into(), "batch");
    too_large(
        ScanRequest { ctx: ctx(), start: vec![], end: vec![], limit: 6, reverse: false, key_only: false }
            .into(),
        "scan limit",
    );
    too_large(ScanRegionsRequest { start: vec![], end: vec![], limit: 6 }.into(), "scan limit");
    too_large(
        CompareAndSwapRequest { ctx: ctx(), key: vec![], expected: Some(vec![0; 17]), new: None }.into(),
        "expected value",
    );
    too_large(
        GetRequest { ctx: RequestContext { cf: "c".repeat(MAX_CF_LEN + 1), ..ctx() }, key: vec![] }.into(),
        "cf",
    );
    // At the limits, everything is accepted.
    let ok = BatchPutRequest { ctx: ctx(), pairs: vec![KvPair { key: vec![1; 8], value: vec![2; 16] }; 2] };
    assert!(BatchPutRequest::decode_exact(&ok.encode_into_vec(), &l).is_ok());
}

#[test]
fn a_lying_count_does_not_allocate_for_it() {
    // A batch claiming max_batch entries in a 10-byte body is refused as
    // truncated, having reserved at most the bytes present.
    let mut body = ctx_bytes();
    ekv_proto::codec::put_uvarint(&mut body, 10_000);
    assert!(matches!(BatchGetRequest::decode_exact(&body, &limits()), Err(DecodeError::Incomplete { .. })));
    let mut body = ctx_bytes();
    ekv_proto::codec::put_uvarint(&mut body, u64::MAX);
    assert!(matches!(BatchGetRequest::decode_exact(&body, &limits()), Err(DecodeError::TooLarge { .. })));
}

fn ctx_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    ctx().encode_into(&mut v);
    v
}

#[test]
fn bad_tags_and_bools_are_invalid() {
    // GetResponse option tag 2.
    assert!(matches!(GetResponse::decode_exact(&[2], &limits()), Err(DecodeError::Invalid { .. })));
    // cf that is not UTF-8.
    let mut body = vec![2, 0xc3, 0x28, 0, 0, 0];
    body.push(0);
    assert!(matches!(
        GetRequest::decode_exact(&body, &limits()),
        Err(DecodeError::Invalid { what: "cf", .. })
    ));
    // Error code 0 is never sent.
    assert!(matches!(ErrorResponse::decode_exact(&[0, 0, 0], &limits()), Err(DecodeError::Invalid { .. })));
}

#[test]
fn error_codes_are_pinned() {
    for (error, code) in error_samples() {
        assert_eq!(error.code(), code, "{error:?}");
        let resp = ErrorResponse { error: error.clone() };
        assert_eq!(resp.code(), code);
        let body = resp.encode_into_vec();
        assert_eq!(u16::from_le_bytes([body[0], body[1]]), code, "code is the first two bytes");
        assert_eq!(ErrorResponse::decode_exact(&body, &limits()).unwrap(), resp);
    }
    let consts = [
        (code::NOT_LEADER, 1),
        (code::EPOCH_NOT_MATCH, 2),
        (code::REGION_NOT_FOUND, 3),
        (code::KEY_NOT_IN_REGION, 4),
        (code::SERVER_BUSY, 5),
        (code::STORE_NOT_MATCH, 6),
        (code::FRAME_TOO_LARGE, 7),
        (code::BAD_REQUEST, 8),
        (code::TIMEOUT, 9),
        (code::STALE_COMMAND, 10),
        (code::OUTCOME_UNKNOWN, 11),
    ];
    for (c, n) in consts {
        assert_eq!(c, n);
    }
}

#[test]
fn only_outcome_unknown_forbids_blind_retry() {
    for (error, _) in error_samples() {
        let unknown = matches!(error, WireError::OutcomeUnknown | WireError::Unrecognized { .. });
        assert_eq!(error.definitely_not_applied(), !unknown, "{error:?}");
    }
}

#[test]
fn unknown_error_code_with_payload_decodes_as_unrecognized() {
    // A newer peer's code 500 with a payload this build cannot read.
    let body = [0xf4, 0x01, 3, 1, 2, 3];
    assert_eq!(
        ErrorResponse::decode_exact(&body, &limits()).unwrap().error,
        WireError::Unrecognized { code: 500 }
    );
}

#[test]
fn proto_errors_map_to_wire_errors() {
    let e: ErrorResponse = ekv_proto::frame::FrameError::TooLarge { len: 10, limit: 5 }.into();
    assert_eq!(e.error, WireError::FrameTooLarge { len: 10, limit: 5 });
    let e: ErrorResponse = ekv_proto::frame::FrameError::UnknownType { value: 0xfff0 }.into();
    assert_eq!(e.code(), code::BAD_REQUEST);
    let e: ErrorResponse = DecodeError::TooLarge { what: "key", len: 70_000, limit: 65_536 }.into();
    assert_eq!(e.code(), code::BAD_REQUEST);
    // A long message is cut so that the response always decodes.
    let e = ErrorResponse::bad_request("é".repeat(MAX_TEXT_LEN));
    assert!(ErrorResponse::decode_exact(&e.encode_into_vec(), &limits()).is_ok());
}

#[test]
fn msg_type_numbers_are_pinned() {
    let table: &[(MsgType, u16)] = &[
        (MsgType::ErrorResponse, 0x0001),
        (MsgType::GetRequest, 0x0101),
        (MsgType::GetResponse, 0x0102),
        (MsgType::BatchGetRequest, 0x0103),
        (MsgType::BatchGetResponse, 0x0104),
        (MsgType::ScanRequest, 0x0105),
        (MsgType::ScanResponse, 0x0106),
        (MsgType::PutRequest, 0x0107),
        (MsgType::PutResponse, 0x0108),
        (MsgType::BatchPutRequest, 0x0109),
        (MsgType::BatchPutResponse, 0x010a),
        (MsgType::DeleteRequest, 0x010b),
        (MsgType::DeleteResponse, 0x010c),
        (MsgType::BatchDeleteRequest, 0x010d),
        (MsgType::BatchDeleteResponse, 0x010e),
        (MsgType::DeleteRangeRequest, 0x010f),
        (MsgType::DeleteRangeResponse, 0x0110),
        (MsgType::CompareAndSwapRequest, 0x0111),
        (MsgType::CompareAndSwapResponse, 0x0112),
        (MsgType::TransferLeaderRequest, 0x0201),
        (MsgType::TransferLeaderResponse, 0x0202),
        (MsgType::ChangePeerRequest, 0x0203),
        (MsgType::ChangePeerResponse, 0x0204),
        (MsgType::SplitRequest, 0x0205),
        (MsgType::SplitResponse, 0x0206),
        (MsgType::GetRegionRequest, 0x0301),
        (MsgType::GetRegionResponse, 0x0302),
        (MsgType::GetRegionByIdRequest, 0x0303),
        (MsgType::ScanRegionsRequest, 0x0305),
        (MsgType::ScanRegionsResponse, 0x0306),
        (MsgType::GetMembersRequest, 0x0307),
        (MsgType::GetMembersResponse, 0x0308),
        (MsgType::AllocIdRequest, 0x0309),
        (MsgType::AllocIdResponse, 0x030a),
        (MsgType::PutStoreRequest, 0x030b),
        (MsgType::PutStoreResponse, 0x030c),
        (MsgType::GetStoreRequest, 0x030d),
        (MsgType::GetStoreResponse, 0x030e),
        (MsgType::GetAllStoresRequest, 0x030f),
        (MsgType::GetAllStoresResponse, 0x0310),
        (MsgType::StoreHeartbeatRequest, 0x0311),
        (MsgType::StoreHeartbeatResponse, 0x0312),
        (MsgType::RegionHeartbeatRequest, 0x0313),
        (MsgType::RegionHeartbeatResponse, 0x0314),
        (MsgType::AskBatchSplitRequest, 0x0315),
        (MsgType::AskBatchSplitResponse, 0x0316),
        (MsgType::ReportBatchSplitRequest, 0x0317),
        (MsgType::ReportBatchSplitResponse, 0x0318),
        (MsgType::IsBootstrappedRequest, 0x0319),
        (MsgType::IsBootstrappedResponse, 0x031a),
        (MsgType::BootstrapRequest, 0x031b),
        (MsgType::BootstrapResponse, 0x031c),
        (MsgType::DeleteStoreRequest, 0x031d),
        (MsgType::DeleteStoreResponse, 0x031e),
        (MsgType::GetStatusRequest, 0x031f),
        (MsgType::GetStatusResponse, 0x0320),
        (MsgType::RaftMessage, 0x0401),
        (MsgType::SnapshotChunk, 0x0402),
    ];
    assert_eq!(table.len(), MsgType::ALL.len(), "a type was added: pin it here");
    for &(ty, n) in table {
        assert_eq!(ty as u16, n, "{}", ty.name());
        assert_eq!(MsgType::from_u16(n), Some(ty));
    }
    assert_eq!(MsgType::from_u16(0), None);
    assert_eq!(MsgType::from_u16(0x0304), None, "reserved");
}
