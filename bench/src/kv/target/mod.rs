//! The stores a run measures. A target hands out sessions; each client
//! thread owns one session and calls it blocking, one operation at a time.
//! A target with an async client blocks on a runtime of its own.
//!
//! Targets are built by name ([`build`]); a new one is a module here, a
//! name in [`KNOWN`] and an arm in [`build`].

pub mod ekv;
pub mod etcd;
mod etcd_rpc;
pub mod memory;

use std::time::Duration;

/// The error of a target operation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The result of a target operation.
pub type Result<T> = std::result::Result<T, BoxError>;

/// A store under test.
pub trait KvTarget: Send + Sync {
    /// Its name in case names, plots and `--target`.
    fn name(&self) -> &str;

    /// What it is and how it is reached, for the report's notes.
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// A new session: one client's connection(s). Called once per client
    /// before the clock starts.
    ///
    /// # Errors
    /// The store cannot be reached.
    fn session(&self) -> Result<Box<dyn KvSession>>;

    /// The most pairs one [`KvSession::batch_put`] may carry, if the store
    /// limits it.
    fn max_batch(&self) -> Option<usize> {
        None
    }
}

/// One client's view of a target. Every call blocks until the store has
/// answered; reads are linearizable.
pub trait KvSession: Send {
    /// The value of `key`, `None` if it has none.
    ///
    /// # Errors
    /// The store failed the request or could not be reached.
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Puts `value` to `key`, which exists.
    ///
    /// # Errors
    /// As [`KvSession::read`].
    fn update(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Puts `value` to `key`, which does not exist yet. A plain put unless
    /// the store has a cheaper way to create a key.
    ///
    /// # Errors
    /// As [`KvSession::read`].
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.update(key, value)
    }

    /// Reads up to `limit` pairs in key order from `start` (inclusive) to
    /// `end` (exclusive); returns how many it read.
    ///
    /// # Errors
    /// As [`KvSession::read`].
    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<usize>;

    /// Puts every pair in one request (atomically where the store can).
    /// The keys are distinct.
    ///
    /// # Errors
    /// As [`KvSession::read`].
    fn batch_put(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;
}

/// The target names [`build`] knows.
pub const KNOWN: &[&str] = &[memory::NAME, etcd::NAME, ekv::NAME];

/// What targets are built from.
#[derive(Debug, Clone, Default)]
pub struct TargetEnv {
    /// Latency the `memory` target adds to every operation.
    pub memory_latency: Duration,
    /// Client endpoints (`host:port`) of the etcd cluster.
    pub etcd_endpoints: Vec<String>,
    /// Meta-service endpoints of the ekv cluster.
    pub pd_endpoints: Vec<String>,
    /// Start an ekv cluster in this process, data under this directory.
    pub ekv_start: Option<std::path::PathBuf>,
}

/// The target called `name`.
///
/// # Errors
/// The name is unknown, or the target lacks what it needs in `env`.
pub fn build(name: &str, env: &TargetEnv) -> Result<Box<dyn KvTarget>> {
    match name {
        memory::NAME => Ok(Box::new(memory::MemoryTarget::new(env.memory_latency))),
        etcd::NAME => Ok(Box::new(etcd::EtcdTarget::new(env.etcd_endpoints.clone())?)),
        ekv::NAME => match &env.ekv_start {
            Some(dir) => Ok(Box::new(ekv::EkvTarget::start(dir)?)),
            None => Ok(Box::new(ekv::EkvTarget::connect(env.pd_endpoints.clone())?)),
        },
        other => Err(format!("unknown target {other:?} (known: {})", KNOWN.join(", ")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_known_targets_and_refuses_others() {
        let env = TargetEnv {
            etcd_endpoints: vec!["127.0.0.1:1".into()],
            pd_endpoints: vec!["127.0.0.1:1".into()],
            ..TargetEnv::default()
        };
        for name in KNOWN {
            assert_eq!(build(name, &env).unwrap().name(), *name);
        }
        let err = build("nosuch", &env).err().unwrap().to_string();
        assert!(err.contains("nosuch") && err.contains("memory"), "{err}");
        assert!(build(etcd::NAME, &TargetEnv::default()).is_err(), "etcd needs endpoints");
        assert!(build(ekv::NAME, &TargetEnv::default()).is_err(), "ekv needs endpoints");
    }
}
