//! The persisted state of the meta service: [`Change`]s and their
//! key-value [`Record`]s.
//!
//! Keys (all under [`KEY_PREFIX`], ids big-endian so that a prefix scan
//! returns them in id order):
//!
//! | key | value body |
//! |---|---|
//! | `pd/store/` + store id u64 BE | the store as `PutStoreRequest` encodes it |
//! | `pd/region/` + region id u64 BE | the region as `Region::encode_into` writes it |
//! | `pd/bootstrapped` | empty |
//! | `pd/id_end` | the reserved id end, u64 LE |
//!
//! Every value is `framed(RECORD_VERSION, body)`:
//! `version u8 | crc32c u32 LE of body | body` (see
//! [`ekv_proto::codec::framed`]). A deletion is a record without a value.

use ekv_proto::codec::{framed, unframe, DecodeError, Reader};
use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{Message, PutStoreRequest, StoreMeta};
use ekv_proto::{Region, RegionId, StoreId};

use super::error::{Error, Result};

/// The prefix of every key the core persists.
pub const KEY_PREFIX: &[u8] = b"pd/";
/// Version byte of every record value.
pub const RECORD_VERSION: u8 = 1;

const STORE_PREFIX: &[u8] = b"pd/store/";
const REGION_PREFIX: &[u8] = b"pd/region/";
const BOOTSTRAPPED_KEY: &[u8] = b"pd/bootstrapped";
const ID_END_KEY: &[u8] = b"pd/id_end";

/// One mutation of the persisted state. The lead replicates them (as
/// [`Record`]s) before answering the request that produced them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A store was registered or changed state.
    PutStore(StoreMeta),
    /// A region's shape or membership (its epoch) changed, or it is new.
    PutRegion(Region),
    /// A region was replaced by newer, overlapping ones.
    DeleteRegion(RegionId),
    /// The cluster was bootstrapped.
    Bootstrapped,
    /// Ids below this may have been handed out.
    IdEnd(u64),
}

/// A key and its value; `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key, under [`KEY_PREFIX`].
    pub key: Vec<u8>,
    /// The framed value, `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

/// The key of a store's record.
pub fn store_key(id: StoreId) -> Vec<u8> {
    [STORE_PREFIX, &id.get().to_be_bytes()].concat()
}

/// The key of a region's record.
pub fn region_key(id: RegionId) -> Vec<u8> {
    [REGION_PREFIX, &id.get().to_be_bytes()].concat()
}

impl Change {
    /// The record that persists this change.
    pub fn to_record(&self) -> Record {
        let (key, body) = match self {
            Change::PutStore(s) => (store_key(s.id), PutStoreRequest { store: s.clone() }.encode_into_vec()),
            Change::PutRegion(r) => {
                let mut body = Vec::new();
                r.encode_into(&mut body);
                (region_key(r.id), body)
            }
            Change::DeleteRegion(id) => return Record { key: region_key(*id), value: None },
            Change::Bootstrapped => (BOOTSTRAPPED_KEY.to_vec(), Vec::new()),
            Change::IdEnd(end) => (ID_END_KEY.to_vec(), end.to_le_bytes().to_vec()),
        };
        Record { key, value: Some(framed(RECORD_VERSION, &body)) }
    }

    /// Decodes a record written by [`Change::to_record`].
    ///
    /// # Errors
    /// [`Error::BadRecord`] for a corrupt value, a value whose id differs
    /// from the key's, or a deletion of a key that cannot be deleted;
    /// [`Error::UnknownRecord`] for a key outside the table above.
    pub fn from_record(key: &[u8], value: Option<&[u8]>) -> Result<Change> {
        let bad = |source| Error::BadRecord { key: key.to_vec(), source };
        if let Some(id) = key_id(key, REGION_PREFIX) {
            let id = RegionId(id.map_err(bad)?);
            let Some(value) = value else { return Ok(Change::DeleteRegion(id)) };
            let body = unframe(value, RECORD_VERSION, "region record").map_err(bad)?;
            let mut r = Reader::new(body);
            let region = Region::decode_from(&mut r).map_err(bad)?;
            if !r.is_empty() {
                return Err(bad(DecodeError::Invalid {
                    what: "trailing bytes",
                    value: r.remaining() as u64,
                }));
            }
            if region.id != id {
                return Err(bad(DecodeError::Invalid { what: "region id", value: region.id.get() }));
            }
            return Ok(Change::PutRegion(region));
        }
        let Some(value) = value else {
            return Err(bad(DecodeError::Invalid { what: "deletion of a non-region record", value: 0 }));
        };
        if let Some(id) = key_id(key, STORE_PREFIX) {
            let id = StoreId(id.map_err(bad)?);
            let body = unframe(value, RECORD_VERSION, "store record").map_err(bad)?;
            let store = PutStoreRequest::decode_exact(body, &FrameLimits::default()).map_err(bad)?.store;
            if store.id != id {
                return Err(bad(DecodeError::Invalid { what: "store id", value: store.id.get() }));
            }
            return Ok(Change::PutStore(store));
        }
        if key == BOOTSTRAPPED_KEY {
            let body = unframe(value, RECORD_VERSION, "bootstrap record").map_err(bad)?;
            if !body.is_empty() {
                return Err(bad(DecodeError::Invalid { what: "trailing bytes", value: body.len() as u64 }));
            }
            return Ok(Change::Bootstrapped);
        }
        if key == ID_END_KEY {
            let body = unframe(value, RECORD_VERSION, "id record").map_err(bad)?;
            let mut r = Reader::new(body);
            let end = r.u64_le("id end").map_err(bad)?;
            if !r.is_empty() {
                return Err(bad(DecodeError::Invalid {
                    what: "trailing bytes",
                    value: r.remaining() as u64,
                }));
            }
            return Ok(Change::IdEnd(end));
        }
        Err(Error::UnknownRecord { key: key.to_vec() })
    }
}

impl Record {
    /// Decodes the change this record persists; see [`Change::from_record`].
    ///
    /// # Errors
    /// As [`Change::from_record`].
    pub fn to_change(&self) -> Result<Change> {
        Change::from_record(&self.key, self.value.as_deref())
    }
}

/// The id after `prefix`, if `key` starts with it.
fn key_id(key: &[u8], prefix: &[u8]) -> Option<std::result::Result<u64, DecodeError>> {
    let rest = key.strip_prefix(prefix)?;
    Some(
        <[u8; 8]>::try_from(rest)
            .map(u64::from_be_bytes)
            .map_err(|_| DecodeError::Invalid { what: "record key length", value: key.len() as u64 }),
    )
}

#[cfg(test)]
mod tests {
    use ekv_proto::msg::StoreState;
    use ekv_proto::{PeerId, PeerMeta, RegionEpoch};

    use super::*;

    fn samples() -> Vec<Change> {
        vec![
            Change::PutStore(StoreMeta {
                id: StoreId(4),
                address: "10.0.0.4:20160".into(),
                shard_count: 2,
                state: StoreState::Offline,
            }),
            Change::PutRegion(Region {
                id: RegionId(9),
                start_key: b"a".to_vec(),
                end_key: vec![],
                epoch: RegionEpoch { conf_ver: 3, version: 7 },
                peers: vec![PeerMeta { id: PeerId(10), store_id: StoreId(4) }],
            }),
            Change::DeleteRegion(RegionId(300)),
            Change::Bootstrapped,
            Change::IdEnd(1 << 40),
        ]
    }

    #[test]
    fn every_change_round_trips_through_its_record() {
        for c in samples() {
            let rec = c.to_record();
            assert!(rec.key.starts_with(KEY_PREFIX));
            assert_eq!(rec.to_change().unwrap(), c);
        }
    }

    #[test]
    fn ids_in_keys_sort_numerically() {
        assert!(region_key(RegionId(255)) < region_key(RegionId(256)));
        assert!(store_key(StoreId(9)) < store_key(StoreId(1 << 20)));
    }

    #[test]
    fn corrupt_or_truncated_values_are_refused() {
        for c in samples() {
            let rec = c.to_record();
            let Some(value) = rec.value else { continue };
            for i in 0..value.len() {
                let mut bad = value.clone();
                bad[i] ^= 0x41;
                assert!(Change::from_record(&rec.key, Some(&bad)).is_err(), "{c:?} flip at {i}");
            }
            for cut in 0..value.len() {
                assert!(Change::from_record(&rec.key, Some(&value[..cut])).is_err(), "{c:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn mismatched_ids_and_unknown_keys_are_refused() {
        let rec = samples()[1].to_record();
        let err = Change::from_record(&region_key(RegionId(10)), rec.value.as_deref()).unwrap_err();
        assert!(matches!(
            err,
            Error::BadRecord { source: DecodeError::Invalid { what: "region id", .. }, .. }
        ));
        let err = Change::from_record(b"pd/region/\x01", None).unwrap_err();
        assert!(matches!(err, Error::BadRecord { .. }));
        assert!(matches!(Change::from_record(b"pd/other", Some(b"x")), Err(Error::UnknownRecord { .. })));
        assert!(matches!(Change::from_record(ID_END_KEY, None), Err(Error::BadRecord { .. })));
    }
}
