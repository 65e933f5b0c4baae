//! Settings of a store and its shards.

use std::time::Duration;

use crate::{Error, Result};

/// Settings of the raftstore. `Default` gives production values; tests
/// shrink the thresholds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shards (executors) of the store; 0 means one per CPU in `cpus`.
    pub shards: usize,
    /// CPUs the shards are pinned to, in order; shard `i` runs on
    /// `cpus[i % cpus.len()]`. Empty: no pinning.
    pub cpus: Vec<usize>,
    /// Wall-clock length of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader's message before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Whether election timeouts are randomised in
    /// `[election_ticks, 2 * election_ticks)` (raft-rs's default). The
    /// simulator turns this off so that a seed replays exactly: each peer's
    /// timeout is then fixed in that range by its id, so that the peers of a
    /// region still do not campaign in lockstep.
    pub randomized_election: bool,
    /// Ticks a leader lease lasts after a quorum acknowledged the leader. Less
    /// than `election_ticks`, to allow for clock drift between stores.
    pub lease_ticks: u64,
    /// Column families of user data. Commands name one of these.
    pub cfs: Vec<String>,
    /// Largest total size of the entries of one append message.
    pub max_size_per_msg: u64,
    /// Most append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Largest encoded command (a bigger one is refused).
    pub max_command_bytes: usize,
    /// Pending proposals per region beyond which commands get `ServerBusy`.
    pub max_pending_proposals: usize,
    /// Ticks between log GC checks of a leader.
    pub raft_log_gc_ticks: u64,
    /// Entries kept below the applied index beyond which the log is cut even
    /// if a follower still needs them (it then catches up by snapshot).
    pub raft_log_gc_count_limit: u64,
    /// Same, in bytes of entries.
    pub raft_log_gc_size_limit: u64,
    /// Entries a leader keeps behind the slowest follower at most, before
    /// it cuts anyway (this many or fewer are cut only once every follower has them).
    pub raft_log_gc_threshold: u64,
    /// Region size beyond which the leader asks to split it.
    pub region_split_size: u64,
    /// Keys beyond which the leader asks to split it.
    pub region_split_keys: u64,
    /// Ticks between split checks of a leader.
    pub split_check_ticks: u64,
    /// Ticks between region heartbeats of a leader to the meta service.
    pub pd_heartbeat_ticks: u64,
    /// Ticks between store heartbeats.
    pub pd_store_heartbeat_ticks: u64,
    /// Size of one snapshot chunk on the wire.
    pub snap_chunk_bytes: usize,
    /// Snapshot bytes a shard sends per tick (the rate limit).
    pub snap_bytes_per_tick: u64,
    /// Ticks without traffic after which a settled region stops ticking.
    /// 0 disables hibernation.
    pub hibernate_after_ticks: u64,
    /// Ticks between store-to-store liveness probes (which wake the
    /// hibernating followers of a store that went silent).
    pub store_probe_ticks: u64,
    /// Bytes of the WAL's entry cache (peers keep their own unapplied tail).
    pub wal_cache_bytes: usize,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// LSM memtable size.
    pub lsm_memtable_bytes: usize,
    /// LSM block cache size.
    pub lsm_block_cache_bytes: usize,
    /// How long an idle shard executor polls for work before it sleeps in
    /// the kernel. A wake-up from sleep costs tens of microseconds of tail
    /// latency; polling costs a core. Zero (the default) never polls: use
    /// it only when each shard has a core of its own.
    pub spin_before_park: Duration,
}

/// The smallest WAL segment: room for commands of at least 64 KiB.
pub const MIN_WAL_SEGMENT: u64 = 256 << 10;

impl Default for Config {
    fn default() -> Self {
        Self {
            shards: 0,
            cpus: Vec::new(),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            randomized_election: true,
            lease_ticks: 8,
            cfs: vec!["default".into(), "lock".into(), "write".into()],
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_command_bytes: 8 << 20,
            max_pending_proposals: 4096,
            raft_log_gc_ticks: 30,
            raft_log_gc_count_limit: 24_000,
            raft_log_gc_size_limit: 64 << 20,
            raft_log_gc_threshold: 50,
            region_split_size: 96 << 20,
            region_split_keys: 960_000,
            split_check_ticks: 100,
            pd_heartbeat_ticks: 600,
            pd_store_heartbeat_ticks: 100,
            snap_chunk_bytes: 1 << 20,
            snap_bytes_per_tick: 10 << 20,
            hibernate_after_ticks: 20,
            store_probe_ticks: 10,
            wal_cache_bytes: 4 << 20,
            wal_segment_bytes: 64 << 20,
            lsm_memtable_bytes: 64 << 20,
            lsm_block_cache_bytes: 256 << 20,
            spin_before_park: Duration::ZERO,
        }
    }
}

/// Name of the internal family that holds peer states; commands may not name it.
pub const META_CF: &str = "raft";

impl Config {
    /// Checks every setting; the message says which and why.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(format!(
                "election_ticks ({}) must exceed heartbeat_ticks ({}), which must be positive",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        if self.lease_ticks == 0 || self.lease_ticks >= self.election_ticks as u64 {
            return bad(format!(
                "lease_ticks ({}) must lie in 1..election_ticks ({})",
                self.lease_ticks, self.election_ticks
            ));
        }
        if self.tick_interval.is_zero() {
            return bad("tick_interval must be positive".into());
        }
        if self.cfs.is_empty() {
            return bad("cfs must name at least one column family".into());
        }
        for (i, cf) in self.cfs.iter().enumerate() {
            if cf.is_empty() || cf == META_CF || self.cfs[..i].contains(cf) {
                return bad(format!("column family {cf:?} is empty, reserved or listed twice"));
            }
        }
        if self.max_inflight_msgs == 0 || self.max_size_per_msg == 0 {
            return bad("max_inflight_msgs and max_size_per_msg must be positive".into());
        }
        if self.wal_segment_bytes < MIN_WAL_SEGMENT {
            return bad(format!(
                "wal_segment_bytes ({}) must be at least {MIN_WAL_SEGMENT}",
                self.wal_segment_bytes
            ));
        }
        if self.snap_chunk_bytes == 0 || self.snap_bytes_per_tick == 0 {
            return bad("snap_chunk_bytes and snap_bytes_per_tick must be positive".into());
        }
        if self.region_split_size == 0 || self.region_split_keys == 0 {
            return bad("region_split_size and region_split_keys must be positive".into());
        }
        if self.raft_log_gc_ticks == 0
            || self.split_check_ticks == 0
            || self.pd_heartbeat_ticks == 0
            || self.pd_store_heartbeat_ticks == 0
            || self.store_probe_ticks == 0
        {
            return bad("periods in ticks must be positive".into());
        }
        if self.hibernate_after_ticks != 0 && self.hibernate_after_ticks < 2 * self.election_ticks as u64 {
            return bad(format!(
                "hibernate_after_ticks ({}) must be 0 or at least twice election_ticks",
                self.hibernate_after_ticks
            ));
        }
        Ok(())
    }

    /// The largest command a region accepts: `max_command_bytes`, and never
    /// more than one part of a round's WAL write (half a segment, less room
    /// for the record's framing) so that any command can be made durable.
    pub fn command_limit(&self) -> usize {
        let wal_room = (self.wal_segment_bytes / 2).saturating_sub(64 << 10);
        self.max_command_bytes.min(wal_room as usize)
    }

    /// The shard count in effect.
    pub fn shard_count(&self) -> usize {
        match (self.shards, self.cpus.len()) {
            (0, 0) => 1,
            (0, n) => n,
            (n, _) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_settings_are_named() {
        Config::default().validate().unwrap();
        let c = Config { lease_ticks: 10, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("lease_ticks"));
        let c = Config { cfs: vec!["raft".into()], ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("reserved"));
        let c = Config { heartbeat_ticks: 10, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("election_ticks"));
    }
}
