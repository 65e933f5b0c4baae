//! Message types into and out of shards, and the store's table of which
//! shard owns which region.

mod msg;
mod table;

pub use msg::*;
pub use table::{Refusal, StoreRouter};
