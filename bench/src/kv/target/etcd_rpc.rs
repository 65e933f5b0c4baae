//! The part of etcd's v3 gRPC API the `etcd` target uses: the `KV`
//! service's `Range`, `Put` and `Txn`, with their messages written out for
//! prost (field numbers from etcd's `etcdserverpb/rpc.proto` and
//! `mvccpb/kv.proto`). Fields the target never sets or reads are left out:
//! protobuf skips unknown fields, so responses decode all the same. This
//! keeps protoc out of the build.

use std::time::Duration;

use tonic::client::Grpc;
use tonic::codec::ProstCodec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

/// `etcdserverpb.RangeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Exclusive end; empty for the single key `key`.
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    /// 0 is no limit.
    #[prost(int64, tag = "3")]
    pub limit: i64,
    /// false (the default) is a linearizable read.
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    pub more: bool,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.PutResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

/// `etcdserverpb.RequestOp`, of which only `request_put` is used.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "Request", tags = "2")]
    pub request: Option<Request>,
}

/// `etcdserverpb.RequestOp.request`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "2")]
    Put(PutRequest),
}

/// `etcdserverpb.TxnRequest` without compares: `success` always runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

/// A connection to one etcd member's `KV` service.
#[derive(Debug, Clone)]
pub struct KvClient {
    grpc: Grpc<Channel>,
}

impl KvClient {
    /// Connects to `endpoint` (`host:port`, or a URL); every call then
    /// fails after `timeout`.
    ///
    /// # Errors
    /// The endpoint is malformed or does not accept the connection.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Self, tonic::transport::Error> {
        let uri = if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
        let channel = Endpoint::from_shared(uri)?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self { grpc: Grpc::new(channel) })
    }

    /// `KV.Range`.
    pub async fn range(&mut self, req: RangeRequest) -> Result<RangeResponse, tonic::Status> {
        self.unary("/etcdserverpb.KV/Range", req).await
    }

    /// `KV.Put`.
    pub async fn put(&mut self, req: PutRequest) -> Result<PutResponse, tonic::Status> {
        self.unary("/etcdserverpb.KV/Put", req).await
    }

    /// `KV.Txn`.
    pub async fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse, tonic::Status> {
        self.unary("/etcdserverpb.KV/Txn", req).await
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let codec: ProstCodec<Req, Resp> = ProstCodec::default();
        let resp = self.grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec).await?;
        Ok(resp.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn messages_use_etcds_field_numbers() {
        // RangeRequest{key: "k", range_end: "l", limit: 5, serializable: false}:
        // field 1 (bytes) = 0x0a, field 2 = 0x12, field 3 (varint) = 0x18;
        // proto3 leaves a false bool out.
        let req =
            RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), limit: 5, serializable: false };
        assert_eq!(req.encode_to_vec(), [0x0a, 1, b'k', 0x12, 1, b'l', 0x18, 5]);
        // A txn of one put: success (field 2) holding RequestOp.request_put
        // (field 2) holding PutRequest{key: "a", value: "b"}.
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::Put(PutRequest { key: b"a".to_vec(), value: b"b".to_vec() })),
            }],
        };
        assert_eq!(txn.encode_to_vec(), [0x12, 8, 0x12, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);
    }

    #[test]
    fn responses_skip_fields_left_out() {
        // RangeResponse{header (1): {revision (3): 7}, kvs (2): [{key: "k",
        // create_revision (2): 1, value (5): "v"}], count (4): 1}.
        let bytes = [0x0a, 2, 0x18, 7, 0x12, 8, 0x0a, 1, b'k', 0x10, 1, 0x2a, 1, b'v', 0x20, 1];
        let resp = RangeResponse::decode(&bytes[..]).unwrap();
        assert_eq!(resp.kvs, vec![KeyValue { key: b"k".to_vec(), value: b"v".to_vec() }]);
        assert!(!resp.more);
    }
}
