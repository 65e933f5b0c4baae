//! Which shard of the store owns which region. Consulted only off the hot
//! path: when a frame reaches a shard that does not own its region, and
//! when peers are created or destroyed. A correctly addressed frame never
//! touches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ekv_proto::{RegionId, ShardId};

#[derive(Debug, Default)]
struct Table {
    owner: HashMap<RegionId, ShardId>,
    load: Vec<usize>,
}

/// The store's region → shard table, shared by its shards.
#[derive(Debug, Clone)]
pub struct StoreRouter {
    inner: Arc<Mutex<Table>>,
}

impl StoreRouter {
    /// A table for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Table { owner: HashMap::new(), load: vec![0; shards.max(1)] })) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The shard owning `region`.
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        self.with(|t| t.owner.get(&region).copied())
    }

    /// Records that `shard` owns `region`.
    pub fn register(&self, region: RegionId, shard: ShardId) {
        self.with(|t| {
            if let Some(old) = t.owner.insert(region, shard) {
                t.load[old.get() as usize] -= 1;
            }
            t.load[shard.get() as usize] += 1;
        })
    }

    /// Forgets `region`.
    pub fn unregister(&self, region: RegionId) {
        self.with(|t| {
            if let Some(old) = t.owner.remove(&region) {
                t.load[old.get() as usize] -= 1;
            }
        })
    }

    /// The owner of `region`, placing it on the least-loaded shard (lowest
    /// index on ties) when it has none.
    pub fn owner_or_place(&self, region: RegionId) -> ShardId {
        self.with(|t| {
            if let Some(s) = t.owner.get(&region) {
                return *s;
            }
            let (i, _) =
                t.load.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("at least one shard");
            let s = ShardId(i as u64);
            t.owner.insert(region, s);
            t.load[i] += 1;
            s
        })
    }

    /// Regions per shard.
    pub fn loads(&self) -> Vec<usize> {
        self.with(|t| t.load.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_regions_go_to_the_least_loaded_shard() {
        let r = StoreRouter::new(2);
        r.register(RegionId(1), ShardId(0));
        assert_eq!(r.owner_or_place(RegionId(2)), ShardId(1));
        assert_eq!(r.owner_or_place(RegionId(3)), ShardId(0));
        assert_eq!(r.owner_or_place(RegionId(2)), ShardId(1));
        r.unregister(RegionId(1));
        assert_eq!(r.loads(), vec![1, 1]);
        assert_eq!(r.owner(RegionId(1)), None);
    }
}
