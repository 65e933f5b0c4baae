//! ekv's meta service (the placement driver): cluster metadata, routing,
//! id allocation, store and region heartbeats, and scheduling.
//!
//! [`core`] is the sans-I/O heart: a deterministic state machine that takes
//! requests with the current time as an argument and returns answers plus
//! the persisted [`core::Change`]s the service must replicate (through the
//! meta service's own raft group) before it answers.
//!
//! Rule: [`core`] does no I/O, reads no clock and spawns nothing; it
//! depends on `ekv-proto` alone among ekv crates.
//!
//! ```
//! use ekv_pd::core::{Cluster, Settings};
//! use ekv_proto::msg::{RegionHeartbeatRequest, StoreMeta};
//! use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};
//!
//! let mut pd = Cluster::new(Settings::default());
//! let store = StoreMeta { id: StoreId(1), address: "127.0.0.1:20160".into(), shard_count: 2, ..Default::default() };
//! let peer = PeerMeta { id: PeerId(3), store_id: StoreId(1) };
//! let region = Region {
//!     id: RegionId(2),
//!     epoch: RegionEpoch { conf_ver: 1, version: 1 },
//!     peers: vec![peer],
//!     ..Default::default()
//! };
//! pd.bootstrap(store, region.clone(), 0)?;
//! // Persist these through raft before answering the bootstrap request.
//! let changes = pd.take_changes();
//! assert_eq!(changes.len(), 4); // the ids, the store, the region, the flag
//!
//! let hb = RegionHeartbeatRequest { region, leader: Some(peer), ..Default::default() };
//! let answer = pd.region_heartbeat(&hb, 1_000)?;
//! // One store cannot hold three replicas: nothing to do.
//! assert_eq!(answer.operator, None);
//! assert_eq!(pd.get_region(b"any key").unwrap().leader, Some(peer));
//! # Ok::<(), ekv_pd::core::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(unsafe_code)]

pub mod core;
pub mod local;
pub mod member;
pub mod node;
pub mod remote;
