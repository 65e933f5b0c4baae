//! `memory`: an ordered map in this process behind one mutex, with an
//! optional fixed latency per operation. It checks the harness itself: its
//! latencies are known, so what the report shows beyond them is the
//! harness's own cost.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{KvSession, KvTarget, Result};

/// The target's name.
pub const NAME: &str = "memory";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-process store.
#[derive(Debug, Default)]
pub struct MemoryTarget {
    map: Arc<Mutex<Map>>,
    latency: Duration,
}

impl MemoryTarget {
    /// An empty store whose every operation sleeps `latency` first.
    pub fn new(latency: Duration) -> Self {
        Self { map: Arc::default(), latency }
    }

    /// The number of keys stored.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

impl KvTarget for MemoryTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn describe(&self) -> String {
        format!("memory: in-process BTreeMap behind a mutex, {:?} added per operation", self.latency)
    }

    fn session(&self) -> Result<Box<dyn KvSession>> {
        Ok(Box::new(MemorySession { map: Arc::clone(&self.map), latency: self.latency }))
    }
}

fn lock(map: &Mutex<Map>) -> MutexGuard<'_, Map> {
    // A panicking client thread leaves the map whole: every change is one
    // insert.
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct MemorySession {
    map: Arc<Mutex<Map>>,
    latency: Duration,
}

impl MemorySession {
    fn delay(&self) {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
    }
}

impl KvSession for MemorySession {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.delay();
        Ok(lock(&self.map).get(key).cloned())
    }

    fn update(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.delay();
        lock(&self.map).insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<usize> {
        self.delay();
        let map = lock(&self.map);
        let range = map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
        Ok(range.take(limit).count())
    }

    fn batch_put(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.delay();
        let mut map = lock(&self.map);
        for (k, v) in pairs {
            map.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_share_one_ordered_map() {
        let t = MemoryTarget::new(Duration::ZERO);
        let mut a = t.session().unwrap();
        let mut b = t.session().unwrap();
        a.batch_put(&[(b"k1".to_vec(), b"1".to_vec()), (b"k3".to_vec(), b"3".to_vec())]).unwrap();
        b.insert(b"k2", b"2").unwrap();
        a.update(b"k9", b"9").unwrap();
        assert_eq!(b.read(b"k1").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.read(b"k0").unwrap(), None);
        assert_eq!(a.scan(b"k2", b"k9", 10).unwrap(), 2, "k2, k3; the end is exclusive");
        assert_eq!(a.scan(b"k", b"l", 3).unwrap(), 3, "limited");
        assert_eq!(t.len(), 4);
    }
}
