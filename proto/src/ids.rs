//! Ids as newtypes, so that a region id is never passed where a peer id is meant.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value, for encoders.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " {}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

id_type!(
    /// A region: one key range replicated by one raft group. Allocated by the meta service.
    RegionId,
    "region"
);
id_type!(
    /// One replica of a region (a raft node id). Allocated by the meta service.
    PeerId,
    "peer"
);
id_type!(
    /// One `ekv store` process. Allocated by the meta service.
    StoreId,
    "store"
);
id_type!(
    /// One core of a store: index of the shard inside its store, from 0.
    ShardId,
    "shard"
);
id_type!(
    /// A client-chosen tag matching a response frame to its request on one
    /// connection; many requests may be in flight and answered out of order.
    RequestId,
    "request"
);

impl RegionId {
    /// The region id carried by frames to and from the meta service, which
    /// are about the cluster rather than one region. Never allocated.
    pub const META: RegionId = RegionId(0);
}
