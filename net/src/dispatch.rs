//! Wire requests into raftstore commands, and raftstore answers into wire
//! responses.

use bytes::Bytes;
use ekv_engine::{Command, PeerChange as EnginePeerChange, Response, Scan, WriteOp};
use ekv_proto::msg::{
    AnyMessage, BatchDeleteResponse, BatchGetResponse, BatchPutResponse, ChangeKind, ChangePeerResponse,
    CompareAndSwapResponse, DeleteRangeResponse, DeleteResponse, ErrorResponse, GetResponse, KvPair,
    PutResponse, ScanResponse, SplitResponse, TransferLeaderResponse,
};
use ekv_proto::RegionEpoch;

/// The family a request names (empty: the default one).
fn cf(name: &str) -> String {
    if name.is_empty() {
        "default".to_owned()
    } else {
        name.to_owned()
    }
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

/// What answer a request expects, kept to shape the raftstore's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A value.
    Get,
    /// The found pairs of these keys, in request order.
    BatchGet(Vec<Vec<u8>>),
    /// Pairs.
    Scan,
    /// An empty answer of this kind.
    Put,
    /// See [`Expect::Put`].
    BatchPut,
    /// See [`Expect::Put`].
    Delete,
    /// See [`Expect::Put`].
    BatchDelete,
    /// See [`Expect::Put`].
    DeleteRange,
    /// A swap's outcome.
    Cas,
    /// See [`Expect::Put`].
    TransferLeader,
    /// See [`Expect::Put`].
    ChangePeer,
    /// The regions a split made.
    Split,
}

/// The raftstore command for a wire request, with its epoch and what
/// answer it expects.
///
/// # Errors
/// A BadRequest for a message that is not a request a store serves.
pub fn to_command(msg: AnyMessage) -> Result<(RegionEpoch, Command, Expect), ErrorResponse> {
    Ok(match msg {
        AnyMessage::GetRequest(m) => {
            (m.ctx.epoch, Command::Get { cf: cf(&m.ctx.cf), key: b(&m.key) }, Expect::Get)
        }
        AnyMessage::BatchGetRequest(m) => {
            let cmd = Command::BatchGet { cf: cf(&m.ctx.cf), keys: m.keys.iter().map(|k| b(k)).collect() };
            (m.ctx.epoch, cmd, Expect::BatchGet(m.keys))
        }
        AnyMessage::ScanRequest(m) => {
            let scan = Scan {
                cf: cf(&m.ctx.cf),
                start: b(&m.start),
                end: b(&m.end),
                limit: m.limit as usize,
                reverse: m.reverse,
                key_only: m.key_only,
            };
            (m.ctx.epoch, Command::Scan(scan), Expect::Scan)
        }
        AnyMessage::PutRequest(m) => {
            let op = WriteOp::Put { cf: cf(&m.ctx.cf), key: b(&m.key), value: b(&m.value) };
            (m.ctx.epoch, Command::Write(vec![op]), Expect::Put)
        }
        AnyMessage::BatchPutRequest(m) => {
            let c = cf(&m.ctx.cf);
            let ops = m
                .pairs
                .iter()
                .map(|p| WriteOp::Put { cf: c.clone(), key: b(&p.key), value: b(&p.value) })
                .collect();
            (m.ctx.epoch, Command::Write(ops), Expect::BatchPut)
        }
        AnyMessage::DeleteRequest(m) => {
            let op = WriteOp::Delete { cf: cf(&m.ctx.cf), key: b(&m.key) };
            (m.ctx.epoch, Command::Write(vec![op]), Expect::Delete)
        }
        AnyMessage::BatchDeleteRequest(m) => {
            let c = cf(&m.ctx.cf);
            let ops = m.keys.iter().map(|k| WriteOp::Delete { cf: c.clone(), key: b(k) }).collect();
            (m.ctx.epoch, Command::Write(ops), Expect::BatchDelete)
        }
        AnyMessage::DeleteRangeRequest(m) => {
            let op = WriteOp::DeleteRange { cf: cf(&m.ctx.cf), start: b(&m.start), end: b(&m.end) };
            (m.ctx.epoch, Command::Write(vec![op]), Expect::DeleteRange)
        }
        AnyMessage::CompareAndSwapRequest(m) => {
            let cmd = Command::Cas {
                cf: cf(&m.ctx.cf),
                key: b(&m.key),
                expected: m.expected.as_deref().map(b),
                new: m.new.as_deref().map(b),
            };
            (m.ctx.epoch, cmd, Expect::Cas)
        }
        AnyMessage::TransferLeaderRequest(m) => {
            (m.epoch, Command::TransferLeader { to: m.to.id }, Expect::TransferLeader)
        }
        AnyMessage::ChangePeerRequest(m) => {
            let changes = m
                .changes
                .iter()
                .map(|c| match c.kind {
                    ChangeKind::AddVoter => EnginePeerChange::AddVoter(c.peer),
                    ChangeKind::AddLearner => EnginePeerChange::AddLearner(c.peer),
                    ChangeKind::Remove => EnginePeerChange::Remove(c.peer),
                })
                .collect();
            (m.epoch, Command::ChangePeers(changes), Expect::ChangePeer)
        }
        AnyMessage::SplitRequest(m) => {
            let keys = m.split_keys.iter().map(|k| b(k)).collect();
            (m.epoch, Command::Split { keys }, Expect::Split)
        }
        other => {
            return Err(ErrorResponse::bad_request(format!(
                "{} is not a request a store serves",
                other.msg_type().name()
            )))
        }
    })
}

/// The wire answer to `expect` for the raftstore's `response`.
///
/// # Errors
/// A BadRequest when the two do not fit (a raftstore bug, not the client's).
pub fn to_response(expect: Expect, response: Response) -> Result<AnyMessage, ErrorResponse> {
    let vec = |v: Bytes| v.to_vec();
    Ok(match (expect, response) {
        (Expect::Get, Response::Value(v)) => AnyMessage::GetResponse(GetResponse { value: v.map(vec) }),
        (Expect::BatchGet(keys), Response::Values(vs)) => {
            let pairs = keys
                .into_iter()
                .zip(vs)
                .filter_map(|(key, v)| v.map(|v| KvPair { key, value: v.to_vec() }))
                .collect();
            AnyMessage::BatchGetResponse(BatchGetResponse { pairs })
        }
        (Expect::Scan, Response::Pairs(ps)) => AnyMessage::ScanResponse(ScanResponse {
            pairs: ps.into_iter().map(|(k, v)| KvPair { key: k.to_vec(), value: v.to_vec() }).collect(),
        }),
        (Expect::Put, Response::Written) => AnyMessage::PutResponse(PutResponse),
        (Expect::BatchPut, Response::Written) => AnyMessage::BatchPutResponse(BatchPutResponse),
        (Expect::Delete, Response::Written) => AnyMessage::DeleteResponse(DeleteResponse),
        (Expect::BatchDelete, Response::Written) => AnyMessage::BatchDeleteResponse(BatchDeleteResponse),
        (Expect::DeleteRange, Response::Written) => AnyMessage::DeleteRangeResponse(DeleteRangeResponse),
        (Expect::Cas, Response::Cas { succeeded, previous }) => {
            AnyMessage::CompareAndSwapResponse(CompareAndSwapResponse {
                succeeded,
                previous: previous.map(vec),
            })
        }
        (Expect::TransferLeader, Response::Done) => {
            AnyMessage::TransferLeaderResponse(TransferLeaderResponse)
        }
        (Expect::ChangePeer, Response::Changed(region)) => {
            AnyMessage::ChangePeerResponse(ChangePeerResponse { region })
        }
        (Expect::Split, Response::Split(regions)) => AnyMessage::SplitResponse(SplitResponse { regions }),
        (e, r) => return Err(ErrorResponse::bad_request(format!("answer {r:?} does not fit {e:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_proto::msg::{BatchGetRequest, CompareAndSwapRequest, GetRequest, PutRequest, RequestContext};

    fn ctx(cf: &str) -> RequestContext {
        RequestContext { cf: cf.into(), epoch: RegionEpoch { conf_ver: 1, version: 2 } }
    }

    #[test]
    fn requests_become_commands_and_answers_fit_back() {
        let (epoch, cmd, expect) = to_command(AnyMessage::PutRequest(PutRequest {
            ctx: ctx(""),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }))
        .unwrap();
        assert_eq!(epoch, RegionEpoch { conf_ver: 1, version: 2 });
        assert_eq!(
            cmd,
            Command::Write(vec![WriteOp::Put { cf: "default".into(), key: b(b"k"), value: b(b"v") }])
        );
        assert_eq!(to_response(expect, Response::Written).unwrap(), AnyMessage::PutResponse(PutResponse));

        let (_, cmd, expect) =
            to_command(AnyMessage::GetRequest(GetRequest { ctx: ctx("lock"), key: b"k".to_vec() })).unwrap();
        assert_eq!(cmd, Command::Get { cf: "lock".into(), key: b(b"k") });
        assert_eq!(
            to_response(expect, Response::Value(Some(b(b"v")))).unwrap(),
            AnyMessage::GetResponse(GetResponse { value: Some(b"v".to_vec()) })
        );

        let keys = vec![b"a".to_vec(), b"b".to_vec()];
        let (_, _, expect) =
            to_command(AnyMessage::BatchGetRequest(BatchGetRequest { ctx: ctx(""), keys })).unwrap();
        let r = to_response(expect, Response::Values(vec![None, Some(b(b"2"))])).unwrap();
        assert_eq!(
            r,
            AnyMessage::BatchGetResponse(BatchGetResponse {
                pairs: vec![KvPair { key: b"b".to_vec(), value: b"2".to_vec() }]
            })
        );

        let (_, cmd, expect) = to_command(AnyMessage::CompareAndSwapRequest(CompareAndSwapRequest {
            ctx: ctx(""),
            key: b"k".to_vec(),
            expected: None,
            new: Some(b"n".to_vec()),
        }))
        .unwrap();
        assert_eq!(
            cmd,
            Command::Cas { cf: "default".into(), key: b(b"k"), expected: None, new: Some(b(b"n")) }
        );
        let r = to_response(expect, Response::Cas { succeeded: false, previous: Some(b(b"x")) }).unwrap();
        assert_eq!(
            r,
            AnyMessage::CompareAndSwapResponse(CompareAndSwapResponse {
                succeeded: false,
                previous: Some(b"x".to_vec())
            })
        );
    }

    #[test]
    fn responses_and_mismatched_answers_are_refused() {
        assert!(to_command(AnyMessage::PutResponse(PutResponse)).is_err());
        assert!(to_response(Expect::Get, Response::Written).is_err());
    }
}
