//! Features of a peer, one file each, as `impl Peer` (and shard) blocks.

pub(crate) mod apply;
pub(crate) mod destroy;
pub(crate) mod input;
pub(crate) mod propose;
pub(crate) mod read;
pub(crate) mod snapshot;
pub(crate) mod split;
pub(crate) mod tick;
