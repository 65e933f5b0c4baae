//! The one place where raftstore errors become wire errors.

use ekv_engine::Error;
use ekv_proto::msg::{ErrorResponse, WireError};

/// The wire form of a raftstore error. Errors after which a command may
/// have applied (the shard stopped, storage failed, the peer was removed
/// while the command waited) become `OutcomeUnknown`, so that a client never
/// retries a write blindly; errors raised before proposing say so.
pub fn to_wire(e: &Error) -> ErrorResponse {
    let error = match e {
        Error::NotLeader { leader, .. } => WireError::NotLeader { leader: *leader },
        Error::EpochNotMatch { current, .. } => WireError::EpochNotMatch { regions: current.clone() },
        Error::RegionNotFound(region) => WireError::RegionNotFound { region: *region },
        // The client drops its cached region either way; the range is in
        // the EpochNotMatch it gets when it asks again with the old epoch.
        Error::KeyNotInRegion { key, region } => WireError::KeyNotInRegion {
            key: key.clone(),
            region: *region,
            start: Vec::new(),
            end: Vec::new(),
        },
        Error::ServerBusy(_) => WireError::ServerBusy,
        Error::BadRequest(m) => return ErrorResponse::bad_request(m.clone()),
        Error::InvalidConfig(m) => return ErrorResponse::bad_request(m.clone()),
        Error::Raft(r) => return ErrorResponse::bad_request(r.to_string()),
        Error::StaleCommand { .. } => WireError::StaleCommand,
        Error::Unknown { .. }
        | Error::RegionRemoved(_)
        | Error::Stopped
        | Error::Corruption(_)
        | Error::Wal(_)
        | Error::Lsm(_)
        | Error::Io(_) => WireError::OutcomeUnknown,
        _ => WireError::OutcomeUnknown,
    };
    ErrorResponse { error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_proto::{PeerId, PeerMeta, RegionEpoch, RegionId, StoreId};

    #[test]
    fn every_engine_error_has_its_wire_code() {
        let leader = Some(PeerMeta { id: PeerId(2), store_id: StoreId(2) });
        let r = RegionId(7);
        let cases: Vec<(Error, WireError)> = vec![
            (Error::NotLeader { region: r, leader }, WireError::NotLeader { leader }),
            (
                Error::EpochNotMatch { region: r, request: RegionEpoch::default(), current: vec![] },
                WireError::EpochNotMatch { regions: vec![] },
            ),
            (Error::RegionNotFound(r), WireError::RegionNotFound { region: r }),
            (
                Error::KeyNotInRegion { key: b"k".to_vec(), region: r },
                WireError::KeyNotInRegion { key: b"k".to_vec(), region: r, start: vec![], end: vec![] },
            ),
            (Error::ServerBusy("queue"), WireError::ServerBusy),
            (Error::BadRequest("no such cf".into()), WireError::BadRequest { message: "no such cf".into() }),
            (Error::StaleCommand { region: r, term: 3 }, WireError::StaleCommand),
            (Error::Unknown { region: r, why: "stopped" }, WireError::OutcomeUnknown),
            (Error::RegionRemoved(r), WireError::OutcomeUnknown),
            (Error::Stopped, WireError::OutcomeUnknown),
            (Error::Corruption("x".into()), WireError::OutcomeUnknown),
        ];
        for (e, want) in cases {
            assert_eq!(to_wire(&e).error, want, "{e}");
        }
        assert!(!to_wire(&Error::Stopped).error.definitely_not_applied());
        assert!(to_wire(&Error::StaleCommand { region: r, term: 1 }).error.definitely_not_applied());
    }
}
